"""Chunks of one S3 video on a Dask cluster started with the `dask` CLI, sharing nothing.

`dask scheduler` and two `dask worker` processes, each worker with its own HOME, working
directory, TMPDIR and PREFECT_HOME, no NST_WORK_DIR or NST_CACHE_DIR: the workers share only
the Prefect server (a real `prefect server start`) and the bucket (moto's S3 server). The
video, its style and its output are on S3, so the job stages beside the output, in
``out/.nst-staging/`` (tasks/staging.py).

After the job, only its inputs, output and manifest are in the bucket. "Staging" is the job's
keyframes, chunk segments and completion markers (tasks/staging.py): a worker makes each in
a temporary file (``nst-made-*`` under its TMPDIR) that it uploads and removes, and never
stages locally (the work root is the S3 prefix). What a worker keeps is its content cache,
``~/.cache/nst-video/staged/<job>/<hash>/<name>``: the fetched source, style and keyframes,
which stay by design (docs/deployment.md, "Staging and resume": only the flow machine's
cache is cleaned). So the test asserts that no segment, marker or temporary file is left in
a worker's folder and that every job file there is a cached copy of a fetched input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest
from botocore.client import BaseClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings

from nst_video.flows.dask_runner import dask_task_runner
from nst_video.flows.stylize_video import run_stylize_video
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import video
from tests.deployments.conftest import free_port, job_files, stop
from tests.s3 import admin_client

DASK = str(Path(sys.executable).with_name("dask"))
FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)
WORKERS = ("w1", "w2")
LOCAL_ONLY = ("NST_WORK_DIR", "NST_CACHE_DIR", "TMPDIR")  # each process its own


@pytest.fixture
def cluster_env(real_server, s3_endpoint, vgg_weights) -> dict:
    """The environment of scheduler and workers: the real server, moto's S3, the weights."""
    _, env = real_server
    passed = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k == "PYTHONPATH"}
    return {
        **{k: v for k, v in env.items() if k not in LOCAL_ONLY},
        **passed,
        "NST_VGG19_WEIGHTS": str(vgg_weights.path),
    }


def _start(name: str, args: list[str], env: dict, root: Path) -> subprocess.Popen:
    """`dask ARGS` in its own folder (HOME, cwd, TMPDIR, PREFECT_HOME), logging to NAME.log."""
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
            [DASK, *args], env=own, cwd=home, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


@pytest.fixture
def cluster(cluster_env, tmp_path) -> Iterator[str]:
    """A scheduler and two single-threaded workers, separate processes; yields its address."""
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rpartition(":")[2]
    scheduler_args = ["scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
    worker_args = ["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
    procs = [_start("scheduler", scheduler_args, cluster_env, tmp_path)]
    try:
        for name in WORKERS:
            procs.append(_start(name, [*worker_args, "--name", name], cluster_env, tmp_path))
        yield address
    finally:
        for proc in reversed(procs):  # workers first
            stop(proc)


def test_chunks_run_on_two_dask_cli_workers_sharing_nothing(
    cluster, cluster_env, s3_endpoint, s3_bucket, basic, assets, tmp_path, monkeypatch
):
    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(basic), s3_bucket, "in/clip.mp4")
    s3.upload_file(str(assets / "styles" / "starry_night.jpg"), s3_bucket, "styles/starry.jpg")
    source, destination = f"s3://{s3_bucket}/in/clip.mp4", f"s3://{s3_bucket}/out/x.mp4"
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "flow-cache"))
    with (
        temporary_settings({PREFECT_API_URL: cluster_env["PREFECT_API_URL"]}),
        distributed.Client(cluster, timeout=60) as client,
    ):
        client.wait_for_workers(len(WORKERS), timeout=120)
        pids = client.run(os.getpid)  # worker address -> process id
        folders = client.run(os.getcwd)  # worker address -> working directory
        with distributed.get_task_stream(client) as stream:
            manifest = run_stylize_video(
                source,
                [f"s3://{s3_bucket}/styles/starry.jpg"],
                destination,
                FAST,
                chunk_frames=3,
                overlap=1,
                max_frames=12,
                task_runner=dask_task_runner(address=cluster),
            )
        with get_client(sync_client=True) as prefect:
            runs = prefect.read_task_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"stylize {source}"]))
            )
    assert set(folders.values()) == {str(tmp_path / name) for name in WORKERS}
    # the output, from S3
    local = tmp_path / "x.mp4"
    s3.download_file(s3_bucket, "out/x.mp4", str(local))
    assert video.probe(local).frame_count == 12
    # every chunk completed, reported to the server, on both workers (not this process)
    chunk_runs = [r for r in runs if r.name.startswith("stylize chunk")]
    assert len(chunk_runs) == len(manifest["chunks"]) == 4
    assert all(r.state.is_completed() for r in chunk_runs), [r.state for r in chunk_runs]
    used = {pids[r["worker"]] for r in stream.data if r["key"].startswith("stylize_chunk")}
    assert len(used) == 2 and os.getpid() not in used, stream.data
    _assert_no_staging(s3, s3_bucket, tmp_path, manifest["job_id"])


def _assert_no_staging(s3: BaseClient, bucket: str, root: Path, job: str) -> None:
    """Nothing staged left in the bucket, in the flow's cache, or in the workers' folders
    but their caches of fetched inputs (the module's docstring says why those stay)."""
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert {o["Key"] for o in listing} == {
        "in/clip.mp4", "styles/starry.jpg", "out/x.mp4", "out/x.mp4.json",
    }  # fmt: skip
    assert not (root / "flow-cache" / "staged" / job).exists()
    for name in WORKERS:
        cache = root / name / ".cache" / "nst-video" / "staged" / job
        left = job_files(root / name)
        assert left, f"{name} fetched nothing"  # its chunks read the source from its cache
        assert not [p for p in left if "chunk_" in p.name or "nst-made-" in p.name], left
        assert all(p.parent.parent == cache for p in left), left  # <job>/<hash>/<name>
