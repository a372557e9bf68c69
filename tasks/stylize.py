"""Stylize a chunk of a video's frames as one warm-started chain and encode the segment.

Plain functions (no Prefect): decode with ffmpeg, run nst_core's FrameChain, encode H.264.
Inputs and outputs are URIs in the job's staging (tasks/staging.py): inputs are read through
this machine's cache, outputs made locally and handed to `upload` (a Prefect task in
tasks/prefect_tasks.py). The flow concatenates segments and puts the audio back.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from nst_video.nst_core.files import atomic_path
from nst_video.nst_core.images import load_image, resize, to_uint8
from nst_video.nst_core.settings import VideoSettings
from nst_video.nst_core.size import Size
from nst_video.nst_core.stylize import StyleTransfer
from nst_video.nst_core.temporal import FrameChain, FrameStats, Keyframe
from nst_video.tasks import storage
from nst_video.tasks.keyframes import (
    KeyframeResult,
    keyframe_name,
    load_keyframe,
    save_keyframe,
    stored_keyframe,
)
from nst_video.tasks.plan import Chunk
from nst_video.tasks.staging import Staging, fetch_cached, made_here, marker_uri, upload
from nst_video.tasks.video import VideoInfo, detect_scene_cuts, probe, read_frames, write_frames


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
    transfer: StyleTransfer,
    *,
    start: int,
    count: int,
    info: VideoInfo,
    cuts: Sequence[int] = (),
    keyframes: Sequence[Keyframe] = (),
    progress: Callable[[FrameStats], None] | None = None,
    size: int | None = None,
    output_size: Size | None = None,
) -> Iterator[tuple[np.ndarray, FrameStats]]:
    """Yield (stylized uint8 frame, stats) for frames [start, start + count) of `source`.

    With `keyframes` (the keyframes of the shots the frames belong to), the chain starts
    from the latest keyframe before `start` and goes on from each one it meets; without,
    it cold-starts at `start` and at `cuts`.
    Frames are decoded with their longest side at `size` (default settings.size) and, when
    `output_size` differs, the stylized frames are resized to it (the
    memory guard's "reduce": stylize smaller, upscale back).
    """
    settings = transfer.settings
    chain = FrameChain(transfer, settings)
    by_index = {keyframe.index: keyframe for keyframe in keyframes}
    if start not in by_index and (earlier := [k for k in keyframes if k.index < start]):
        latest = max(earlier, key=lambda k: k.index)
        chain.restore(latest.snapshot(settings.settle_frames, leap=True))
    longest = size or settings.size
    frames = _as_float(read_frames(source, start, count, size=longest, info=info))
    runs = chain.run(frames, cuts=cuts, keyframes=by_index, start=start, progress=progress)
    for output, stats in runs:
        if output_size and Size.of(output) != output_size:
            output = resize(output, output_size)
        yield to_uint8(output), stats


class FrameListener(Protocol):
    """Receives progress from stylize_chunk in this process (e.g. the CLI's progress bar)."""

    def planned(self, frames: int) -> None: ...

    def stylized(self, stats: FrameStats) -> None: ...


LISTENERS: list[FrameListener] = []


def notify_planned(frames: int) -> None:
    for listener in LISTENERS:
        listener.planned(frames)


def notify_stylized(stats: FrameStats) -> None:
    for listener in LISTENERS:
        listener.stylized(stats)


@dataclass
class ChunkResult:
    """One stylized chunk: where its segment is and what it cost. `resumed` = found done."""

    index: int
    start: int
    frames: int
    warmup: int
    iterations: int
    seconds: float
    loss: float
    content_loss: float
    style_loss: float
    segment: str  # path or URI in the job's staging
    resumed: bool = False
    processing: list[int] | None = None  # [width, height] the frames were stylized at
    precision: str | None = None  # the compute precision used ("auto" resolved where it ran)


_TRANSFERS_LOCK = threading.Lock()


def cached_transfer(
    settings: VideoSettings, style_paths: tuple[str, ...], batch: int = 1
) -> StyleTransfer:
    """One StyleTransfer (model, style targets, compiled step) per process, settings, styles.

    Chunks of the same job that run in one worker reuse it instead of rebuilding VGG19 and
    retracing the step for every chunk; the lock makes chunk threads that start together
    share one (and so one BatchingStepper). With `batch` > 1, the chunk threads' frames are
    gathered into batches of up to `batch` images (nst_core.batching; JAX backend only).
    """
    with _TRANSFERS_LOCK:
        return _build_transfer(settings, style_paths, batch)


@lru_cache(maxsize=4)
def _build_transfer(
    settings: VideoSettings, style_paths: tuple[str, ...], batch: int
) -> StyleTransfer:
    return StyleTransfer([load_image(path) for path in style_paths], settings, batch=batch)


Upload = Callable[[Path, str], str]  # (local file, staging URI) -> URI


def cached_styles(style_uris: Sequence[str], cache: Path) -> tuple[str, ...]:
    return tuple(str(fetch_cached(uri, cache)) for uri in style_uris)


def stylize_keyframe(
    source: str,
    style_uris: Sequence[str],
    settings: VideoSettings,
    index: int,
    staging: Staging,
    *,
    info: VideoInfo,
    processing: Size | None = None,
    batch: int = 1,
    upload: Upload = upload,
) -> KeyframeResult:
    """Cold-start frame `index` (a shot's first) and stage it, or return the staged one."""
    processing = processing or info.size.fit(settings.size)
    uri, cache = staging.uri("keyframes", keyframe_name(index)), staging.cache()
    if done := stored_keyframe(uri, processing, cache):
        return done
    transfer = cached_transfer(settings, cached_styles(style_uris, cache), batch)
    frames = read_frames(fetch_cached(source, cache), index, 1, size=processing.longest, info=info)
    content = next(_as_float(frames))
    with transfer.stepper.joined():
        output, stats = FrameChain(transfer, settings).step(content, index)
    notify_stylized(stats)
    with made_here(uri) as local:
        save_keyframe(local, Keyframe(index, content, output, stats))
        upload(local, uri)
    return KeyframeResult(index, uri, stats.iterations, stats.seconds)


def segment_uri(staging: Staging, chunk: Chunk) -> str:
    return staging.uri("chunks", f"{chunk.name}.mp4")


def finished_chunk(segment: str, processing: Size | None) -> ChunkResult | None:
    """The result recorded by a chunk's marker, if the chunk is done at this processing size."""
    marker = marker_uri(segment)
    if not (storage.exists(marker) and storage.exists(segment)):
        return None
    done = json.loads(storage.read_text(marker))
    if processing is None or done.get("processing") == processing.as_list():
        return ChunkResult(**{**done, "resumed": True})
    return None


def write_segment(
    frames: Iterator[np.ndarray], segment: str, fps: Fraction, crf: int, upload: Upload
) -> None:
    """Encode a chunk's frames and stage the segment."""
    with made_here(segment) as local:
        write_frames(frames, local, fps, crf=crf)
        upload(local, segment)


def write_marker(result: ChunkResult, upload: Upload) -> None:
    """Mark a chunk complete, after its segment is staged: a rerun will resume it."""
    marker = marker_uri(result.segment)
    with made_here(marker) as local:
        with atomic_path(local) as tmp:
            tmp.write_text(json.dumps(asdict(result)))
        upload(local, marker)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def stylize_chunk(
    source: str,
    style_uris: Sequence[str],
    settings: VideoSettings,
    chunk: Chunk,
    staging: Staging,
    *,
    info: VideoInfo | None = None,
    cuts: Sequence[int] = (),
    crf: int = 18,
    processing: Size | None = None,
    output_size: Size | None = None,
    batch: int = 1,
    keyframes: Sequence[str] = (),
    upload: Upload = upload,
    progress: Callable[[FrameStats], None] = notify_stylized,
) -> ChunkResult:
    """Stylize one chunk into a silent video segment in `staging`, or return it if done.

    `keyframes` are the stored keyframes (tasks.keyframes) of the shots the chunk's frames
    belong to: its chain starts from them instead of cold-starting.

    The segment holds the warm-up frames too (they overlap the previous chunk's last frames
    and are cross-faded with them by `crossfade_frames`). It is staged (atomically) and then
    a marker JSON beside it: the marker means the chunk is complete, so a rerun skips it.
    `processing` (the memory guard's choice, default settings.size) is the
    size the frames are stylized at and `output_size` the size they are encoded at. A
    marker records the processing size; one made at another size is not resumed. `batch`
    > 1 lets this chunk's frames share batched steps with chunks in other threads.
    `progress` receives each frame's stats, warm-up frames included.
    """
    segment = segment_uri(staging, chunk)
    if done := finished_chunk(segment, processing):
        return done
    started = time.perf_counter()
    cache = staging.cache()
    local_source = fetch_cached(source, cache)
    info = info or probe(local_source)
    transfer = cached_transfer(settings, cached_styles(style_uris, cache), batch)
    end = chunk.start + chunk.count
    frames = stylize_frames(
        local_source,
        transfer,
        start=chunk.first_decoded,
        count=chunk.warmup + chunk.count,
        info=info,
        cuts=[c for c in cuts if chunk.first_decoded < c < end],
        keyframes=[load_keyframe(fetch_cached(uri, cache)) for uri in keyframes],
        progress=progress,
        size=processing.longest if processing else None,
        output_size=output_size,
    )
    every: list[FrameStats] = []

    def recorded() -> Iterator[np.ndarray]:
        for frame, stats in frames:
            every.append(stats)
            yield frame

    with transfer.stepper.joined():  # counts this chunk in the rounds of a batching stepper
        write_segment(recorded(), segment, info.avg_fps, crf, upload)
    kept = [s for s in every if s.index >= chunk.start]
    result = ChunkResult(
        index=chunk.index,
        start=chunk.start,
        frames=len(kept),
        warmup=chunk.warmup,
        iterations=sum(s.iterations for s in every),
        seconds=time.perf_counter() - started,
        loss=_mean([s.loss for s in kept]),
        content_loss=_mean([s.content_loss for s in kept]),
        style_loss=_mean([s.style_loss for s in kept]),
        segment=segment,
        processing=(processing or info.size.fit(settings.size)).as_list(),
        precision=transfer.precision,
    )
    write_marker(result, upload)
    return result


def _blend(previous: np.ndarray, current: np.ndarray, weight: float) -> np.ndarray:
    mixed = (1.0 - weight) * previous.astype("float32") + weight * current.astype("float32")
    return np.clip(np.rint(mixed), 0, 255).astype("uint8")


def crossfade_frames(segments: Sequence[tuple[str, int]]) -> Iterator[np.ndarray]:
    """The frames of consecutive chunk segments, cross-fading where they overlap.

    `segments` are (path, warm-up frames) in order. A chunk's first `warmup` frames cover the
    same input frames as the previous chunk's last `warmup` frames; there the output fades
    linearly from the previous chunk to this one. Two chains started apart paint different
    textures, so a hard switch would be a visible jump at every seam; the fade spreads it
    over the overlap. Chunks that start at a scene cut have no warm-up and no fade.
    """
    tail: list[np.ndarray] = []  # the previous chunk's frames that the next one overlaps
    for position, (path, warmup) in enumerate(segments):
        following = segments[position + 1][1] if position + 1 < len(segments) else 0
        held: list[np.ndarray] = []
        for offset, frame in enumerate(read_frames(path)):
            if offset < warmup:
                yield _blend(tail[offset], frame, (offset + 1) / (warmup + 1))
                continue
            held.append(frame)
            if len(held) > following:
                yield held.pop(0)
        tail = held
