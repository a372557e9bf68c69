"""Progress through Prefect itself, so that it shows wherever a run executes: a chunk task's
own progress artifact (its frames), and the progress of runs read back through the API.

A flow run's progress is its own (flow-level) progress artifact; a run that has none but
whose task runs report (a stylize-chunk run of the pool) shows the mean of theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterTaskRunId,
    ArtifactFilterType,
)
from prefect.client.schemas.objects import Artifact

if TYPE_CHECKING:  # importing it would import TensorFlow: flows that only orchestrate do not
    from nst_video.nst_core.temporal import FrameStats

SHOW_EVERY_SECONDS = 2.0  # one API call every 2 s per running chunk, at most


class FrameProgress:
    """The running task run's progress artifact: percent of its `total` frames, moved at
    most every SHOW_EVERY_SECONDS. Each frame's stats are passed on to `also`."""

    def __init__(self, total: int, description: str, also: Callable[[FrameStats], None]) -> None:
        self.total, self.done, self.also = max(total, 1), 0, also
        self.artifact = create_progress_artifact(0.0, description=description)
        self.shown_at = time.monotonic()

    def __call__(self, stats: FrameStats) -> None:
        self.also(stats)
        self.done += 1
        if time.monotonic() - self.shown_at >= SHOW_EVERY_SECONDS:
            self.shown_at = time.monotonic()
            update_progress_artifact(self.artifact, 100.0 * min(self.done, self.total) / self.total)

    def finish(self) -> None:
        update_progress_artifact(self.artifact, 100.0)


def task_progress(client: SyncPrefectClient, task_run_ids: Iterable[UUID]) -> dict[UUID, float]:
    """Each task run's progress artifact (percent), for the task runs that have one."""
    ids = list(task_run_ids)
    if not ids:
        return {}
    artifacts = _progress_artifacts(client, task_run_id=ArtifactFilterTaskRunId(any_=ids))
    return {a.task_run_id: _percent(a) for a in artifacts if a.task_run_id}


def flow_progress(client: SyncPrefectClient, flow_run_ids: Iterable[UUID]) -> dict[UUID, float]:
    """Each flow run's progress (percent): its own artifact, else the mean of its task runs'."""
    ids = list(flow_run_ids)
    if not ids:
        return {}
    own: dict[UUID, list[float]] = {}
    of_tasks: dict[UUID, list[float]] = {}
    for a in _progress_artifacts(client, flow_run_id=ArtifactFilterFlowRunId(any_=ids)):
        if a.flow_run_id:
            (of_tasks if a.task_run_id else own).setdefault(a.flow_run_id, []).append(_percent(a))
    return {
        run: max(own[run]) if run in own else sum(of_tasks[run]) / len(of_tasks[run])
        for run in own.keys() | of_tasks.keys()
    }


def _progress_artifacts(client: SyncPrefectClient, **by_run: object) -> list[Artifact]:
    kind = ArtifactFilterType(any_=["progress"])
    return client.read_artifacts(artifact_filter=ArtifactFilter(type=kind, **by_run))


def _percent(artifact: Artifact) -> float:
    return float(artifact.data) if artifact.data is not None else 0.0
