"""Fast mode's chunk work: a trained network (one per process and model file) stylizes a
chunk's frames in batches; the segment and its marker are written as in optimization mode.

Plain functions (no Prefect). Frames depend on their own input only, so chunks need no
warm-up and their segments are concatenated as they are (tasks/assemble.py: no warm-ups,
no re-encode, so segments are encoded at the requested CRF).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nst_video.nst_core.fast_model import ModelCard, file_sha256, load_fast_model, read_card
from nst_video.nst_core.fast_stylize import (
    DEFAULT_BATCH,
    for_precision,
    stylize_batch,
    stylize_frames,
)
from nst_video.nst_core.images import resize, save_image, to_uint8
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import (
    LossSettings,
    StyleSettings,
    TrainSettings,
    VideoSettings,
)
from nst_video.nst_core.size import Size
from nst_video.nst_core.temporal import FrameStats
from nst_video.tasks import storage
from nst_video.tasks.plan import Chunk, job_id
from nst_video.tasks.staging import Staging, fetch_cached, upload
from nst_video.tasks.stylize import (
    ChunkResult,
    Upload,
    cached_styles,
    finished_chunk,
    notify_stylized,
    segment_uri,
    write_marker,
    write_segment,
)
from nst_video.tasks.video import VideoInfo, probe, read_frames


def model_needed(
    styles: Sequence[str],
    videos: Sequence[str],
    settings: VideoSettings,
    staging: Path,
    training: TrainSettings | None = None,
) -> Path:
    """The model to use when none is given: the cached one for these styles, data and
    training settings (tasks/train.py cached_model), trained on frames of `videos` first
    when missing. Inputs on S3 are fetched into `staging`; the cache key uses their S3
    identities, so every machine and rerun finds the same model.
    """
    from nst_video.tasks.train import cached_model  # imports the training stack on demand

    local_styles = [storage.fetch(style, staging) for style in styles]
    local_videos = [storage.fetch(video, staging) for video in videos]
    identities = [storage.identity(video) for video in videos]
    chosen = training or training_settings(settings)
    return cached_model(local_styles, local_videos, chosen, identities=identities)


def training_settings(settings: StyleSettings) -> TrainSettings:
    """Training settings for a video's settings: its loss and size, the training defaults."""
    loss = {name: getattr(settings, name) for name in LossSettings.model_fields}
    return TrainSettings(**loss, size=settings.size)


def model_for_workers(model: str, root: str) -> str:
    """`model` where a pool's workers can read it: an s3:// model as it is; a local file,
    when the work root `root` is on S3, uploaded once (named by its sha256) to
    `root`/models/ and that URI; otherwise the path as it is (the workers then need the
    same filesystem, as for local style paths)."""
    if model.startswith("s3://") or not storage.parse_uri(root).is_s3:
        return model
    local = storage.fetch(model, Path("."))  # a local file is checked, not copied
    target = storage.join_uri(root, "models", f"{file_sha256(local)[:16]}-{local.name}")
    if not storage.exists(target):
        storage.publish(local, target)
    return target


def fetch_model(model: str, work_root: Path) -> tuple[Path, str]:
    """A local copy of `model` (path or s3:// URI) and its sha256, the job's identity of it.

    A local file is used where it is. An S3 object is downloaded once per identity (URI and
    ETag) into `work_root`/models/<identity hash>/ and reused by later runs and by the other
    videos of a batch; concurrent downloads of one object write the same bytes atomically.
    """
    if not model.startswith("s3://"):
        local = storage.fetch(model, work_root)
        return local, file_sha256(local)
    folder = work_root / "models" / job_id(**storage.identity(model))
    staged = folder / storage.staged_name(storage.parse_uri(model))
    local = staged if staged.is_file() else storage.fetch(model, folder)
    return local, file_sha256(local)


_NETWORKS_LOCK = threading.Lock()


def cached_network(
    model: str | os.PathLike, style_paths: Sequence[str], precision: str = "float32"
) -> tuple[Any, ModelCard]:
    """The checked network and card of a model file, loaded once per process.

    Keyed by the file's path and sha256 (a file replaced in place is loaded again), the
    styles' sha256 (the card must name exactly these styles) and the precision. The lock
    makes chunk threads that start together share one load, like tasks.stylize's
    cached_transfer.
    """
    read_card(model)  # a missing, empty or foreign file fails here, on one line
    styles = tuple(file_sha256(path) for path in style_paths)
    key = (str(Path(model).resolve()), file_sha256(model), styles, precision)
    with _NETWORKS_LOCK:
        return _load_network(*key)


@lru_cache(maxsize=4)
def _load_network(
    path: str, sha256: str, styles: tuple[str, ...], precision: str
) -> tuple[Any, ModelCard]:
    net, card = load_fast_model(path, style_sha256=styles)
    return for_precision(net, precision), card


def model_record(
    model: str | os.PathLike, style_paths: Sequence[str], precision: str = "float32"
) -> dict:
    """Load and check a model against the styles (one line if it does not fit), for the
    chunks of this process to reuse; -> what the manifest records: its sha256 and card."""
    _, card = cached_network(model, style_paths, precision)
    return {"sha256": file_sha256(model), "card": card.as_dict()}


def _as_float(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame.astype("float32") / 255.0


def _resized(frames: Iterator[np.ndarray], output_size: Size | None) -> Iterator[np.ndarray]:
    """Stylized float frames as uint8, resized to `output_size` when it differs."""
    for frame in frames:
        if output_size and Size.of(frame) != output_size:
            frame = resize(frame, output_size)
        yield to_uint8(frame)


def _counted(
    frames: Iterator[np.ndarray],
    start: int,
    done: list[int],
    progress: Callable[[FrameStats], None],
) -> Iterator[np.ndarray]:
    """Pass frames through, recording each index in `done` and telling `progress` (stats
    with no loss: nothing is optimized)."""
    nan, last = float("nan"), time.perf_counter()
    for index, frame in enumerate(frames, start):
        now = time.perf_counter()
        done.append(index)
        progress(FrameStats(index, False, 0, nan, nan, nan, nan, now - last))
        last = now
        yield frame


def stylize_chunk_fast(
    source: str,
    model: str,
    style_uris: Sequence[str],
    settings: VideoSettings,
    chunk: Chunk,
    staging: Staging,
    *,
    info: VideoInfo | None = None,
    crf: int = 18,
    processing: Size | None = None,
    output_size: Size | None = None,
    batch: int = DEFAULT_BATCH,
    upload: Upload = upload,
    progress: Callable[[FrameStats], None] = notify_stylized,
) -> ChunkResult:
    """Stylize one chunk with the network in `model` into a staged segment, or resume it.

    Frames [chunk.start, chunk.start + chunk.count) are decoded at `processing` (default
    settings.size), stylized `batch` at a time, resized to `output_size` if given and
    encoded at `crf`; then the marker is written, exactly as tasks.stylize.stylize_chunk
    does, so resume works the same. A chunk with warm-up frames is refused: fast mode
    plans none.
    """
    if chunk.warmup:
        raise ValueError(f"{chunk.name}: fast mode plans no warm-up frames")
    segment = segment_uri(staging, chunk)
    if finished := finished_chunk(segment, processing):
        return finished
    started = time.perf_counter()
    cache = staging.cache()
    local_source = fetch_cached(source, cache)
    info = info or probe(local_source)
    local_model = fetch_cached(model, cache)
    net, _ = cached_network(local_model, cached_styles(style_uris, cache), settings.precision)
    longest = processing.longest if processing else settings.size
    frames = read_frames(local_source, chunk.start, chunk.count, size=longest, info=info)
    styled = stylize_frames(
        net, _as_float(frames), batch=batch, original_colors=settings.original_colors
    )
    done: list[int] = []
    counted = _counted(_resized(styled, output_size), chunk.start, done, progress)
    write_segment(counted, segment, info.avg_fps, crf, upload)
    result = ChunkResult(
        index=chunk.index,
        start=chunk.start,
        frames=len(done),
        warmup=0,
        iterations=0,
        seconds=time.perf_counter() - started,
        loss=float("nan"),
        content_loss=float("nan"),
        style_loss=float("nan"),
        segment=segment,
        processing=(processing or info.size.fit(settings.size)).as_list(),
        precision=resolve_precision(settings.precision),
    )
    write_marker(result, upload)
    return result


def stylize_image_fast(
    content: np.ndarray,
    model: str | os.PathLike,
    style_paths: Sequence[str],
    settings: StyleSettings,
    output: str | os.PathLike,
) -> dict:
    """Stylize one float image with the network in `model` at settings.size (longest side,
    as the optimization mode's output) and save it atomically; -> the CLI's report."""
    started = time.perf_counter()
    net, _ = cached_network(model, style_paths, settings.precision)
    image = resize(content, Size.of(content).scale_to(settings.size))
    styled = stylize_batch(net, image[None], settings.original_colors)[0]
    save_image(styled, output)
    return {
        "output": str(output),
        "mode": "fast",
        "model_sha256": file_sha256(model),
        "settings_hash": settings.stable_hash(),
        "precision": resolve_precision(settings.precision),
        "seconds": time.perf_counter() - started,
    }
