"""Child runs of a deployment on a work pool: a batch's videos, a video's chunks.

Orchestration only. The parent submits at most `concurrency` child runs (`run_deployment`,
`as_subflow=True`: each is a child of the parent run in the UI), polls their states through
the API and hands each one back as it ends. A child's return value stays on its worker, so
callers read results from what the child wrote (a manifest, a chunk's marker). The
parent's progress artifact is the mean progress of its children: 100 for an ended one, a
running one's progress (tasks.progress.flow_progress), 0 otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import update_progress_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run as this_run

from nst_video.nst_core.errors import InvalidInputError
from nst_video.tasks.progress import flow_progress

POLL_SECONDS = 2.0  # between two reads of the children's states


def check_deployment(deployment: str) -> None:
    """One clear line when `deployment` is not on this server."""
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(deployment)
        except (ObjectNotFound, ValueError):
            raise InvalidInputError(
                f"deployment {deployment!r} not found on the Prefect server: deploy "
                "deployments/prefect.yaml first (docs/deployment.md)"
            ) from None


def run_children(
    deployment: str,
    children: list[tuple[str, dict]],
    concurrency: int,
    progress: UUID | None = None,
    out_of: int | None = None,
) -> Iterator[tuple[str, FlowRun]]:
    """A run of `deployment` per (key, parameters), `concurrency` in flight; yields (key, run)
    as each run ends, in a final state of any kind.

    The key names the run in the log and makes its idempotency key (this run's id: key), so
    a retried parent run gets its existing children back. `progress`, the id of a progress
    artifact of the parent, is kept at the mean progress of the children, counted as part
    of `out_of` items (default: the children) whose others are done already.
    """
    waiting = list(children)
    running: dict[UUID, str] = {}
    total = out_of or len(children)
    ended, shown = total - len(children), 0.0
    with get_client(sync_client=True) as client:
        while waiting or running:
            while waiting and len(running) < concurrency:
                key, parameters = waiting.pop(0)
                running[_submit(key, parameters, deployment)] = key
            time.sleep(POLL_SECONDS)
            for run in _read_runs(client, list(running)):
                if run.state and run.state.is_final():
                    ended += 1
                    yield running.pop(run.id), run
            if progress is None:
                continue
            done = 100.0 * ended + sum(flow_progress(client, running).values())
            if done / total != shown:
                shown = done / total
                update_progress_artifact(progress, shown)


def _submit(key: str, parameters: dict, deployment: str) -> UUID:
    """Create the child run (returns at once); a retried parent run gets the same child back."""
    run = run_deployment(
        deployment,
        parameters=parameters,
        timeout=0,
        as_subflow=True,
        idempotency_key=f"{this_run.id}:{key}",
    )
    get_run_logger().info("%s: flow run %s of %s", key, run.name, deployment)
    return run.id


def _read_runs(client: SyncPrefectClient, ids: list[UUID]) -> list[FlowRun]:
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
