"""TrainSettings (declared once, sharing the loss fields) and their mapping onto fast_train."""

from __future__ import annotations

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.fast_train import (
    Objective,
    Trainer,
    blended_style_grams,
    style_grams,
)
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet
from nst_video.nst_core.model import feature_model
from nst_video.nst_core.settings import (
    LossSettings,
    StyleSettings,
    TrainSettings,
    VideoSettings,
    make_train_settings,
)

# The hashes before LossSettings was factored out, of the defaults before precision "auto":
# caches and job ids keyed by them survive (at --precision float32).
STYLE_HASH = "64fd93680830dd1842969e3302987185cdfb1db3128540145c0a3dcb3dd49c71"
VIDEO_HASH = "c0f271fc84b8f129c9d7f9ec7c559edc57bb41b25e841d3f5cf3f026a2e65a59"
LAYERS = ("block4_conv2", "block1_conv1", "block2_conv1", "block3_conv1")


def test_style_and_video_settings_keep_their_hashes():
    assert StyleSettings(precision="float32").stable_hash() == STYLE_HASH
    assert VideoSettings(precision="float32").stable_hash() == VIDEO_HASH
    assert StyleSettings().stable_hash() != STYLE_HASH  # "auto" is another job


def test_loss_fields_are_declared_once_in_the_shared_base():
    shared = set(LossSettings.model_fields)
    assert {"content_weight", "style_layers", "precision", "style_blend_weights"} <= shared
    for model in (StyleSettings, TrainSettings):
        assert issubclass(model, LossSettings)
        for name in shared:  # same default, bounds and help
            assert repr(model.model_fields[name]) == repr(LossSettings.model_fields[name])


@pytest.mark.parametrize(
    ("field", "value"),
    [("crop", 8), ("steps", 0), ("batch_size", 65), ("learning_rate", 0), ("noise_sigma", 2)],
)
def test_out_of_range_training_settings_fail_on_one_line(field, value):
    with pytest.raises(InvalidSettingsError) as error:
        make_train_settings(**{field: value})
    assert f"invalid setting {field}" in str(error.value) and "\n" not in str(error.value)


def test_train_settings_hash_changes_with_any_field():
    base = TrainSettings()
    assert base.stable_hash() == TrainSettings().stable_hash()
    assert base.stable_hash() != TrainSettings(seed=1).stable_hash()
    assert base.stable_hash() != TrainSettings(style_weight=4).stable_hash()


def test_objective_from_settings_takes_every_weight():
    settings = TrainSettings(
        content_weight=2,
        style_weight=3,
        tv_weight=0.5,
        noise_weight=7,
        noise_sigma=0.1,
        frame_weight=4,
        motion_sigma=0.2,
        style_layer_weights=(1, 2, 3, 4, 5),
    )
    assert Objective.from_settings(settings) == Objective(
        content=2,
        style=3,
        tv=0.5,
        noise=7,
        noise_sigma=0.1,
        frame=4,
        motion_sigma=0.2,
        style_layers=(1, 2, 3, 4, 5),
    )


@pytest.fixture(scope="module")
def vgg(vgg_weights):
    return feature_model(LAYERS, "max", vgg_weights)


def test_blended_grams_are_the_weighted_sum_of_each_styles(vgg, starry_64, scream_64):
    blended = blended_style_grams(vgg, 1, [starry_64, scream_64], (0.25, 0.75))
    starry = style_grams(vgg, 1, starry_64[None])
    scream = style_grams(vgg, 1, scream_64[None])
    for mixed, a, b in zip(blended, starry, scream, strict=True):
        np.testing.assert_allclose(mixed, 0.25 * np.asarray(a) + 0.75 * np.asarray(b), rtol=1e-5)


def _trainer(vgg, grams) -> Trainer:
    net = build_fastnet(FastNetConfig(width=4, residual_blocks=1), seed=0)
    return Trainer(net, vgg, 1, grams, Objective(style_layers=()), learning_rate=3e-3, seed=5)


def test_a_restored_trainer_takes_the_same_next_step(vgg, content_64, starry_64):
    grams = style_grams(vgg, 1, starry_64[None])
    batch = np.stack([content_64[:32, :32], content_64[:32, 32:]]).astype("float32")
    first = _trainer(vgg, grams)
    for _ in range(2):
        first.step(batch)
    saved = first.snapshot()
    expected = first.step(batch)
    second = _trainer(vgg, grams)
    second.restore(saved)
    resumed = second.step(batch)
    assert resumed.total == pytest.approx(expected.total, rel=1e-5)
    assert resumed.noise == pytest.approx(expected.noise, rel=1e-4)  # same noise draw
    fresh = _trainer(vgg, grams).step(batch)
    assert fresh.total != pytest.approx(expected.total, rel=1e-3)  # restoring did something
