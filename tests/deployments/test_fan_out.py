"""A batch fanned out over a work pool: `nst batch --fan-out pool` against a real server, the
on-demand video deployment from deployments/prefect.yaml, and two real process workers.

S3 to S3 through moto's server: inputs, style and outputs are in a bucket, each worker has
its own HOME, Prefect home, working directory and work dir, so nothing is shared between
them but the server and the bucket.

Spreading is made certain, not likely: worker W1 starts alone; once it has taken a video
(its name is on the run's labels) it is stopped (SIGSTOP), so the next video can only go to
W2, which starts then; once W2 has taken one, W1 continues. A worker with `--limit 1` takes
one run at a time, and the batch keeps two in flight (`--concurrency 2`).
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
CLIPS = ("a.mp4", "b.mp4", "c.mp4", "d.mp4")


def test_a_batch_fans_out_over_two_workers(
    pool_env, s3_bucket, s3_endpoint, basic, assets, tmp_path
):
    s3 = admin_client(s3_endpoint)
    for name in CLIPS:
        s3.upload_file(str(basic), s3_bucket, f"in/{name}")
    s3.put_object(Bucket=s3_bucket, Key="in/broken.mp4", Body=basic.read_bytes()[:600])
    s3.upload_file(str(assets / "styles" / "starry_night.jpg"), s3_bucket, "styles/starry.jpg")
    prefect_cli(pool_env, "work-pool", "create", "gpu", "--type", "process")
    prefect_cli(pool_env, "deploy", "--prefect-file", str(PREFECT_YAML), "--name", "on-demand")
    command = [
        NST, "batch", f"s3://{s3_bucket}/in", f"s3://{s3_bucket}/styles/starry.jpg",
        "-o", f"s3://{s3_bucket}/out", "--fan-out", "pool", "--concurrency", "2",
        "--size", "48", "--first-iterations", "6", "--iterations", "2", "--tolerance", "0",
        "--chunk-frames", "12", "--json",
    ]  # fmt: skip
    workers = {"W1": start_worker("W1", pool_env, tmp_path)}
    api = pool_env["PREFECT_API_URL"]
    try:
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            batch = subprocess.Popen(
                command, env=pool_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            wait_for_worker(client, "stylize-video", "W1", batch)
            workers["W1"].send_signal(signal.SIGSTOP)
            workers["W2"] = start_worker("W2", pool_env, tmp_path)
            wait_for_worker(client, "stylize-video", "W2", batch)
            workers["W1"].send_signal(signal.SIGCONT)
            out, err = batch.communicate(timeout=900)
            (batch_run,) = flow_runs(client, "stylize-batch")
            children = flow_runs(client, "stylize-video")
            parents = {client.read_task_run(run.parent_task_run_id).flow_run_id for run in children}
            rerun = subprocess.run(command[:-1], env=pool_env, capture_output=True, text=True)
            (rerun_run,) = [r for r in flow_runs(client, "stylize-batch") if r.id != batch_run.id]
            missing = subprocess.run(
                [*command, "--deployment", "stylize-video/missing"], env=pool_env,
                capture_output=True, text=True,
            )  # fmt: skip
            followed = subprocess.run(
                [NST, "follow", str(batch_run.id), "--json"], env=pool_env, capture_output=True,
                text=True,
            )  # fmt: skip
            children_after_rerun = len(flow_runs(client, "stylize-video"))
    finally:
        for worker in workers.values():
            worker.send_signal(signal.SIGCONT)
            stop(worker)
    logs = "\n".join((tmp_path / f"{name}.log").read_text()[-2000:] for name in workers)
    assert batch.returncode == 1, f"{err[-3000:]}\n{logs}"  # the broken clip fails the batch
    summary = json.loads(out)
    status = {Path(row["video"]).name: row["status"] for row in summary["videos"]}
    assert status == {name: "done" for name in CLIPS} | {"broken.mp4": "failed"}
    (broken,) = [row for row in summary["videos"] if row["status"] == "failed"]
    assert broken["error"].startswith("Failed: "), broken
    assert "broken.mp4" in summary["error"]
    for name in CLIPS:
        local = tmp_path / name
        s3.download_file(s3_bucket, f"out/{name}", str(local))
        assert video.probe(local).frame_count == 12
        s3.head_object(Bucket=s3_bucket, Key=f"out/{name}.json")
    # every video is its own run of the deployment, a child of the batch run
    assert len(children) == len(CLIPS) + 1
    assert parents == {batch_run.id}
    assert {run.labels.get("prefect.worker.name") for run in children} == {"W1", "W2"}
    assert batch_run.state.is_failed()
    # the batch's progress artifact reached 100%, as `nst follow` reads it from the server
    assert followed.returncode == 1, followed.stderr[-2000:]
    assert json.loads(followed.stdout) | {"name": ""} == {
        "id": str(batch_run.id), "name": "", "state": "Failed", "progress": 100.0,
    }  # fmt: skip
    # a rerun without --json: finished videos are skipped (their manifests unchanged), the
    # broken one fails again; the run carries the tag by which the CLI follows it
    assert rerun.returncode == 1, rerun.stderr[-2000:]
    assert f"{len(CLIPS)} skipped, 1 failed" in rerun.stdout
    assert any(tag.startswith("nst-follow-") for tag in rerun_run.tags), rerun_run.tags
    assert children_after_rerun == 2 * len(children)
    # a deployment that is not on the server: one line, before any video
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == (
        "nst: error: deployment 'stylize-video/missing' not found on the Prefect server: "
        "deploy deployments/prefect.yaml first (docs/deployment.md)"
    )
    # nothing staged is left in the bucket or on the workers, each the flow machine of its
    # videos (what stays of the failed job is its fetched input, for `nst jobs` to list)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    outputs = {f"out/{name}{suffix}" for name in CLIPS for suffix in ("", ".json")}
    assert keys == {f"in/{name}" for name in (*CLIPS, "broken.mp4")} | outputs | {
        "styles/starry.jpg"
    }
    left = [p for name in workers for p in job_files(tmp_path / name)]
    assert all(p.name.endswith("-broken.mp4") for p in left), left
