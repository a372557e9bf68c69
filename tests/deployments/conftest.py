"""A real Prefect server for the deployment tests (deployments/local_server.py), and the
`prefect` command against it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nst_video.deployments.local_server import PREFECT, ServerError, free_port, start_server, stop
from nst_video.deployments.validate import REPO_ROOT

__all__ = ["PREFECT", "free_port", "job_files", "prefect_cli", "real_server", "stop"]


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
