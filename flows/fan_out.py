"""A batch fanned out over a work pool: one run of the video deployment per video.

Orchestration only. The batch submits at most `concurrency` child runs (`run_deployment`,
`as_subflow=True`: each is a child of the batch run in the UI), polls their states through
the API and, as they end, turns each into the batch's summary row. Results come from the
manifest each child writes beside its output (its return value stays on the worker): a
manifest unchanged by the run means the job was done already ("skipped"). The batch's own
progress artifact is the mean progress of its videos: 100 for a finished one, a running
one's chunk progress artifact, 0 for one not started.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run as this_run

from nst_video.flows.stylize_video import manifest_uri
from nst_video.nst_core.errors import InvalidInputError, NSTError, one_line
from nst_video.tasks import storage

POLL_SECONDS = 2.0  # between two reads of the children's states


@dataclass(frozen=True)
class Child:
    """A video's run of the deployment, and the manifest its output had before it."""

    source: str
    output: str
    run_id: UUID
    manifest_before: str | None


def check_deployment(client: SyncPrefectClient, deployment: str) -> None:
    """One clear line when the video deployment is not on this server."""
    try:
        client.read_deployment_by_name(deployment)
    except (ObjectNotFound, ValueError):
        raise InvalidInputError(
            f"deployment {deployment!r} not found on the Prefect server: deploy "
            "deployments/prefect.yaml first (docs/deployment.md)"
        ) from None


def run_on_pool(
    jobs: list[tuple[str, str]], parameters: dict, concurrency: int, deployment: str
) -> list[dict]:
    """Run every (input, output) as a run of `deployment`, `concurrency` at once; -> rows.

    `parameters` go to every run beside source and destination. A child that does not end
    Completed becomes a "failed" row with its state's message; the others go on.
    """
    waiting = list(jobs)
    running: dict[UUID, Child] = {}
    rows: dict[str, dict] = {}
    shown = 0.0
    progress = create_progress_artifact(shown, description=f"videos of the batch: {len(jobs)}")
    with get_client(sync_client=True) as client:
        check_deployment(client, deployment)
        while waiting or running:
            while waiting and len(running) < concurrency:
                child = _submit(*waiting.pop(0), parameters, deployment)
                running[child.run_id] = child
            time.sleep(POLL_SECONDS)
            for run in _read_runs(client, list(running)):
                if run.state and run.state.is_final():
                    child = running.pop(run.id)
                    rows[child.source] = _row(child, run)
            done = 100.0 * len(rows) + sum(_progress_of(client, list(running)).values())
            if done / len(jobs) != shown:
                shown = done / len(jobs)
                update_progress_artifact(progress, shown)
    return [rows[source] for source, _ in jobs]


def _submit(source: str, output: str, parameters: dict, deployment: str) -> Child:
    """Create the child run (returns at once); a retried batch run gets the same child back."""
    if not output.startswith("s3://"):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    before = _manifest_text(output)
    run = run_deployment(
        deployment,
        parameters={**parameters, "source": source, "destination": output},
        timeout=0,
        as_subflow=True,
        idempotency_key=f"{this_run.id}:{source}",
    )
    get_run_logger().info("%s: flow run %s of %s", source, run.name, deployment)
    return Child(source, output, run.id, before)


def _read_runs(client: SyncPrefectClient, ids: list[UUID]) -> list[FlowRun]:
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))


def _progress_of(client: SyncPrefectClient, ids: list[UUID]) -> dict[UUID, float]:
    """Each run's progress artifact (percent), for the runs that have one."""
    if not ids:
        return {}
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=ids),
        )
    )
    return {a.flow_run_id: float(a.data) for a in artifacts if a.flow_run_id and a.data}


def _manifest_text(output: str) -> str | None:
    manifest = manifest_uri(output)
    return storage.read_text(manifest) if storage.exists(manifest) else None


def _row(child: Child, run: FlowRun) -> dict:
    """The summary row of a finished child run."""
    seconds = round(run.total_run_time.total_seconds(), 2)
    row = {"video": child.source, "output": child.output, "seconds": seconds}
    if not run.state.is_completed():
        message = one_line(f"{run.state.name}: {run.state.message or 'no message'}", limit=300)
        get_run_logger().error("%s failed: %s", child.source, message)
        return row | {"status": "failed", "frames": 0, "job_id": "", "error": message}
    try:
        text = _manifest_text(child.output)
        manifest = json.loads(text or "")
    except (NSTError, ValueError) as error:
        message = f"{child.output}.json: no readable manifest after the run ({one_line(error)})"
        return row | {"status": "failed", "frames": 0, "job_id": "", "error": message}
    return row | {
        "status": "skipped" if text == child.manifest_before else "done",
        "frames": manifest["totals"]["frames"],
        "job_id": manifest["job_id"],
        "error": "",
    }
