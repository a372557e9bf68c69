"""Frames in and out of ffmpeg: decode a video to uint8 RGB arrays, encode arrays to H.264.

- Frames are addressed by decode index, never by time: ``read_frames(start=k)`` decodes from
  the beginning and drops the first k frames in the filter graph, so a range is bit-exact
  with the same frames of a full decode (cost: O(start) decoding, cheap next to stylization).
- VFR input: frames are yielded as decoded (no duplication or dropping); writing them back at
  ``avg_fps`` keeps the total duration, so the source audio stays in sync overall.
- Rotation is applied by explicit transpose filters from the probed rotation, and the scale
  to the displayed size resamples non-square pixels (SAR) to square ones, so the frames'
  shape always matches the displayed size and a frame written back displays the same.
- Odd sizes on output: libx264 with yuv420p needs even dimensions; ``write_frames`` pads the
  last row/column by replicating it (no resampling, every source pixel kept as is).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.files import atomic_path, check_writable
from nst_video.nst_core.size import Size
from nst_video.tasks.video.header import video_header
from nst_video.tasks.video.probing import VideoInfo, count_packets
from nst_video.tasks.video.process import (
    QUIET,
    SCALE_FLAGS,
    FFmpegError,
    check_input_file,
    command,
    failure,
    ffinput,
    finish,
    started,
)

# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class _Stream:
    """What decoding needs to know: displayed size, rotation, frames a full decode yields."""

    size: Size
    rotation: int
    frame_count: int


def _stream(path: Path, info: VideoInfo | None) -> _Stream:
    """From the probe when given, else from the header and a demux-only count (no decode)."""
    if info is not None:
        return _Stream(info.size, info.rotation, info.frame_count)
    header = video_header(check_input_file(path))
    return _Stream(header.size, header.rotation, count_packets(path))


def read_frames(
    path: str | os.PathLike[str],
    start: int = 0,
    count: int | None = None,
    size: int | None = None,
    info: VideoInfo | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames ``start .. start+count-1`` as uint8 RGB arrays of shape (H, W, 3).

    Frame-exact: frame i of any range is bit-identical to frame i of a full decode. Rotation
    and the sample aspect ratio are applied (square pixels; shape matches the probe's
    width/height); 10-bit and full-range input are converted to 8-bit full-range RGB using
    the stream's colour tags. ``size`` caps the longer side (see Size.fit). Pass ``info``
    (probe of the same file) to skip reading the header and counting the frames. Arguments
    are checked now; ffmpeg starts on the first ``next()`` and is killed and reaped if the
    generator is closed early or the consumer fails.
    """
    p = Path(path)
    stream = _stream(p, info)
    count = _check_range(p, stream.frame_count, start, count)
    out = stream.size.fit(size)
    if count == 0:
        return iter(())
    return _frame_stream(_decode_args(p, stream.rotation, start, count, out), p, out, count)


def _check_range(path: Path, total: int, start: int, count: int | None) -> int:
    """Validate a frame range and return its length."""
    if not 0 <= start <= total:
        raise ValueError(f"{path}: start {start} outside 0..{total} ({total} frames)")
    if count is None:
        return total - start
    if count < 0 or start + count > total:
        raise ValueError(f"{path}: frames {start}..{start + count} past the end ({total} frames)")
    return count


def _rotation_filters(rotation: int) -> list[str]:
    return {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}.get(
        rotation, []
    )


def _decode_args(path: Path, rotation: int, start: int, count: int, size: Size) -> list[str]:
    """ffmpeg arguments that write frames [start, start+count) as raw RGB24 to stdout.

    The trim filter comes first so that skipped frames are only decoded, never converted.
    """
    filters = [f"trim=start_frame={start}:end_frame={start + count}"]
    filters += _rotation_filters(rotation)
    filters += [f"scale={size.width}:{size.height}:flags={SCALE_FLAGS}", "format=rgb24"]
    stream = ffinput(path, noautorotate=None)["v:0"]
    return command(
        stream,
        out="pipe:1",
        vf=",".join(filters),
        fps_mode="passthrough",
        f="rawvideo",
        pix_fmt="rgb24",
        **{"frames:v": count},
    )


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


def _frame_stream(args: list[str], path: Path, size: Size, expected: int) -> Iterator[np.ndarray]:
    """Run the decoder and yield its frames; check the exit status and the frame count."""
    n = 0
    with started(args, stdout=True) as (proc, tail):
        while (buf := _read_exact(proc.stdout, size.pixels * 3)) is not None:  # type: ignore[arg-type]
            yield np.frombuffer(buf, dtype=np.uint8).reshape(size.height, size.width, 3)
            n += 1
        rc = finish(proc, tail)
        if rc != 0:
            raise failure(path, rc, tail.lines)
    if n != expected:
        raise FFmpegError(f"{path}: decoded {n} frames, expected {expected}")


# --------------------------------------------------------------------------- outputs


def check_output_path(out: Path) -> None:
    """Fail before any work when a video cannot be written at `out`."""
    check_writable(out)
    if not out.suffix:
        raise InvalidInputError(f"{out}: needs an extension (.mp4, .mkv, .mov) to pick a format")


def faststart(out: Path) -> dict[str, str]:
    """MP4/MOV: move the index to the front so the file plays while downloading."""
    return {"movflags": "+faststart"} if out.suffix.lower() in (".mp4", ".mov", ".m4v") else {}


# --------------------------------------------------------------------------- encoding


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
    with atomic_path(out) as tmp:
        args = _encode_args(Size.of(padded), rate, crf, preset, tmp)
        return _encode(padded, shape, it, out, args)


def _as_fps(fps: Fraction | int | float | str) -> Fraction:
    value = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1_000_000)
    if value <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return value


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
            f"{out}: frame {index} is {Size.of(arr)}, frame 0 was {shape[1]}x{shape[0]}"
        )
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _encode_args(size: Size, fps: Fraction, crf: int, preset: str, tmp: Path) -> list[str]:
    """RGB24 on stdin -> H.264 yuv420p, BT.709 limited range, tagged as such."""
    rate = f"{fps.numerator}/{fps.denominator}"
    raw = ffinput("pipe:0", f="rawvideo", pix_fmt="rgb24", s=str(size), framerate=rate)
    bt709 = {"colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709"}
    return command(
        raw,
        out=tmp,
        global_args=(*QUIET, "-y"),
        vf=f"scale=out_color_matrix=bt709:out_range=tv:flags={SCALE_FLAGS}",
        preset=preset,
        crf=crf,
        pix_fmt="yuv420p",
        color_range="tv",
        **{"c:v": "libx264"},
        **bt709,
        **faststart(tmp),
    )


def _encode(
    first: np.ndarray,
    shape: tuple[int, int],
    rest: Iterator[np.ndarray],
    out: Path,
    args: list[str],
) -> int:
    """Pipe frames into ffmpeg; return the count, or raise with ffmpeg's own error.

    ``first`` is already checked and padded; ``shape`` is its size before padding, which
    every following frame must have.
    """
    n = 0
    with started(args, stdin=True) as (proc, tail):
        try:
            proc.stdin.write(first.data)  # type: ignore[union-attr]
            n = 1
            for frame in rest:
                proc.stdin.write(_as_frame(frame, shape, n, out).data)  # type: ignore[union-attr]
                n += 1
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # ffmpeg died: its exit status and stderr say why
        rc = finish(proc, tail)
        if rc != 0:
            raise failure(out, rc, tail.lines)
    return n
