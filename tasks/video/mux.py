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
    vid, src = check_input_file(video), check_input_file(source)
    duration = video_header(vid).duration
    has_audio = bool(read_header(src).audio_codecs)
    streams = [ffinput(vid)["v:0"]]
    limit: dict[str, str] = {}
    if has_audio:
        seek = {"ss": f"{audio_start:.6f}"} if audio_start > 0 else {}
        streams.append(ffinput(src, **seek)["a"])
        if duration:  # header durations are rounded to 10 ms: add 10 ms, never cut video
            limit = {"t": f"{duration + 0.01:.3f}"}
    with atomic_path(dest) as tmp:
        args = command(
            *streams, out=tmp, global_args=_OVERWRITE, c="copy", **limit, **faststart(tmp)
        )
        run_checked(dest, args)
    return dest
