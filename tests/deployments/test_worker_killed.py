"""A worker killed mid-chunk (its machine gone): its run turns Crashed by the shipped
automation once its heartbeats stop, and a rerun on another worker finishes the job,
recomputing only the chunks that had no completion marker.

Real server, the on-demand deployment, process workers in their own homes, moto's S3: the
video's run goes to W1 (alone on the pool, heartbeats every 30 s); once one chunk's marker is
in the bucket, W1 and every process under it get SIGKILL (the flow run's process runs in a
session of its own, so the group is not enough). W2 then takes the rerun of the batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from nst_video.deployments.validate import PREFECT_YAML
from tests.deployments.conftest import WAIT_SECONDS, flow_runs, prefect_cli, start_worker, stop
from tests.s3 import admin_client

NST = str(Path(sys.executable).with_name("nst"))
SETTINGS = ("--size", "64", "--first-iterations", "10", "--iterations", "20", "--tolerance", "0")
CHUNKS = ("--chunk-frames", "3", "--overlap", "1", "--max-frames", "12")  # 4 chunks, ~2 s each
AUTOMATIONS = PREFECT_YAML.with_name("automations.yaml")
HEARTBEAT_SECONDS = 30  # the least Prefect sends
SILENT_SECONDS = 90  # the automation's window here: three missed beats (shipped: 600 s)
KILLED_FLOWS = ("stylize-video", "stylize-batch")  # W1's run, and the batch's in the CLI


def _crash_automation() -> dict:
    """The shipped crash-silent-flow-runs automation, its window shortened."""
    (automation,) = yaml.safe_load(AUTOMATIONS.read_text())["automations"]
    automation["trigger"]["within"] = SILENT_SECONDS
    return automation


def _crashed(client, flow_name: str, deadline: float):
    """The one `flow_name` run, once the automation has made it Crashed."""
    while True:
        (run,) = flow_runs(client, flow_name)
        if run.state.is_crashed():
            return run
        assert run.state.is_running(), run.state  # nothing else can end it
        assert time.monotonic() < deadline, f"the killed {flow_name} run never turned Crashed"
        time.sleep(1)


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (children, theirs, ...), from `ps`."""
    rows = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in rows.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_machine(worker: subprocess.Popen) -> None:
    for pid in [worker.pid, *_descendants(worker.pid)]:
        with contextlib.suppress(ProcessLookupError):  # a process that ended meanwhile
            os.kill(pid, signal.SIGKILL)
    worker.wait()


def _markers(s3, bucket: str) -> dict[str, dict]:
    """The chunk completion markers staged for the job: chunk name -> recorded result."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/.nst-staging/").get("Contents", [])
    keys = [o["Key"] for o in listed if "/chunks/" in o["Key"] and o["Key"].endswith(".json")]
    return {
        Path(key).stem: json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for key in keys
    }


def test_a_job_whose_worker_was_killed_resumes_on_another(
    pool_env, s3_bucket, s3_endpoint, basic, assets, tmp_path
):
    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(basic), s3_bucket, "in/clip.mp4")
    s3.upload_file(str(assets / "styles" / "starry_night.jpg"), s3_bucket, "styles/starry.jpg")
    prefect_cli(pool_env, "work-pool", "create", "gpu", "--type", "process")
    prefect_cli(pool_env, "deploy", "--prefect-file", str(PREFECT_YAML), "--name", "on-demand")
    command = [
        NST, "batch", f"s3://{s3_bucket}/in", f"s3://{s3_bucket}/styles/starry.jpg",
        "-o", f"s3://{s3_bucket}/out", "--fan-out", "pool", "--concurrency", "1",
        *SETTINGS, *CHUNKS, "--json",
    ]  # fmt: skip
    automation = _crash_automation()
    prefect_cli(pool_env, "automation", "create", "--from-json", json.dumps(automation))
    beating = {**pool_env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
    w1 = start_worker("W1", beating, tmp_path)
    first = subprocess.Popen(command, env=beating, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not _markers(s3, s3_bucket):
            assert first.poll() is None and w1.poll() is None, "ended before a chunk was staged"
            assert time.monotonic() < deadline, "no chunk staged in time"
            time.sleep(0.1)
    finally:
        _kill_machine(w1)
        first.kill()  # the batch's run: Crashed by the automation too
        first.wait()
    done_before = _markers(s3, s3_bucket)
    assert 1 <= len(done_before) < 4, sorted(done_before)  # killed mid-job

    api = pool_env["PREFECT_API_URL"]
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            killed = [_crashed(client, name, deadline) for name in KILLED_FLOWS]
        finally:  # the rerun's runs beat every 180 s (Prefect's default): not watched
            for created in client.read_automations_by_name(automation["name"]):
                client.delete_automation(created.id)
    for run in killed:
        assert "heartbeats stopped" in run.state.message, run.state.message

    w2 = start_worker("W2", pool_env, tmp_path)
    try:
        rerun = subprocess.run(command, env=pool_env, capture_output=True, text=True, timeout=600)
    finally:
        stop(w2)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (row,) = json.loads(rerun.stdout)["videos"]
    assert row["status"] == "done"
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key="out/clip.mp4.json")["Body"].read())
    chunks = {f"chunk_{c['index']:04d}": c for c in manifest["chunks"]}
    assert set(done_before) <= set(chunks), (sorted(done_before), sorted(chunks))
    # exactly the chunks with a marker were resumed, with the seconds W1 spent on them
    assert {name for name, c in chunks.items() if c["resumed"]} == set(done_before)
    for name, marker in done_before.items():
        assert chunks[name]["seconds"] == marker["seconds"]
    assert manifest["totals"]["resumed_chunks"] == len(done_before)
    assert manifest["totals"]["frames"] == 12
