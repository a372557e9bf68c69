"""A real, local Prefect server for tests, benchmarks and screenshots.

`prefect server start` on a free port of 127.0.0.1, SQLite in the given PREFECT_HOME,
analytics off; the environment it returns points Prefect clients (and the `prefect` and
`nst` commands) at it. Not for production: docs/deployment.md runs a real server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PREFECT = str(Path(sys.executable).with_name("prefect"))
START_SECONDS = 90.0  # for the server to answer /health: a condition, not a measured time


class ServerError(RuntimeError):
    """The server exited or did not become healthy; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(home: Path, base: str, **settings: str) -> dict:
    """This process's environment without PREFECT_* settings, plus those of the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return env | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"{base}/api",
        **settings,
    }


def start_server(home: Path, **settings: str) -> tuple[subprocess.Popen, str, dict]:
    """Start a server logging to home/server.log; -> (process, base URL, client env).

    `settings` are extra PREFECT_* variables for the server. The client env adds
    PREFECT_API_URL (base URL + "/api"). Raises ServerError if it is not healthy in time.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(home, base, **settings)
    log = home / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_healthy(f"{base}/api", proc, log)
    except ServerError:
        stop(proc)
        raise
    return proc, base, {**env, "PREFECT_API_URL": f"{base}/api"}


def _wait_healthy(api: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    tail = log.read_text()[-2000:]
    raise ServerError(f"prefect server not healthy after {START_SECONDS} s: {tail}")


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL the process group after `grace` seconds: a worker busy with a
    run may not stop in time, and teardown must not hide a test's own failure."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
