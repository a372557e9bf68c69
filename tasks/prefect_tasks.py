"""Prefect tasks: thin wrappers over the plain functions, with retries where failures are
transient (storage and ffmpeg I/O) and a `gpu` tag on the stylization task.

GPU slots: `prefect concurrency-limit create gpu N` caps how many stylization tasks run at
once across all workers (one per GPU). Without that limit, nothing is capped.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from prefect import task

from tasks import memory_guard, stylize, video

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


@task(name="assemble", **IO_RETRIES)
def assemble(
    segments: list[tuple[str, int]],
    source: str,
    out: str,
    fps: Fraction,
    audio_start: float,
    crf: int = 18,
) -> str:
    """Join the chunk segments and put the source's audio back.

    Segments are (path, warm-up frames). Without overlaps they are concatenated losslessly
    (stream copy); with overlaps the frames are cross-faded and encoded once more.
    """
    joined = Path(out).with_name("joined" + Path(out).suffix)
    if any(warmup for _, warmup in segments):
        video.write_frames(stylize.crossfade_frames(segments), joined, fps, crf=crf)
    else:
        video.concat([path for path, _ in segments], joined)
    video.mux_audio(joined, source, out, audio_start=audio_start)
    joined.unlink()
    return out
