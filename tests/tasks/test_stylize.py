"""stylize_chunk: real ffmpeg and VGG19 on 48 px frames, a few iterations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import stylize as stylize_module
from nst_video.tasks import video
from nst_video.tasks.plan import Chunk
from nst_video.tasks.staging import Staging
from nst_video.tasks.stylize import crossfade_frames, stylize_chunk, stylize_keyframe

FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


def test_chunk_writes_its_warmup_and_its_frames(basic, style, tmp_path):
    segment = tmp_path / "chunks" / "chunk_0001.mp4"
    result = stylize_chunk(basic, [style], FAST, Chunk(1, 4, 5, 3), Staging(str(tmp_path)))
    assert video.probe(segment).frame_count == 3 + 5 and result.frames == 5
    assert (result.start, result.warmup, result.resumed) == (4, 3, False)
    assert result.iterations == 6 + 7 * 2  # one cold start, then 3 warm-up + 4 warm frames
    source = np.stack(list(video.read_frames(basic, start=1, count=8, size=48))).astype(float)
    styled = np.stack(list(video.read_frames(segment))).astype(float)
    assert np.abs(styled - source).mean() > 5  # stylized, not copied


def test_finished_chunk_is_not_recomputed(basic, style, tmp_path):
    segment, staging = tmp_path / "chunks" / "chunk_0000.mp4", Staging(str(tmp_path))
    first = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 4, 0), staging)
    written = segment.stat().st_mtime_ns
    again = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 4, 0), staging)
    assert again.resumed and again.seconds == first.seconds
    assert segment.stat().st_mtime_ns == written


def test_cut_inside_a_chunk_restarts_the_chain(two_scenes, style, tmp_path):
    chunk = Chunk(0, 8, 8, 0)
    result = stylize_chunk(two_scenes, [style], FAST, chunk, Staging(str(tmp_path)), cuts=[12])
    assert result.iterations == 2 * 6 + 6 * 2  # cold at 8 and at the cut, warm otherwise


def test_chunks_start_from_their_shots_keyframe(basic, style, tmp_path):
    """The chunk at the keyframe replays it (no iterations); a later chunk leaps from it with
    a budget between the warm and the cold one, instead of cold-starting."""
    settings = FAST.model_copy(update={"first_iterations": 30})
    info, staging = video.probe(basic), Staging(str(tmp_path))
    keyframe = stylize_keyframe(basic, [style], settings, 0, staging, info=info)
    assert (keyframe.index, keyframe.iterations, keyframe.resumed) == (0, 30, False)
    first = tmp_path / "chunks" / "chunk_0000.mp4"
    result = stylize_chunk(
        basic, [style], settings, Chunk(0, 0, 4, 0), staging, keyframes=[keyframe.path]
    )
    assert result.iterations == 3 * 2
    replayed = next(video.read_frames(first)).astype(float)
    stored = np.load(keyframe.path)["output"] * 255
    content = np.load(keyframe.path)["content"] * 255
    # the keyframe's output, encoded (4:2:0 chroma and x264 blur a 48 px painting)
    assert np.abs(replayed - stored).mean() < 0.5 * np.abs(replayed - content).mean()
    later = stylize_chunk(
        basic, [style], settings, Chunk(1, 4, 5, 3), staging, keyframes=[keyframe.path]
    )
    assert 2 + 7 * 2 < later.iterations < 30 + 7 * 2


def test_a_stored_keyframe_is_reused_at_its_processing_size(basic, style, tmp_path):
    info, staging = video.probe(basic), Staging(str(tmp_path))
    made = stylize_keyframe(basic, [style], FAST, 0, staging, info=info)
    again = stylize_keyframe(basic, [style], FAST, 0, staging, info=info)
    assert again.resumed and (again.path, again.iterations) == (made.path, made.iterations)
    smaller = FAST.model_copy(update={"size": 32})
    remade = stylize_keyframe(basic, [style], smaller, 0, staging, info=info)
    assert not remade.resumed and np.load(remade.path)["output"].shape == (24, 32, 3)


def test_failed_chunk_leaves_no_segment_or_marker(basic, style, tmp_path, monkeypatch):
    def broken(frames, path, *args, **kwargs):
        next(iter(frames))
        raise InvalidInputError(f"{path}: disk full (injected)")

    monkeypatch.setattr(stylize_module, "write_frames", broken)
    with pytest.raises(InvalidInputError, match="disk full"):
        stylize_chunk(basic, [style], FAST, Chunk(0, 0, 4, 0), Staging(str(tmp_path)))
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


def test_crossfade_blends_overlapping_frames_and_keeps_the_count(tmp_path):
    def solid(value: int, count: int) -> list[np.ndarray]:
        return [np.full((16, 16, 3), value, "uint8") for _ in range(count)]

    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    video.write_frames(solid(0, 6), first, Fraction(30), crf=0)
    video.write_frames(solid(210, 2) + solid(240, 4), second, Fraction(30), crf=0)
    frames = list(crossfade_frames([(str(first), 0), (str(second), 2)]))
    levels = [round(float(f.mean())) for f in frames]
    assert len(frames) == 6 + 4  # the two warm-up frames replace the first chunk's last two
    assert levels == pytest.approx([0, 0, 0, 0, 70, 140, 240, 240, 240, 240], abs=2)
