"""nst_core.batching: grouping and splitting with a numpy stepper; the TensorFlow refusal.

The real JAX runs (batched frames equal frames stylized alone) are in test_jax_step.py.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nst_video.nst_core.batching import BatchingStepper, _Call, group_calls
from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.optimize import make_stepper
from nst_video.nst_core.settings import make_settings
from nst_video.nst_core.stepper import (
    AdamConfig,
    BatchStepper,
    EarlyStop,
    LossCurve,
    LossTerms,
    RunRequest,
    RunResult,
    Targets,
    TemporalAnchor,
)
from nst_video.nst_core.stylize import StyleTransfer

GRAMS = [np.ones((1, 2, 2), "float32")]  # one style target shared by every call


class NumpyStepper(BatchStepper):
    """Moves each image 10% of the way to its content target per step, then towards its
    anchor; images of a batch are independent. The state counts each image's steps."""

    config = AdamConfig()

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, request: RunRequest) -> RunResult:
        init, anchor, state, stop = request.init, request.anchor, request.state, request.stop
        self.batches.append(len(init))
        image, target = init.copy(), request.targets.content[0]
        steps = np.zeros(len(init)) if state is None else state.copy()
        curve = LossCurve()
        for _ in range(request.iterations):
            curve.append(LossTerms.of([np.abs(image - target).mean(), 0, 0, 0, 0]))
            image += 0.1 * (target - image)
            if anchor is not None:
                image += anchor.weight * anchor.mask * (anchor.reference - image)
            steps += 1
            if stop is not None and stop.update(curve.last()):
                break
        return RunResult(image, curve, steps)

    def concatenate(self, parts):
        return np.concatenate(parts)

    def concatenate_states(self, states):
        return np.concatenate([np.zeros(shape[0]) if s is None else s for s, shape in states])

    def state_slice(self, state, index):
        return state[index : index + 1]


def _frame(value: float, size: int = 4) -> np.ndarray:
    return np.full((1, size, size, 3), value, "float32")


def _chain_calls(seed: float) -> list[dict]:
    """A chain's three frames: a cold start, then two warm frames held by an anchor."""
    anchor = TemporalAnchor(_frame(seed), np.full((1, 4, 4, 1), 0.5, "float32"), 0.2)
    return [
        {"init": _frame(0.0), "iterations": 5, "targets": Targets([_frame(seed)], GRAMS)},
        *(
            {
                "init": _frame(seed + 0.1 * k),
                "iterations": 3,
                "targets": Targets([_frame(seed + 0.2 * k)], GRAMS),
                "anchor": anchor,
                "stop": EarlyStop(0.0, 2),
            }
            for k in (1, 2)
        ),
    ]


def _run_chain(stepper, calls: list[dict], barrier: threading.Barrier | None = None) -> list:
    """Run one chain's calls in order, carrying the state; `barrier`: after joining."""
    with stepper.joined():
        if barrier is not None:
            barrier.wait()  # every chain has joined before any calls: full rounds from the start
        state, results = None, []
        for call in calls:
            image, curve, state = stepper.run(RunRequest(**call, state=state))
            results.append((image, curve.total, state))
        return results


def test_calls_group_by_key_in_arrival_order_and_split_at_max_batch():
    def call(name: float, shape=(1, 4, 4, 3), iterations=3, **extra) -> _Call:
        init = np.full(shape, name, "float32")
        return _Call(RunRequest(init, iterations, Targets([], GRAMS), **extra))

    anchor = TemporalAnchor(None, None, 0.5)
    calls = [
        call(0),
        call(1),
        call(2, shape=(1, 4, 6, 3)),  # another size
        call(3),
        call(4, iterations=5),  # another budget
        call(5, anchor=anchor),  # another objective
        call(6),
        call(7, stop=EarlyStop(1e-3, 5)),  # another early stop
        call(8, stop=EarlyStop(1e-3, 5)),
        call(9),
    ]
    batches = group_calls(calls, max_batch=3)
    assert [[int(c.request.init.flat[0]) for c in batch] for batch in batches] == [
        [0, 1, 3],
        [6, 9],
        [2],
        [4],
        [5],
        [7, 8],
    ]


def test_calls_with_their_own_stop_or_other_style_targets_run_alone():
    class Never:
        def update(self, terms) -> bool:
            return False

    calls = [
        _Call(RunRequest(_frame(0), 3, Targets([], GRAMS), stop=Never())),
        _Call(RunRequest(_frame(1), 3, Targets([], GRAMS), stop=Never())),
        _Call(RunRequest(_frame(2), 3, Targets([], [np.ones((1, 2, 2), "float32")]))),
        _Call(RunRequest(_frame(3), 3, Targets([], GRAMS))),
    ]
    assert [len(batch) for batch in group_calls(calls, max_batch=4)] == [1, 1, 1, 1]


def test_joined_chains_share_batches_and_get_what_they_get_alone():
    chains = [_chain_calls(0.3), _chain_calls(0.8)]
    alone = NumpyStepper()
    expected = [_run_chain(alone, calls) for calls in chains]
    assert alone.batches == [1] * 6

    inner = NumpyStepper()
    batching = BatchingStepper(inner, max_batch=2, wait_s=600)  # the wait never times out
    barrier = threading.Barrier(len(chains))
    with ThreadPoolExecutor(len(chains)) as pool:
        got = list(pool.map(lambda calls: _run_chain(batching, calls, barrier), chains))
    assert batching.batch_sizes == inner.batches == [2, 2, 2]
    for chain_got, chain_expected in zip(got, expected, strict=True):
        for i, ((image, curve, state), (image_alone, _, state_alone)) in enumerate(
            zip(chain_got, chain_expected, strict=True)
        ):
            assert image.shape == image_alone.shape == (1, 4, 4, 3)
            np.testing.assert_allclose(image, image_alone, rtol=1e-6)
            np.testing.assert_array_equal(state, state_alone)
            # Each chain of a batch gets the batch's mean curve.
            mean_curve = np.mean([chain[i][1] for chain in expected], axis=0)
            np.testing.assert_allclose(curve, mean_curve, rtol=1e-6)


def test_a_round_larger_than_max_batch_runs_as_several_batches():
    """Four chains joined, batches of two: no batch exceeds two; every chain gets its own."""
    chains = [
        [{"init": _frame(0.0), "iterations": 3, "targets": Targets([_frame(0.2 * k)], GRAMS)}] * 3
        for k in range(1, 5)
    ]
    batching = BatchingStepper(NumpyStepper(), max_batch=2, wait_s=600)
    barrier = threading.Barrier(len(chains))
    with ThreadPoolExecutor(len(chains)) as pool:
        got = list(pool.map(lambda calls: _run_chain(batching, calls, barrier), chains))
    # The first round waits for two calls; whatever else arrived is split, never merged.
    assert sum(batching.batch_sizes) == 12 and max(batching.batch_sizes) == 2
    for calls, results in zip(chains, got, strict=True):
        expected = _run_chain(NumpyStepper(), calls)
        for (image, _, state), (image_alone, _, state_alone) in zip(results, expected, strict=True):
            np.testing.assert_allclose(image, image_alone, rtol=1e-6)
            np.testing.assert_array_equal(state, state_alone)


def test_an_error_reaches_every_chain_of_the_batch():
    class Broken(NumpyStepper):
        def run(self, request):
            raise RuntimeError("out of memory (injected)")

    batching = BatchingStepper(Broken(), max_batch=2, wait_s=600)
    barrier = threading.Barrier(2)
    chains = [_chain_calls(0.3), _chain_calls(0.8)]

    def failure(calls: list[dict]) -> str:
        with pytest.raises(RuntimeError, match="injected") as error:
            _run_chain(batching, calls, barrier)
        return str(error.value)

    with ThreadPoolExecutor(2) as pool:
        assert len(list(pool.map(failure, chains))) == 2
    assert batching.batch_sizes == [2]


def test_the_tensorflow_step_is_refused(starry_64, vgg_weights):
    """Its losses average over a batch, so stacked chains would pull on each other."""
    transfer = StyleTransfer([starry_64], make_settings(size=64), vgg_weights)
    with pytest.raises(InvalidSettingsError, match="KERAS_BACKEND=jax"):
        BatchingStepper(transfer.stepper, max_batch=2)
    with pytest.raises(InvalidSettingsError, match="KERAS_BACKEND=jax"):
        make_stepper(
            transfer.model, transfer.n_content, transfer.loss_weights, AdamConfig(), batch=2
        )
