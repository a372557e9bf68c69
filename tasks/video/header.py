"""A video's container header: stream facts read without decoding a frame.

ffprobe is optional. Without it (the imageio-ffmpeg wheel ships only ffmpeg) the header is
parsed from ``ffmpeg -i`` stderr; both paths give the same `Header`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.size import Size
from nst_video.tasks.video.process import clean, ffmpeg_exe, ffprobe_exe, run

# Demuxers that read one still image: such a file is "not a video".
_IMAGE_DEMUXERS = re.compile(r"(_pipe|^image2|^imagepipe)$")
# Leading bytes of containers we recognize: an unreadable file with one is "truncated".
_CONTAINER_MAGIC = (
    (4, b"ftyp"),
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),
    (0, b"RIFF"),
    (0, b"OggS"),
    (0, b"FLV"),
)


@dataclass(frozen=True)
class Header:
    """Stream facts from the container header (ffprobe JSON or ``ffmpeg -i`` text).

    Frame rates are not taken from here: they come from the decode pass in both paths, so
    that ffprobe and ffmpeg-only probing agree and follow the frames actually decoded.
    """

    format_name: str
    video_codec: str | None = None
    coded_width: int = 0
    coded_height: int = 0
    pix_fmt: str = ""
    bit_depth: int = 8
    color_range: str = "tv"
    rotation: int = 0
    sample_aspect: Fraction = Fraction(1)
    duration: float | None = None
    audio_codecs: tuple[str, ...] = ()
    still_image: bool = False

    @property
    def coded_size(self) -> Size:
        """The size as stored in the stream."""
        return Size(self.coded_width, self.coded_height)

    @property
    def size(self) -> Size:
        """The size as displayed, in square pixels: the stored width stretched by the sample
        aspect ratio (a 160x120 stream at SAR 4:3 shows as 213x120), turned by the rotation."""
        width = max(1, round(self.coded_width * self.sample_aspect))
        square = Size(width, self.coded_height)
        return Size(square.height, square.width) if self.rotation in (90, 270) else square


def read_header(path: Path) -> Header:
    """Container header, through ffprobe when it exists, else through ``ffmpeg -i``."""
    exe = ffprobe_exe()
    return header_with_ffprobe(path, exe) if exe else header_with_ffmpeg(path)


def video_header(path: Path) -> Header:
    """The header of a file that must be a video (see require_video)."""
    return require_video(path, read_header(path))


def header_with_ffmpeg(path: Path) -> Header:
    proc = run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)])
    if "Input #0" not in proc.stderr:
        raise open_error(path, proc.stderr)
    return header_from_ffmpeg_text(proc.stderr)


def header_with_ffprobe(path: Path, exe: str) -> Header:
    proc = run(
        [exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    )
    if proc.returncode != 0:
        raise open_error(path, proc.stderr, "ffprobe")
    return header_from_ffprobe_json(json.loads(proc.stdout))


# --------------------------------------------------------------------------- rejections


def _looks_like_container(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(12)
    return any(head[at : at + len(magic)] == magic for at, magic in _CONTAINER_MAGIC)


def open_error(path: Path, stderr: str, tool: str = "ffmpeg") -> InvalidInputError:
    """Classify a file ffmpeg could not open: truncated container or not a video at all."""
    lines = [clean(x).removeprefix(f"{path}: ") for x in stderr.splitlines()]
    noise = ("Error opening input", "At least one output", "misdetection possible")
    useful = [x for x in lines if x and not any(n in x for n in noise)]
    reason = useful[0] if useful else (lines[-1] if lines else "unreadable")
    reason = reason.removeprefix("Error opening input files: ")
    kind = "truncated or corrupt" if _looks_like_container(path) else "not a video"
    return InvalidInputError(f"{path}: {kind} ({tool}: {reason})")


def require_video(path: Path, header: Header) -> Header:
    """Reject files without a (moving) video stream with a reason the user can act on."""
    if header.still_image:
        kind = header.format_name
        raise InvalidInputError(f"{path}: not a video (a single still image, {kind})")
    if header.video_codec is None and header.audio_codecs:
        codecs = ", ".join(header.audio_codecs)
        raise InvalidInputError(f"{path}: not a video (no video stream; audio only: {codecs})")
    if header.video_codec is None:
        raise InvalidInputError(f"{path}: not a video (no video stream)")
    return header


# --------------------------------------------------------------------------- parsing


def _bit_depth(pix_fmt: str) -> int:
    """Bits per component from a pixel format name: yuv420p10le -> 10, rgb48le -> 16, else 8."""
    match = re.search(r"(\d+)(?:le|be)$", pix_fmt)
    if not match:
        return 8
    bits = int(match.group(1))
    return 16 if bits in (48, 64) else bits


def _clockwise(display_matrix_rotation: float) -> int:
    """Display-matrix rotation (counter-clockwise degrees) -> clockwise 0/90/180/270."""
    return int(round(-display_matrix_rotation / 90.0)) * 90 % 360


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


_STREAM_RE = re.compile(r"^(\s*)Stream #\d+:\d+\S*?: (\w+): (.*)$")


def _stream_blocks(stderr: str) -> list[tuple[str, str, list[str]]]:
    """(kind, description, indented lines below) for every ``Stream #`` line of ``ffmpeg -i``."""
    blocks: list[tuple[str, str, list[str]]] = []
    indent = -1
    for line in stderr.splitlines():
        match = _STREAM_RE.match(line)
        if match:
            indent = len(match.group(1))
            blocks.append((match.group(2), match.group(3), []))
        elif blocks and indent >= 0 and len(line) - len(line.lstrip()) > indent:
            blocks[-1][2].append(line.strip())
        else:
            indent = -1
    return blocks


def _rotation_from_lines(lines: Iterable[str]) -> int:
    """Clockwise rotation from a stream's side data (ffmpeg >= 5) or legacy rotate tag."""
    for line in lines:
        match = re.search(r"display ?matrix: rotation of (-?[\d.]+) degrees", line, re.I)
        if match:
            return _clockwise(float(match.group(1)))
        match = re.match(r"rotate\s*:\s*(-?\d+)$", line)
        if match:
            return int(match.group(1)) % 360
    return 0


def _sample_aspect(text: str | None) -> Fraction:
    """A sample aspect ratio ("4:3"); 1 when missing or unknown ("0:1", "N/A")."""
    match = re.fullmatch(r"(\d+):(\d+)", text or "")
    num, den = (int(g) for g in match.groups()) if match else (0, 0)
    return Fraction(num, den) if num and den else Fraction(1)


def _video_fields(description: str) -> dict[str, object]:
    """Codec, pix_fmt, colour range, stored size and SAR from a ``Video:`` description.

    The last SAR wins: ffmpeg prints the codec's ("160x120 [SAR 4:3 DAR 16:9]") and then,
    when the container overrides it, the container's (", SAR 3:2 DAR 2:1"), which decoding
    follows.
    """
    fields = _split_top_level(description)
    codec = fields[0].split()[0]
    pix = re.match(r"(\w+)(?:\((.*)\))?", fields[1] if len(fields) > 1 else "")
    pix_fmt = pix.group(1) if pix else ""
    extras = [x.strip() for x in (pix.group(2) or "").split(",")] if pix else []
    size = next((m for f in fields if (m := re.match(r"(\d+)x(\d+)", f))), None)
    full = "pc" in extras or pix_fmt.startswith("yuvj")
    sars = re.findall(r"SAR (\d+:\d+)", description)
    return {
        "video_codec": codec,
        "pix_fmt": pix_fmt,
        "bit_depth": _bit_depth(pix_fmt),
        "color_range": "pc" if full else "tv",
        "coded_width": int(size.group(1)) if size else 0,
        "coded_height": int(size.group(2)) if size else 0,
        "sample_aspect": _sample_aspect(sars[-1] if sars else None),
    }


def header_from_ffmpeg_text(stderr: str) -> Header:
    """Parse the input description that ``ffmpeg -hide_banner -i FILE`` prints to stderr."""
    fmt = re.search(r"Input #0, (.+?), from '", stderr)
    dur = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", stderr)
    values: dict[str, object] = {"format_name": fmt.group(1) if fmt else ""}
    if dur:
        h, m, s = dur.groups()
        values["duration"] = int(h) * 3600 + int(m) * 60 + float(s)
    audio: list[str] = []
    blocks = _stream_blocks(stderr)
    videos = [b for b in blocks if b[0] == "Video" and "(attached pic)" not in b[1]]
    for kind, desc, _ in blocks:
        if kind == "Audio":
            audio.append(desc.split()[0].rstrip(","))
    if videos:
        values.update(_video_fields(videos[0][1]))
        values["rotation"] = _rotation_from_lines(videos[0][2])
    values["audio_codecs"] = tuple(audio)
    image_demuxer = _IMAGE_DEMUXERS.search(str(values["format_name"]))
    values["still_image"] = bool(videos) and bool(image_demuxer)
    return Header(**values)  # type: ignore[arg-type]


def _ffprobe_rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return _clockwise(float(side["rotation"]))
    rotate = stream.get("tags", {}).get("rotate")
    return int(rotate) % 360 if rotate else 0


def header_from_ffprobe_json(data: dict) -> Header:
    """Build the header from ``ffprobe -print_format json -show_format -show_streams``."""
    fmt = data.get("format", {})
    streams = data.get("streams", [])
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    audio = tuple(s.get("codec_name", "?") for s in streams if s.get("codec_type") == "audio")
    format_name = fmt.get("format_name", "")
    duration = float(fmt["duration"]) if fmt.get("duration") else None
    if not videos:
        return Header(format_name, audio_codecs=audio, duration=duration)
    v = videos[0]
    pix_fmt = v.get("pix_fmt", "")
    bits = v.get("bits_per_raw_sample", "")
    full = v.get("color_range") == "pc" or pix_fmt.startswith("yuvj")
    return Header(
        format_name=format_name,
        video_codec=v.get("codec_name", "?"),
        coded_width=int(v.get("width", 0)),
        coded_height=int(v.get("height", 0)),
        pix_fmt=pix_fmt,
        bit_depth=int(bits) if str(bits).isdigit() else _bit_depth(pix_fmt),
        color_range="pc" if full else "tv",
        rotation=_ffprobe_rotation(v),
        sample_aspect=_sample_aspect(v.get("sample_aspect_ratio")),
        duration=duration,
        audio_codecs=audio,
        still_image=bool(_IMAGE_DEMUXERS.search(format_name)),
    )
