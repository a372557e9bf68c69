"""Video I/O through the ffmpeg binary: probe, decode to numpy, encode, concat, mux audio, cuts.

Plain functions (no Prefect) so that they can be tested and reused on their own; the Prefect
tasks wrap them. Every process is started from an argument list (never a shell string), its
stderr is drained in a thread so that no pipe can fill up and block, and it is killed and
reaped when the caller stops early or fails: no zombies, no stray ffmpeg.

Decisions (see also each function's docstring):
- ffprobe is optional. Without it (the imageio-ffmpeg wheel ships only ffmpeg) the stream
  header is parsed from ``ffmpeg -i`` stderr. Either way the frames are counted by one decode
  pass (showinfo), because container frame counts are missing (mkv) or lie (edit lists,
  truncated files); the same pass gives the timestamps from which VFR is detected.
- Frames are addressed by decode index, never by time: ``read_frames(start=k)`` decodes from
  the beginning and drops the first k frames in the filter graph, so a range is bit-exact
  with the same frames of a full decode (cost: O(start) decoding, cheap next to stylization).
- VFR input: frames are yielded as decoded (no duplication or dropping); writing them back at
  ``avg_fps`` keeps the total duration, so the source audio stays in sync overall.
- Rotation is applied by explicit transpose filters from the probed rotation, so the frames'
  shape always matches ``VideoInfo.height x width``.
- Odd sizes on output: libx264 with yuv420p needs even dimensions; ``write_frames`` pads the
  last row/column by replicating it (no resampling, every source pixel kept as is).
- Scene cuts: ffmpeg's own scene score (the ``select`` filter's ``scene``), printed for every
  frame by the ``metadata`` filter, so indices are exact decode indices.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path
from statistics import median
from typing import IO

import numpy as np

from nst_core.errors import InvalidInputError, NSTError
from nst_core.size import Size

MIN_FFMPEG_VERSION = (6, 0)  # -fps_mode, -display_rotation, showinfo checksum=0
_TAIL_LINES = 20  # stderr lines kept for error messages
_SCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int"
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


class FFmpegError(NSTError):
    """ffmpeg failed on an input we had accepted; the message quotes its last stderr lines."""


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video's first video stream.

    ``width``/``height`` are as displayed (after rotation), ``coded_*`` as stored in the
    stream. ``rotation`` is clockwise degrees to apply for display (the old ``rotate`` tag's
    convention). ``frame_count`` is what a full decode yields. ``duration`` is that of the
    video: ``frame_count / avg_fps`` (the length ``write_frames`` gives at ``avg_fps``).
    Pixel aspect ratio is not corrected: dimensions are in stored pixels.
    """

    path: Path
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    frame_count: int
    avg_fps: Fraction
    r_fps: Fraction
    is_vfr: bool
    pix_fmt: str
    bit_depth: int
    color_range: str
    duration: float
    has_audio: bool
    audio_codec: str | None

    @property
    def size(self) -> Size:
        """The size as displayed."""
        return Size(self.width, self.height)


@dataclass(frozen=True)
class _Header:
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
    duration: float | None = None
    audio_codecs: tuple[str, ...] = ()
    still_image: bool = False


@dataclass(frozen=True)
class _Timing:
    """Result of the decode pass: one pts per decoded frame (None where unknown), in
    ``time_base`` units; the last frame's duration (0 if unknown); the guessed frame rate."""

    pts: list[int | None] = field(default_factory=list)
    last_duration: int = 0
    time_base: Fraction = Fraction(1, 1)
    frame_rate: Fraction | None = None


# --------------------------------------------------------------------------- binaries


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: PATH first (if >= MIN_FFMPEG_VERSION), else imageio-ffmpeg's.

    An old system ffmpeg (Debian 11 ships 4.3) lacks options used here, hence the check.
    """
    return _pick_ffmpeg()


def ffprobe_exe() -> str | None:
    """Path of ffprobe on PATH, or None: it is optional (imageio-ffmpeg does not ship one)."""
    return shutil.which("ffprobe")


@cache
def _pick_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found and ffmpeg_version(found) >= MIN_FFMPEG_VERSION:
        return found
    import imageio_ffmpeg  # lazy: only needed without a recent system ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@cache
def ffmpeg_version(exe: str | None = None) -> tuple[int, int]:
    """(major, minor) of an ffmpeg binary; git snapshots ("N-12345-g...") count as newest."""
    out = _run([exe or ffmpeg_exe(), "-hide_banner", "-version"]).stdout
    match = re.search(r"version n?(\d+)\.(\d+)", out)
    if match:
        return int(match.group(1)), int(match.group(2))
    return (99, 0) if re.search(r"version N-", out) else (0, 0)


# --------------------------------------------------------------------------- processes


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion, capturing both streams (no deadlock: run drains)."""
    return subprocess.run(
        list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


class _StderrTail(threading.Thread):
    """Drain a process's stderr so it never blocks; keep the last lines for error messages.

    ``on_line`` (optional) sees every line first; lines it returns True for are consumed and
    not kept (the timing pass parses one showinfo line per frame this way).
    """

    def __init__(self, stream: IO[bytes], on_line: Callable[[str], bool] | None = None) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._on_line = on_line
        self.lines: deque[str] = deque(maxlen=_TAIL_LINES)

    def run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if self._on_line is None or not self._on_line(line):
                self.lines.append(line)


@contextmanager
def _ffmpeg(
    args: Sequence[str],
    *,
    stdin: bool = False,
    stdout: bool = False,
    on_stderr: Callable[[str], bool] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], _StderrTail]]:
    """Start ffmpeg with the pipes asked for; on exit kill it if still running, then reap it."""
    proc = subprocess.Popen(
        list(args),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tail = _StderrTail(proc.stderr, on_stderr)  # type: ignore[arg-type]
    tail.start()
    try:
        yield proc, tail
    finally:
        _reap(proc, tail)


def _reap(proc: subprocess.Popen[bytes], tail: _StderrTail) -> None:
    """Kill (if needed) and wait for the process, close its pipes, join the drain thread."""
    if proc.poll() is None:
        proc.kill()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with suppress(OSError):  # BrokenPipeError flushing stdin of a dead process
                pipe.close()
    proc.wait()
    tail.join(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()


def _clean(line: str) -> str:
    """Drop ffmpeg's "[component @ 0x...]" prefix from a log line."""
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip()


def _ffmpeg_failure(path: Path, rc: int, lines: Iterable[str]) -> FFmpegError:
    """An FFmpegError quoting the last meaningful stderr lines on one line."""
    kept = [_clean(x) for x in lines if _clean(x)]
    quoted = " | ".join(kept[-3:]) or "no error output"
    return FFmpegError(f"{path}: ffmpeg failed (exit {rc}): {quoted}")


def _check_rc(path: Path, proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise _ffmpeg_failure(path, proc.returncode, proc.stderr.splitlines())


# --------------------------------------------------------------------------- input checks


def _check_input_file(path: str | os.PathLike[str]) -> Path:
    """The path as a Path if it is a readable, non-empty regular file; else InvalidInputError."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file")
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a folder, not a video file")
    if p.stat().st_size == 0:
        raise InvalidInputError(f"{p}: file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InvalidInputError(f"{p}: not readable (permission denied)")
    return p


def _looks_like_container(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(12)
    return any(head[at : at + len(magic)] == magic for at, magic in _CONTAINER_MAGIC)


def _open_error(path: Path, stderr: str, tool: str = "ffmpeg") -> InvalidInputError:
    """Classify a file ffmpeg could not open: truncated container or not a video at all."""
    lines = [_clean(x).removeprefix(f"{path}: ") for x in stderr.splitlines()]
    noise = ("Error opening input", "At least one output", "misdetection possible")
    useful = [x for x in lines if x and not any(n in x for n in noise)]
    reason = useful[0] if useful else (lines[-1] if lines else "unreadable")
    reason = reason.removeprefix("Error opening input files: ")
    kind = "truncated or corrupt" if _looks_like_container(path) else "not a video"
    return InvalidInputError(f"{path}: {kind} ({tool}: {reason})")


def _require_video(path: Path, header: _Header) -> _Header:
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


# --------------------------------------------------------------------------- header parsing


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


def _video_fields(description: str) -> dict[str, object]:
    """Codec, pix_fmt, colour range and stored size from a ``Video:`` description."""
    fields = _split_top_level(description)
    codec = fields[0].split()[0]
    pix = re.match(r"(\w+)(?:\((.*)\))?", fields[1] if len(fields) > 1 else "")
    pix_fmt = pix.group(1) if pix else ""
    extras = [x.strip() for x in (pix.group(2) or "").split(",")] if pix else []
    size = next((m for f in fields if (m := re.match(r"(\d+)x(\d+)", f))), None)
    full = "pc" in extras or pix_fmt.startswith("yuvj")
    return {
        "video_codec": codec,
        "pix_fmt": pix_fmt,
        "bit_depth": _bit_depth(pix_fmt),
        "color_range": "pc" if full else "tv",
        "coded_width": int(size.group(1)) if size else 0,
        "coded_height": int(size.group(2)) if size else 0,
    }


def _header_from_ffmpeg_text(stderr: str) -> _Header:
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
    return _Header(**values)  # type: ignore[arg-type]


def _ffprobe_rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return _clockwise(float(side["rotation"]))
    rotate = stream.get("tags", {}).get("rotate")
    return int(rotate) % 360 if rotate else 0


def _header_from_ffprobe_json(data: dict) -> _Header:
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
        return _Header(format_name, audio_codecs=audio, duration=duration)
    v = videos[0]
    pix_fmt = v.get("pix_fmt", "")
    bits = v.get("bits_per_raw_sample", "")
    full = v.get("color_range") == "pc" or pix_fmt.startswith("yuvj")
    return _Header(
        format_name=format_name,
        video_codec=v.get("codec_name", "?"),
        coded_width=int(v.get("width", 0)),
        coded_height=int(v.get("height", 0)),
        pix_fmt=pix_fmt,
        bit_depth=int(bits) if str(bits).isdigit() else _bit_depth(pix_fmt),
        color_range="pc" if full else "tv",
        rotation=_ffprobe_rotation(v),
        duration=duration,
        audio_codecs=audio,
        still_image=bool(_IMAGE_DEMUXERS.search(format_name)),
    )


def _header_with_ffmpeg(path: Path) -> _Header:
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)])
    if "Input #0" not in proc.stderr:
        raise _open_error(path, proc.stderr)
    return _header_from_ffmpeg_text(proc.stderr)


def _header_with_ffprobe(path: Path, exe: str) -> _Header:
    proc = _run(
        [exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    )
    if proc.returncode != 0:
        raise _open_error(path, proc.stderr, "ffprobe")
    return _header_from_ffprobe_json(json.loads(proc.stdout))


def _header(path: Path) -> _Header:
    """Container header, through ffprobe when it exists, else through ``ffmpeg -i``."""
    exe = ffprobe_exe()
    return _header_with_ffprobe(path, exe) if exe else _header_with_ffmpeg(path)


# --------------------------------------------------------------------------- timing pass

_SHOWINFO_FRAME = re.compile(
    r"\] n:\s*\d+\s+pts:\s*(-?\d+|NOPTS)(?:\s+pts_time:\S+\s+duration:\s*(\d+))?"
)
_SHOWINFO_CONFIG = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")


class _ShowinfoParser:
    """Collect every frame's pts from showinfo log lines (fed by _StderrTail)."""

    def __init__(self) -> None:
        self.pts: list[int | None] = []
        self.last_duration = 0
        self.config: re.Match[str] | None = None
        self.partial: str | None = None

    def __call__(self, line: str) -> bool:
        if frame := _SHOWINFO_FRAME.search(line):
            self.pts.append(None if frame.group(1) == "NOPTS" else int(frame.group(1)))
            self.last_duration = int(frame.group(2) or 0)
            return True
        self.config = self.config or _SHOWINFO_CONFIG.search(line)
        if "partial file" in line:
            self.partial = self.partial or _clean(line)
        return False

    def timing(self) -> _Timing:
        if not self.config:
            return _Timing(self.pts, self.last_duration)
        num, den, rate_num, rate_den = (int(g) for g in self.config.groups())
        rate = Fraction(rate_num, rate_den) if rate_den and rate_num else None
        return _Timing(self.pts, self.last_duration, Fraction(num, den), rate)


def _decode_timing(path: Path) -> _Timing:
    """Decode the first video stream once, recording every frame's pts (showinfo).

    This is the exact frame count (what ``read_frames`` will yield) and the timestamps that
    tell CFR from VFR. Frames are only decoded: not rotated, scaled or converted.
    """
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-v",
        "info",
        "-noautorotate",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-fps_mode",
        "passthrough",
        "-vf",
        "showinfo=checksum=0",
        "-f",
        "null",
        "-",
    ]
    parser = _ShowinfoParser()
    with _ffmpeg(args, on_stderr=parser) as (proc, tail):
        rc = proc.wait()
        tail.join(timeout=10)
    if parser.partial:
        raise InvalidInputError(f"{path}: truncated or corrupt (ffmpeg: {parser.partial})")
    if not parser.pts:
        last = next((_clean(x) for x in reversed(tail.lines) if _clean(x)), "no output")
        raise InvalidInputError(f"{path}: no decodable video frame (ffmpeg: {last})")
    if rc != 0:
        raise _ffmpeg_failure(path, rc, tail.lines)
    return parser.timing()


def _is_vfr(intervals: list[int]) -> bool:
    """True when a frame interval differs from the median by more than timestamp rounding.

    Allowed jitter: one tick (a 1/1000 time base stores 30 fps as 33,33,34 ms) or 1 %.
    """
    typical = median(intervals)
    allowed = max(1.0, typical / 100)
    return any(abs(d - typical) > allowed for d in intervals)


def _rates(timing: _Timing) -> tuple[Fraction, Fraction, bool]:
    """(avg_fps, r_fps, is_vfr) from decoded timestamps.

    avg_fps = frames / (first pts to last pts + last frame's duration), as ffprobe computes
    it, so ``frame_count / avg_fps`` is the stream's duration; it snaps to the nominal rate
    when the stream is CFR and both agree within a tick (a 1/1000 time base still gives
    exactly 30 fps). r_fps is ffmpeg's guessed base rate (ffprobe's r_frame_rate).
    """
    pts = sorted(p for p in timing.pts if p is not None)
    intervals = [b - a for a, b in zip(pts[:-1], pts[1:], strict=True) if b > a]
    if not intervals:
        rate = timing.frame_rate or Fraction(25)
        return rate, rate, False
    tb = timing.time_base
    nominal = timing.frame_rate or 1 / (Fraction(median(intervals)) * tb)
    if timing.last_duration > 0:
        measured = Fraction(len(pts)) / ((pts[-1] - pts[0] + timing.last_duration) * tb)
    else:
        measured = Fraction(len(intervals)) / ((pts[-1] - pts[0]) * tb)
    vfr = _is_vfr(intervals)
    if not vfr and abs(1 / nominal - 1 / measured) <= tb:
        return nominal, nominal, False
    return measured.limit_denominator(1_000_000), nominal, vfr


# --------------------------------------------------------------------------- probe


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video's first video stream (see VideoInfo); reject non-videos early.

    Costs one header read plus one decode of the video stream (for the exact frame count and
    the VFR check). Raises InvalidInputError for a missing, empty, still-image, audio-only,
    truncated or otherwise unreadable file.
    """
    p = _check_input_file(path)
    header = _require_video(p, _header(p))
    return _video_info(p, header, _decode_timing(p))


def _video_info(path: Path, header: _Header, timing: _Timing) -> VideoInfo:
    avg, r, vfr = _rates(timing)
    swap = header.rotation in (90, 270)
    count = len(timing.pts)
    return VideoInfo(
        path=path,
        codec=header.video_codec or "?",
        width=header.coded_height if swap else header.coded_width,
        height=header.coded_width if swap else header.coded_height,
        coded_width=header.coded_width,
        coded_height=header.coded_height,
        rotation=header.rotation,
        frame_count=count,
        avg_fps=avg,
        r_fps=r,
        is_vfr=vfr,
        pix_fmt=header.pix_fmt,
        bit_depth=header.bit_depth,
        color_range=header.color_range,
        duration=float(count / avg),
        has_audio=bool(header.audio_codecs),
        audio_codec=header.audio_codecs[0] if header.audio_codecs else None,
    )


# --------------------------------------------------------------------------- decoding


def _rotation_filters(rotation: int) -> list[str]:
    return {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}.get(
        rotation, []
    )


def _decode_args(
    path: Path, info: VideoInfo, start: int, count: int, width: int, height: int
) -> list[str]:
    """ffmpeg arguments that write frames [start, start+count) as raw RGB24 to stdout.

    The trim filter comes first so that skipped frames are only decoded, never converted.
    """
    filters = [f"trim=start_frame={start}:end_frame={start + count}"]
    filters += _rotation_filters(info.rotation)
    filters += [f"scale={width}:{height}:flags={_SCALE_FLAGS}", "format=rgb24"]
    return [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-noautorotate",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-vf",
        ",".join(filters),
        "-fps_mode",
        "passthrough",
        "-frames:v",
        str(count),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:1",
    ]


def _check_range(info: VideoInfo, start: int, count: int | None) -> int:
    """Validate a frame range and return its length."""
    total = info.frame_count
    if not 0 <= start <= total:
        raise ValueError(f"{info.path}: start {start} outside 0..{total} ({total} frames)")
    if count is None:
        return total - start
    if count < 0 or start + count > total:
        raise ValueError(
            f"{info.path}: frames {start}..{start + count} past the end ({total} frames)"
        )
    return count


def read_frames(
    path: str | os.PathLike[str],
    start: int = 0,
    count: int | None = None,
    size: int | None = None,
    info: VideoInfo | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames ``start .. start+count-1`` as uint8 RGB arrays of shape (H, W, 3).

    Frame-exact: frame i of any range is bit-identical to frame i of a full decode. Rotation
    is applied (shape matches the probe's width/height); 10-bit and full-range input are
    converted to 8-bit full-range RGB using the stream's colour tags. ``size`` caps the longer
    side (see Size.fit). Pass ``info`` (probe of the same file) to skip probing again.
    Arguments are checked now; ffmpeg starts on the first ``next()`` and is killed and reaped
    if the generator is closed early or the consumer fails.
    """
    info = info or probe(path)
    count = _check_range(info, start, count)
    out = info.size.fit(size)
    if count == 0:
        return iter(())
    args = _decode_args(Path(path), info, start, count, out.width, out.height)
    return _frame_stream(args, Path(path), out.width, out.height, count)


def _read_exact(stream: IO[bytes], nbytes: int) -> bytearray | None:
    """Read exactly nbytes (None at a clean end of stream; FFmpegError on a partial frame)."""
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    while got < nbytes:
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    if got == 0:
        return None
    if got < nbytes:
        raise FFmpegError(f"ffmpeg output ended inside a frame ({got} of {nbytes} bytes)")
    return buf


def _frame_stream(
    args: list[str], path: Path, width: int, height: int, expected: int
) -> Iterator[np.ndarray]:
    """Run the decoder and yield its frames; check the exit status and the frame count."""
    n = 0
    with _ffmpeg(args, stdout=True) as (proc, tail):
        while (buf := _read_exact(proc.stdout, width * height * 3)) is not None:  # type: ignore[arg-type]
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
            n += 1
        rc = proc.wait()
        tail.join(timeout=10)
        if rc != 0:
            raise _ffmpeg_failure(path, rc, tail.lines)
    if n != expected:
        raise FFmpegError(f"{path}: decoded {n} frames, expected {expected}")


# --------------------------------------------------------------------------- outputs


def check_output_path(out: Path) -> None:
    """Fail before any work when the destination cannot be written."""
    folder = out.parent
    if not folder.exists():
        raise InvalidInputError(f"{folder}: output folder does not exist")
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: output folder is not writable (not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{folder}: output folder is not writable")
    if out.is_dir():
        raise InvalidInputError(f"{out}: is a folder, cannot write a video there")
    if not out.suffix:
        raise InvalidInputError(f"{out}: needs an extension (.mp4, .mkv, .mov) to pick a format")


@contextmanager
def _atomic_output(out: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``out``; rename it to ``out`` only on success.

    The temporary name keeps the extension (ffmpeg picks the muxer from it) and is hidden.
    On any failure it is removed, so the destination holds a complete file or nothing.
    """
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.part{out.suffix}")
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _faststart(out: Path) -> list[str]:
    """MP4/MOV: move the index to the front so the file plays while downloading."""
    return ["-movflags", "+faststart"] if out.suffix.lower() in (".mp4", ".mov", ".m4v") else []


def _as_frame(
    frame: np.ndarray, shape: tuple[int, int] | None, index: int, out: Path
) -> np.ndarray:
    """Check one frame (uint8, HxWx3, same size as the first) and pad it to even size."""
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInputError(
            f"{out}: frame {index} must be uint8 HxWx3, got {arr.dtype} {arr.shape}"
        )
    if shape is not None and arr.shape[:2] != shape:
        raise InvalidInputError(
            f"{out}: frame {index} is {arr.shape[1]}x{arr.shape[0]}, "
            f"frame 0 was {shape[1]}x{shape[0]}"
        )
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _encode_args(first: np.ndarray, fps: Fraction, crf: int, preset: str, tmp: Path) -> list[str]:
    """RGB24 on stdin -> H.264 yuv420p, BT.709 limited range, tagged as such."""
    height, width = first.shape[:2]
    return [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-framerate",
        f"{fps.numerator}/{fps.denominator}",
        "-i",
        "pipe:0",
        "-vf",
        f"scale=out_color_matrix=bt709:out_range=tv:flags={_SCALE_FLAGS}",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
        *_faststart(tmp),
        str(tmp),
    ]


def _as_fps(fps: Fraction | int | float | str) -> Fraction:
    value = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1_000_000)
    if value <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return value


def write_frames(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: Fraction,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Encode RGB uint8 frames to H.264 (yuv420p, BT.709 tagged) at a constant ``fps``.

    Returns the number of frames written. Odd widths/heights are padded to even by repeating
    the last row/column (libx264 4:2:0 needs even sizes; padding keeps every pixel exact).
    The destination folder is checked before any frame is consumed; the file appears
    atomically (temporary name + rename), and nothing is left behind on failure.
    """
    out = Path(path)
    check_output_path(out)
    rate = _as_fps(fps)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InvalidInputError(f"{out}: no frames to write")
    shape = np.asarray(first).shape[:2]
    padded = _as_frame(first, None, 0, out)
    with _atomic_output(out) as tmp:
        return _encode(padded, shape, it, out, tmp, _encode_args(padded, rate, crf, preset, tmp))


def _encode(
    first: np.ndarray,
    shape: tuple[int, int],
    rest: Iterator[np.ndarray],
    out: Path,
    tmp: Path,
    args: list[str],
) -> int:
    """Pipe frames into ffmpeg; return the count, or raise with ffmpeg's own error.

    ``first`` is already checked and padded; ``shape`` is its size before padding, which
    every following frame must have.
    """
    n = 0
    with _ffmpeg(args, stdin=True) as (proc, tail):
        try:
            proc.stdin.write(first.data)  # type: ignore[union-attr]
            n = 1
            for frame in rest:
                proc.stdin.write(_as_frame(frame, shape, n, out).data)  # type: ignore[union-attr]
                n += 1
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # ffmpeg died: its exit status and stderr say why
        rc = proc.wait()
        tail.join(timeout=10)
        if rc != 0:
            raise _ffmpeg_failure(out, rc, tail.lines)
    return n


def _concat_list(paths: Sequence[Path]) -> str:
    """The concat demuxer's list file: absolute paths, single quotes escaped."""
    quoted = (str(p.resolve()).replace("'", "'\\''") for p in paths)
    return "".join(f"file '{q}'\n" for q in quoted)


def _check_segments(paths: Sequence[Path]) -> None:
    """Stream copy needs segments with the same codec, size and pixel format."""
    headers = [_require_video(p, _header(p)) for p in paths]
    key = [(h.video_codec, h.coded_width, h.coded_height, h.pix_fmt) for h in headers]
    for path, k in zip(paths, key, strict=True):
        if k != key[0]:
            raise InvalidInputError(
                f"{path}: cannot be concatenated with {paths[0]} "
                f"(codec/size/pixel format {k} vs {key[0]})"
            )


def concat(segments: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Join video segments end to end without re-encoding (concat demuxer, stream copy).

    Segments must come from the same encoder settings (checked: codec, size, pixel format).
    All their streams are kept. The output is written atomically; returns its path.
    """
    dest = Path(out)
    check_output_path(dest)
    if not segments:
        raise InvalidInputError(f"{dest}: no segments to concatenate")
    paths = [_check_input_file(s) for s in segments]
    _check_segments(paths)
    with tempfile.TemporaryDirectory(prefix="nst-concat-") as folder:
        listing = Path(folder) / "segments.txt"
        listing.write_text(_concat_list(paths), encoding="utf-8")
        with _atomic_output(dest) as tmp:
            _check_rc(
                dest,
                _run(
                    [
                        ffmpeg_exe(),
                        "-hide_banner",
                        "-nostdin",
                        "-v",
                        "error",
                        "-y",
                        "-f",
                        "concat",
                        "-safe",
                        "0",
                        "-i",
                        str(listing),
                        "-map",
                        "0",
                        "-c",
                        "copy",
                        *_faststart(dest),
                        str(tmp),
                    ]
                ),
            )
    return dest


def mux_audio(
    video: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    audio_start: float = 0.0,
) -> Path:
    """Write ``video``'s video stream plus all of ``source``'s audio streams, both copied.

    Audio packets are copied bit-exact (no re-encode). Duration follows the video: audio
    longer than the video is cut at the video's end (``-t``, to within one audio packet);
    audio shorter is kept whole and the rest of the video plays silent. ``-shortest`` is
    not used because it would cut the video when the audio is shorter. Without audio in
    ``source`` the video is just remuxed. ``audio_start`` (seconds) takes the audio from
    that point of the source, for a video made from a later range of its frames. Written
    atomically; returns the output path.
    """
    dest = Path(out)
    check_output_path(dest)
    vid, src = _check_input_file(video), _check_input_file(source)
    v_header = _require_video(vid, _header(vid))
    has_audio = bool(_header(src).audio_codecs)
    with _atomic_output(dest) as tmp:
        args = _mux_args(vid, src, has_audio, v_header.duration, audio_start, tmp)
        _check_rc(dest, _run(args))
    return dest


def _mux_args(
    video: Path,
    source: Path,
    has_audio: bool,
    duration: float | None,
    audio_start: float,
    tmp: Path,
) -> list[str]:
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(video)]
    if has_audio:
        seek = ["-ss", f"{audio_start:.6f}"] if audio_start > 0 else []
        args += [*seek, "-i", str(source), "-map", "0:v:0", "-map", "1:a"]
        if duration:  # header durations are rounded to 10 ms: add 10 ms, never cut video
            args += ["-t", f"{duration + 0.01:.3f}"]
    else:
        args += ["-map", "0:v:0"]
    return [*args, "-c", "copy", *_faststart(tmp), str(tmp)]


# --------------------------------------------------------------------------- scene cuts


def scene_scores(path: str | os.PathLike[str], size: int | None = None) -> list[float]:
    """ffmpeg's scene-change score (0..1) of every frame against the previous one.

    Frame 0 scores 0. ``size`` downscales first (faster, nearly the same scores).
    """
    p = _check_input_file(path)
    h = _require_video(p, _header(p))
    filters = []
    if size is not None:
        scaled = Size(h.coded_width, h.coded_height).fit(size)
        filters.append(f"scale={scaled.width}:{scaled.height}")
    filters += ["select=gte(scene\\,0)", "metadata=mode=print:key=lavfi.scene_score:file=-"]
    proc = _run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-noautorotate",
            "-i",
            str(p),
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-fps_mode",
            "passthrough",
            "-vf",
            ",".join(filters),
            "-f",
            "null",
            "-",
        ]
    )
    _check_rc(p, proc)
    return _parse_scores(proc.stdout)


def _parse_scores(text: str) -> list[float]:
    """Scores from the metadata filter's "frame:N ..." / "lavfi.scene_score=X" line pairs."""
    scores: dict[int, float] = {}
    frame = -1
    for line in text.splitlines():
        if match := re.match(r"frame:(\d+)", line):
            frame = int(match.group(1))
        elif line.startswith("lavfi.scene_score=") and frame >= 0:
            scores[frame] = float(line.split("=", 1)[1])
    return [scores.get(i, 0.0) for i in range(max(scores, default=-1) + 1)]


def detect_scene_cuts(
    path: str | os.PathLike[str], threshold: float = 0.3, size: int | None = None
) -> list[int]:
    """Indices of frames that start a new scene (score > threshold); frame 0 is implied.

    Method: ffmpeg's scene score (robust to motion: it compares the change against the
    previous frame's change), one value per decoded frame, so indices match read_frames.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    scores = scene_scores(path, size)
    return [i for i, s in enumerate(scores) if i > 0 and s > threshold]
