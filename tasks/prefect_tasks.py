"""Prefect tasks: thin wrappers over the plain functions, with retries where failures are
transient (storage and ffmpeg I/O) and a `gpu` tag on the stylization task.

GPU slots: `prefect concurrency-limit create gpu N` caps how many stylization tasks run at
once across all workers (one per GPU). Without that limit, nothing is capped.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from nst_video.tasks import assemble as assembly
from nst_video.tasks import fast, memory_guard, quality, stylize, train, video

IO_RETRIES = {"retries": 3, "retry_delay_seconds": [1, 4, 10]}

probe = task(video.probe, name="probe", **IO_RETRIES)
# A task, so that with a Dask runner the memory is measured where the chunks will run.
plan_video_size = task(memory_guard.plan_video_size, name="memory-guard")
scene_cuts = task(stylize.scene_cuts_in_range, name="scene-cuts")
stylize_chunk = task(
    stylize.stylize_chunk,
    name="stylize-chunk",
    tags=["gpu"],
    task_run_name="stylize {chunk.name} (frames {chunk.start}+{chunk.count})",
)
stylize_keyframe = task(
    stylize.stylize_keyframe,
    name="stylize-keyframe",
    tags=["gpu"],
    task_run_name="stylize keyframe {index}",
)
stylize_chunk_fast = task(
    fast.stylize_chunk_fast,
    name="stylize-chunk-fast",
    tags=["gpu"],
    task_run_name="stylize {chunk.name} fast (frames {chunk.start}+{chunk.count})",
)
# Loads the network once (cached for the chunks of this process) and checks it first.
check_model = task(fast.model_record, name="check-model")
assemble = task(assembly.assemble, name="assemble", **IO_RETRIES)
# The quality pass of the assembled output (every job), and motion fidelity on request: its
# cold starts are stylization, so they take a `gpu` slot like the chunks.
measure_quality = task(quality.measure_quality, name="measure-quality")
motion_fidelity = task(quality.job_motion_fidelity, name="motion-fidelity", tags=["gpu"])
# Not cached: its progress callback is an input, and a rerun must resume, not replay.
train_network = task(train.train_style, name="train-network", tags=["gpu"], cache_policy=NO_CACHE)
