"""The stylize-video flow: probe -> plan chunks -> fan out -> check every chunk -> concat +
audio -> publish -> manifest. Orchestration only: no tensors here.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import Field

from nst_video.flows.batch_options import CHUNK_DEPLOYMENT, FanOut
from nst_video.flows.fan_out import check_deployment
from nst_video.flows.stylize_chunk import chunks_on_pool
from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.settings import TrainSettings, VideoSettings
from nst_video.tasks import fast, prefect_tasks, storage
from nst_video.tasks.assemble import audio_range, segment_crf
from nst_video.tasks.keyframes import KeyframeResult
from nst_video.tasks.plan import (
    CHUNK_FRAMES,
    CRF,
    OVERLAP,
    Chunk,
    ChunkFrames,
    Crf,
    MaxFrames,
    Overlap,
    WorkDir,
    chunk_shots,
    frame_range,
    job_id,
    plan_chunks,
)
from nst_video.tasks.progress import task_progress
from nst_video.tasks.quality import MotionFidelitySamples
from nst_video.tasks.report import preview_markdown, summary_markdown
from nst_video.tasks.staging import Staging, local_work_dir, work_root
from nst_video.tasks.stylize import LISTENERS, ChunkResult, FrameListener, notify_planned
from nst_video.tasks.video import read_frames

MANIFEST_SUFFIX = ".json"
PROGRESS_POLL_SECONDS = 2.0  # between two reads of the running chunks' progress
Mode = Literal["optimize", "fast"]


def manifest_uri(destination: str) -> str:
    return destination + MANIFEST_SUFFIX


def _finished_manifest(destination: str, job: str) -> dict | None:
    """The manifest of an earlier run of this very job, if its output is complete."""
    manifest = manifest_uri(destination)
    if not (storage.exists(manifest) and storage.exists(destination)):
        return None
    data = json.loads(storage.read_text(manifest))
    return data if data.get("job_id") == job else None


def _job_identity(source: str, styles: list[str], settings: VideoSettings, **plan) -> dict:
    return {
        "source": storage.identity(source),
        "styles": [storage.identity(style) for style in styles],
        "settings": settings.stable_hash(),
        **plan,
    }


@flow(
    name="stylize-video",
    flow_run_name="stylize {source}",
    task_runner=ThreadPoolTaskRunner(max_workers=1),  # one chain at a time on a CPU
)
def stylize_video(
    source: str,
    styles: list[str],
    destination: str,
    settings: VideoSettings | None = None,
    chunk_frames: ChunkFrames = CHUNK_FRAMES,
    overlap: Overlap = OVERLAP,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: MaxFrames = None,
    crf: Crf = CRF,
    work_dir: WorkDir = None,
    batch_chunks: int = 1,
    mode: Mode = "optimize",
    model: str | None = None,
    training: TrainSettings | None = None,
    motion_fidelity_samples: MotionFidelitySamples = 0,
    fan_out: FanOut = "threads",
    chunk_deployment: str = CHUNK_DEPLOYMENT,
    concurrency: Annotated[int, Field(ge=1, le=64)] = 2,
) -> dict:
    """Stylize `source` (path or s3:// URI) with `styles` into `destination` (path or s3://).

    Returns the run's manifest, also written as JSON next to the output. Rerunning a killed
    job recomputes only unfinished chunks; rerunning a finished job does nothing.
    `batch_chunks` > 1 (JAX backend) stylizes the frames of that many concurrently running
    chunks as one batch: give the task runner as many threads.

    `mode="fast"` runs the trained network in `model` (a `.keras` path or s3:// URI, made
    for these `styles`) on every frame instead of optimizing: no warm-up (`overlap` and
    `batch_chunks` are not used), no scene detection, segments concatenated as they are;
    of `settings` only size, original_colors and precision apply. The job id adds the mode
    and the model's sha256 (optimization mode's ids are unchanged). Without `model`, the
    cached model for these styles and this video is used, trained first when missing, with
    `training` (default: the training defaults at `settings`' loss and size).

    Every run measures the output's quality (tasks/quality.py) into the manifest's "quality";
    `motion_fidelity_samples` > 0 adds motion fidelity on that many frame pairs (cold starts;
    optimization mode only).

    `fan_out="pool"` runs each chunk as a run of `chunk_deployment` (flows/stylize_chunk.py)
    on its work pool's workers, `concurrency` at once, after the keyframes are made here;
    the job must stage on S3 (an s3:// `work_dir` or `destination`) and be in optimization
    mode.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    settings = settings or VideoSettings()
    is_fast = _check_mode(mode, model)
    plan_params = {
        "chunk_frames": chunk_frames,
        "overlap": 0 if is_fast else overlap,
        "start": start,
        "duration": duration,
        "max_frames": max_frames,
        "crf": crf,
    }
    root = work_root(work_dir, destination)
    local_root = local_work_dir(root)
    if fan_out == "pool":
        _check_pool(root, is_fast, chunk_deployment)
    if is_fast:
        if model is None:
            logger.info("fast mode without a model: the cached one, trained first if missing")
            training_inputs = local_root / "train-inputs"
            model = str(fast.model_needed(styles, [source], settings, training_inputs, training))
        local_model, model_sha256 = fast.fetch_model(model, local_root)
        plan_params |= {"mode": mode, "model_sha256": model_sha256}
    job = job_id(**_job_identity(source, styles, settings, **plan_params))
    if done := _finished_manifest(destination, job):
        logger.info("job %s already finished: %s", job, destination)
        return {**done, "skipped": True}

    staging = Staging(storage.join_uri(root, job))
    logger.info("job %s stages in %s", job, staging.root)
    staged_source = prefect_tasks.stage_input(source, staging)
    staged_styles = [prefect_tasks.stage_input(style, staging) for style in styles]
    local_source = str(prefect_tasks.fetch(staged_source, staging.cache()))
    local_styles = [str(prefect_tasks.fetch(style, staging.cache())) for style in staged_styles]
    if is_fast:  # a model that does not fit the styles fails here, before any chunk
        model_record = {
            "uri": model,
            **prefect_tasks.check_model(local_model, local_styles, settings.precision),
        }
    info = prefect_tasks.probe(local_source)
    sizing = prefect_tasks.plan_video_size.submit(info, settings).result()
    if sizing.reduced:
        logger.warning("memory guard: %s: %s", source, sizing.reason)
    first, count = frame_range(info, start, duration, max_frames)
    cuts = [] if is_fast else prefect_tasks.scene_cuts(Path(local_source), first, count, settings)
    chunks = plan_chunks(first, count, chunk_frames, plan_params["overlap"], cuts)
    logger.info("job %s: %d frames in %d chunks, cuts at %s", job, count, len(chunks), cuts)
    shot_starts = [] if is_fast else [first, *cuts]
    notify_planned(sum(chunk.warmup + chunk.count for chunk in chunks) + len(shot_starts))

    progress = create_progress_artifact(0.0, description=f"chunks of {source}")
    common = {
        "info": info,
        "crf": segment_crf([c.warmup for c in chunks], crf),
        "processing": sizing.processing,
        "output_size": sizing.requested if sizing.reduced else None,
    }
    keyframes: dict[int, KeyframeResult] = {}
    if is_fast:
        staged_model = prefect_tasks.stage_input(model, staging)
        ended = _finished(
            _submit_fast_chunks(
                chunks, staging, staged_source, staged_model, staged_styles, settings, **common
            ),
            progress,
        )
    else:
        keyframes = _stylize_keyframes(
            shot_starts,
            staging,
            staged_source,
            staged_styles,
            settings,
            info=info,
            processing=sizing.processing,
            batch=batch_chunks,
        )
        chains = [(chunk, _chain_keyframes(chunk, keyframes)) for chunk in chunks]
        if fan_out == "pool":
            ended = chunks_on_pool(
                chains,
                staging,
                staged_source,
                staged_styles,
                settings,
                cuts=cuts,
                crf=common["crf"],
                processing=sizing.processing,
                output_size=common["output_size"],
                deployment=chunk_deployment,
                concurrency=concurrency,
                progress=progress,
            )
        else:
            ended = _finished(
                _submit_chunks(
                    chains,
                    staging,
                    staged_source,
                    staged_styles,
                    settings,
                    cuts=cuts,
                    batch=batch_chunks,
                    **common,
                ),
                progress,
            )
    results: list[ChunkResult] = []
    for result in ended:
        results.append(result)
        logger.info(
            "%s chunk %d: %d frames, %.1f s",
            "resumed" if result.resumed else "stylized",
            result.index,
            result.frames,
            result.seconds,
        )
    results.sort(key=lambda r: r.index)

    final = staging.cache() / f"final{Path(destination).suffix or '.mp4'}"
    final.parent.mkdir(parents=True, exist_ok=True)
    segments = [(str(prefect_tasks.fetch(r.segment, staging.cache())), r.warmup) for r in results]
    audio_start, audio_duration = audio_range(info, first, count)
    prefect_tasks.assemble(
        segments,
        local_source,
        str(final),
        info.avg_fps,
        audio_start,
        crf=crf,
        audio_duration=audio_duration,
    )
    prefect_tasks.publish(final, destination)
    manifest = {
        "job_id": job,
        "source": source,
        "styles": styles,
        "output": destination,
        "mode": mode,
        **({"model": model_record} if is_fast else {}),
        "settings": settings.model_dump(mode="json"),
        "settings_hash": settings.stable_hash(),
        "precision": precision_used(results),
        "identity": _job_identity(source, styles, settings, **plan_params),
        "video": {"frames": count, "first_frame": first, "fps": str(info.avg_fps), "cuts": cuts},
        "memory": sizing.as_dict(),
        "batch_chunks": batch_chunks,
        "chunks": [vars(r) | {"segment": Path(r.segment).name} for r in results],
        "keyframes": [vars(k) | {"path": Path(k.path).name} for k in keyframes.values()],
        "totals": {
            "frames": sum(r.frames for r in results),
            "iterations": sum(r.iterations for r in results)
            + sum(k.iterations for k in keyframes.values()),
            "stylize_seconds": sum(r.seconds for r in results if not r.resumed),
            "resumed_chunks": sum(r.resumed for r in results),
            "wall_seconds": time.perf_counter() - started,
        },
    }
    manifest["quality"] = prefect_tasks.measure_quality(
        local_source, str(final), count=count, first=first, chunks=manifest["chunks"], cuts=cuts
    )
    if motion_fidelity_samples and not is_fast:
        manifest["quality"] |= prefect_tasks.motion_fidelity(
            local_source,
            str(final),
            local_styles,
            settings,
            first=first,
            count=count,
            cuts=cuts,
            samples=motion_fidelity_samples,
            longest=sizing.processing.longest,
        )
    storage.write_text(manifest_uri(destination), json.dumps(manifest, indent=2))
    _publish_artifacts(manifest, results, final, destination)
    prefect_tasks.clean_staging(staging)
    return manifest


def _stylize_keyframes(
    shot_starts: list[int],
    staging: Staging,
    source: str,
    styles: list[str],
    settings: VideoSettings,
    **params,
) -> dict[int, KeyframeResult]:
    """Each shot's keyframe (its first frame, cold-started), before any chunk starts."""
    futures = [
        prefect_tasks.stylize_keyframe.submit(source, styles, settings, index, staging, **params)
        for index in shot_starts
    ]
    return {result.index: result for result in (future.result() for future in futures)}


def _chain_keyframes(chunk: Chunk, keyframes: dict[int, KeyframeResult]) -> list[str]:
    """The keyframes a chunk's chain starts from: chunks depend on keyframes only, not on
    each other (warm-up frames are decoded from the source), so all can run at once."""
    return [keyframes[i].path for i in chunk_shots(chunk, list(keyframes))]


def _submit_chunks(
    chains: list[tuple[Chunk, list[str]]],
    staging: Staging,
    source: str,
    styles: list[str],
    settings: VideoSettings,
    **params,
) -> list:
    """One optimization stylize-chunk task per (chunk, its keyframes)."""
    return [
        prefect_tasks.stylize_chunk.submit(
            source, styles, settings, chunk, staging, keyframes=keyframes, **params
        )
        for chunk, keyframes in chains
    ]


def _finished(futures: list[PrefectFuture], progress: UUID) -> Iterator[ChunkResult]:
    """The chunk tasks' results as they end; a failed chunk raises and fails the flow.

    Meanwhile the flow's `progress` artifact is kept at the mean of the chunks' own progress
    artifacts (100 for an ended chunk), read through the API: the chunk tasks may run in
    other processes (Dask workers).
    """
    ended: queue.Queue[PrefectFuture] = queue.Queue()
    for future in futures:
        future.add_done_callback(ended.put)
    running, shown = {future.task_run_id: future for future in futures}, 0.0
    with get_client(sync_client=True) as client:
        while running:
            try:
                future = ended.get(timeout=PROGRESS_POLL_SECONDS)
                running.pop(future.task_run_id)
            except queue.Empty:
                future = None
            if future is not None:
                yield future.result()
            done = 100.0 * (len(futures) - len(running))
            percent = (done + sum(task_progress(client, running).values())) / len(futures)
            if percent != shown:
                shown = percent
                update_progress_artifact(progress, percent)


def _submit_fast_chunks(
    chunks: list[Chunk],
    staging: Staging,
    source: str,
    model: str,
    styles: list[str],
    settings: VideoSettings,
    **params,
) -> list:
    """One fast-mode chunk task per chunk: the same segments and markers, no warm-up."""
    return [
        prefect_tasks.stylize_chunk_fast.submit(
            source, model, styles, settings, chunk, staging, **params
        )
        for chunk in chunks
    ]


def _check_pool(root: str, is_fast: bool, deployment: str) -> None:
    """Chunks on a pool: optimization mode, a staging every worker reads, the deployment."""
    if is_fast:
        raise InvalidSettingsError(
            "--fan-out pool runs optimization chunks, not --mode fast (a fast chunk costs less "
            "than its run's start): fan fast videos out per video, with nst batch"
        )
    if not storage.parse_uri(root).is_s3:
        raise InvalidSettingsError(
            f"--fan-out pool needs the job's staging on S3 (the pool's workers cannot read "
            f"the local {root}): give an s3:// --work-dir or an s3:// output"
        )
    check_deployment(deployment)


def _check_mode(mode: str, model: str | None) -> bool:
    """Whether the run is in fast mode (Prefect has checked `mode` against Mode); a model
    given in optimization mode is refused rather than ignored."""
    if mode != "fast" and model is not None:
        raise InvalidSettingsError("a model is only used with --mode fast")
    return mode == "fast"


def _publish_artifacts(manifest: dict, results: list[ChunkResult], final: Path, link: str) -> None:
    create_markdown_artifact(
        summary_markdown(manifest, results),
        key="stylize-summary",
        description="chunks, timings and losses",
    )
    target = link if link.startswith("s3://") else Path(link).resolve().as_uri()
    create_link_artifact(target, link_text=Path(link).name, description="stylized video")
    middle = manifest["totals"]["frames"] // 2
    frame = next(read_frames(final, start=middle, count=1))
    create_markdown_artifact(
        preview_markdown(frame, f"frame {middle} of {link}"), description="preview"
    )


def run_stylize_video(
    source: str,
    styles: list[str],
    destination: str,
    settings: VideoSettings,
    *,
    workers: int = 1,
    listener: FrameListener | None = None,
    task_runner: TaskRunner | None = None,
    **params,
) -> dict:
    """Run the flow in this process with `workers` chunk threads; returns the manifest.

    Without PREFECT_API_URL, Prefect starts a temporary local server for the run (several
    seconds); with it, the run appears on that server's UI. `task_runner` (e.g. a Dask
    one, see flows/dask_runner.py) replaces the chunk threads.
    """
    chosen = task_runner or ThreadPoolTaskRunner(max_workers=workers)
    runner = stylize_video.with_options(task_runner=chosen)
    if listener:
        LISTENERS.append(listener)
    try:
        return runner(source, styles, destination, settings, **params)
    finally:
        if listener:
            LISTENERS.remove(listener)


def precision_used(results: list[ChunkResult]) -> str | None:
    """The precision the chunks computed in (settings keep "auto", each chunk resolves it
    where it runs); "mixed" when a job resumed on another machine differs, None when no
    chunk recorded one (markers of older versions)."""
    used = {r.precision for r in results if r.precision}
    if len(used) > 1:
        return "mixed"
    return used.pop() if used else None
