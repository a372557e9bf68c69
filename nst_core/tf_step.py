"""The TensorFlow step: Adam on the image compiled with tf.function, and L-BFGS (scipy).

eager Conv2D gradients also compute the frozen filters' gradients and cost twice as much, so
the step is compiled. XLA was measured slower on CPU, so it is off by default (see
benchmarks/speed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nst_video.nst_core.losses import LossFn, LossWeights, make_loss_fn
from nst_video.nst_core.stepper import (
    AdamConfig,
    LossCurve,
    LossTerms,
    Progress,
    RunRequest,
    RunResult,
    Stepper,
    Targets,
    TemporalAnchor,
)


@dataclass(frozen=True)
class AdamState:
    """Adam moments of an image, kept across frames of a video to avoid re-churning them.

    Immutable tensors: `AdamStepper.run` returns a new state, so a state can be shared (or
    a chain forked) without one run changing another's moments.
    """

    m: tf.Tensor
    v: tf.Tensor
    t: tf.Tensor

    @classmethod
    def zeros(cls, shape: Sequence[int]) -> AdamState:
        return cls(tf.zeros(shape), tf.zeros(shape), tf.constant(0.0))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.m.shape)


class AdamStepper(Stepper):
    """Runs Adam on an image with one compiled step, shape-relaxed after the second shape.

    The step is a pure function of tensors (image, moments, targets, anchor): no variables and
    no Python objects in its signature, so new frames, states and chains reuse one trace. The
    loss averages over the batch, so a batch is one problem (not a `BatchStepper`).
    """

    def __init__(
        self,
        model: Callable,
        n_content: int,
        weights: LossWeights,
        config: AdamConfig,
        *,
        jit_compile: bool = False,
    ) -> None:
        self.config = config
        self.loss_fn = make_loss_fn(model, n_content, weights)
        self._step = tf.function(self._step_eager, jit_compile=jit_compile, reduce_retracing=True)

    def _step_eager(self, image, m, v, t, content_targets, style_grams, anchor):
        c = self.config
        anchor = None if anchor is None else TemporalAnchor(*anchor)
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = _stackable(self.loss_fn(image, Targets(content_targets, style_grams), anchor))
        grad = tape.gradient(terms[0], image)
        t = t + 1.0
        m = c.beta1 * m + (1 - c.beta1) * grad
        v = c.beta2 * v + (1 - c.beta2) * tf.square(grad)
        m_hat = m / (1 - tf.pow(c.beta1, t))
        v_hat = v / (1 - tf.pow(c.beta2, t))
        update = c.learning_rate * m_hat / (tf.sqrt(v_hat) + c.epsilon)
        return tf.clip_by_value(image - update, 0.0, 1.0), m, v, t, tf.stack(terms)

    def run(self, request: RunRequest) -> RunResult:
        """Optimize as `request` says; see `Stepper.run`."""
        r = request
        image = tf.convert_to_tensor(r.init, dtype=tf.float32)
        state = r.state
        if state is None or state.shape != tuple(r.init.shape):
            state = AdamState.zeros(r.init.shape)
        m, v, t = state.m, state.v, state.t
        content, grams = list(r.targets.content), list(r.targets.style_grams)
        anchor_tensors = _anchor_tensors(r.anchor)
        curve = LossCurve()
        for i in range(r.iterations):
            image, m, v, t, terms = self._step(image, m, v, t, content, grams, anchor_tensors)
            step_terms = LossTerms.of(terms.numpy())
            curve.append(step_terms)
            if r.progress:
                r.progress(i + 1, step_terms.total)
            if r.stop and r.stop.update(step_terms):
                break
        return RunResult(image.numpy(), curve, AdamState(m, v, t))


def _anchor_tensors(anchor: TemporalAnchor | None) -> tuple[tf.Tensor, ...] | None:
    """The anchor as float32 tensors: a tuple of tensors does not retrace the step."""
    if anchor is None:
        return None
    return tuple(
        tf.convert_to_tensor(value, tf.float32)
        for value in (anchor.reference, anchor.mask, anchor.weight)
    )


def _stackable(terms: LossTerms) -> list[tf.Tensor]:
    """The 5 terms as float32 tensors (a term may be a Python 0 without style layers)."""
    return [tf.convert_to_tensor(value, tf.float32) for value in terms.values()]


def run_lbfgs(
    loss_fn: LossFn,
    init: np.ndarray,
    iterations: int,
    targets: Targets,
    *,
    tolerance: float = 0.0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, LossCurve]:
    """L-BFGS-B on the pixels (bounded to [0, 1]) with TensorFlow gradients, via scipy."""
    from scipy.optimize import Bounds, minimize

    shape = init.shape
    curve = LossCurve()

    @tf.function(reduce_retracing=True)
    def value_and_grad(flat):
        image = tf.reshape(flat, shape)
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = _stackable(loss_fn(image, targets))
        return tf.stack(terms), tf.reshape(tape.gradient(terms[0], image), [-1])

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        stacked, grad = value_and_grad(tf.constant(x, dtype=tf.float32))
        terms = LossTerms.of(stacked.numpy())
        curve.append(terms)
        if progress:
            progress(len(curve), terms.total)
        return terms.total, grad.numpy().astype("float64")

    result = minimize(
        fun,
        init.astype("float64").ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(0.0, 1.0),
        options={"maxiter": iterations, "maxfun": iterations, "ftol": tolerance, "gtol": 0.0},
    )
    return result.x.reshape(shape).astype("float32"), curve
