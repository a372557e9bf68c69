"""`nst train`: bad inputs fail on one line before any work; a SIGKILLed training resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nst_video.nst_cli.main import main
from nst_video.nst_cli.train import spread_values
from nst_video.nst_core.fast_model import load_fast_model
from nst_video.tasks.train import CHECKPOINT, load_checkpoint

TINY = [
    "--size", "48", "--crop", "32", "--batch-size", "2", "--width", "4",
    "--residual-blocks", "1", "--frames-per-video", "4", "--tolerance", "0",
]  # fmt: skip


@pytest.fixture
def style(assets) -> Path:
    return assets / "styles" / "starry_night.jpg"


def _run(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_videos_take_several_values():
    args = ["s.jpg", "--videos", "a.mp4", "b.mp4", "-o", "m.keras", "t.jpg", "--videos", "c"]
    assert spread_values(args) == [
        "s.jpg", "--videos", "a.mp4", "--videos", "b.mp4", "-o", "m.keras", "t.jpg",
        "--videos", "c",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value"), [("--crop", "8"), ("--steps", "0"), ("--learning-rate", "-1")]
)
def test_out_of_range_settings_exit_2_naming_the_flag(flag, value, style, basic, tmp_path, capsys):
    out = tmp_path / "m.keras"
    code, err = _run(["train", style, "--videos", basic, "-o", out, *TINY, flag, value], capsys)
    assert code == 2 and err.count("\n") == 1 and flag in err, err
    assert not out.exists()


def _bad(case: str, style: Path, basic: Path, tmp_path: Path) -> tuple[list, str]:
    """(arguments, words of the error) of each bad input."""
    out = tmp_path / "m.keras"
    empty = tmp_path / "empty"
    empty.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = {
        "zero frames": (["--images", empty], "no training frames"),
        "no data": ([], "no training frames"),
        "missing style": (["--videos", basic], "missing.jpg"),
        "missing video": (["--videos", tmp_path / "missing.mp4"], "missing.mp4"),
        "missing images folder": (["--images", tmp_path / "nope"], "nope"),
        "unwritable output": (["--videos", basic, "-o", blocker / "m.keras"], "folder"),
        "not .keras": (["--videos", basic, "-o", tmp_path / "m.h5"], ".keras"),
    }
    extra, words = cases[case]
    styles = [tmp_path / "missing.jpg"] if case == "missing style" else [style]
    output = [] if "-o" in extra else ["-o", out]
    return ["train", *styles, *extra, *output, *TINY], words


@pytest.mark.parametrize(
    "case",
    [
        "zero frames",
        "no data",
        "missing style",
        "missing video",
        "missing images folder",
        "unwritable output",
        "not .keras",
    ],
)
def test_bad_inputs_fail_on_one_line_and_write_nothing(case, style, basic, tmp_path, capsys):
    args, words = _bad(case, style, basic, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, err = _run(args, capsys)
    assert code == 1 and err.count("\n") == 1 and words in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere


def _train_command(style: Path, video: Path, out: Path, steps: int) -> list[str]:
    return [
        sys.executable, "-m", "nst_video.nst_cli.main", "train", str(style),
        "--videos", str(video), "-o", str(out), *TINY, "--steps", str(steps),
        "--checkpoint-every", "4", "--json",
    ]  # fmt: skip


def _wait_for(pattern: str, folder: Path, proc: subprocess.Popen, limit: float = 300) -> Path:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if found := sorted(folder.glob(pattern)):
            return found[0]
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} under {folder} after {limit} s")


def test_a_sigkilled_training_resumes_from_its_last_checkpoint(
    prefect_api_url, style, basic, tmp_path
):
    out = tmp_path / "m.keras"
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "NST_WORK_DIR": str(tmp_path / "w")}
    command = _train_command(style, basic, out, steps=60)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    checkpoint = _wait_for(f"train-*/{CHECKPOINT}", tmp_path / "w", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    run, _ = load_checkpoint(checkpoint, _key_of(checkpoint))
    assert run.step % 4 == 0 and 4 <= run.step < 60

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report["resumed_from_step"] == run.step and report["steps"] == 60
    assert load_fast_model(out)[1].training["resumed_from_step"] == run.step
    assert not checkpoint.parent.exists()  # removed with the finished training


def _key_of(checkpoint: Path) -> str:
    """The training key a checkpoint was saved under (its folder is named by its start)."""
    with np.load(checkpoint) as saved:
        key = json.loads(str(saved["meta"]))["key"]
    assert checkpoint.parent.name == f"train-{key[:16]}"
    return key
