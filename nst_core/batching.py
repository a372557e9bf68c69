"""Micro-batching: chains that advance in threads share one batched optimizer step.

A video's chunks are independent frame chains. Run in K threads (`--workers K`), each chain
calls `stepper.run` once per frame. A chain announces itself with `joined()`; the first
call of a round waits until every chain that has joined (up to `max_batch`) has called, then the
compatible calls run as one batch, so K small frames fill a GPU as one (B=K) step instead of
K steps one after another. `wait_s` bounds that wait, in case a chain stalls. The JAX step
treats every image of a batch as its own problem (vmap), so a batched frame gets the same
gradients it would get alone.

Batching needs a `BatchStepper`, whose images are independent within a batch
(`JaxAdamStepper`); the TensorFlow step's losses average over the batch, so it is refused.

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

import numpy as np

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.stepper import (
    AdamConfig,
    BatchStepper,
    EarlyStop,
    RunRequest,
    RunResult,
    Stepper,
    Targets,
    TemporalAnchor,
)


@dataclass
class _Call:
    """One thread's `run` request, waiting for its result."""

    request: RunRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: RunResult | None = None
    error: BaseException | None = None

    def key(self) -> tuple:
        """Calls with equal keys can share a batch.

        A batch runs one EarlyStop on its mean loss, so calls share one only with equal
        early-stop settings; any other `Stop` is the caller's own and runs alone.
        """
        r = self.request
        stop = r.stop
        if isinstance(stop, EarlyStop):
            stop = (stop.tolerance, stop.patience)
        elif stop is not None:
            stop = id(stop)
        return (
            tuple(r.init.shape[1:]),
            r.iterations,
            None if r.anchor is None else float(r.anchor.weight),
            tuple(id(g) for g in r.targets.style_grams),
            stop,
        )


def group_calls(calls: list[_Call], max_batch: int) -> list[list[_Call]]:
    """Calls with equal keys, in arrival order, split into batches of at most `max_batch`."""
    groups: dict[tuple, list[_Call]] = {}
    for call in calls:
        groups.setdefault(call.key(), []).append(call)
    return [
        group[i : i + max_batch]
        for group in groups.values()
        for i in range(0, len(group), max_batch)
    ]


class BatchingStepper(Stepper):
    """Wraps a `BatchStepper`; `run` has the `Stepper` signature."""

    def __init__(self, stepper: Stepper, max_batch: int, wait_s: float = 10.0) -> None:
        if not isinstance(stepper, BatchStepper):
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

    @property
    def config(self) -> AdamConfig:
        return self.stepper.config

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

    def run(self, request: RunRequest) -> RunResult:
        call = _Call(request)
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
        assert call.result is not None
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
        for group in group_calls(calls, self.max_batch):
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
            group[0].result = self.stepper.run(group[0].request)
            return
        requests = [call.request for call in group]
        first = requests[0]
        stack = self.stepper.concatenate
        stop = first.stop
        if isinstance(stop, EarlyStop):
            stop = EarlyStop(stop.tolerance, stop.patience)
        contents = zip(*(r.targets.content for r in requests), strict=True)
        image, curve, state = self.stepper.run(
            RunRequest(
                np.concatenate([r.init for r in requests]),
                first.iterations,
                Targets([stack(parts) for parts in contents], first.targets.style_grams),
                anchor=self._stacked_anchor(requests),
                state=self.stepper.concatenate_states([(r.state, r.init.shape) for r in requests]),
                stop=stop,
            )
        )
        for k, call in enumerate(group):
            if call.request.progress:
                for i, loss in enumerate(curve.total, start=1):
                    call.request.progress(i, loss)
            call.result = RunResult(image[k : k + 1], curve, self.stepper.state_slice(state, k))

    def _stacked_anchor(self, requests: list[RunRequest]) -> TemporalAnchor | None:
        """The requests' anchors as one (equal keys: all None, or all with the same weight)."""
        anchors = [r.anchor for r in requests if r.anchor is not None]
        if not anchors:
            return None
        stack = self.stepper.concatenate
        return TemporalAnchor(
            stack([a.reference for a in anchors]),
            stack([a.mask for a in anchors]),
            anchors[0].weight,
        )
