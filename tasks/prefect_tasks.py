"""Prefect tasks: thin wrappers over the plain functions, retried only where a retry can
help (`transient`), and a `gpu` tag on the stylization tasks.

GPU slots: `prefect concurrency-limit create gpu N` caps how many stylization tasks run at
once across all workers (one per GPU). Without that limit, nothing is capped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from nst_video.nst_core.errors import NSTError
from nst_video.tasks import assemble as assembly
from nst_video.tasks import fast, memory_guard, quality, staging, storage, stylize, train, video
from nst_video.tasks.progress import FrameProgress


def is_transient(exc: BaseException | None) -> bool:
    """Whether a failure may go away by trying again: an S3 endpoint unreachable or failing
    (5xx) after storage's own retries, or a dropped or timed-out connection. Never a bad
    input, a bad setting, a corrupt file or a refused permission."""
    if isinstance(exc, storage.StorageUnavailableError):
        return True
    return isinstance(exc, (ConnectionError, TimeoutError)) and not isinstance(exc, NSTError)


def transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry_condition_fn: retry a failed run only if its failure was transient."""
    return is_transient(state.data if isinstance(state.data, BaseException) else None)


RETRIES = {"retries": 3, "retry_delay_seconds": [1, 4, 10], "retry_condition_fn": transient}

# Storage steps: their own runs in the graph, with timings and retries.
stage_input = task(staging.stage_input, name="stage-input", **RETRIES)
fetch = task(staging.fetch_cached, name="fetch", **RETRIES)
upload_staged = task(staging.upload, name="upload-staged", **RETRIES)
publish = task(storage.publish, name="publish", **RETRIES)
clean_staging = task(staging.remove, name="clean-staging", **RETRIES)


def _uploading_as_tasks(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with its staging uploads run as upload-staged task runs (nested in its run)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **{**kwargs, "upload": upload_staged})

    return run


def _chunk_body(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a chunk's stylization) with its uploads as upload-staged task runs and its
    frames counted in the task run's own progress artifact, seen from any machine."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        chunk = signature.bind(*args, **kwargs).arguments["chunk"]
        total, description = chunk.warmup + chunk.count, f"frames of {chunk.name}"
        frames = FrameProgress(total, description, also=stylize.notify_stylized)
        result = fn(*args, **{**kwargs, "upload": upload_staged, "progress": frames})
        frames.finish()
        return result

    return run


probe = task(video.probe, name="probe", **RETRIES)
# A task, so that with a Dask runner the memory is measured where the chunks will run.
plan_video_size = task(memory_guard.plan_video_size, name="memory-guard")
scene_cuts = task(stylize.scene_cuts_in_range, name="scene-cuts")
# Retried on transient storage failures too: fetching inputs, reading markers.
stylize_chunk = task(
    _chunk_body(stylize.stylize_chunk),
    name="stylize-chunk",
    tags=["gpu"],
    task_run_name="stylize {chunk.name} (frames {chunk.start}+{chunk.count})",
    **RETRIES,
)
stylize_keyframe = task(
    _uploading_as_tasks(stylize.stylize_keyframe),
    name="stylize-keyframe",
    tags=["gpu"],
    task_run_name="stylize keyframe {index}",
    **RETRIES,
)
stylize_chunk_fast = task(
    _chunk_body(fast.stylize_chunk_fast),
    name="stylize-chunk-fast",
    tags=["gpu"],
    task_run_name="stylize {chunk.name} fast (frames {chunk.start}+{chunk.count})",
    **RETRIES,
)
# Loads the network once (cached for the chunks of this process) and checks it first.
check_model = task(fast.model_record, name="check-model")
assemble = task(assembly.assemble, name="assemble", **RETRIES)
# The quality pass of the assembled output (every job), and motion fidelity on request: its
# cold starts are stylization, so they take a `gpu` slot like the chunks.
measure_quality = task(quality.measure_quality, name="measure-quality")
motion_fidelity = task(quality.job_motion_fidelity, name="motion-fidelity", tags=["gpu"])
# Not cached: its progress callback is an input, and a rerun must resume, not replay.
train_network = task(train.train_style, name="train-network", tags=["gpu"], cache_policy=NO_CACHE)
