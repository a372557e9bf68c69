"""The memory guard in the video flow: a frame too big for the budget is stylized smaller,
upscaled back, logged and recorded (real Prefect server, ffmpeg and VGG19, 48 px frames)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nst_video.flows.stylize_video import stylize_video
from nst_video.nst_core.memory import ENV_LIMIT, estimate_bytes
from nst_video.nst_core.settings import make_video_settings
from nst_video.nst_core.size import Size
from nst_video.tasks import video

# float32: the budget below is a float32 estimate (the default "auto" may mean bfloat16).
FAST = make_video_settings(
    size=48, first_iterations=6, iterations=2, tolerance=0.0, precision="float32"
)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


def test_frames_too_big_for_the_budget_are_reduced_then_upscaled(
    prefect_api_url, basic, style, tmp_path, monkeypatch, caplog
):
    # A budget that holds a 32x24 step but not the requested 48x36 one (basic is 64x48).
    monkeypatch.setenv(ENV_LIMIT, f"{(estimate_bytes(Size(32, 24)) + 1000) / 1e9:.9f}")
    out = tmp_path / "styled.mp4"
    with caplog.at_level(logging.WARNING):
        manifest = stylize_video(
            str(basic), [style], str(out), FAST, chunk_frames=6, overlap=2,
            work_dir=str(tmp_path / "work"),
        )  # fmt: skip
    styled = video.probe(out)
    assert (styled.width, styled.height) == (48, 36) and styled.frame_count == 12
    memory = manifest["memory"]
    assert memory["strategy"] == "reduce"
    assert memory["requested"] == [48, 36] and memory["processing"] == [32, 24]
    assert ENV_LIMIT in memory["budget_source"]
    assert [c["processing"] for c in manifest["chunks"]] == [[32, 24], [32, 24]]
    assert json.loads(Path(str(out) + ".json").read_text())["memory"] == memory
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "memory guard" in m and str(basic) in m and "48x36" in m and "32x24" in m for m in warnings
    ), warnings


def test_without_pressure_nothing_is_reduced(prefect_api_url, basic, style, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_LIMIT, "100")
    out = tmp_path / "styled.mp4"
    manifest = stylize_video(
        str(basic), [style], str(out), FAST, chunk_frames=12, work_dir=str(tmp_path / "w")
    )
    assert manifest["memory"]["strategy"] == "none"
    assert manifest["memory"]["processing"] == manifest["memory"]["requested"] == [48, 36]
    assert manifest["chunks"][0]["processing"] == [48, 36]
