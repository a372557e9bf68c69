"""End-to-end core tests with the real VGG19 weights on 64 px images."""

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import make_settings
from nst_video.nst_core.stylize import StyleTransfer, preserve_colors, stylize_image

FAST = {"size": 64, "iterations": 30, "tolerance": 0.0}


def _chroma(image):
    to_uv = np.array([[-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]], "float32")
    return image @ to_uv.T


def test_stylization_lowers_the_loss_and_changes_the_image(content_64, starry_64, vgg_weights):
    image, stats = stylize_image(
        content_64, [starry_64], make_settings(**FAST), weights=vgg_weights
    )
    assert image.shape == content_64.shape
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert stats.iterations == 30 and len(stats.loss_curve) == 30
    assert stats.final_loss < 0.8 * stats.initial_loss
    assert stats.style_loss > 0 and stats.content_loss > 0
    assert np.abs(image - content_64).mean() > 0.01


def test_lbfgs_lowers_the_loss(content_64, starry_64, vgg_weights):
    settings = make_settings(**FAST, optimizer="lbfgs")
    _, stats = stylize_image(content_64, [starry_64], settings, weights=vgg_weights)
    assert stats.final_loss < 0.8 * stats.initial_loss


def test_early_stop_ends_before_the_iteration_budget(content_64, starry_64, vgg_weights):
    settings = make_settings(size=64, iterations=500, tolerance=0.05, patience=5)
    _, stats = stylize_image(content_64, [starry_64], settings, weights=vgg_weights)
    assert 5 < stats.iterations < 500


def test_original_colors_keep_the_content_chroma(content_64, starry_64, vgg_weights):
    plain, _ = stylize_image(content_64, [starry_64], make_settings(**FAST), weights=vgg_weights)
    kept, _ = stylize_image(
        content_64, [starry_64], make_settings(**FAST, original_colors=True), weights=vgg_weights
    )
    plain_error = np.abs(_chroma(plain) - _chroma(content_64)).mean()
    kept_error = np.abs(_chroma(kept) - _chroma(content_64)).mean()
    assert kept_error < 0.25 * plain_error
    assert kept_error < 0.01


def test_preserve_colors_is_identity_on_the_content_itself():
    image = np.random.default_rng(0).uniform(0.2, 0.8, size=(8, 8, 3)).astype("float32")
    np.testing.assert_allclose(preserve_colors(image, image), image, atol=1e-5)


def test_blend_weights_select_and_mix_styles(content_64, starry_64, scream_64, vgg_weights):
    def run(blend, styles):
        settings = make_settings(**{**FAST, "iterations": 15}, style_blend_weights=blend)
        return stylize_image(content_64, styles, settings, weights=vgg_weights)[0]

    starry_only = run(None, [starry_64])
    first = run((1.0, 0.0), [starry_64, scream_64])
    second = run((0.0, 1.0), [starry_64, scream_64])
    mixed = run((0.5, 0.5), [starry_64, scream_64])
    np.testing.assert_allclose(first, starry_only, atol=1e-4)
    assert np.abs(first - second).mean() > 0.005
    assert np.abs(mixed - first).mean() > 0.002 and np.abs(mixed - second).mean() > 0.002


def test_pyramid_and_style_scale_produce_the_requested_size(content_64, starry_64, vgg_weights):
    settings = make_settings(size=64, iterations=5, scales=2, style_scale=1.5)
    image, stats = stylize_image(content_64, [starry_64], settings, weights=vgg_weights)
    assert image.shape == (36, 64, 3)
    assert stats.iterations == 10


def test_noise_init_is_seeded(content_64, starry_64, vgg_weights):
    def run(seed):
        settings = make_settings(size=32, iterations=3, init="noise", seed=seed)
        return stylize_image(content_64, [starry_64], settings, weights=vgg_weights)[0]

    np.testing.assert_array_equal(run(1), run(1))
    assert np.abs(run(1) - run(2)).mean() > 0.05


def test_too_small_for_the_layers_is_a_settings_error(content_64, starry_64, vgg_weights):
    with pytest.raises(InvalidSettingsError, match="too small"):
        stylize_image(content_64, [starry_64], make_settings(size=20), weights=vgg_weights)
    with pytest.raises(InvalidSettingsError, match="at least one style"):
        StyleTransfer([], make_settings(), vgg_weights)


def test_bfloat16_precision_reaches_the_float32_loss(content_64, starry_64, vgg_weights):
    """bf16 convolutions, float32 losses: same problem, nearly the same optimum."""
    results = {}
    for precision in ("float32", "bfloat16"):
        settings = make_settings(**FAST, precision=precision)
        transfer = StyleTransfer([starry_64], settings, vgg_weights)
        assert transfer.model.layers[-1].compute_dtype == precision
        image, _ = stylize_image(content_64, [starry_64], settings, transfer=transfer)
        assert image.dtype == np.float32
        # Judged by the float32 loss, so both runs are scored alike.
        results[precision] = (image, transfer)
    float32_transfer = results["float32"][1]
    losses = {
        p: float32_transfer.loss(image, content_64).total for p, (image, _) in results.items()
    }
    start = float32_transfer.loss(content_64, content_64).total
    assert losses["bfloat16"] < 0.8 * start
    assert losses["bfloat16"] < 1.05 * losses["float32"]
    assert np.abs(results["bfloat16"][0] - results["float32"][0]).mean() < 0.05


def test_auto_precision_is_resolved_where_the_model_is_built(starry_64, vgg_weights):
    transfer = StyleTransfer([starry_64], make_settings(size=32), vgg_weights)
    assert transfer.settings.precision == "auto"
    assert transfer.precision == resolve_precision("auto")
    assert transfer.model.layers[-1].compute_dtype == transfer.precision
