"""`nst video` as users run it: a subprocess against a real Prefect server, killed and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nst_video.tasks import video

NST = str(Path(sys.executable).with_name("nst"))


@pytest.fixture
def env(prefect_api_url, tmp_path):
    return {**os.environ, "PREFECT_API_URL": prefect_api_url, "NST_WORK_DIR": str(tmp_path / "w")}


def _command(source, style, out, *extra):
    fast = ["--size", "48", "--first-iterations", "6", "--iterations", "2", "--tolerance", "0"]
    return [NST, "video", str(source), str(style), "-o", str(out), *fast, "--json", *extra]


def test_video_json_through_the_flow(env, with_long_audio, assets, tmp_path):
    out = tmp_path / "out.mp4"
    style = assets / "styles" / "starry_night.jpg"
    run = subprocess.run(
        _command(with_long_audio, style, out, "--chunk-frames", "4"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["frames"] == 12 and report["chunks"] == 3 and not report["skipped"]
    assert video.probe(out).frame_count == 12
    assert json.loads(Path(report["manifest"]).read_text())["job_id"] == report["job_id"]


def test_killed_job_resumes_without_recomputing_finished_chunks(env, basic, assets, tmp_path):
    out = tmp_path / "out.mp4"
    style = assets / "styles" / "starry_night.jpg"
    slow = ["--chunk-frames", "3", "--first-iterations", "40"]
    command = _command(basic, style, out, *slow)
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    work = Path(env["NST_WORK_DIR"])
    deadline = time.monotonic() + 240
    while not list(work.glob("*/chunks/chunk_0000.json")):
        assert proc.poll() is None, "the job ended before its first chunk finished"
        assert time.monotonic() < deadline, "no chunk finished in time"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in work.glob("*/chunks/chunk_*.json")}
    assert not out.exists() and 1 <= len(done_before) < 4

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = json.loads(Path(str(out) + ".json").read_text())
    resumed = {f"chunk_{c['index']:04d}.json" for c in manifest["chunks"] if c["resumed"]}
    assert resumed == done_before
    assert manifest["totals"]["frames"] == 12 == video.probe(out).frame_count
