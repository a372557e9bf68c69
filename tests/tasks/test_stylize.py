"""stylize_chunk: real ffmpeg and VGG19 on 48 px frames, a few iterations."""

from __future__ import annotations

import numpy as np
import pytest

from nst_core.errors import InvalidInputError
from nst_core.settings import make_video_settings
from tasks import stylize as stylize_module
from tasks import video
from tasks.plan import Chunk
from tasks.stylize import stylize_chunk

FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


def test_chunk_writes_its_frames_after_a_discarded_warmup(basic, style, tmp_path):
    segment = tmp_path / "chunk_0001.mp4"
    result = stylize_chunk(basic, [style], FAST, Chunk(1, 4, 5, 3), segment)
    assert video.probe(segment).frame_count == 5 == result.frames
    assert (result.start, result.warmup, result.resumed) == (4, 3, False)
    assert result.iterations == 6 + 7 * 2  # one cold start, then 3 warm-up + 4 warm frames
    source = np.stack(list(video.read_frames(basic, start=4, count=5, size=48))).astype(float)
    styled = np.stack(list(video.read_frames(segment))).astype(float)
    assert np.abs(styled - source).mean() > 5  # stylized, not copied


def test_finished_chunk_is_not_recomputed(basic, style, tmp_path):
    segment = tmp_path / "chunk_0000.mp4"
    first = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 4, 0), segment)
    written = segment.stat().st_mtime_ns
    again = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 4, 0), segment)
    assert again.resumed and again.seconds == first.seconds
    assert segment.stat().st_mtime_ns == written


def test_cut_inside_a_chunk_restarts_the_chain(two_scenes, style, tmp_path):
    chunk = Chunk(0, 8, 8, 0)
    result = stylize_chunk(two_scenes, [style], FAST, chunk, tmp_path / "c.mp4", cuts=[12])
    assert result.iterations == 2 * 6 + 6 * 2  # cold at 8 and at the cut, warm otherwise


def test_failed_chunk_leaves_no_segment_or_marker(basic, style, tmp_path, monkeypatch):
    def broken(frames, path, *args, **kwargs):
        next(iter(frames))
        raise InvalidInputError(f"{path}: disk full (injected)")

    monkeypatch.setattr(stylize_module, "write_frames", broken)
    with pytest.raises(InvalidInputError, match="disk full"):
        stylize_chunk(basic, [style], FAST, Chunk(0, 0, 4, 0), tmp_path / "chunk_0000.mp4")
    assert list(tmp_path.iterdir()) == []
