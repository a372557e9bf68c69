"""nst_core.fast_stylize: batched inference with a real (tiny, untrained) network."""

from __future__ import annotations

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.fast_stylize import for_precision, stylize_batch, stylize_frames
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.stylize import preserve_colors


@pytest.fixture(scope="module")
def net():
    return build_fastnet(FastNetConfig(width=4, residual_blocks=1), seed=1)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(np.random.default_rng(0).uniform(size=(7, 20, 28, 3)).astype("float32"))


def test_frames_come_out_in_order_whatever_the_batch(net, frames) -> None:
    one_by_one = np.stack([stylize_batch(net, frame[None])[0] for frame in frames])
    batched = np.stack(list(stylize_frames(net, iter(frames), batch=3)))  # 3 + 3 + 1
    assert batched.shape == (7, 20, 28, 3) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert np.abs(batched - np.stack(frames)).mean() > 0.05  # stylized, not copied


def test_a_frame_gives_the_same_output_in_any_split_of_the_stream(net, frames) -> None:
    whole = np.stack(list(stylize_frames(net, frames, batch=4)))  # 4 + 3
    split = [*stylize_frames(net, frames[:2], batch=4), *stylize_frames(net, frames[2:], batch=4)]
    np.testing.assert_array_equal(whole, np.stack(split))  # chunks have no seam


def test_original_colors_keep_the_input_chroma(net, frames) -> None:
    batch = np.stack(frames[:2])
    kept = stylize_batch(net, batch, original_colors=True)
    np.testing.assert_allclose(kept, preserve_colors(stylize_batch(net, batch), batch), atol=1e-6)


def test_bfloat16_is_close_to_float32(net, frames) -> None:
    batch = np.stack(frames[:2])
    full, half = stylize_batch(net, batch), stylize_batch(for_precision(net, "bfloat16"), batch)
    assert not np.array_equal(full, half)  # really ran in bf16
    assert np.abs(full - half).mean() < 2 / 255


def test_auto_runs_the_network_in_the_resolved_precision(net) -> None:
    chosen = for_precision(net, "auto")
    expected = "float32" if resolve_precision("auto") == "float32" else "bfloat16"
    assert (chosen is net) == (expected == "float32")
    assert chosen.layers[-1].compute_dtype == expected
    with pytest.raises(InvalidSettingsError, match="invalid precision"):
        for_precision(net, "float16")


def test_frames_too_small_for_the_network_are_refused(net) -> None:
    with pytest.raises(InvalidSettingsError, match="4x6 px are too small"):
        stylize_batch(net, np.zeros((1, 6, 4, 3), "float32"))
