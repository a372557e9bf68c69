"""mux_audio on real media: the source's audio as it plays, for the whole video or a range."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nst_video.tasks import video
from nst_video.tasks.video import header as headers
from tests.media import FPS, md5


@pytest.fixture
def stylized(tmp_path: Path, basic_frames: list[np.ndarray]) -> Path:
    """The 12 frames (0.4 s) of a whole clip, written again without audio."""
    out = tmp_path / "stylized.mp4"
    video.write_frames(basic_frames, out, Fraction(FPS))
    return out


def test_audio_that_outlasts_the_video_is_kept_whole(
    tmp_path: Path, stylized: Path, with_long_audio: Path
) -> None:
    out = video.mux_audio(stylized, with_long_audio, tmp_path / "final.mp4")
    assert md5(out, "0:a") == md5(with_long_audio, "0:a")
    assert headers.read_header(out).duration == pytest.approx(2.0, abs=0.05)  # the audio's
    assert md5(out, "0:v") == md5(stylized, "0:v")
    assert video.probe(out).frame_count == 12


def test_audio_of_a_range_follows_the_range(
    tmp_path: Path, basic_frames: list[np.ndarray], with_long_audio: Path
) -> None:
    part = tmp_path / "part.mp4"
    video.write_frames(basic_frames[3:9], part, Fraction(FPS))  # 0.1 s .. 0.3 s
    out = video.mux_audio(
        part, with_long_audio, tmp_path / "final.mp4", audio_start=0.1, audio_duration=0.2
    )
    assert headers.read_header(out).duration == pytest.approx(0.2, abs=0.05)
    assert video.probe(out).frame_count == 6 and video.probe(out).has_audio


def test_a_negative_audio_range_is_refused(
    tmp_path: Path, stylized: Path, with_long_audio: Path
) -> None:
    with pytest.raises(ValueError, match="audio range"):
        video.mux_audio(stylized, with_long_audio, tmp_path / "final.mp4", audio_duration=0)
    assert not (tmp_path / "final.mp4").exists()
