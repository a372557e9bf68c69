"""The stylize-chunk flow: one chunk of a video job staged on S3, as a run of the chunk
deployment, so that `stylize_video(..., fan_out="pool")` spreads a video's chunks over the
workers of a pool. Orchestration only: no tensors here.

The child runs the same stylize-chunk task as the video flow's threads, with plain
parameters (the staging as its URI, the chunk as its fields). Its return value stays on its
worker: the parent reads each chunk's result back from its completion marker in staging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from uuid import UUID

from prefect import flow
from prefect.client.schemas.objects import FlowRun

from nst_video.flows.fan_out import run_children
from nst_video.nst_core.errors import NSTError, one_line
from nst_video.nst_core.settings import VideoSettings
from nst_video.nst_core.size import Size
from nst_video.tasks import prefect_tasks
from nst_video.tasks.plan import CRF, Chunk
from nst_video.tasks.staging import Staging
from nst_video.tasks.stylize import ChunkResult, finished_chunk, segment_uri


class ChunkRunError(NSTError):
    """A chunk's run on the pool did not end Completed, or left no completion marker."""


@flow(name="stylize-chunk", flow_run_name="chunk {index} (frames {start}+{count})")
def stylize_chunk(
    source: str,
    styles: list[str],
    staging: str,
    index: int,
    start: int,
    count: int,
    warmup: int = 0,
    settings: VideoSettings | None = None,
    keyframes: list[str] | None = None,
    cuts: list[int] | None = None,
    crf: int = CRF,
    processing: list[int] | None = None,
    output_size: list[int] | None = None,
) -> dict:
    """Stylize chunk `index` (frames [start, start + count), `warmup` before) of the job
    staged at `staging` (an s3:// URI); -> its ChunkResult as a dict.

    `source`, `styles` and `keyframes` are the job's staged URIs; `processing` and
    `output_size` are [width, height] (the memory guard's sizes); a chunk already marked
    complete is not redone.
    """
    result = prefect_tasks.stylize_chunk(
        source,
        styles,
        settings or VideoSettings(),
        Chunk(index, start, count, warmup),
        Staging(staging),
        keyframes=keyframes or [],
        cuts=cuts or [],
        crf=crf,
        processing=Size(*processing) if processing else None,
        output_size=Size(*output_size) if output_size else None,
    )
    return dataclasses.asdict(result)


def chunks_on_pool(
    chains: list[tuple[Chunk, list[str]]],
    staging: Staging,
    source: str,
    styles: list[str],
    settings: VideoSettings,
    *,
    cuts: list[int],
    crf: int,
    processing: Size,
    output_size: Size | None,
    deployment: str,
    concurrency: int,
    progress: UUID | None = None,
) -> Iterator[ChunkResult]:
    """Each (chunk, its keyframes' URIs) as a run of `deployment`, `concurrency` in flight;
    yields the ChunkResults as the runs end. Chunks marked complete already come first,
    resumed, without a run. `progress` (the video run's progress artifact) follows the
    chunks' runs.

    A run that fails, or leaves no marker, raises ChunkRunError; the runs in flight go on
    (what they stage is resumed by a rerun).
    """
    by_name = {chunk.name: chunk for chunk, _ in chains}
    common = {
        "source": source,
        "styles": styles,
        "settings": settings.model_dump(mode="json"),
        "staging": staging.root,
        "cuts": cuts,
        "crf": crf,
        "processing": processing.as_list(),
        "output_size": output_size.as_list() if output_size else None,
    }
    children = []
    for chunk, keyframes in chains:
        if done := finished_chunk(segment_uri(staging, chunk), processing):
            yield done
            continue
        fields = {"index": chunk.index, "start": chunk.start, "count": chunk.count}
        fields |= {"warmup": chunk.warmup, "keyframes": keyframes}
        children.append((chunk.name, common | fields))
    runs = run_children(deployment, children, concurrency, progress, out_of=len(chains))
    for name, run in runs:
        yield _result(by_name[name], staging, processing, run)


def _result(chunk: Chunk, staging: Staging, processing: Size, run: FlowRun) -> ChunkResult:
    """The ChunkResult an ended run left in staging (its marker)."""
    completed = run.state.is_completed()
    if completed and (done := finished_chunk(segment_uri(staging, chunk), processing)):
        return dataclasses.replace(done, resumed=False)  # made by the run, not found made
    reason = "no completion marker in staging" if completed else run.state.message
    message = f"{chunk.name}: flow run {run.name} ended {run.state.name}: {reason or 'no message'}"
    raise ChunkRunError(one_line(message, limit=300))
