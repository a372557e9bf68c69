"""Stylize a range of a video's frames as one warm-started chain and encode the result.

Plain functions (no Prefect): decode with ffmpeg, run nst_core's FrameChain, encode H.264,
put the source's audio back. The Prefect tasks wrap these.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from nst_core.errors import InvalidSettingsError
from nst_core.images import to_uint8
from nst_core.settings import VideoSettings
from nst_core.stylize import StyleTransfer
from nst_core.temporal import FrameChain, FrameStats
from nst_core.weights import WeightsInfo
from tasks.video import (
    VideoInfo,
    check_output_path,
    detect_scene_cuts,
    mux_audio,
    probe,
    read_frames,
    scaled_size,
    write_frames,
)


@dataclass
class ClipResult:
    """What stylizing one frame range produced."""

    output: str
    frames: int
    iterations: int
    cold_starts: int
    seconds: float
    fps: str
    width: int
    height: int
    scene_cuts: list[int] = field(default_factory=list)
    frame_stats: list[FrameStats] = field(default_factory=list)

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("frame_stats")
        return data


def frame_range(
    info: VideoInfo,
    start_seconds: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
) -> tuple[int, int]:
    """(first frame, frame count) for a time range, checked against the video's length."""
    name = Path(info.path).name
    if start_seconds < 0 or (duration is not None and duration <= 0):
        raise InvalidSettingsError(f"{name}: start must be >= 0 and duration > 0")
    if max_frames is not None and max_frames <= 0:
        raise InvalidSettingsError(f"{name}: max_frames must be > 0")
    start = round(start_seconds * info.avg_fps)
    if start >= info.frame_count:
        raise InvalidSettingsError(
            f"{name}: start {start_seconds:g} s is past the end ({info.duration:.2f} s)"
        )
    count = info.frame_count - start
    if duration is not None:
        count = min(count, max(1, round(duration * info.avg_fps)))
    if max_frames is not None:
        count = min(count, max_frames)
    return start, count


def scene_cuts_in_range(source: Path, start: int, count: int, settings: VideoSettings) -> list[int]:
    """Scene cuts (frame indices) inside [start, start + count); none when threshold is 0."""
    if settings.scene_threshold <= 0:
        return []
    cuts = detect_scene_cuts(source, settings.scene_threshold, size=min(settings.size, 256))
    return [cut for cut in cuts if start < cut < start + count]


def _as_float(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame.astype("float32") / 255.0


def stylize_frames(
    source: str | os.PathLike,
    styles: Sequence[np.ndarray],
    settings: VideoSettings,
    *,
    start: int,
    count: int,
    info: VideoInfo | None = None,
    cuts: Sequence[int] = (),
    weights: WeightsInfo | None = None,
    transfer: StyleTransfer | None = None,
    progress: Callable[[FrameStats], None] | None = None,
) -> Iterator[tuple[np.ndarray, FrameStats]]:
    """Yield (stylized uint8 frame, stats) for frames [start, start + count) of `source`."""
    info = info or probe(source)
    transfer = transfer or StyleTransfer(styles, settings, weights)
    chain = FrameChain(transfer, settings)
    frames = _as_float(read_frames(source, start, count, size=settings.size, info=info))
    for output, stats in chain.run(frames, cuts=cuts, start=start, progress=progress):
        yield to_uint8(output), stats


def stylize_clip(
    source: str | os.PathLike,
    styles: Sequence[np.ndarray],
    output: str | os.PathLike,
    settings: VideoSettings,
    *,
    start_seconds: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
    crf: int = 18,
    weights: WeightsInfo | None = None,
    progress: Callable[[FrameStats], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> ClipResult:
    """Stylize `source` (or a time range of it) into `output` with the source's audio.

    Same frame count and average frame rate as the input range, so the same duration; VFR
    input is written at its average rate. The output appears atomically: nothing is left at
    `output` if anything fails.
    """
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    check_output_path(output)
    info = probe(source)
    start, count = frame_range(info, start_seconds, duration, max_frames)
    if on_plan:
        on_plan(count)
    cuts = scene_cuts_in_range(source, start, count, settings)
    stats: list[FrameStats] = []

    def frames() -> Iterator[np.ndarray]:
        for frame, frame_stats in stylize_frames(
            source,
            styles,
            settings,
            start=start,
            count=count,
            info=info,
            cuts=cuts,
            weights=weights,
            progress=progress,
        ):
            stats.append(frame_stats)
            yield frame

    with tempfile.TemporaryDirectory(prefix=".nst-", dir=output.parent) as staging:
        silent = Path(staging) / f"video{output.suffix}"
        write_frames(frames(), silent, info.avg_fps, crf=crf)
        mux_audio(silent, source, output, audio_start=float(start / info.avg_fps))
    width, height = scaled_size(info.width, info.height, settings.size)
    return ClipResult(
        output=str(output),
        frames=len(stats),
        iterations=sum(s.iterations for s in stats),
        cold_starts=sum(s.cold_start for s in stats),
        seconds=time.perf_counter() - started,
        fps=str(Fraction(info.avg_fps)),
        width=width,
        height=height,
        scene_cuts=cuts,
        frame_stats=stats,
    )
