"""Progress through Prefect: a task run's own progress artifact, read back through the API."""

from __future__ import annotations

import math
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.artifacts import create_progress_artifact
from prefect.client.orchestration import get_client
from prefect.runtime import task_run

from nst_video.nst_core.temporal import FrameStats
from nst_video.tasks import progress as progress_module
from nst_video.tasks.progress import FrameProgress, flow_progress, task_progress


def _stats(index: int) -> FrameStats:
    nan = math.nan
    return FrameStats(index, False, 0, nan, nan, nan, nan, 0.0)


@task
def count_frames(total: int, fed: int, finish: bool) -> float:
    """Feed `fed` of `total` frames; -> this task run's progress, read from the API."""
    passed: list[int] = []
    frames = FrameProgress(total, "frames of a test chunk", also=lambda s: passed.append(s.index))
    for index in range(fed):
        frames(_stats(index))
    if finish:
        frames.finish()
    assert passed == list(range(fed))
    me = UUID(task_run.id)
    with get_client(sync_client=True) as client:
        return task_progress(client, [me]).get(me, 0.0)


@flow
def chunks(fed: list[int], own: float | None = None) -> list[float]:
    if own is not None:
        create_progress_artifact(own, description="the flow's own progress")
    return [count_frames(4, n, finish=False) for n in fed]


@pytest.fixture
def every_frame(monkeypatch):
    monkeypatch.setattr(progress_module, "SHOW_EVERY_SECONDS", 0.0)


def test_a_task_shows_its_frames_in_the_api_while_it_runs(prefect_api_url, every_frame):
    # each frame's update is made before the next frame: 3 of 4 fed reads back as 75 %
    state = chunks([3, 1], return_state=True)
    assert state.result() == [75.0, 25.0]


def test_updates_are_throttled_and_finish_shows_100(prefect_api_url, monkeypatch):
    monkeypatch.setattr(progress_module, "SHOW_EVERY_SECONDS", 3600.0)

    @flow
    def one_chunk() -> float:
        return count_frames(4, 3, finish=True)

    assert one_chunk() == 100.0

    @flow
    def unfinished() -> float:
        return count_frames(4, 3, finish=False)

    assert unfinished() == 0.0  # three frames within the interval: not shown yet


def test_a_flow_run_shows_its_own_artifact_else_the_mean_of_its_tasks(prefect_api_url, every_frame):
    of_tasks = chunks([4, 2], return_state=True).state_details.flow_run_id
    own = chunks([4, 2], own=10.0, return_state=True).state_details.flow_run_id
    with get_client(sync_client=True) as client:
        shown = flow_progress(client, [of_tasks, own])
    assert shown == {of_tasks: 75.0, own: 10.0}
