"""Chunks of one video on a real Dask cluster (2 worker processes), reporting to our server."""

from __future__ import annotations

import logging
import os
import shutil

import distributed
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings

from nst_video.flows.dask_runner import ApiUrlDaskTaskRunner, dask_task_runner
from nst_video.flows.stylize_video import run_stylize_video
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import video

FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)


def test_local_cluster_workers_get_the_flows_api_url(prefect_api_url):
    runner = dask_task_runner(workers=2)
    assert isinstance(runner, ApiUrlDaskTaskRunner)
    assert runner.cluster_kwargs["n_workers"] == 2
    with runner:  # the cluster itself starts on the first submit; env is set on enter
        assert runner.cluster_kwargs["env"]["PREFECT_API_URL"] == prefect_api_url
    assert runner.duplicate().cluster_kwargs["n_workers"] == 2


def test_an_address_without_an_api_url_warns(caplog):
    """The URL counts wherever Prefect's settings have it (here temporary_settings, not the
    environment); only without one are the cluster's workers left to their own servers."""
    address = "tcp://127.0.0.1:1"  # nothing is started: the runner connects on enter
    with caplog.at_level(logging.WARNING, logger="nst_video.flows.dask_runner"):
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
            dask_task_runner(address=address)
        assert not caplog.records
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            dask_task_runner(address=address)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["PREFECT_API_URL is not set"]


def test_chunks_run_in_two_dask_worker_processes(prefect_api_url, basic, assets, tmp_path):
    source = tmp_path / "dask_clip.mp4"  # a unique source names a unique flow run
    shutil.copy(basic, source)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"PREFECT_API_URL": prefect_api_url},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = client.run(os.getpid)  # worker address -> process id
        with distributed.get_task_stream(client) as stream:
            manifest = run_stylize_video(
                str(source),
                [str(assets / "styles" / "starry_night.jpg")],
                str(tmp_path / "out.mp4"),
                FAST,
                chunk_frames=3,
                overlap=1,
                max_frames=12,
                work_dir=str(tmp_path / "w"),
                task_runner=dask_task_runner(address=cluster.scheduler_address),
            )
    assert len(manifest["chunks"]) == 4
    assert video.probe(tmp_path / "out.mp4").frame_count == 12
    workers = {record["worker"] for record in stream.data if "stylize" in record["key"]}
    assert len(workers) == 2, stream.data
    used = {pids[w] for w in workers}
    assert len(used) == 2 and os.getpid() not in used
    with get_client(sync_client=True) as prefect:  # the chunks reported to our server
        runs = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"stylize {source}"]))
        )
    chunk_runs = [r for r in runs if r.name.startswith("stylize chunk")]
    assert len(chunk_runs) == 4 and all(r.state.is_completed() for r in chunk_runs)
