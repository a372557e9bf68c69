"""A real Prefect server for the deployment tests (deployments/local_server.py), the
`prefect` command against it, and process workers of its `gpu` pool, each in its own home."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from nst_video.deployments.local_server import PREFECT, ServerError, free_port, start_server, stop
from nst_video.deployments.validate import REPO_ROOT

__all__ = [
    "PREFECT", "flow_runs", "free_port", "job_files", "pool_env", "prefect_cli", "real_server",
    "start_worker", "stop", "wait_for_worker",
]  # fmt: skip
LOCAL_ONLY = ("NST_WORK_DIR", "NST_CACHE_DIR", "TMPDIR")  # each worker its own
WAIT_SECONDS = 300  # for a worker to take a run: a condition, not a measured time


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """`prefect server start` on a free port; yields (API URL, env for Prefect commands)."""
    home = tmp_path_factory.mktemp("prefect_home")
    try:
        proc, _, env = start_server(home, PREFECT_LOGGING_LEVEL="INFO")
    except ServerError as error:
        pytest.fail(str(error))
    try:
        yield env["PREFECT_API_URL"], env
    finally:
        stop(proc)


def prefect_cli(env: dict, *args: str) -> str:
    done = subprocess.run(
        [PREFECT, "--no-prompt", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def job_files(folder: Path) -> list[Path]:
    """Videos, keyframes, segments, markers and temporary staging files under `folder`."""
    names = ("chunk_", "keyframe_", "nst-made-")
    return [p for p in folder.rglob("*") if p.suffix == ".mp4" or any(n in p.name for n in names)]


@pytest.fixture
def pool_env(real_server, s3_endpoint, vgg_weights) -> dict:
    """The environment of workers and CLI: the test server, moto's S3, the weights file."""
    _, env = real_server
    passed = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k == "PYTHONPATH"}
    return {
        **{k: v for k, v in env.items() if k not in LOCAL_ONLY},
        **passed,
        "NST_REPO": str(REPO_ROOT),
        "NST_VGG19_WEIGHTS": str(vgg_weights.path),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


def start_worker(name: str, env: dict, root: Path) -> subprocess.Popen:
    """`prefect worker start` in its own home, working and temporary directory, logging to
    root/NAME.log."""
    home = root / name
    (home / "prefect").mkdir(parents=True)
    (home / "tmp").mkdir()
    own = {
        **env,
        "HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "TMPDIR": str(home / "tmp"),
    }
    with open(root / f"{name}.log", "w") as log:
        return subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "gpu", "--limit", "1", "--name", name],
            env=own, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def flow_runs(client: SyncPrefectClient, flow_name: str) -> list:
    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def wait_for_worker(
    client: SyncPrefectClient, flow_name: str, name: str, parent: subprocess.Popen
) -> None:
    """Until some `flow_name` run carries the label of worker `name` (fails if the `parent`
    command ended first)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and parent.poll() is None:
        runs = flow_runs(client, flow_name)
        if any(run.labels.get("prefect.worker.name") == name for run in runs):
            return
        time.sleep(0.2)
    ended = "" if parent.poll() is None else parent.communicate()[1][-3000:]
    pytest.fail(f"no {flow_name} run taken by worker {name}; command: {parent.poll()} {ended}")
