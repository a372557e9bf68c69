"""One video's chunks fanned out over a work pool: `nst video --fan-out pool` against a real
server, the chunk deployment from deployments/prefect.yaml and two real process workers,
S3 to S3 through moto's server (the job stages beside its output, on S3).

Spreading is made certain as in test_fan_out.py: W1 starts alone; once it has taken a chunk
it is stopped (SIGSTOP), so the other chunk in flight can only go to W2; once W2 has taken
one, W1 continues.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from nst_video.deployments.validate import PREFECT_YAML
from nst_video.tasks import video
from tests.deployments.conftest import (
    flow_runs,
    job_files,
    prefect_cli,
    start_worker,
    stop,
    wait_for_worker,
)
from tests.s3 import admin_client

NST = str(Path(sys.executable).with_name("nst"))
SETTINGS = ("--size", "48", "--first-iterations", "6", "--iterations", "2", "--tolerance", "0")
CHUNKS = ("--chunk-frames", "3", "--overlap", "1")  # 12 frames: 4 chunks


def test_a_video_fans_its_chunks_out_over_two_workers(
    pool_env, s3_bucket, s3_endpoint, with_short_audio, assets, tmp_path
):
    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(with_short_audio), s3_bucket, "in/clip.mp4")
    style = assets / "styles" / "starry_night.jpg"
    s3.upload_file(str(style), s3_bucket, "styles/starry.jpg")
    prefect_cli(pool_env, "work-pool", "create", "gpu", "--type", "process")
    prefect_cli(pool_env, "deploy", "--prefect-file", str(PREFECT_YAML), "--name", "chunk")
    command = [
        NST, "video", f"s3://{s3_bucket}/in/clip.mp4", f"s3://{s3_bucket}/styles/starry.jpg",
        "-o", f"s3://{s3_bucket}/out/clip.mp4", "--fan-out", "pool", "--concurrency", "2",
        *SETTINGS, *CHUNKS, "--json",
    ]  # fmt: skip
    workers = {"W1": start_worker("W1", pool_env, tmp_path)}
    try:
        with (
            temporary_settings({PREFECT_API_URL: pool_env["PREFECT_API_URL"]}),
            get_client(sync_client=True) as client,
        ):
            run = subprocess.Popen(
                command, env=pool_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            wait_for_worker(client, "stylize-chunk", "W1", run)
            workers["W1"].send_signal(signal.SIGSTOP)
            workers["W2"] = start_worker("W2", pool_env, tmp_path)
            wait_for_worker(client, "stylize-chunk", "W2", run)
            workers["W1"].send_signal(signal.SIGCONT)
            out, err = run.communicate(timeout=900)
            (video_run,) = flow_runs(client, "stylize-video")
            chunk_runs = flow_runs(client, "stylize-chunk")
            parents = {client.read_task_run(r.parent_task_run_id).flow_run_id for r in chunk_runs}
    finally:
        for worker in workers.values():
            worker.send_signal(signal.SIGCONT)
            stop(worker)
    logs = "\n".join((tmp_path / f"{name}.log").read_text()[-2000:] for name in workers)
    assert run.returncode == 0, f"{err[-3000:]}\n{logs}"
    report = json.loads(out)
    assert (report["frames"], report["chunks"], report["resumed_chunks"]) == (12, 4, 0)
    # every chunk is its own run of the chunk deployment, a child of the video run
    assert len(chunk_runs) == 4 and parents == {video_run.id}
    assert {r.labels.get("prefect.worker.name") for r in chunk_runs} == {"W1", "W2"}
    # the same video as one process makes: frames and audio
    pooled = tmp_path / "pooled.mp4"
    s3.download_file(s3_bucket, "out/clip.mp4", str(pooled))
    single = tmp_path / "single.mp4"
    alone = subprocess.run(
        [NST, "video", str(with_short_audio), str(style), "-o", str(single), *SETTINGS, *CHUNKS],
        env={**pool_env, "NST_WORK_DIR": str(tmp_path / "w")}, capture_output=True, text=True,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-3000:]
    expected = video.probe(single)
    assert (video.probe(pooled).frame_count, video.probe(pooled).has_audio) == (
        expected.frame_count,
        expected.has_audio,
    )
    assert expected.has_audio and expected.frame_count == 12
    # no staging left in the bucket; on the workers only their caches of fetched inputs
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert keys == {"in/clip.mp4", "styles/starry.jpg", "out/clip.mp4", "out/clip.mp4.json"}
    left = [p for name in workers for p in job_files(tmp_path / name)]
    assert not [p for p in left if "chunk_" in p.name or "nst-made-" in p.name], left
