"""`nst ... --mode fast`: bad models and refused flags fail on one line before any work;
real runs through the flow with a tiny real network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nst_video.nst_cli import main as cli
from nst_video.nst_cli.main import main
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet
from nst_video.tasks import video
from tests.fast_models import TINY, tiny_model
from tests.media import md5


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def style(assets) -> Path:
    return assets / "styles" / "starry_night.jpg"


@pytest.fixture
def model(style, tmp_path) -> Path:
    return tiny_model(tmp_path / "tiny.keras", [str(style)])


def _bad_model(kind: str, folder: Path, style: Path, assets: Path) -> Path:
    path = folder / f"{kind}.keras"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "plain_keras":
        build_fastnet(TINY).save(path)
    elif kind == "other_network":
        tiny_model(path, [str(style)], card_network=FastNetConfig(width=8, residual_blocks=1))
    elif kind == "other_styles":
        tiny_model(path, [str(assets / "styles" / "the_scream.jpg")])
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "no such model file"),
        ("empty", "model file is empty"),
        ("corrupt", "not a readable model file"),
        ("plain_keras", "not a model of nst-video"),
        ("other_network", "does not match its card"),
        ("other_styles", "trained for other styles"),
    ],
)
def test_bad_models_fail_on_one_line(kind, reason, basic, style, assets, tmp_path, capsys):
    bad = _bad_model(kind, tmp_path, style, assets)
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    args = ["video", basic, style, "-o", out, "--mode", "fast", "--model", bad, "--size", "48"]
    code, _, err = _run(args, capsys)
    assert code == 1, err
    assert err.count("\n") == 1 and bad.name in err and reason in err, err
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    "flag",
    [
        ["--iterations", "40"],  # the default value, but given: still refused
        ["--first-iterations", "3"],
        ["--init", "content"],
        ["--temporal-weight", "1"],
        ["--learning-rate", "0.1"],
        ["--tolerance", "0"],
        ["--scene-threshold", "0"],
        ["--style-weight", "2"],
        ["--style-layers", "block1_conv1"],
        ["--overlap", "0"],
        ["--batch-chunks"],
        ["--motion-fidelity-samples", "2"],
    ],
)
def test_optimization_flags_are_refused_in_fast_mode(flag, basic, style, model, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    args = ["video", basic, style, "-o", out, "--mode", "fast", "--model", model, *flag]
    code, _, err = _run(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{flag[0]} is an optimization setting" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "extra", "fragment"),
    [
        ("image", ["--mode", "fast", "--model", "M", "--iterations", "5"], "--iterations is an"),
        ("image", ["--mode", "fast", "--model", "M", "--seed", "3"], "--seed is an"),
        ("image", ["--mode", "fast"], "needs --model"),
        ("image", ["--model", "M"], "--model is only used with --mode fast"),
        ("video", ["--mode", "quick"], "invalid --mode 'quick'"),
    ],
)
def test_mode_usage_errors(command, extra, fragment, basic, assets, style, tmp_path, capsys):
    source = assets / "content" / "bottles.jpg" if command == "image" else basic
    out = tmp_path / ("o.jpg" if command == "image" else "o.mp4")
    code, _, err = _run([command, source, style, "-o", out, *extra], capsys)
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.fixture
def env(prefect_api_url, tmp_path) -> dict:
    return {**os.environ, "PREFECT_API_URL": prefect_api_url, "NST_WORK_DIR": str(tmp_path / "w")}


def _nst(env: dict, *args) -> subprocess.CompletedProcess:
    """`nst` as users run it, in a subprocess: runs with flows keep Prefect's logging out of
    this process's captured streams."""
    command = [sys.executable, "-m", "nst_video.nst_cli.main", *map(str, args)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def test_video_fast_through_the_flow_keeps_audio(env, with_short_audio, style, model, tmp_path):
    out = tmp_path / "styled.mp4"
    args = ["video", with_short_audio, style, "-o", out, "--mode", "fast", "--model", model]
    report = json.loads(_nst(env, *args, "--size", "48", "--chunk-frames", "5", "--json").stdout)
    assert report["mode"] == "fast" and report["frames"] == 12 and report["iterations"] == 0
    assert report["chunks"] == 3
    source, styled = video.probe(with_short_audio), video.probe(out)
    assert styled.frame_count == 12 and styled.avg_fps == source.avg_fps
    assert abs(styled.duration - source.duration) < 1e-6
    assert md5(out, "0:a") == md5(with_short_audio, "0:a")


def test_batch_fast_stylizes_every_video(env, basic, style, model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(basic, inputs / name)
    dest = tmp_path / "out"
    args = ["batch", inputs, style, "-o", dest, "--mode", "fast", "--model", model]
    assert json.loads(_nst(env, *args, "--size", "48", "--json").stdout)["counts"]["done"] == 2
    for name in ("a.mp4", "b.mp4"):
        manifest = json.loads((dest / f"{name}.json").read_text())
        assert manifest["mode"] == "fast" and video.probe(dest / name).frame_count == 12


def test_image_fast_writes_the_stylized_image(assets, style, model, tmp_path, capsys):
    out = tmp_path / "o.png"
    content = assets / "content" / "bottles.jpg"
    args = ["image", content, style, "-o", out, "--mode", "fast", "--model", model]
    code, stdout, err = _run([*args, "--size", "48", "--original-colors", "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["mode"] == "fast" and report["output"] == str(out)
    with Image.open(out) as image, Image.open(content) as source:
        assert max(image.size) == 48
        assert abs(image.size[0] / image.size[1] - source.size[0] / source.size[1]) < 0.05


def test_demo_fast_without_the_bundled_model_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "ASSETS", tmp_path / "assets")
    out = tmp_path / "demo"
    code, _, err = _run(["demo", "--mode", "fast", "-o", out], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "starry_night_fast.keras: the bundled fast-mode model is not shipped" in err
    assert not out.exists()


def test_demo_fast_with_a_model(env, model, tmp_path):
    out = tmp_path / "demo"
    _nst(env, "demo", "--mode", "fast", "--model", model, "-o", out)
    result = out / "bottles_starry_night.mp4"
    assert video.probe(result).frame_count == 90 and video.probe(result).has_audio
    assert json.loads(Path(f"{result}.json").read_text())["mode"] == "fast"
    assert (out / "bottles_starry_night_frames.jpg").is_file()
