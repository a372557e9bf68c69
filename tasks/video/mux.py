"""Join encoded videos without re-encoding: concatenate segments, put the source's audio back."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.files import atomic_path
from nst_video.tasks.video.frames import check_output_path, faststart
from nst_video.tasks.video.header import read_header, video_header
from nst_video.tasks.video.process import QUIET, check_input_file, command, ffinput, run_checked

_OVERWRITE = (*QUIET, "-y")


def _concat_list(paths: Sequence[Path]) -> str:
    """The concat demuxer's list file: absolute paths, single quotes escaped."""
    quoted = (str(p.resolve()).replace("'", "'\\''") for p in paths)
    return "".join(f"file '{q}'\n" for q in quoted)


def _check_segments(paths: Sequence[Path]) -> None:
    """Stream copy needs segments with the same codec, size and pixel format."""
    headers = [video_header(p) for p in paths]
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
    paths = [check_input_file(s) for s in segments]
    _check_segments(paths)
    with tempfile.TemporaryDirectory(prefix="nst-concat-") as folder:
        listing = Path(folder) / "segments.txt"
        listing.write_text(_concat_list(paths), encoding="utf-8")
        joined = ffinput(listing, f="concat", safe=0)
        with atomic_path(dest) as tmp:
            args = command(
                joined, out=tmp, global_args=_OVERWRITE, map="0", c="copy", **faststart(dest)
            )
            run_checked(dest, args)
    return dest


def mux_audio(
    video: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    audio_start: float = 0.0,
    audio_duration: float | None = None,
) -> Path:
    """Write ``video``'s video stream plus all of ``source``'s audio streams, both copied.

    Audio packets are copied bit-exact (no re-encode), as the source plays them from
    ``audio_start`` (seconds) for ``audio_duration`` seconds, or to their end when None
    (to within one audio packet): for a video made from a range of the source's frames.
    The video is never cut: audio that outlasts it plays on after its last frame, audio
    shorter leaves the rest silent. Without audio in ``source`` the video is just
    remuxed. Written atomically; returns the output path.
    """
    dest = Path(out)
    check_output_path(dest)
    vid, src = check_input_file(video), check_input_file(source)
    span = _audio_span(audio_start, audio_duration)
    streams = [ffinput(vid)["v:0"]]
    if read_header(src).audio_codecs:
        streams.append(ffinput(src, **span)["a"])
    with atomic_path(dest) as tmp:
        args = command(*streams, out=tmp, global_args=_OVERWRITE, c="copy", **faststart(tmp))
        run_checked(dest, args)
    return dest


def _audio_span(start: float, duration: float | None) -> dict[str, str]:
    """Input options that read the source's audio from `start` for `duration` seconds."""
    if start < 0 or (duration is not None and duration <= 0):
        raise ValueError(f"audio range must start at >= 0 and last > 0 s, got {start}, {duration}")
    span = {"ss": f"{start:.6f}"} if start > 0 else {}
    return span | ({"t": f"{duration:.6f}"} if duration is not None else {})
