"""The `nst` command line: real runs in-process (fast) and one through the console script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nst_video.nst_cli.main import main
from nst_video.nst_core.precision import resolve_precision

NST = str(Path(sys.executable).with_name("nst"))


@pytest.fixture
def paths(assets, tmp_path):
    return {
        "content": str(assets / "content" / "bottles.jpg"),
        "style": str(assets / "styles" / "starry_night.jpg"),
        "out": tmp_path / "out.jpg",
    }


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_image_json_reports_lower_loss_and_writes_file(paths, capsys, vgg_weights):
    args = ["image", paths["content"], paths["style"], "-o", str(paths["out"])]
    code, out, err = _run([*args, "--size", "64", "--iterations", "30", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["final_loss"] < report["initial_loss"]
    assert report["iterations"] == 30 and report["output"] == str(paths["out"])
    assert paths["out"].stat().st_size > 500
    assert report["precision"] == resolve_precision("auto")  # the default, as resolved here


def test_image_in_bfloat16_is_a_different_job_of_the_same_quality(paths, capsys, vgg_weights):
    args = ["image", paths["content"], paths["style"], "-o", str(paths["out"])]
    reports = []
    for precision in ("float32", "bfloat16"):
        extra = ["--size", "48", "--iterations", "20", "--precision", precision, "--json"]
        code, out, err = _run([*args, *extra], capsys)
        assert code == 0, err
        reports.append(json.loads(out))
    float32, bfloat16 = reports
    assert bfloat16["precision"] == "bfloat16"
    assert bfloat16["settings_hash"] != float32["settings_hash"]
    assert bfloat16["final_loss"] < 1.05 * float32["final_loss"]


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--size", "0"], 2, "invalid setting size"),
        (["--size", "-3"], 2, "invalid setting size"),
        (["--size", "100000"], 2, "invalid setting size"),
        (["--style-weight", "-1"], 2, "style_weight"),
        (["--content-layers", "block7_conv1"], 2, "unknown layer"),
        (["--style-blend-weights", "1,2"], 2, "2 values for 1 style"),
        (["--style-blend-weights", "a,b"], 2, "not a list of numbers"),
        (["--optimizer", "sgd"], 2, "optimizer"),
        (["--precision", "fp16"], 2, "invalid setting precision"),
        (["--no-such-flag"], 2, "no-such-flag"),
    ],
)
def test_usage_errors_are_one_line_exit_2(paths, capsys, extra, code, fragment):
    args = ["image", paths["content"], paths["style"], "-o", str(paths["out"]), *extra]
    got, _, err = _run(args, capsys)
    assert got == code
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not paths["out"].exists()


@pytest.mark.parametrize("bad", ["missing.jpg", "empty.jpg", "text.jpg"])
def test_bad_input_files_are_one_line_exit_1(paths, tmp_path, capsys, bad):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    args = ["image", str(tmp_path / bad), paths["style"], "-o", str(paths["out"]), "--size", "64"]
    code, _, err = _run(args, capsys)
    assert code == 1 and bad in err and err.count("\n") == 1
    assert not paths["out"].exists()


def test_missing_output_folder_fails_before_work(paths, tmp_path, capsys):
    out = tmp_path / "nowhere" / "out.jpg"
    code, _, err = _run(["image", paths["content"], paths["style"], "-o", str(out)], capsys)
    assert code == 1 and "does not exist" in err
    assert not out.parent.exists()


def test_console_script_weights_verify_and_image(paths, tmp_path):
    weights = subprocess.run([NST, "weights", "--verify"], capture_output=True, text=True)
    assert weights.returncode == 0, weights.stderr
    assert "sha256" in weights.stdout
    args = [NST, "image", paths["content"], paths["style"], "-o", str(paths["out"])]
    run = subprocess.run(
        [*args, "--size", "48", "--iterations", "5", "--json"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["iterations"] == 5
    assert paths["out"].exists()
    bad = subprocess.run(
        [NST, "image", "nope.jpg", paths["style"], "-o", "x.jpg"], text=True, capture_output=True
    )
    assert bad.returncode == 1 and bad.stderr.strip() == "nst: error: nope.jpg: no such file"
