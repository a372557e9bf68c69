"""Keyframes on disk: arrays only, loaded without pickle."""

import numpy as np

from nst_video.nst_core.size import Size
from nst_video.nst_core.temporal import FrameStats, Keyframe
from nst_video.tasks.keyframes import keyframe_name, load_keyframe, save_keyframe, stored_keyframe


def _keyframe(index: int = 7) -> Keyframe:
    rng = np.random.default_rng(0)
    content, output = rng.random((2, 9, 16, 3), dtype="float32")
    stats = FrameStats(index, True, 40, 1.5, 0.5, 0.9, 0.0, 2.25)
    return Keyframe(index, content, output, stats)


def test_a_saved_keyframe_loads_back_exactly(tmp_path):
    path = tmp_path / keyframe_name(7)
    save_keyframe(path, _keyframe())
    loaded = load_keyframe(path)
    np.testing.assert_array_equal(loaded.output, _keyframe().output)
    np.testing.assert_array_equal(loaded.content, _keyframe().content)
    assert loaded.stats == _keyframe().stats and loaded.index == 7
    assert [p.name for p in tmp_path.iterdir()] == ["keyframe_000007.npz"]


def test_a_keyframe_is_reused_only_at_its_size(tmp_path):
    path = tmp_path / keyframe_name(7)
    assert stored_keyframe(str(path), Size(16, 9), tmp_path) is None
    save_keyframe(path, _keyframe())
    found = stored_keyframe(str(path), Size(16, 9), tmp_path)
    assert found and found.resumed and (found.iterations, found.seconds) == (40, 2.25)
    assert stored_keyframe(str(path), Size(32, 18), tmp_path) is None
