"""Micro-batching: chains that advance in threads share one batched optimizer step.

A video's chunks are independent frame chains. Run in K threads (`--workers K`), each chain
calls `adam.run` once per frame. A chain announces itself with `joined()`; the first call of
a round waits until every chain that has joined (up to `max_batch`) has called, then the
compatible calls run as one batch, so K small frames fill a GPU as one (B=K) step instead of
K steps one after another. `wait_s` bounds that wait, in case a chain stalls. The JAX step
treats every image of a batch as its own problem (vmap), so a batched frame gets the same
gradients it would get alone.

Batching needs a stepper whose images are independent within a batch (`JaxAdamStepper`);
the TensorFlow step's losses average over the batch, so it is refused.

What changes: a batch stops early on the batch's mean loss (not each frame's own), and
every frame of a batch reports the batch's mean loss curve. With tolerance 0 the batched
frames equal the frames stylized one by one (tests/nst_core/test_batching.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nst_core.errors import InvalidSettingsError
from nst_core.optimize import EarlyStop, Progress


@dataclass
class _Call:
    """One thread's `run` call, waiting for its result."""

    init: np.ndarray
    iterations: int
    content_targets: list
    style_grams: list
    anchor: tuple | None
    state: Any
    stop: EarlyStop | None
    progress: Progress | None
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple | None = None
    error: BaseException | None = None

    def key(self) -> tuple:
        """Calls with equal keys can share a batch."""
        stop = (self.stop.tolerance, self.stop.patience) if self.stop else None
        weight = None if self.anchor is None else float(np.asarray(self.anchor[2]))
        return (
            tuple(self.init.shape[1:]),
            self.iterations,
            weight,
            tuple(id(g) for g in self.style_grams),
            stop,
        )


class BatchingStepper:
    """Wraps a batch-capable stepper; `run` has the wrapped stepper's signature."""

    def __init__(self, stepper: Any, max_batch: int, wait_s: float = 10.0) -> None:
        if not getattr(stepper, "independent_batch", False):
            raise InvalidSettingsError(
                "batching chunks needs the JAX step (KERAS_BACKEND=jax): the TensorFlow "
                "step's losses average over a batch"
            )
        self.stepper = stepper
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batch_sizes: list[int] = []  # every batch run, for reports and tests
        self._arrived = threading.Condition()
        self._pending: list[_Call] = []
        self._leading = False
        self._joined = 0  # chains between joined() and its end: the size of a full round

    @contextmanager
    def joined(self) -> Iterator[None]:
        """Count the calling chain in every round while the block runs."""
        with self._arrived:
            self._joined += 1
        try:
            yield
        finally:
            with self._arrived:
                self._joined -= 1
                self._arrived.notify_all()

    def run(
        self,
        init: np.ndarray,
        iterations: int,
        content_targets,
        style_grams,
        *,
        anchor: tuple | None = None,
        state: Any = None,
        stop: EarlyStop | None = None,
        progress: Progress | None = None,
    ):
        call = _Call(
            init, iterations, list(content_targets), list(style_grams), anchor, state, stop,
            progress,
        )  # fmt: skip
        with self._arrived:
            self._pending.append(call)
            self._arrived.notify_all()
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _lead(self) -> None:
        """Wait for a full round (or `wait_s`), then run its calls, grouped."""
        deadline = time.monotonic() + self.wait_s
        with self._arrived:
            while len(self._pending) < min(self.max_batch, max(1, self._joined)):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            calls, self._pending = self._pending, []
            self._leading = False
        groups: dict[tuple, list[_Call]] = {}
        for call in calls:
            groups.setdefault(call.key(), []).append(call)
        batches = [
            group[i : i + self.max_batch]
            for group in groups.values()
            for i in range(0, len(group), self.max_batch)
        ]
        for group in batches:
            try:
                self._execute(group)
            except BaseException as error:  # noqa: BLE001 - handed to every waiting thread
                for call in group:
                    call.error = error
            finally:
                for call in group:
                    call.done.set()

    def _execute(self, group: list[_Call]) -> None:
        self.batch_sizes.append(len(group))
        if len(group) == 1:
            c = group[0]
            c.result = self.stepper.run(
                c.init, c.iterations, c.content_targets, c.style_grams,
                anchor=c.anchor, state=c.state, stop=c.stop, progress=c.progress,
            )  # fmt: skip
            return
        first = group[0]
        stack = self.stepper.concatenate
        anchor = None
        if first.anchor is not None:
            anchor = (
                stack([c.anchor[0] for c in group]),
                stack([c.anchor[1] for c in group]),
                first.anchor[2],
            )
        stop = EarlyStop(first.stop.tolerance, first.stop.patience) if first.stop else None
        image, curve, state = self.stepper.run(
            np.concatenate([c.init for c in group]),
            first.iterations,
            [stack(parts) for parts in zip(*(c.content_targets for c in group), strict=True)],
            first.style_grams,
            anchor=anchor,
            state=self.stepper.concatenate_states([(c.state, c.init.shape) for c in group]),
            stop=stop,
        )
        for k, call in enumerate(group):
            if call.progress:
                for i, loss in enumerate(curve.total, start=1):
                    call.progress(i, loss)
            call.result = (image[k : k + 1], curve, self.stepper.state_slice(state, k))
