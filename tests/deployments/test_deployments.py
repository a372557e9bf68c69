"""deployments/: prefect.yaml is checked, and a deployment runs on a real server + worker.

The server test starts `prefect server start` (SQLite in a temporary PREFECT_HOME), creates a
process work pool, deploys the on-demand single-video deployment with `prefect deploy` from
deployments/prefect.yaml, starts a worker and waits for a run to write its video.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from nst_video.deployments.validate import (
    PREFECT_YAML,
    REPO_ROOT,
    DeploymentConfigError,
    check_deployment,
    load_deployments,
)
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import video
from tests.deployments.conftest import PREFECT, prefect_cli, stop

FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)
BATCH = {
    "name": "b",
    "entrypoint": "flows/stylize_batch.py:stylize_batch",
    "parameters": {"source": "in", "destination": "out", "styles": ["s.jpg"]},
    "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}],
}


def test_the_shipped_prefect_yaml_is_valid():
    specs = {spec.name: spec for spec in load_deployments(PREFECT_YAML)}
    assert set(specs) == {"nightly-batch", "on-demand", "chunk"}
    assert specs["nightly-batch"].schedules[0][0].cron == "0 2 * * *"
    assert specs["on-demand"].schedules == specs["chunk"].schedules == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedules": [{"cron": "61 * * * *"}]}, "invalid schedule.*Invalid cron string"),
        ({"schedules": [{"cron": "0 2 * * *", "timezone": "Mars/Base"}]}, "invalid schedule"),
        ({"schedules": [{"cron": "0 2 * * *", "interval": 60}]}, "invalid.*exactly one of"),
        ({"parameters": {**BATCH["parameters"], "concurency": 2}}, "unknown parameter.*concurency"),
        ({"parameters": {**BATCH["parameters"], "concurrency": 0}}, "bad parameters.*concurrency"),
        ({"parameters": {**BATCH["parameters"], "settings": {"size": -1}}}, "bad parameters"),
        (
            {"parameters": {"source": "in", "styles": ["s.jpg"]}},
            "a scheduled run needs.*destination",
        ),
        ({"entrypoint": "flows/nope.py:x"}, "entrypoint"),
    ],
)
def test_bad_schedules_and_parameters_are_clear_errors(change, message):
    with pytest.raises(DeploymentConfigError, match=f"deployment 'b': {message}"):
        check_deployment({**BATCH, **change})


def test_validate_command_reports_a_bad_file(tmp_path):
    bad = yaml.safe_load(PREFECT_YAML.read_text())
    bad["deployments"][0]["schedules"] = [{"cron": "every night"}]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(bad))
    from nst_video.deployments.validate import main

    assert main([str(path)]) == 1
    assert main([str(PREFECT_YAML)]) == 0


# --- a real server, pool, deployment and worker ---------------------------------------------


def _run_deployment(client, name: str, parameters: dict, timeout: float = 240):
    """Create a run of deployment `name` and wait until it ends; returns its final state."""
    deployment = client.read_deployment_by_name(name)
    run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.read_flow_run(run.id).state
        if state and state.is_final():
            return state
        time.sleep(1)
    return client.read_flow_run(run.id).state


def test_deployments_run_on_a_process_worker(real_server, basic, assets, tmp_path):
    """Both shipped deployments, created with `prefect deploy --all`, run on a worker."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, env = real_server
    env = {**env, "NST_REPO": str(REPO_ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    prefect_cli(
        env, "work-pool", "create", "gpu", "--type", "process"
    )  # the pool prefect.yaml names
    prefect_cli(env, "deploy", "--prefect-file", str(PREFECT_YAML), "--all")
    style = str(assets / "styles" / "starry_night.jpg")
    out = tmp_path / "styled.mp4"
    incoming, stylized = tmp_path / "incoming", tmp_path / "stylized"
    incoming.mkdir()
    stylized.mkdir()
    (incoming / "clip.mp4").write_bytes(basic.read_bytes())
    log = tmp_path / "worker.log"
    with open(log, "w") as handle:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "gpu", "--limit", "1"],
            env=env, cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            single = _run_deployment(client, "stylize-video/on-demand", {
                "source": str(basic), "styles": [style], "destination": str(out),
                "settings": FAST.model_dump(mode="json"), "chunk_frames": 12,
                "work_dir": str(tmp_path / "w"),
            })  # fmt: skip
            nightly = _run_deployment(client, "stylize-batch/nightly-batch", {
                "source": str(incoming), "destination": str(stylized), "styles": [style],
                "settings": FAST.model_dump(mode="json"), "work_dir": str(tmp_path / "w"),
            })  # fmt: skip
            schedules = client.read_deployment_by_name("stylize-batch/nightly-batch").schedules
    finally:
        stop(worker)
    assert single and single.is_completed(), f"{single}\n{log.read_text()[-3000:]}"
    assert video.probe(out).frame_count == 12
    assert Path(str(out) + ".json").is_file()
    assert nightly and nightly.is_completed(), f"{nightly}\n{log.read_text()[-3000:]}"
    assert video.probe(stylized / "clip.mp4").frame_count == 12
    assert [s.schedule.cron for s in schedules] == ["0 2 * * *"]
