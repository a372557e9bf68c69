"""Staging in the object store, resume from another machine, retries only where they help:
a real Prefect server, moto's S3 server, real ffmpeg and VGG19 on 48 px frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from nst_video.flows.stylize_video import stylize_video
from nst_video.nst_cli.main import main as nst
from nst_video.nst_core.errors import InvalidInputError, NSTError
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import assemble as assembly
from nst_video.tasks import prefect_tasks, staging, storage
from tests.s3 import admin_client, start_moto

FAST = make_video_settings(size=48, first_iterations=3, iterations=2, tolerance=0.0)
# Run in a child process: the flow, with chunk 2's encoding blocked, so that it can be killed
# with chunks 0 and 1 staged and chunk 2 not.
KILLED_RUN = """
import sys, threading
from nst_video.nst_core.settings import VideoSettings
from nst_video.tasks import stylize
from nst_video.flows.stylize_video import stylize_video

real = stylize.write_frames
def blocking(frames, path, *args, **kwargs):
    if "chunk_0002" in str(path):
        threading.Event().wait()
    return real(frames, path, *args, **kwargs)
stylize.write_frames = blocking
source, style, out, work, settings = sys.argv[1:]
stylize_video(source, [style], out, VideoSettings.model_validate_json(settings),
              chunk_frames=4, overlap=2, work_dir=work)
"""


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """This machine's cache of staged files, in the test's folder."""
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "staged"


def _keys(bucket: str, prefix: str) -> list[str]:
    listing = admin_client(os.environ["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=bucket, Prefix=prefix
    )
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _task_runs(state) -> dict[str, list[int]]:
    """Run counts of a flow run's task runs, by task run name less its "-<suffix>"."""
    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flow_run)
    counts: dict[str, list[int]] = {}
    for run in runs:
        counts.setdefault(run.name.rpartition("-")[0] or run.name, []).append(run.run_count)
    return counts


def test_s3_job_stages_beside_its_destination_and_cleans_up(
    prefect_api_url, s3_endpoint, s3_bucket, basic, style, cache, tmp_path, monkeypatch
):
    admin_client(s3_endpoint).upload_file(str(basic), s3_bucket, "in/clip.mp4")
    source, destination = f"s3://{s3_bucket}/in/clip.mp4", f"s3://{s3_bucket}/out/clip.mp4"

    def corrupt_mux(*args, **kwargs):
        raise InvalidInputError("clip.mp4: mux failed (injected)")

    with monkeypatch.context() as patch:
        patch.setattr(assembly, "mux_audio", corrupt_mux)
        state = stylize_video(
            source, [style], destination, FAST, chunk_frames=4, overlap=2, return_state=True
        )
    assert state.is_failed()
    staged = _keys(s3_bucket, "out/.nst-staging/")
    markers = [key for key in staged if key.endswith(".json")]
    assert len(markers) == 3 and all("/chunks/chunk_000" in key for key in markers), staged
    assert sum(key.endswith(".npz") for key in staged) == 1  # the shot's keyframe
    assert _keys(s3_bucket, "out/clip") == []  # nothing published
    runs = _task_runs(state)
    assert runs["assemble"] == [1], runs  # an InvalidInputError is not retried
    assert len(runs["upload-staged"]) == 1 + 3 * 2  # keyframe, then segment + marker each

    manifest = stylize_video(source, [style], destination, FAST, chunk_frames=4, overlap=2)
    assert [c["resumed"] for c in manifest["chunks"]] == [True, True, True]
    assert [k["resumed"] for k in manifest["keyframes"]] == [True]
    assert _keys(s3_bucket, "out/.nst-staging/") == []  # finished: staging removed
    assert _keys(s3_bucket, "out/") == ["out/clip.mp4", "out/clip.mp4.json"]
    assert not (cache / manifest["job_id"]).exists()


def test_killed_job_resumes_on_another_machine(
    prefect_api_url, s3_endpoint, s3_bucket, basic, style, tmp_path, monkeypatch, capsys
):
    admin_client(s3_endpoint).upload_file(str(basic), s3_bucket, "in/clip.mp4")
    source, out = f"s3://{s3_bucket}/in/clip.mp4", str(tmp_path / "styled.mp4")
    work = f"s3://{s3_bucket}/work"
    machine_a = tmp_path / "machine-a"
    env = {
        **os.environ,
        "HOME": str(machine_a),
        "NST_CACHE_DIR": str(machine_a / "cache"),
        "PREFECT_API_URL": prefect_api_url,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    args = [source, style, out, work, FAST.model_dump_json()]
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, *args], env=env)
    try:
        deadline = time.monotonic() + 600
        while len([k for k in _keys(s3_bucket, "work/") if k.endswith(".json")]) < 2:
            assert child.poll() is None, "the child run ended before chunk 2"
            assert time.monotonic() < deadline, "chunks 0 and 1 were never staged"
            time.sleep(0.5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    assert nst(["jobs", work]) == 0
    listed = capsys.readouterr().out
    assert "1 unfinished job(s)" in listed and "2 chunk(s) done" in listed, listed

    monkeypatch.setenv("HOME", str(tmp_path / "machine-b"))
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "machine-b" / "cache"))
    manifest = stylize_video(source, [style], out, FAST, chunk_frames=4, overlap=2, work_dir=work)
    assert [c["resumed"] for c in manifest["chunks"]] == [True, True, False]
    assert [k["resumed"] for k in manifest["keyframes"]] == [True]
    assert manifest["totals"]["frames"] == 12 and Path(out).is_file()
    assert _keys(s3_bucket, "work/") == []


def test_nst_jobs_lists_and_removes_an_abandoned_local_job(tmp_path, capsys):
    work = tmp_path / "work"
    job = "0123456789abcdef"
    (work / job / "chunks").mkdir(parents=True)
    (work / job / "chunks" / "chunk_0000.json").write_text("{}")
    (work / job / "chunks" / "chunk_0000.mp4").write_bytes(b"x" * 2048)
    (work / "train-inputs").mkdir()  # not a job
    assert nst(["jobs", str(work)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == f"1 unfinished job(s) under {work}"
    assert job in listed[1] and "1 chunk(s) done" in listed[1]
    assert nst(["jobs", str(work), "--remove", "fedcba9876543210"]) == 1
    assert "fedcba9876543210: nothing staged under" in capsys.readouterr().err
    assert nst(["jobs", str(work), "--remove", job]) == 0
    assert not (work / job).exists() and (work / "train-inputs").is_dir()


def test_a_corrupt_video_fails_at_once_without_retries(prefect_api_url, style, cache, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    state = stylize_video(
        str(corrupt), [style], str(tmp_path / "o.mp4"), FAST,
        work_dir=str(tmp_path / "w"), return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    with pytest.raises(NSTError) as caught:
        state.result()
    assert "corrupt.mp4" in str(caught.value) and "\n" not in str(caught.value)
    assert _task_runs(state)["probe"] == [1]  # failed once, not retried


def test_a_staging_upload_survives_an_outage_by_retrying(
    prefect_api_url, s3_endpoint, s3_bucket, tmp_path, monkeypatch
):
    """A real outage: the endpoint's port is closed on the first attempt and served again
    when Prefect asks whether to retry; the retried upload lands."""
    server, url = start_moto()
    port = int(url.rpartition(":")[2])
    server.stop()
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv(storage.UNAVAILABLE_ENV, "0")  # storage's own retries: none
    servers = []

    def back_up_then_ask(task, task_run, state) -> bool:
        servers.append(start_moto(port)[0])
        return prefect_tasks.transient(task, task_run, state)

    upload = prefect_tasks.upload_staged.with_options(
        retry_delay_seconds=0, retry_condition_fn=back_up_then_ask
    )
    local = tmp_path / "chunk_0000.mp4"
    local.write_bytes(b"segment")
    uri = f"s3://{s3_bucket}/work/0123456789abcdef/chunks/chunk_0000.mp4"
    try:
        state = upload(local, uri, return_state=True)
    finally:
        for started in servers:
            started.stop()
    assert state.is_completed() and len(servers) == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    with get_client(sync_client=True) as client:
        assert client.read_task_run(state.state_details.task_run_id).run_count == 2
    assert _keys(s3_bucket, "work/") == ["work/0123456789abcdef/chunks/chunk_0000.mp4"]


def test_only_transient_failures_are_retried(tmp_path, s3_endpoint, monkeypatch):
    server, url = start_moto()
    server.stop()  # a closed port: connection refused, a real botocore failure
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv(storage.UNAVAILABLE_ENV, "0")
    local = tmp_path / "f.bin"
    local.write_bytes(b"x")
    with pytest.raises(storage.StorageUnavailableError) as unreachable:
        storage.publish(local, "s3://some-bucket/f.bin")
    assert prefect_tasks.is_transient(unreachable.value)
    assert prefect_tasks.is_transient(ConnectionResetError())
    for permanent in (
        InvalidInputError("clip.mp4: corrupt"),
        storage.StorageError("s3://b/k: access denied"),
        ValueError("a bug"),
        None,
    ):
        assert not prefect_tasks.is_transient(permanent)


def test_nst_work_dir_may_name_an_s3_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_WORK_DIR", "s3://bucket/jobs")
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    assert staging.work_root(None, str(tmp_path / "out.mp4")) == "s3://bucket/jobs"
    assert staging.local_work_dir(None) == tmp_path / "cache" / "staged"  # no "s3:" folder made
    assert staging.local_work_dir(str(tmp_path / "w")) == tmp_path / "w"
    monkeypatch.setenv("NST_WORK_DIR", str(tmp_path / "jobs"))
    assert staging.local_work_dir(None) == tmp_path / "jobs"
