"""A real Prefect server for the deployment tests: `prefect server start` on a free port,
SQLite in a temporary PREFECT_HOME, and the `prefect` command against it; process workers
of its `gpu` pool, each in its own home."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from nst_video.deployments.validate import REPO_ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))
WAIT_SECONDS = 300  # for a worker to take a run: a condition, not a measured time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """`prefect server start` on a free port; yields (API URL, env for Prefect commands)."""
    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": api,
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    log = home / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_healthy(api, proc, log)
        yield api, {**env, "PREFECT_API_URL": api}
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL the process group after `grace` seconds: a worker busy with a
    run may not stop in time, and teardown must not hide the test's own failure."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def prefect_cli(env: dict, *args: str) -> str:
    done = subprocess.run(
        [PREFECT, "--no-prompt", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def pool_env(real_server, s3_endpoint, vgg_weights) -> dict:
    """The environment of workers and CLI: the test server, moto's S3, the weights file."""
    _, env = real_server
    passed = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k == "PYTHONPATH"}
    return {
        **{k: v for k, v in env.items() if k != "NST_WORK_DIR"},  # each worker its own
        **passed,
        "NST_REPO": str(REPO_ROOT),
        "NST_VGG19_WEIGHTS": str(vgg_weights.path),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


def start_worker(name: str, env: dict, root: Path) -> subprocess.Popen:
    """`prefect worker start` in its own home and working directory, logging to root/NAME.log."""
    home = root / name
    (home / "prefect").mkdir(parents=True)
    own = {**env, "HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
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
