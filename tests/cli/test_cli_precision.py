"""`--precision auto` on the command line: the default, its help, and what the runs report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nst_video.nst_cli.main import main
from nst_video.nst_core.precision import resolve_precision

NST = str(Path(sys.executable).with_name("nst"))


@pytest.mark.parametrize("command", ["image", "video", "batch", "train"])
def test_help_offers_auto_as_the_default(command, capsys):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--precision" in text
    assert "auto, float32 or bfloat16" in text and "auto: bfloat16 on a GPU" in text
    assert "[default: auto]" in text


def test_image_with_auto_reports_the_resolved_precision(assets, tmp_path, capsys):
    content, style = assets / "content" / "bottles.jpg", assets / "styles" / "starry_night.jpg"
    args = [
        "image", str(content), str(style), "-o", str(tmp_path / "out.png"), "--size", "32",
        "--iterations", "3", "--precision", "auto", "--json",
    ]  # fmt: skip
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["precision"] == report["memory"]["precision"] == resolve_precision("auto")


def test_video_with_auto_runs_and_records_the_resolved_precision(
    prefect_api_url, basic, assets, tmp_path
):
    out = tmp_path / "out.mp4"
    command = [
        NST, "video", str(basic), str(assets / "styles" / "starry_night.jpg"), "-o", str(out),
        "--size", "32", "--first-iterations", "3", "--iterations", "1", "--max-frames", "3",
        "--precision", "auto", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "NST_WORK_DIR": str(tmp_path / "w")}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    resolved = resolve_precision("auto")  # the child runs on this machine and backend
    assert report["precision"] == resolved
    manifest = json.loads(Path(report["manifest"]).read_text())
    assert manifest["settings"]["precision"] == "auto" and manifest["precision"] == resolved
