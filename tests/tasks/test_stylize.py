"""stylize_clip end to end: real ffmpeg, real VGG19, 48 px frames, a few iterations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nst_core.errors import InvalidSettingsError
from nst_core.settings import make_video_settings
from tasks import video
from tasks.stylize import frame_range, stylize_clip
from tests.media import md5

FAST = {"size": 48, "first_iterations": 6, "iterations": 2, "tolerance": 0.0}


@pytest.fixture(scope="module")
def settings():
    return make_video_settings(**FAST)


def test_clip_keeps_frames_fps_duration_and_audio(with_long_audio, starry_64, settings, tmp_path):
    out = tmp_path / "styled.mp4"
    result = stylize_clip(with_long_audio, [starry_64], out, settings)
    source, styled = video.probe(with_long_audio), video.probe(out)
    assert styled.frame_count == source.frame_count == result.frames == 12
    assert styled.avg_fps == source.avg_fps
    assert abs(styled.duration - source.duration) < 1e-6
    assert (styled.width, styled.height) == (48, 36) == (result.width, result.height)
    assert styled.has_audio and styled.audio_codec == source.audio_codec
    assert result.cold_starts == 1 and result.iterations == 6 + 11 * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styled.mp4"]  # no staging left


def test_clip_audio_is_copied_bit_exact(with_short_audio, starry_64, settings, tmp_path):
    out = tmp_path / "styled.mp4"
    stylize_clip(with_short_audio, [starry_64], out, settings)
    assert md5(out, "0:a") == md5(with_short_audio, "0:a")


def test_clip_output_differs_from_the_input(basic, starry_64, settings, tmp_path):
    out = tmp_path / "styled.mp4"
    stylize_clip(basic, [starry_64], out, settings)
    source = np.stack(list(video.read_frames(basic, size=48))).astype(float)
    styled = np.stack(list(video.read_frames(out))).astype(float)
    assert np.abs(styled - source).mean() > 5


def test_scene_cut_restarts_the_chain(two_scenes, starry_64, tmp_path):
    settings = make_video_settings(**FAST, scene_threshold=0.3)
    result = stylize_clip(two_scenes, [starry_64], tmp_path / "cut.mp4", settings)
    assert result.scene_cuts == [12]
    cold = [s.index for s in result.frame_stats if s.cold_start]
    assert cold == [0, 12]


def test_time_range_selects_frames_and_matching_audio(
    with_long_audio, starry_64, settings, tmp_path
):
    out = tmp_path / "part.mp4"
    result = stylize_clip(
        with_long_audio, [starry_64], out, settings, start_seconds=0.1, duration=0.2
    )
    info = video.probe(out)
    assert result.frames == info.frame_count == 6
    assert result.frame_stats[0].index == 3
    assert info.has_audio and info.duration == pytest.approx(0.2)


def test_frame_range_validation(basic):
    info = video.probe(basic)
    assert frame_range(info) == (0, 12)
    assert frame_range(info, 0.1, None, 4) == (3, 4)
    assert info.avg_fps == Fraction(30)
    for bad in [(-1.0, None, None), (1.0, None, None), (0.0, 0.0, None), (0.0, None, 0)]:
        with pytest.raises(InvalidSettingsError, match="basic.mp4"):
            frame_range(info, *bad)


def test_failure_mid_clip_leaves_nothing_behind(basic, starry_64, settings, tmp_path):
    out = tmp_path / "styled.mp4"

    def explode(stats):
        if stats.index == 5:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        stylize_clip(basic, [starry_64], out, settings, progress=explode)
    assert list(tmp_path.iterdir()) == []
