"""What every optimizer of the image shares, whatever the Keras backend: the loss curve,
early stopping and Adam's settings. The steps themselves live in nst_core.tf_step
(TensorFlow) and nst_core.jax_step (JAX); `make_stepper` picks the one of the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Progress = Callable[[int, float], None]


@dataclass
class LossCurve:
    """Per-iteration loss terms of one optimization run."""

    total: list[float] = field(default_factory=list)
    content: list[float] = field(default_factory=list)
    style: list[float] = field(default_factory=list)
    tv: list[float] = field(default_factory=list)
    temporal: list[float] = field(default_factory=list)

    def append(self, *terms: float) -> None:
        """Record (total, content, style, tv, temporal) of one step."""
        series = (self.total, self.content, self.style, self.tv, self.temporal)
        for values, value in zip(series, terms, strict=True):
            values.append(value)

    def __len__(self) -> int:
        return len(self.total)


class EarlyStop:
    """Stop when the best loss improved by less than `tolerance` (relative) in `patience` steps.

    Comparing best-so-far values, not raw ones, keeps Adam's noisy steps from stopping early.
    """

    def __init__(self, tolerance: float, patience: int) -> None:
        self.tolerance = tolerance
        self.patience = patience
        self._best: list[float] = []

    def update(self, loss: float) -> bool:
        best = min(loss, self._best[-1]) if self._best else loss
        self._best.append(best)
        if self.tolerance <= 0 or len(self._best) <= self.patience:
            return False
        before = self._best[-1 - self.patience]
        return (before - best) <= self.tolerance * abs(before)


@dataclass(frozen=True)
class AdamConfig:
    learning_rate: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


def make_stepper(loss_fn, model, n_content: int, weights, config: AdamConfig):
    """The Adam stepper of the active Keras backend: tf.function on TensorFlow, jit on JAX.

    Both run the same model (already in its compute precision) and losses (`loss_fn` is
    make_loss_fn(model, n_content, weights)), and share `run`'s signature.
    """
    import keras

    if keras.backend.backend() == "jax":
        from nst_core.jax_step import JaxAdamStepper

        return JaxAdamStepper(model, n_content, weights, config)
    from nst_core.tf_step import AdamStepper

    return AdamStepper(loss_fn, config)
