"""Training objective and Adam step of the fast-mode network (nst_core.fastnet).

The network's output for a batch of content crops is scored with the project's own losses
on the VGG19 feature model (content layers first, then style layers):

- content: relative error of the output's features vs the input crops' features;
- style: relative Gram error vs fixed style Gram targets, weighted per layer;
- tv: total variation of the output;
- noise (Gupta et al. 2017, ReCoNet): mean squared difference between the output for x and
  for x + Gaussian noise: a network that ignores pixel noise flickers less on video;
- frame (flow-free, optional): for consecutive frames, the mean squared output change
  where the input did not change, weighted by the same still mask as nst_core.temporal
  (exp(-(max channel change / motion_sigma)^2)); moving regions are free to follow.

The noise is drawn on the host from a seeded numpy generator, so a seed fixes it on every
backend (Keras's own random streams differ between TensorFlow and JAX). `Trainer.step`
picks the backend's step: a compiled tf.function with tf.GradientTape on TensorFlow,
``jax.jit(jax.value_and_grad(...))`` over ``model.stateless_call`` on JAX; both update with
keras.optimizers.Adam, whose formula is the same on both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any, Protocol

import keras
import numpy as np
from keras import ops

from nst_video.nst_core.losses import content_loss, gram_matrix, style_loss, total_variation
from nst_video.nst_core.model import preprocess, with_dtype_policy
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import TrainSettings


@dataclass(frozen=True)
class Objective:
    """Weights of the training loss. `style_layers` are per-style-layer weights (() = all 1).

    `noise_sigma` is the standard deviation of the input noise of the noise term;
    `motion_sigma` the input change at which the frame term's mask falls to 1/e.
    """

    content: float = 1.0
    style: float = 5.0
    tv: float = 0.1
    noise: float = 10.0
    noise_sigma: float = 0.02
    frame: float = 0.0
    motion_sigma: float = 0.05
    style_layers: tuple[float, ...] = ()

    @classmethod
    def from_settings(cls, settings: TrainSettings) -> Objective:
        """The objective of training settings: their loss weights and stability terms."""
        return cls(
            content=settings.content_weight,
            style=settings.style_weight,
            tv=settings.tv_weight,
            noise=settings.noise_weight,
            noise_sigma=settings.noise_sigma,
            frame=settings.frame_weight,
            motion_sigma=settings.motion_sigma,
            style_layers=settings.layer_weights(),
        )

    def layer_weights(self, n_style: int) -> tuple[float, ...]:
        weights = self.style_layers or (1.0,) * n_style
        if len(weights) != n_style:
            raise ValueError(f"{len(weights)} style layer weights for {n_style} style layers")
        return weights


@dataclass(frozen=True)
class FastTerms:
    """The loss terms of one step, unweighted except `total` (the weighted sum)."""

    total: float
    content: float
    style: float
    tv: float
    noise: float
    frame: float

    @classmethod
    def from_array(cls, values: Any) -> FastTerms:
        return cls(*(float(v) for v in np.asarray(values)))

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype="float64")


TERM_NAMES = tuple(f.name for f in fields(FastTerms))
Fn = Callable[[Any], Any]


def style_grams(features: keras.Model, n_content: int, style: np.ndarray) -> list:
    """Gram targets (1, C, C) of each style layer, averaged over the style images (S, H, W, 3)."""
    outputs = features(preprocess(ops.convert_to_tensor(style, "float32")))
    return [
        ops.mean(gram_matrix(ops.cast(f, "float32")), axis=0, keepdims=True)
        for f in outputs[n_content:]
    ]


def blended_style_grams(
    features: keras.Model, n_content: int, styles: Sequence[np.ndarray], blend: Sequence[float]
) -> list:
    """Gram targets of several style images (each (H, W, 3), any size) mixed with `blend`
    weights, as nst_core.stylize.StyleTransfer mixes them: sum of weight x Gram per layer."""
    per_style = [
        [w * g for g in style_grams(features, n_content, style[None])]
        for w, style in zip(blend, styles, strict=True)
    ]
    return [sum(layer) for layer in zip(*per_style, strict=True)]


def still_mask(current, previous, sigma: float):
    """Per pixel 1 where the input did not change, ~0 where it moved: (B, H, W, 1)."""
    change = ops.max(ops.abs(current - previous), axis=-1, keepdims=True)
    return ops.exp(-ops.square(change / sigma))


def _style_and_content(features: list, n_content: int, grams: Sequence, objective: Objective):
    """(content, style) of the first half of `features` against the second half's content."""
    b = features[0].shape[0] // 2
    content = sum(content_loss(f[:b], ops.stop_gradient(f[b:])) for f in features[:n_content])
    weights = objective.layer_weights(len(features) - n_content)
    style = sum(
        w * style_loss(f[:b], g)
        for w, f, g in zip(weights, features[n_content:], grams, strict=True)
    )
    return content, style


def objective_terms(
    net: Fn,
    features: Fn,
    n_content: int,
    grams: Sequence,
    objective: Objective,
    batch,
    noise,
    previous=None,
):
    """The 6 terms (total, content, style, tv, noise, frame) as one float32 vector.

    `net` and `features` are the forward passes of the network and the VGG19 feature model;
    `batch` is (B, H, W, 3) in [0, 1], `noise` the same shape, `previous` the frames before
    `batch` or None. The network runs once on [batch, batch + noise, previous] and VGG19
    once on [output, batch]: instance norm and VGG are per image, so stacking changes nothing.
    """
    b = batch.shape[0]
    inputs = [batch, batch + noise] + ([previous] if previous is not None else [])
    outputs = net(ops.concatenate(inputs, axis=0))
    out = outputs[:b]
    vgg = features(preprocess(ops.concatenate([out, batch], axis=0)))
    vgg = [ops.cast(f, "float32") for f in vgg]  # bf16 features: losses in float32
    content, style = _style_and_content(vgg, n_content, grams, objective)
    tv = total_variation(out)
    noise_term, frame = _stability(outputs, batch, previous, objective)
    o = objective
    total = o.content * content + o.style * style + o.tv * tv + o.noise * noise_term
    total = total + o.frame * frame
    terms = (total, content, style, tv, noise_term, frame)
    return ops.stack([ops.cast(t, "float32") for t in terms])


def _stability(outputs, batch, previous, objective: Objective):
    """(noise, frame) terms from the network's outputs on [batch, batch + noise, previous]."""
    b = batch.shape[0]
    out = outputs[:b]
    noise_term = ops.mean(ops.square(out - outputs[b : 2 * b]))
    if previous is None:
        return noise_term, ops.zeros(())
    mask = still_mask(batch, previous, objective.motion_sigma)
    return noise_term, ops.mean(mask * ops.square(out - outputs[2 * b :]))


@dataclass
class TrainerState:
    """A trainer's state between steps: network weights, Adam's variables (iteration count
    and moments), and the position of the noise stream (numpy bit-generator state)."""

    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    rng: dict[str, Any]


class Trainer:
    """Adam on the network's weights, one compiled step per call, on the Keras backend in use.

    `features` is nst_core.model.feature_model(content_layers + style_layers, ...) (float32;
    `precision="bfloat16"` runs it under "mixed_bfloat16", losses stay float32; "auto" is
    resolved by nst_core.precision), `grams` the style targets (see `style_grams`, computed
    with the float32 model). `seed` fixes the noise; the network's initial weights are fixed
    by build_fastnet's seed.
    On JAX the weights live in the step's state: `sync()` writes them back into `net`.
    """

    def __init__(
        self,
        net: keras.Model,
        features: keras.Model,
        n_content: int,
        grams: Sequence,
        objective: Objective | None = None,
        *,
        learning_rate: float = 1e-3,
        seed: int = 0,
        precision: str = "float32",
    ) -> None:
        self.net = net
        self.n_content = n_content
        self.objective = objective or Objective()
        self.precision = resolve_precision(precision)  # "auto" decided here
        self.features = (
            features
            if self.precision == "float32"
            else with_dtype_policy(features, "mixed_bfloat16")
        )
        self.grams = [ops.convert_to_tensor(g, "float32") for g in grams]
        self.objective.layer_weights(len(self.grams))  # fail here, not inside a trace
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(net.trainable_variables)
        self._rng = np.random.default_rng(seed)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            self._engine: _Engine = _TfEngine(self)
        elif backend == "jax":
            self._engine = _JaxEngine(self)
        else:
            raise NotImplementedError(f"fast-mode training needs TensorFlow or JAX, not {backend}")

    def draw_noise(self, shape: Sequence[int]) -> np.ndarray:
        """The next noise batch of the seeded stream (sigma = objective.noise_sigma)."""
        noise = self._rng.standard_normal(tuple(shape), dtype=np.float32)
        return noise * np.float32(self.objective.noise_sigma)

    def step(self, batch: np.ndarray, previous: np.ndarray | None = None) -> FastTerms:
        """One Adam update on `batch` (B, H, W, 3 in [0, 1]); terms are those before it."""
        noise = self.draw_noise(batch.shape)
        return FastTerms.from_array(self._engine.step(*_tensors(batch, noise, previous)))

    def evaluate(
        self, batch: np.ndarray, noise: np.ndarray | None = None, previous=None
    ) -> FastTerms:
        """The terms for `batch` with the current weights, no update (zero noise by default)."""
        noise = np.zeros_like(batch) if noise is None else noise
        return FastTerms.from_array(self._engine.evaluate(*_tensors(batch, noise, previous)))

    def sync(self) -> keras.Model:
        """Write the trained weights into `net` (a no-op on TensorFlow) and return it."""
        self._engine.sync()
        return self.net

    def snapshot(self) -> TrainerState:
        """Everything a resumed training needs: weights, Adam's variables, the noise stream."""
        self.sync()
        return TrainerState(
            weights=[np.asarray(v) for v in self.net.get_weights()],
            optimizer=[np.asarray(v.value) for v in self.optimizer.variables],
            rng=self._rng.bit_generator.state,
        )

    def restore(self, state: TrainerState) -> None:
        """Continue from a snapshot (of a trainer built with the same network and settings)."""
        self.net.set_weights(state.weights)
        for variable, value in zip(self.optimizer.variables, state.optimizer, strict=True):
            variable.assign(value)
        self._rng.bit_generator.state = state.rng
        self._engine.reload()

    def _bind_terms(self, net: Fn, features: Fn) -> Callable[..., Any]:
        """objective_terms bound to this trainer's objective, for given forward passes."""

        def terms(grams, batch, noise, previous=None):
            return objective_terms(
                net, features, self.n_content, grams, self.objective, batch, noise, previous
            )

        return terms


def _tensors(batch: np.ndarray, noise: np.ndarray, previous: np.ndarray | None) -> tuple:
    convert = lambda a: None if a is None else ops.convert_to_tensor(a, "float32")  # noqa: E731
    return convert(batch), convert(noise), convert(previous)


class _Engine(Protocol):
    """A backend's compiled step: step/evaluate return the 6-term vector."""

    def step(self, batch, noise, previous) -> Any: ...

    def evaluate(self, batch, noise, previous) -> Any: ...

    def sync(self) -> None: ...

    def reload(self) -> None: ...


class _TfEngine:
    """tf.GradientTape in a tf.function; Keras variables are updated in place."""

    def __init__(self, trainer: Trainer) -> None:
        import tensorflow as tf

        self._tf = tf
        self.trainer = trainer
        self._terms = trainer._bind_terms(trainer.net, trainer.features)
        self._compiled_step = tf.function(self._step)
        self._compiled_evaluate = tf.function(self._evaluate)

    def _step(self, batch, noise, previous):
        trainer = self.trainer
        variables = trainer.net.trainable_variables
        with self._tf.GradientTape() as tape:
            terms = self._terms(trainer.grams, batch, noise, previous)
            total = terms[0]  # indexed under the tape, or the gradient is disconnected
        grads = tape.gradient(total, variables)
        trainer.optimizer.apply(grads, variables)
        return terms

    def _evaluate(self, batch, noise, previous):
        return self._terms(self.trainer.grams, batch, noise, previous)

    def step(self, batch, noise, previous):
        return self._compiled_step(batch, noise, previous)

    def evaluate(self, batch, noise, previous):
        return self._compiled_evaluate(batch, noise, previous)

    def sync(self) -> None:
        """Nothing to do: the step updates the Keras variables in place."""

    def reload(self) -> None:
        """Nothing to do: the step reads the Keras variables."""


class _JaxEngine:
    """jax.value_and_grad over stateless_call, jitted; the state is (weights, Adam variables)."""

    def __init__(self, trainer: Trainer) -> None:
        import jax

        self.trainer = trainer
        features = trainer.features
        self.reload()
        self.vgg = (
            [v.value for v in features.trainable_variables],
            [v.value for v in features.non_trainable_variables],
        )
        self._jit_step = jax.jit(self._step, donate_argnums=(0,))
        self._jit_terms = jax.jit(self._terms)
        self._grad = jax.value_and_grad(self._total, has_aux=True)

    def reload(self) -> None:
        """Take the state from the Keras variables (at start, and after Trainer.restore)."""
        import jax

        net = self.trainer.net
        # Copies: the step donates its state, which must not delete the Keras variables' arrays.
        self.state = tuple(
            [jax.numpy.array(v.value, copy=True) for v in variables]
            for variables in (
                net.trainable_variables,
                net.non_trainable_variables,
                self.trainer.optimizer.variables,
            )
        )

    def _terms(self, trainable, non_trainable, vgg, grams, batch, noise, previous):
        trainer = self.trainer
        net = lambda x: trainer.net.stateless_call(trainable, non_trainable, x)[0]  # noqa: E731
        features = lambda x: trainer.features.stateless_call(vgg[0], vgg[1], x)[0]  # noqa: E731
        return trainer._bind_terms(net, features)(grams, batch, noise, previous)

    def _total(self, trainable, non_trainable, vgg, grams, batch, noise, previous):
        terms = self._terms(trainable, non_trainable, vgg, grams, batch, noise, previous)
        return terms[0], terms

    def _step(self, state, vgg, grams, batch, noise, previous):
        trainable, non_trainable, optimizer_vars = state
        (_, terms), grads = self._grad(trainable, non_trainable, vgg, grams, batch, noise, previous)
        trainable, optimizer_vars = self.trainer.optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        return (trainable, non_trainable, optimizer_vars), terms

    def step(self, batch, noise, previous):
        self.state, terms = self._jit_step(
            self.state, self.vgg, self.trainer.grams, batch, noise, previous
        )
        return terms

    def evaluate(self, batch, noise, previous):
        trainable, non_trainable, _ = self.state
        return self._jit_terms(
            trainable, non_trainable, self.vgg, self.trainer.grams, batch, noise, previous
        )

    def sync(self) -> None:
        trainable, non_trainable, optimizer_vars = self.state
        pairs = (
            (self.trainer.net.trainable_variables, trainable),
            (self.trainer.net.non_trainable_variables, non_trainable),
            (self.trainer.optimizer.variables, optimizer_vars),
        )
        for variables, values in pairs:
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
