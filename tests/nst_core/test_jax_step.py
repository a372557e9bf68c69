"""The JAX step (nst_core.jax_step) against the TensorFlow step, on real weights, 32x32.

Needs JAX and KERAS_BACKEND=jax (Keras picks one backend per process), so in the suite's
process it skips; tests/nst_core/test_jax_backend.py runs it in a subprocess:

    KERAS_BACKEND=jax NST_TF_PYTHON=.venv/bin/python \\
        .venv/bin/python -m pytest --noconftest tests/nst_core/test_jax_step.py

The TensorFlow reference runs in a subprocess of NST_TF_PYTHON (a Python with TensorFlow);
without it that comparison skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("KERAS_BACKEND is not jax", allow_module_level=True)

from nst_video.nst_core.errors import WeightsError  # noqa: E402
from nst_video.nst_core.images import load_image, resize  # noqa: E402
from nst_video.nst_core.jax_step import JaxAdamStepper  # noqa: E402
from nst_video.nst_core.losses import LossWeights  # noqa: E402
from nst_video.nst_core.model import feature_model  # noqa: E402
from nst_video.nst_core.settings import DEFAULT_STYLE_LAYERS  # noqa: E402
from nst_video.nst_core.size import Size  # noqa: E402
from nst_video.nst_core.stepper import AdamConfig, RunRequest, Targets  # noqa: E402
from nst_video.nst_core.weights import resolve_weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("block4_conv2", *DEFAULT_STYLE_LAYERS)  # content first, then style
WEIGHTS = LossWeights(1.0, 5.0, 0.1, (1.0,) * 5)
ADAM = AdamConfig(learning_rate=0.02, beta1=0.9, beta2=0.999, epsilon=1e-8)
STEPS = 10

# Float32 tolerances. Both backends compute the same float32 graph with different conv
# algorithms and summation orders (oneDNN vs XLA): each conv output carries a relative
# rounding error of order sqrt(K) * 6e-8 with K = 3*3*C_in <= 4608, i.e. ~1e-5 after 13
# layers; the style terms are differences of Grams, which amplifies it a few times.
# Measured: terms agree to ~1e-6, gradients to ~1e-6 (relative L2). The bounds keep 10-100x
# margin and still catch any real difference (a wrong layer, weight or sign is >1e-1).
TERMS_RTOL = 1e-4
GRAD_RTOL = 1e-4
# After 10 Adam steps the per-pixel updates are lr * m_hat / sqrt(v_hat): pixels whose
# gradient is ~0 can take opposite +-lr steps on the two backends, so the loss curve, not
# the pixels, is compared.
CURVE_RTOL = 1e-3

TF_REFERENCE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    from nst_video.nst_core.losses import LossWeights, gram_matrix
    from nst_video.nst_core.model import feature_model, preprocess
    from nst_video.nst_core.stepper import AdamConfig, RunRequest, Targets
    from nst_video.nst_core.tf_step import AdamStepper
    from nst_video.nst_core.weights import resolve_weights

    args = json.loads(sys.argv[1])
    data = np.load(args["inputs"])
    model = feature_model(tuple(args["layers"]), "max", resolve_weights(fetch=False))
    content_out = model(preprocess(tf.constant(data["content"])))
    style_out = model(preprocess(tf.constant(data["style"])))
    targets = Targets(list(content_out[:1]), [gram_matrix(f) for f in style_out[1:]])
    weights = LossWeights(*args["weights"][:3], tuple(args["weights"][3]))
    stepper = AdamStepper(model, 1, weights, AdamConfig(*args["adam"]))
    image = tf.constant(data["init"])
    with tf.GradientTape() as tape:
        tape.watch(image)
        terms = stepper.loss_fn(image, targets).values()
    grad = tape.gradient(terms[0], image)
    _, curve, _ = stepper.run(RunRequest(data["init"], args["steps"], targets))
    np.savez(args["output"], terms=np.stack([t.numpy() for t in terms]), grad=grad.numpy(),
             curve=np.array(curve.total))
    """
)


@pytest.fixture(scope="module")
def model():
    try:
        info = resolve_weights(fetch=False)
    except WeightsError as error:
        pytest.skip(f"no VGG19 weights here: {error}")
    return feature_model(LAYERS, "max", info)


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """A 32x32 content, a style image and a start half-way between content and noise."""
    assets = ROOT / "assets"
    content = resize(load_image(assets / "content" / "bottles.jpg"), Size(32, 32))[None]
    style = resize(load_image(assets / "styles" / "starry_night.jpg"), Size(32, 32))[None]
    noise = np.random.default_rng(7).random(content.shape, dtype=np.float32)
    init = np.clip(0.5 * content + 0.5 * noise, 0.0, 1.0).astype("float32")
    return {"content": content.astype("float32"), "style": style.astype("float32"), "init": init}


@pytest.fixture(scope="module")
def stepper(model) -> JaxAdamStepper:
    return JaxAdamStepper(model, 1, WEIGHTS, ADAM, precision="float32")


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """‖a - b‖ / ‖b‖."""
    return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


def _tf_reference(images: dict[str, np.ndarray], tmp_path: Path) -> dict[str, np.ndarray]:
    """Terms, gradient and 10-step Adam curve of the TensorFlow step, from NST_TF_PYTHON."""
    python = os.environ.get("NST_TF_PYTHON")
    if not python:
        pytest.skip("set NST_TF_PYTHON to a Python with TensorFlow for the reference")
    inputs, output = tmp_path / "inputs.npz", tmp_path / "tf.npz"
    np.savez(inputs, **images)
    args = {
        "inputs": str(inputs),
        "output": str(output),
        "layers": list(LAYERS),
        "steps": STEPS,
        "weights": [WEIGHTS.content, WEIGHTS.style, WEIGHTS.tv, list(WEIGHTS.style_layers)],
        "adam": [ADAM.learning_rate, ADAM.beta1, ADAM.beta2, ADAM.epsilon],
    }
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    done = subprocess.run(
        [python, "-c", TF_REFERENCE, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(np.load(output))


def test_float32_terms_gradient_and_curve_match_tensorflow(stepper, images, tmp_path):
    reference = _tf_reference(images, tmp_path)
    targets = stepper.targets(images["content"], images["style"])
    terms, grad = stepper.loss_and_grad(images["init"], targets)
    stepper.sync_every = 4  # several device scans per run
    _, curve, _ = stepper.run(RunRequest(images["init"], STEPS, targets))
    term_errors = np.abs(terms[0, :4] - reference["terms"][:4]) / np.abs(reference["terms"][:4])
    print(
        "term rel errors",
        term_errors,
        "grad rel L2",
        _relative(grad, reference["grad"]),
        "curve rel",
        np.max(np.abs(np.asarray(curve.total) / reference["curve"] - 1)),
    )
    assert np.all(term_errors < TERMS_RTOL)
    assert _relative(grad, reference["grad"]) < GRAD_RTOL
    np.testing.assert_allclose(curve.total, reference["curve"], rtol=CURVE_RTOL)


def test_adam_lowers_the_loss_and_keeps_pixels_in_range(stepper, images):
    targets = stepper.targets(images["content"], images["style"])
    image, curve, state = stepper.run(RunRequest(images["init"], 30, targets))
    assert len(curve) == 30 and len(curve.style) == 30 and float(state.t.max()) == 30
    assert curve.total[-1] < 0.7 * curve.total[0]
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_a_batch_is_independent_problems(stepper, images):
    """Image b of a batch gets the gradient it gets alone (vmap, not batch-wide means)."""
    pair = np.concatenate([images["init"], images["content"]])
    targets = stepper.targets(np.concatenate([images["content"]] * 2), images["style"])
    terms, grad = stepper.loss_and_grad(pair, targets)
    for b in range(2):
        one_terms, one_grad = stepper.loss_and_grad(
            pair[b : b + 1],
            Targets([t[b : b + 1] for t in targets.content], targets.style_grams),
        )
        np.testing.assert_allclose(terms[b], one_terms[0], rtol=1e-5, atol=1e-12)
        assert _relative(grad[b], one_grad[0]) < 1e-5


def test_bfloat16_step_tracks_float32(model, stepper, images):
    """bf16 convolutions (float32 Grams and losses): loss within 2%, gradient aligned."""
    mixed = JaxAdamStepper(model, 1, WEIGHTS, ADAM, compute_dtype="bfloat16")
    targets = stepper.targets(images["content"], images["style"])
    terms32, grad32 = stepper.loss_and_grad(images["init"], targets)
    terms16, grad16 = mixed.loss_and_grad(images["init"], targets)
    cosine = float(np.sum(grad16 * grad32) / np.linalg.norm(grad16) / np.linalg.norm(grad32))
    print("bf16 total rel", abs(terms16[0, 0] / terms32[0, 0] - 1), "grad cosine", cosine)
    assert abs(terms16[0, 0] / terms32[0, 0] - 1) < 2e-2
    assert cosine > 0.99
    _, curve, _ = mixed.run(RunRequest(images["init"], 30, targets))
    assert curve.total[-1] < 0.7 * curve.total[0]


def test_style_transfer_runs_images_and_frame_chains_on_the_jax_step(images):
    """KERAS_BACKEND=jax selects the JAX step for the product's own entry points."""
    from nst_video.nst_core.settings import make_settings, make_video_settings
    from nst_video.nst_core.stylize import StyleTransfer, stylize_image
    from nst_video.nst_core.temporal import FrameChain

    content, style = images["content"][0], images["style"][0]
    settings = make_settings(size=32, iterations=30, tolerance=0.0)
    transfer = StyleTransfer([style], settings)
    assert isinstance(transfer.stepper, JaxAdamStepper)
    image, stats = stylize_image(content, [style], settings, transfer=transfer)
    assert image.shape == content.shape and image.dtype == np.float32
    assert stats.iterations == 30 and stats.final_loss < 0.8 * stats.initial_loss

    video = make_video_settings(size=32, first_iterations=30, iterations=5, tolerance=0.0)
    chain = FrameChain(StyleTransfer([style], video), video)
    frames = [np.clip(content + 0.02 * i, 0, 1).astype("float32") for i in range(3)]
    stats = [frame_stats for _, frame_stats in chain.run(frames)]
    assert [s.iterations for s in stats] == [30, 5, 5]
    assert [s.cold_start for s in stats] == [True, False, False]
    assert stats[0].temporal_loss == 0 and stats[1].temporal_loss > 0


def test_chains_in_threads_share_batches_and_match_separate_runs(images):
    """Two chains in two threads run as batches of 2 and get the frames they get alone."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from nst_video.nst_core.settings import make_video_settings
    from nst_video.nst_core.stylize import StyleTransfer
    from nst_video.nst_core.temporal import FrameChain

    content, style = images["content"][0], images["style"][0]
    settings = make_video_settings(  # float32: the comparison's bound (auto is bf16 on a GPU)
        size=32, first_iterations=20, iterations=5, tolerance=0.0, precision="float32"
    )
    clips = [
        [np.clip(content * (1 - 0.3 * k) + 0.02 * i, 0, 1).astype("float32") for i in range(3)]
        for k in range(2)
    ]

    def outputs(transfer, clip, barrier=None):
        with transfer.stepper.joined():
            if barrier is not None:
                barrier.wait()  # both chains joined before either runs: full rounds
            return [frame for frame, _ in FrameChain(transfer, settings).run(clip)]

    alone = StyleTransfer([style], settings)
    expected = [outputs(alone, clip) for clip in clips]
    shared = StyleTransfer([style], settings, batch=2)
    shared.stepper.wait_s = 120  # only a hang would time out
    barrier = threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda clip: outputs(shared, clip, barrier), clips))
    assert shared.stepper.batch_sizes == [2, 2, 2]
    for frames, reference in zip(got, expected, strict=True):
        for frame, alone_frame in zip(frames, reference, strict=True):
            print("batched vs alone, max abs", np.abs(frame - alone_frame).max())
            assert np.abs(frame - alone_frame).mean() < 1e-4


def test_chunk_tasks_in_threads_batch_their_frames(tmp_path):
    """tasks.stylize.stylize_chunk with batch=2: two chunks in two threads, batched frames."""
    from concurrent.futures import ThreadPoolExecutor

    from nst_video.nst_core.settings import make_video_settings
    from nst_video.tasks.plan import plan_chunks
    from nst_video.tasks.staging import Staging
    from nst_video.tasks.stylize import cached_transfer, stylize_chunk
    from nst_video.tasks.video import read_frames

    clip = ROOT / "assets" / "videos" / "bottles_with_tone.mp4"
    styles = (str(ROOT / "assets" / "styles" / "starry_night.jpg"),)
    settings = make_video_settings(size=32, first_iterations=10, iterations=3, tolerance=0.0)
    chunks = plan_chunks(0, 6, 3, 0)

    def run(batch: int) -> list[np.ndarray]:
        folder = tmp_path / f"batch{batch}"
        folder.mkdir()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(
                lambda chunk: stylize_chunk(
                    clip, styles, settings, chunk, Staging(str(folder)), batch=batch
                ),
                chunks,
            ))  # fmt: skip
        assert [r.frames for r in results] == [3, 3]
        return [f for r in results for f in read_frames(r.segment)]

    shared = cached_transfer(settings, styles, 2).stepper  # the one the chunks will share
    shared.wait_s = 120  # only a hang would time out
    alone = run(1)
    with shared.joined(), shared.joined():  # both chunks count from the first round
        batched = run(2)
    assert shared.batch_sizes == [2, 2, 2]  # one shared stepper, full batches
    assert len(batched) == len(alone) == 6
    pairs = zip(alone, batched, strict=True)
    difference = np.mean([np.abs(a.astype(float) - b).mean() for a, b in pairs])
    print("mean abs difference, batched vs alone (0..255)", difference)
    assert difference < 1.0  # same frames, up to the encoder (8-bit, lossy)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-s", "--noconftest"]))
