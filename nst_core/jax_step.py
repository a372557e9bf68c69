"""The Gatys Adam step in JAX (KERAS_BACKEND=jax): same problem, same math, for GPUs.

The feature model and the loss are the backend-neutral ones of nst_core.model and
nst_core.losses (keras.ops); only the step is JAX: ``model.stateless_call`` inside
``jax.jit(jax.value_and_grad(...))`` and the Adam update of nst_core.tf_step.AdamStepper
(bias-corrected moments, update lr * m_hat / (sqrt(v_hat) + eps), clip to [0, 1]).

Differences from the TensorFlow stepper, each on purpose:
- a batch of B images is B independent problems: the loss is vmapped over the batch and
  summed, so every image gets exactly the gradient it would get alone (the TF loss instead
  normalizes by batch-wide means); content targets and anchors are per image (B, ...),
  style Grams are shared (1, C, C) or per image (B, C, C);
- several steps run inside one compiled call (``lax.scan``), so the host reads the loss
  terms once per ``sync_every`` steps instead of stalling the GPU every step;
- ``compute_dtype="bfloat16"`` clones the model under Keras's "mixed_bfloat16" policy
  (bf16 convolutions, float32 weights); features are cast to float32 before the losses, so
  Grams, losses and the Adam state stay float32.

Imports no TensorFlow, so it runs where only JAX and Keras are installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras import ops

from nst_video.nst_core.losses import LossWeights, gram_matrix, make_loss_fn
from nst_video.nst_core.model import preprocess, with_dtype_policy
from nst_video.nst_core.stepper import (
    AdamConfig,
    BatchStepper,
    LossCurve,
    LossTerms,
    Progress,
    RunRequest,
    RunResult,
    Stop,
    Targets,
    TemporalAnchor,
)

AnchorArrays = tuple[Any, Any, Any]  # (reference, mask, weight): a pytree for jit and vmap


@jax.tree_util.register_dataclass
@dataclass
class JaxAdamState:
    """Adam moments of a (B, H, W, 3) image batch and each image's step count (B, 1, 1, 1).

    Per-image counts let images with different histories (a cold start beside a warm frame)
    share a batch: each keeps its own bias correction.
    """

    m: jax.Array
    v: jax.Array
    t: jax.Array

    @classmethod
    def zeros(cls, shape: Sequence[int]) -> JaxAdamState:
        """A fresh state for images of `shape`."""
        count = jnp.zeros((shape[0], 1, 1, 1), jnp.float32)
        return cls(jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32), count)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.m.shape)


def adam_update(
    image: jax.Array, grad: jax.Array, state: JaxAdamState, config: AdamConfig
) -> tuple[jax.Array, JaxAdamState]:
    """One Adam update of the image, clipped to [0, 1] (AdamStepper's exact formula)."""
    t = state.t + 1.0
    m = config.beta1 * state.m + (1 - config.beta1) * grad
    v = config.beta2 * state.v + (1 - config.beta2) * jnp.square(grad)
    m_hat = m / (1 - config.beta1**t)
    v_hat = v / (1 - config.beta2**t)
    update = config.learning_rate * m_hat / (jnp.sqrt(v_hat) + config.epsilon)
    return jnp.clip(image - update, 0.0, 1.0), JaxAdamState(m, v, t)


def _model_variables(model: keras.Model) -> tuple[list, list]:
    """The model's (trainable, non-trainable) variable values, as stateless_call takes them."""
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )


def _batched(value: Any) -> Any:
    """Give a per-image array of a vmapped loss its batch axis of 1 back."""
    return value[None]


class JaxAdamStepper(BatchStepper):
    """Adam on B images at once with one jitted step (a `Stepper`, like tf_step.AdamStepper).

    The images of a batch are independent problems (a `BatchStepper`), so separate chains
    can be stacked into one batch (nst_core.batching) and split again.

    `model` is nst_core.model.feature_model(...) (content layers first, then style layers).
    `precision` is JAX's default matmul/conv precision while tracing ("float32" for true
    float32, "tensorfloat32" for TF32 tensor cores; None keeps JAX's default).
    `sync_every` is how many steps run on the device between reads of the loss terms.
    """

    def __init__(
        self,
        model: keras.Model,
        n_content: int,
        weights: LossWeights,
        config: AdamConfig | None = None,
        *,
        compute_dtype: str = "float32",
        precision: str | None = None,
        sync_every: int = 10,
    ) -> None:
        self.config = config or AdamConfig()
        self.sync_every = sync_every
        self.n_content = n_content
        self.loss_weights = weights
        self.precision = precision
        self.target_model = model
        self.model = (
            model if compute_dtype == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        )
        self.variables = _model_variables(self.model)
        self._value_and_grad = jax.jit(self._loss_and_grad)
        self._scan = jax.jit(self._scan_steps, static_argnames=("steps",), donate_argnums=(0, 1))

    # --- the traced functions -------------------------------------------------------------

    def _features(self, variables: tuple[list, list], x: jax.Array) -> list[jax.Array]:
        """Stateless forward pass; outputs cast to float32 so losses stay float32."""
        outputs, _ = self.model.stateless_call(variables[0], variables[1], x)
        return [ops.cast(o, "float32") for o in outputs]

    def _one_image_terms(self, variables, image, content_targets, style_grams, anchor) -> jax.Array:
        """The 5 loss terms of one image (H, W, 3); vmapped over the batch by the caller."""
        loss = make_loss_fn(
            lambda x: self._features(variables, x), self.n_content, self.loss_weights
        )
        batched_anchor = None
        if anchor is not None:
            reference, mask, weight = anchor
            batched_anchor = TemporalAnchor(_batched(reference), _batched(mask), weight)
        targets = Targets(
            [_batched(t) for t in content_targets], [_batched(g) for g in style_grams]
        )
        terms = loss(_batched(image), targets, batched_anchor)
        return jnp.stack([jnp.asarray(t, jnp.float32) for t in terms.values()])

    def _batch_terms(self, variables, image, content_targets, style_grams, anchor) -> jax.Array:
        """(B, 5) loss terms: each image is its own problem (vmap over the batch axis)."""
        gram_axes = [
            0 if g.shape[0] == image.shape[0] and g.shape[0] > 1 else None for g in style_grams
        ]
        style_grams = [g if a == 0 else g[0] for g, a in zip(style_grams, gram_axes, strict=True)]
        anchor_axes = None if anchor is None else (0, 0, None)
        per_image = jax.vmap(self._one_image_terms, in_axes=(None, 0, 0, gram_axes, anchor_axes))
        return per_image(variables, image, list(content_targets), style_grams, anchor)

    def _loss_and_grad(self, variables, image, content_targets, style_grams, anchor):
        """((B, 5) terms, d(sum of totals)/d image)."""

        def total(x):
            terms = self._batch_terms(variables, x, content_targets, style_grams, anchor)
            return jnp.sum(terms[:, 0]), terms

        with self._precision():
            (_, terms), grad = jax.value_and_grad(total, has_aux=True)(image)
        return terms, grad

    def _scan_steps(self, image, state, variables, content_targets, style_grams, anchor, steps):
        """`steps` Adam steps in one compiled call; returns image, state, (steps, B, 5) terms."""

        def body(carry, _):
            x, s = carry
            terms, grad = self._loss_and_grad(variables, x, content_targets, style_grams, anchor)
            x, s = adam_update(x, grad, s, self.config)
            return (x, s), terms

        (image, state), terms = jax.lax.scan(body, (image, state), None, length=steps)
        return image, state, terms

    def _precision(self) -> contextlib.AbstractContextManager:
        if self.precision is None:
            return contextlib.nullcontext()
        return jax.default_matmul_precision(self.precision)

    # --- public API -----------------------------------------------------------------------

    @staticmethod
    def concatenate(parts: Sequence[Any]) -> jax.Array:
        """Stack per-chain arrays (each with a batch axis) into one batch."""
        return jnp.concatenate([jnp.asarray(p) for p in parts])

    @staticmethod
    def concatenate_states(states: Sequence[tuple[JaxAdamState | None, tuple]]) -> JaxAdamState:
        """One state for a batch from (state or None, image shape) per chain."""
        filled = [s if s is not None else JaxAdamState.zeros(shape) for s, shape in states]
        return JaxAdamState(
            jnp.concatenate([s.m for s in filled]),
            jnp.concatenate([s.v for s in filled]),
            jnp.concatenate([s.t for s in filled]),
        )

    @staticmethod
    def state_slice(state: JaxAdamState, index: int) -> JaxAdamState:
        """Image `index`'s state, as a batch of one."""
        part = slice(index, index + 1)
        return JaxAdamState(state.m[part], state.v[part], state.t[part])

    def targets(self, content: np.ndarray, styles: np.ndarray) -> Targets:
        """Content targets (B, ...) and style Grams (S, C, C) from float32 features.

        `content` is (B, H, W, 3) and `styles` (S, H', W', 3), all in [0, 1]. Targets always
        come from the float32 model, whatever the compute dtype of the step.
        """
        with self._precision():
            content_out = self.target_model(preprocess(jnp.asarray(content, jnp.float32)))
            style_out = self.target_model(preprocess(jnp.asarray(styles, jnp.float32)))
        grams = [gram_matrix(f) for f in style_out[self.n_content :]]
        return Targets(list(content_out[: self.n_content]), grams)

    def loss_and_grad(
        self, image: np.ndarray, targets: Targets, anchor: TemporalAnchor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """((B, 5) loss terms, gradient of the summed total w.r.t. the (B, H, W, 3) image)."""
        terms, grad = self._value_and_grad(
            self.variables,
            jnp.asarray(image, jnp.float32),
            list(targets.content),
            list(targets.style_grams),
            _anchor_arrays(anchor),
        )
        return np.asarray(terms), np.asarray(grad)

    def steps(
        self,
        image: jax.Array,
        state: JaxAdamState,
        targets: Targets,
        steps: int,
        anchor: TemporalAnchor | None = None,
    ) -> tuple[jax.Array, JaxAdamState, jax.Array]:
        """`steps` updates on device; donates `image` and `state`. Terms are (steps, B, 5)."""
        return self._scan(
            image,
            state,
            self.variables,
            list(targets.content),
            list(targets.style_grams),
            _anchor_arrays(anchor),
            steps=steps,
        )

    def run(self, request: RunRequest) -> RunResult:
        """Optimize as `request` says; see `Stepper.run`.

        The curve holds the batch mean of each term of the image before each update. The
        stop is checked every `sync_every` steps: a stop may come up to `sync_every - 1`
        steps after the plateau.
        """
        r = request
        image = jnp.array(r.init, jnp.float32)
        state = r.state
        if state is None or state.shape != tuple(r.init.shape):
            state = JaxAdamState.zeros(r.init.shape)
        else:  # `steps` donates its state: copy the caller's, which a fork may share
            state = jax.tree.map(jnp.array, state)
        curve = LossCurve()
        while len(curve) < r.iterations:
            n = min(self.sync_every, r.iterations - len(curve))
            image, state, terms = self.steps(image, state, r.targets, n, r.anchor)
            if self._record(np.asarray(terms).mean(axis=1), curve, r.stop, r.progress):
                break
        return RunResult(np.asarray(image), curve, state)

    @staticmethod
    def _record(
        terms: np.ndarray, curve: LossCurve, stop: Stop | None, progress: Progress | None
    ) -> bool:
        """Append a chunk's (n, 5) terms; True when `stop` says to stop."""
        for row in terms:
            step_terms = LossTerms.of(row)
            curve.append(step_terms)
            if progress:
                progress(len(curve), step_terms.total)
            if stop is not None and stop.update(step_terms):
                return True
        return False


def _anchor_arrays(anchor: TemporalAnchor | None) -> AnchorArrays | None:
    """The anchor as a tuple of arrays, which jit and vmap take as a pytree."""
    if anchor is None:
        return None
    return (
        jnp.asarray(anchor.reference, jnp.float32),
        jnp.asarray(anchor.mask, jnp.float32),
        jnp.asarray(anchor.weight, jnp.float32),
    )
