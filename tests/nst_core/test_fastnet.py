"""The fast-mode transformation network (nst_core.fastnet): shapes, range, padding, seeds,
batch independence and .keras round trips. Tiny nets (width 8, 1-2 residual blocks)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from nst_video.nst_core.fastnet import MIN_SIDE, FastNetConfig, build_fastnet, config_of

TINY = FastNetConfig(width=8, residual_blocks=1)


@pytest.fixture(scope="module")
def net() -> keras.Model:
    return build_fastnet(TINY, seed=0)


def _images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _run(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x))


@pytest.mark.parametrize("size", [(37, 29), (MIN_SIDE, MIN_SIDE), (13, 50), (32, 48)])
def test_output_has_the_input_shape_and_values_in_the_unit_interval(net, size):
    x = _images((2, *size, 3))
    y = _run(net, x)
    assert y.shape == x.shape
    assert y.min() > 0.0 and y.max() < 1.0


def test_odd_sizes_are_reflect_padded_bottom_right_and_cropped_back(net):
    """37x29 is stylized as its reflection up to 40x32, then cropped to the top-left."""
    x = _images((1, 37, 29, 3), seed=1)
    padded = np.pad(x, [(0, 0), (0, 3), (0, 3), (0, 0)], mode="reflect")
    np.testing.assert_allclose(_run(net, x), _run(net, padded)[:, :37, :29], atol=1e-6)


def test_identical_frames_give_identical_outputs_whatever_the_batch(net):
    """Instance norm is per image: a frame's output depends on that frame alone."""
    frame, other = _images((1, 32, 32, 3), seed=2), _images((1, 32, 32, 3), seed=3)
    pair = _run(net, np.concatenate([frame, frame]))
    np.testing.assert_array_equal(pair[0], pair[1])
    mixed = _run(net, np.concatenate([frame, other]))
    np.testing.assert_allclose(mixed[0], pair[0], atol=1e-6)
    assert np.abs(mixed[1] - mixed[0]).max() > 1e-3


def test_a_seed_fixes_the_initial_weights():
    first = build_fastnet(TINY, seed=4).get_weights()
    again = build_fastnet(TINY, seed=4).get_weights()
    other = build_fastnet(TINY, seed=5).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_each_conv_draws_its_own_initial_kernel():
    """Per-layer seeds: two same-shaped convs must not start from the same kernel."""
    model = build_fastnet(FastNetConfig(width=8, residual_blocks=2), seed=0)
    a = model.get_layer("res1_conv1").get_weights()[0]
    b = model.get_layer("res2_conv1").get_weights()[0]
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize("config", [TINY, FastNetConfig(16, 3), FastNetConfig()])
def test_the_config_is_read_back_from_the_model_and_from_its_dict(config):
    assert config_of(build_fastnet(config)) == config
    assert FastNetConfig.from_dict(config.to_dict()) == config


def test_width_and_blocks_set_the_size_of_the_network():
    small = build_fastnet(TINY).count_params()
    assert build_fastnet(FastNetConfig(8, 2)).count_params() > small
    assert build_fastnet(FastNetConfig(16, 1)).count_params() > 3 * small


def test_an_invalid_config_is_refused():
    with pytest.raises(ValueError, match="FastNetConfig"):
        FastNetConfig(width=0)


def test_a_keras_file_round_trips_exactly_in_safe_mode(net, tmp_path):
    path = tmp_path / "tiny.keras"
    net.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = _images((1, 37, 29, 3), seed=6)
    np.testing.assert_array_equal(_run(loaded, x), _run(net, x))
    assert config_of(loaded) == TINY
