"""`nst report` on a real stylized clip (with and without its manifest) and on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nst_video.flows.stylize_video import stylize_video
from nst_video.nst_cli.main import main
from nst_video.nst_core.settings import make_video_settings


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def stylized(prefect_api_url, basic, assets, tmp_path_factory) -> Path:
    """`basic` (12 frames) stylized in two chunks (a seam at frame 6) by the flow `nst video`
    runs (here, not through main(): the flow's loggers must not keep a test's capsys)."""
    folder = tmp_path_factory.mktemp("report")
    out = folder / "styled.mp4"
    settings = make_video_settings(size=48, first_iterations=3, iterations=2, tolerance=0.0)
    style = str(assets / "styles" / "starry_night.jpg")
    plan = {"chunk_frames": 6, "overlap": 2, "work_dir": str(folder / "w")}
    stylize_video(str(basic), [style], str(out), settings, **plan)
    return out


def test_report_of_a_stylized_clip(stylized, basic, tmp_path, capsys):
    code, text, _ = _run(["report", basic, stylized, "--json"], capsys)
    manifest = json.loads(Path(f"{stylized}.json").read_text())
    report = json.loads(text)
    assert code == 0 and report["seam_frames"] == [6]
    assert {name: report[name] for name in manifest["quality"]} == manifest["quality"]

    code, text, _ = _run(["report", basic, stylized], capsys)
    assert code == 0 and "12 frames at 48x36 (1 seam, from its manifest)" in text
    assert "seam jump" in text and "worst of 1 seam:" in text and "still churn" in text

    bare = tmp_path / "bare.mp4"  # the same video without its manifest: no seams known
    shutil.copy(stylized, bare)
    code, text, _ = _run(["report", basic, bare, "--json"], capsys)
    report = json.loads(text)
    assert code == 0 and report["seam_frames"] == [] and report["seam_jump"] is None
    assert report["still_churn_255"] == manifest["quality"]["still_churn_255"]


@pytest.mark.parametrize(
    ("clip", "reason"),
    [("png_as_mp4", "not a video"), ("vfr", "12 frames but")],
)
def test_bad_input_fails_on_one_line(clip, reason, request, basic, capsys):
    source = request.getfixturevalue(clip)
    code, out, err = _run(["report", source, basic], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert reason in err and source.name in err, err
