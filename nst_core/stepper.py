"""The optimizer contract, whatever the Keras backend: what a stepper takes and returns.

A stepper runs Adam on a batch of images (B, H, W, 3 in [0, 1]) towards fixed `Targets`,
optionally pulled towards a `TemporalAnchor`. nst_core.tf_step and nst_core.jax_step
implement `Stepper`, nst_core.batching wraps a `BatchStepper`, and
nst_core.optimize.make_stepper picks one. This module imports nothing of the project, so
every module can depend on it without an import cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np

Progress = Callable[[int, float], None]
T = TypeVar("T")


@dataclass(frozen=True)
class LossTerms(Generic[T]):
    """The terms of the Gatys loss of an image: floats, or tensors inside a compiled step."""

    total: T
    content: T
    style: T
    tv: T
    temporal: T

    @property
    def gatys(self) -> T:
        """The loss without the temporal term (content + style + tv, weighted)."""
        return self.total - self.temporal

    def values(self) -> tuple[T, ...]:
        return (self.total, self.content, self.style, self.tv, self.temporal)

    @classmethod
    def of(cls, values: Iterable[Any]) -> LossTerms[float]:
        """Floats from the 5 values of a stacked row (e.g. a step's tensor of terms)."""
        return cls(*map(float, values))


@dataclass
class LossCurve:
    """Per-iteration loss terms of one optimization run."""

    total: list[float] = field(default_factory=list)
    content: list[float] = field(default_factory=list)
    style: list[float] = field(default_factory=list)
    tv: list[float] = field(default_factory=list)
    temporal: list[float] = field(default_factory=list)

    def _series(self) -> tuple[list[float], ...]:
        return (self.total, self.content, self.style, self.tv, self.temporal)

    def append(self, terms: LossTerms[float]) -> None:
        for values, value in zip(self._series(), terms.values(), strict=True):
            values.append(value)

    def last(self) -> LossTerms[float]:
        """The terms of the last step (NaN without steps)."""
        if not self:
            return LossTerms.of([float("nan")] * 5)
        return LossTerms(*(values[-1] for values in self._series()))

    def __len__(self) -> int:
        return len(self.total)


class Stop(Protocol):
    """Decides after each step, from its loss terms, whether a run stops."""

    def update(self, terms: LossTerms[float]) -> bool: ...


class EarlyStop:
    """Stop when the best loss improved by less than `tolerance` (relative) in `patience` steps.

    Comparing best-so-far values, not raw ones, keeps Adam's noisy steps from stopping early.
    A tolerance of 0 never stops.
    """

    def __init__(self, tolerance: float, patience: int) -> None:
        self.tolerance = tolerance
        self.patience = patience
        self._best: list[float] = []

    def update(self, terms: LossTerms[float]) -> bool:
        loss = terms.total
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


@dataclass(frozen=True)
class Targets:
    """What the losses compare an image with: features of the content, Grams of the style.

    `content` holds one (B, ...) activation per content layer, `style_grams` one (1, C, C)
    or (B, C, C) Gram matrix per style layer, in the model's layer order.
    """

    content: Sequence[Any]
    style_grams: Sequence[Any]


@dataclass(frozen=True)
class TemporalAnchor:
    """The temporal term: `weight` x masked mean squared difference from `reference`.

    `reference` is (B, H, W, 3) and `mask` (B, H, W, 1) in [0, 1] (see nst_core.temporal).
    """

    reference: Any
    mask: Any
    weight: float


@dataclass(frozen=True)
class RunRequest:
    """One optimization: `iterations` Adam steps from `init` (B, H, W, 3 in [0, 1]).

    `anchor` adds the temporal term; `state` is the Adam state a previous run returned (None:
    fresh moments); `stop` may end the run early; `progress(step, total loss)` is called
    after every recorded step.
    """

    init: np.ndarray
    iterations: int
    targets: Targets
    anchor: TemporalAnchor | None = None
    state: Any = None
    stop: Stop | None = None
    progress: Progress | None = None


class RunResult(NamedTuple):
    """The image after the last update, the curve, and the state to carry to the next run."""

    image: np.ndarray
    curve: LossCurve
    state: Any


class Stepper(Protocol):
    """Runs Adam on images; `state` (the moments) is the stepper's own, opaque to callers."""

    config: AdamConfig

    def run(self, request: RunRequest) -> RunResult:
        """Optimize as `request` says. The loss recorded at step i is that of the image before
        update i. A returned state is never changed by later runs, so it may be shared (a
        forked frame chain).
        """
        ...

    def joined(self) -> contextlib.AbstractContextManager[None]:
        """Announce a chain that calls `run` repeatedly (batching steppers group such chains)."""
        return contextlib.nullcontext()


@runtime_checkable
class BatchStepper(Stepper, Protocol):
    """A stepper whose images are independent problems within a batch, so that the calls of
    several chains can be stacked into one batch and split again (nst_core.batching)."""

    def concatenate(self, parts: Sequence[Any]) -> Any:
        """Stack per-chain arrays (each with a batch axis) into one batch."""
        ...

    def concatenate_states(self, states: Sequence[tuple[Any, tuple[int, ...]]]) -> Any:
        """One state for a batch from (state or None, image shape) per chain."""
        ...

    def state_slice(self, state: Any, index: int) -> Any:
        """Image `index`'s state, as a batch of one."""
        ...
