"""Training the fast-mode network (nst_core.fast_train) on real VGG19 weights, 32x32 crops.

TensorFlow runs in this process; the JAX step runs in a child process (Keras fixes its
backend at import) on the same initial weights, shipped as a .keras file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from nst_video.nst_core.fast_train import FastTerms, Objective, Trainer, still_mask, style_grams
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet
from nst_video.nst_core.model import feature_model
from nst_video.nst_core.settings import DEFAULT_STYLE_LAYERS

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("block4_conv2", *DEFAULT_STYLE_LAYERS)  # content first, then style
TINY = FastNetConfig(width=8, residual_blocks=1)
LEARNING_RATE = 3e-3


@pytest.fixture(scope="module")
def vgg(vgg_weights) -> keras.Model:
    return feature_model(LAYERS, "max", vgg_weights)


@pytest.fixture(scope="module")
def batch(content_64) -> np.ndarray:
    """Two different 32x32 crops of the 36x64 content image."""
    return np.stack([content_64[2:34, :32], content_64[2:34, 32:]]).astype("float32")


@pytest.fixture(scope="module")
def grams(vgg, starry_64) -> list:
    return style_grams(vgg, 1, starry_64[None])


def _trainer(vgg, grams, objective: Objective | None = None, **kwargs) -> Trainer:
    net = build_fastnet(TINY, seed=kwargs.pop("net_seed", 0))
    return Trainer(net, vgg, 1, grams, objective, learning_rate=LEARNING_RATE, **kwargs)


def test_a_few_steps_on_one_batch_lower_the_loss(vgg, grams, batch):
    trainer = _trainer(vgg, grams)
    before = trainer.evaluate(batch)
    steps = [trainer.step(batch) for _ in range(12)]
    after = trainer.evaluate(batch)
    print("before", before, "after", after)
    # The step scores the weights before its update: the clean terms plus the noise term.
    noise = trainer.objective.noise * steps[0].noise
    assert steps[0].total == pytest.approx(before.total + noise, rel=1e-5)
    assert after.total < 0.7 * before.total  # measured 0.29x
    assert after.style < before.style


def test_the_noise_term_is_zero_without_noise_and_positive_with_it(vgg, grams, batch):
    trainer = _trainer(vgg, grams, Objective(noise_sigma=0.02))
    quiet = trainer.evaluate(batch)
    noisy = trainer.evaluate(batch, noise=trainer.draw_noise(batch.shape))
    assert quiet.noise == 0.0
    assert noisy.noise > 1e-6
    # The noise only enters the noise term: the output for the clean batch is scored alike.
    assert noisy.style == quiet.style and noisy.content == quiet.content


def test_the_frame_term_is_zero_for_a_still_input_and_gated_by_the_mask(vgg, grams, batch):
    # Every pixel moves by 0.05..0.1 towards mid-grey. (A uniform shift would not do: instance
    # norm removes it, and the output would not change at all.)
    size = np.random.default_rng(0).uniform(0.05, 0.1, batch.shape).astype("float32")
    moved = batch + np.where(batch < 0.5, size, -size)

    def frame(motion_sigma: float, previous: np.ndarray) -> float:
        trainer = _trainer(vgg, grams, Objective(frame=1.0, motion_sigma=motion_sigma))
        return trainer.evaluate(batch, previous=previous).frame

    assert frame(0.05, batch) == 0.0
    # A tight mask frees every changed pixel; a loose one holds them all.
    assert frame(1e-3, moved) < 1e-12
    assert frame(1e3, moved) > 1e-5


def test_the_still_mask_is_one_where_nothing_changed_and_1_over_e_at_sigma():
    current = np.zeros((1, 2, 1, 3), np.float32)
    previous = current.copy()
    previous[0, 1, 0, 2] = 0.05
    mask = keras.ops.convert_to_numpy(still_mask(current, previous, 0.05))
    np.testing.assert_allclose(mask[0, :, 0, 0], [1.0, np.exp(-1.0)], rtol=1e-6)


def test_a_seed_makes_training_reproducible(vgg, grams, batch):
    runs = []
    for _ in range(2):
        trainer = _trainer(vgg, grams, seed=3)
        terms = [trainer.step(batch).as_array() for _ in range(2)]
        runs.append((np.stack(terms), trainer.sync().get_weights()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    other = _trainer(vgg, grams, seed=4).step(batch)
    assert other.noise != FastTerms.from_array(runs[0][0][0]).noise


def test_bfloat16_vgg_tracks_float32(vgg, grams, batch):
    """bf16 convolutions, float32 losses: the terms stay within a few percent."""
    exact = _trainer(vgg, grams).evaluate(batch)
    mixed_trainer = _trainer(vgg, grams, precision="bfloat16")
    mixed = mixed_trainer.evaluate(batch)
    print("float32", exact, "bfloat16", mixed)
    assert mixed_trainer.features.layers[1].compute_dtype == "bfloat16"
    assert mixed.content == pytest.approx(exact.content, rel=0.05)
    assert mixed.style == pytest.approx(exact.style, rel=0.05)
    assert np.isfinite(mixed_trainer.step(batch).total)


def test_style_layer_weights_must_match_the_style_layers(vgg, grams):
    with pytest.raises(ValueError, match="2 style layer weights for 5"):
        _trainer(vgg, grams, Objective(style_layers=(1.0, 2.0)))


JAX_STEPS = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    from nst_video.nst_core.fast_train import Objective, Trainer, style_grams
    from nst_video.nst_core.fastnet import load_fastnet
    from nst_video.nst_core.model import feature_model
    from nst_video.nst_core.weights import resolve_weights

    args = json.loads(sys.argv[1])
    data = np.load(args["inputs"])
    net = load_fastnet(args["model"])
    output = keras.ops.convert_to_numpy(net(data["batch"]))
    vgg = feature_model(tuple(args["layers"]), "max", resolve_weights(fetch=False))
    grams = style_grams(vgg, 1, data["style"])
    trainer = Trainer(net, vgg, 1, grams, Objective(frame=1.0), learning_rate=args["lr"])
    terms = [trainer.step(data["batch"], data["previous"]).as_array() for _ in range(2)]
    trained = keras.ops.convert_to_numpy(trainer.sync()(data["batch"]))
    np.savez(args["output"], output=output, terms=np.stack(terms), trained=trained)
    """
)


def _jax_steps(tmp_path: Path, net: keras.Model, data: dict, weights_path: Path) -> dict:
    """Net output, terms of 2 steps and the trained net's output, from JAX in a child."""
    model, inputs, output = tmp_path / "net.keras", tmp_path / "in.npz", tmp_path / "jax.npz"
    net.save(model)
    np.savez(inputs, **data)
    args = {"model": str(model), "inputs": str(inputs), "output": str(output)}
    args |= {"layers": list(LAYERS), "lr": LEARNING_RATE}
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
        "NST_VGG19_WEIGHTS": str(weights_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", JAX_STEPS, json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(output))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_tensorflow_and_jax_steps_agree_from_the_same_weights(
    vgg, grams, batch, starry_64, vgg_weights, tmp_path
):
    previous = np.roll(batch, 1, axis=2)  # a 1-pixel pan: the frame term is live
    data = {"batch": batch, "previous": previous, "style": starry_64[None].astype("float32")}
    net = build_fastnet(TINY, seed=0)
    jax_side = _jax_steps(tmp_path, net, data, vgg_weights.path)
    output = keras.ops.convert_to_numpy(net(batch))
    trainer = Trainer(net, vgg, 1, grams, Objective(frame=1.0), learning_rate=LEARNING_RATE)
    terms = np.stack([trainer.step(batch, previous).as_array() for _ in range(2)])
    trained = keras.ops.convert_to_numpy(trainer.sync()(batch))
    print("step 0 rel", np.abs(jax_side["terms"][0] / terms[0] - 1))
    print("step 1 rel", np.abs(jax_side["terms"][1] / terms[1] - 1))
    # Measured: step 0 agrees to ~1e-7, step 1 (after one Adam update) to ~3e-5. Both
    # backends run the same float32 graph with different conv kernels and summation orders;
    # a wrong layer, weight, sign or update is off by far more than these bounds.
    np.testing.assert_allclose(jax_side["output"], output, atol=1e-5)
    np.testing.assert_allclose(jax_side["terms"][0], terms[0], rtol=1e-4)
    np.testing.assert_allclose(jax_side["terms"][1], terms[1], rtol=1e-3)
    # sync() wrote JAX's trained weights back into the Keras model: the output moved, and by
    # the same change on both backends (Adam's first steps are ~lr * sign(gradient), so
    # weights with near-zero gradients may step apart: the change is compared, not pixels).
    # Measured: apart / moved = 0.007.
    moved = np.linalg.norm(trained - output)
    apart = np.linalg.norm(jax_side["trained"] - trained)
    print("moved", moved, "apart", apart)
    assert moved > 1.0 and apart < 0.05 * moved
