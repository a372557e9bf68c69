"""The stylize-video flow keeps what the source shows: its display aspect (non-square
pixels) and all of its audio, on a real Prefect server with real ffmpeg and VGG19."""

from __future__ import annotations

import pytest

from nst_video.flows.stylize_video import stylize_video
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import video
from nst_video.tasks.video import header as headers
from tests.media import md5

TINY = make_video_settings(size=64, first_iterations=2, iterations=2, tolerance=0.0)


def test_non_square_pixels_and_audio_past_the_last_frame(
    prefect_api_url, non_square, assets, tmp_path
):
    out = tmp_path / "styled.mp4"
    style = str(assets / "styles" / "starry_night.jpg")
    manifest = stylize_video(
        str(non_square), [style], str(out), TINY, work_dir=str(tmp_path / "work")
    )
    styled = video.probe(out)
    assert styled.width / styled.height == pytest.approx(16 / 9)  # 160x120 at SAR 4:3
    assert styled.sample_aspect == 1 and styled.frame_count == 6
    assert [c["processing"] for c in manifest["chunks"]] == [[64, 36]]
    assert manifest["memory"]["processing"] == [64, 36]
    assert md5(out, "0:a") == md5(non_square, "0:a")  # every audio packet, bit-exact
    assert headers.read_header(out).duration == pytest.approx(0.5, abs=0.05)  # not 0.2 s
