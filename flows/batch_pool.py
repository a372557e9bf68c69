"""A batch fanned out over a work pool: one run of the video deployment per video.

Orchestration only, over flows/fan_out.py. Each ended child becomes the batch's summary
row, from the manifest the child wrote beside its output: a manifest unchanged by the run
means the job was done already ("skipped").
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact
from prefect.client.schemas.objects import FlowRun

from nst_video.flows.fan_out import check_deployment, run_children
from nst_video.flows.stylize_video import manifest_uri
from nst_video.nst_core.errors import NSTError, one_line
from nst_video.tasks import storage


def run_on_pool(
    jobs: list[tuple[str, str]], parameters: dict, concurrency: int, deployment: str
) -> list[dict]:
    """Run every (input, output) as a run of `deployment`, `concurrency` at once; -> rows.

    `parameters` go to every run beside source and destination. A child that does not end
    Completed becomes a "failed" row with its state's message; the others go on.
    """
    progress = create_progress_artifact(0.0, description=f"videos of the batch: {len(jobs)}")
    check_deployment(deployment)
    outputs = dict(jobs)
    before = {source: _prepared(output) for source, output in jobs}
    children = [
        (source, {**parameters, "source": source, "destination": output}) for source, output in jobs
    ]
    rows = {
        source: _row(source, outputs[source], before[source], run)
        for source, run in run_children(deployment, children, concurrency, progress)
    }
    return [rows[source] for source, _ in jobs]


def _prepared(output: str) -> str | None:
    """Make a local output's folder; -> the output's manifest before the batch, if any."""
    if not output.startswith("s3://"):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    return _manifest_text(output)


def _manifest_text(output: str) -> str | None:
    manifest = manifest_uri(output)
    return storage.read_text(manifest) if storage.exists(manifest) else None


def _row(source: str, output: str, manifest_before: str | None, run: FlowRun) -> dict:
    """The summary row of a finished child run."""
    seconds = round(run.total_run_time.total_seconds(), 2)
    row = {"video": source, "output": output, "seconds": seconds}
    if not run.state.is_completed():
        message = one_line(f"{run.state.name}: {run.state.message or 'no message'}", limit=300)
        get_run_logger().error("%s failed: %s", source, message)
        return row | {"status": "failed", "frames": 0, "job_id": "", "error": message}
    try:
        text = _manifest_text(output)
        manifest = json.loads(text or "")
    except (NSTError, ValueError) as error:
        message = f"{output}.json: no readable manifest after the run ({one_line(error)})"
        return row | {"status": "failed", "frames": 0, "job_id": "", "error": message}
    return row | {
        "status": "skipped" if text == manifest_before else "done",
        "frames": manifest["totals"]["frames"],
        "job_id": manifest["job_id"],
        "error": "",
    }
