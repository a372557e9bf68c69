"""The frame chain: each frame warm-starts from the previous stylized frame (no optical flow).

Frame 0 and every scene cut cold-start with `first_iterations`; later frames start from the
previous output (`prev`), or from it plus the input's change (`prev+delta`, a flow-free
motion hint), with `iterations` steps. `content` stylizes every frame independently (the
baseline that flickers).

Drift guard: restarting Adam on every frame makes each warm frame churn (its first steps are
full-size sign steps) and a static scene wanders over hundreds of frames. The chain keeps
Adam's moments across warm frames (`carry_state`), and the temporal term (`temporal_weight`)
pulls every pixel whose input has not changed towards a reference output: the output of that
pixel once its input last settled. Where the input changes (by more than `motion_sigma`)
the pixel is released; for `settle_frames` frames after a change the reference follows the
output while the pull ramps back up, so newly revealed content converges before it is
held (otherwise the half-painted first frame after a change, e.g. a ghost of an object that
left, would be frozen). Anchoring to the reference, not to the previous output, keeps small
per-frame moves from adding up over hundreds of frames.
benchmarks/temporal.py measures both guards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from keras import ops

from nst_core.optimize import EarlyStop
from nst_core.settings import VideoSettings
from nst_core.stylize import StyleTransfer, initial_image


@dataclass(frozen=True)
class FrameStats:
    """What the chain did for one frame; `loss` is the Gatys loss, without the temporal term."""

    index: int
    cold_start: bool
    iterations: int
    loss: float
    content_loss: float
    style_loss: float
    temporal_loss: float
    seconds: float


def still_mask(current: np.ndarray, previous: np.ndarray, sigma: float) -> np.ndarray:
    """Per-pixel weight in [0, 1]: 1 where the input frame did not change, ~0 where it moved."""
    change = np.abs(current - previous).max(axis=-1, keepdims=True)
    return np.exp(-np.square(change / sigma)).astype("float32")


@dataclass
class Reference:
    """Per pixel: the input and output it is held to, and frames since its input changed."""

    input: np.ndarray
    output: np.ndarray
    age: np.ndarray  # (H, W, 1) frames since the last change

    def update(self, content: np.ndarray, output: np.ndarray, sigma: float, settle: int) -> None:
        changed = still_mask(content, self.input, sigma) < np.exp(-1)
        self.age = np.where(changed, 0, self.age + 1)
        self.input = np.where(changed, content, self.input)
        self.output = np.where(self.age <= settle, output, self.output)

    def mask(self, content: np.ndarray, sigma: float, settle: int) -> np.ndarray:
        """Temporal weight per pixel: still input, ramping up as a change settles."""
        ramp = np.minimum(1.0, self.age / max(settle, 1))
        return (still_mask(content, self.input, sigma) * ramp).astype("float32")


class FrameChain:
    """Stylizes a sequence of frames of one shot or clip, warm-starting each from the last."""

    def __init__(self, transfer: StyleTransfer, settings: VideoSettings) -> None:
        self.transfer = transfer
        self.settings = settings
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (input, output)
        self._reference: Reference | None = None
        self._state = None  # the stepper's Adam state, carried across warm frames

    def reset(self) -> None:
        """Forget the previous frame: the next one cold-starts (a scene cut)."""
        self._previous = self._reference = self._state = None

    def _update_reference(self, content: np.ndarray, output: np.ndarray) -> None:
        s = self.settings
        if self._reference is None:  # a cold start: converged, so held at once
            age = np.full(content.shape[:2] + (1,), s.settle_frames, dtype="float32")
            self._reference = Reference(content, output, age)
        else:
            self._reference.update(content, output, s.motion_sigma, s.settle_frames)

    def _warm_init(self, content: np.ndarray) -> np.ndarray:
        previous_input, previous_output = self._previous
        if self.settings.frame_init == "prev+delta":
            return np.clip(previous_output + (content - previous_input), 0.0, 1.0)
        return previous_output

    def _anchor(self, content: np.ndarray):
        weight = self.settings.temporal_weight
        if weight <= 0:
            return None
        reference = self._reference
        mask = reference.mask(content, self.settings.motion_sigma, self.settings.settle_frames)
        return (
            ops.convert_to_tensor(reference.output[None]),
            ops.convert_to_tensor(mask[None]),
            ops.convert_to_tensor(weight, "float32"),
        )

    def step(self, content: np.ndarray, index: int = 0) -> tuple[np.ndarray, FrameStats]:
        """Stylize one frame (float RGB in [0, 1], processing size) after the previous one."""
        s = self.settings
        started = time.perf_counter()
        cold = self._previous is None or s.frame_init == "content"
        if cold:
            init, iterations, anchor, state = (
                initial_image(content, s),
                s.first_iterations,
                None,
                None,
            )
        else:
            init, iterations = self._warm_init(content), s.iterations
            anchor = self._anchor(content)
            state = self._state if s.carry_state else None
        transfer = self.transfer
        transfer.check_size(*content.shape[:2])
        image, curve, state = transfer.adam.run(
            init[None],
            iterations,
            transfer.content_targets(content),
            transfer.style_grams(*content.shape[:2]),
            anchor=anchor,
            state=state,
            stop=EarlyStop(s.tolerance, s.patience),
        )
        output = image[0]
        self._previous, self._state = (content, output), state
        self._update_reference(content, output)
        last = (lambda series: series[-1]) if len(curve) else (lambda series: float("nan"))
        stats = FrameStats(
            index=index,
            cold_start=cold,
            iterations=len(curve),
            loss=last(curve.total) - last(curve.temporal),
            content_loss=last(curve.content),
            style_loss=last(curve.style),
            temporal_loss=last(curve.temporal),
            seconds=time.perf_counter() - started,
        )
        return output, stats

    def run(
        self,
        frames: Iterable[np.ndarray],
        *,
        cuts: Iterable[int] = (),
        start: int = 0,
        progress: Callable[[FrameStats], None] | None = None,
    ) -> Iterator[tuple[np.ndarray, FrameStats]]:
        """Yield (stylized frame, stats) for each frame; frames at `cuts` cold-start."""
        cut_set = set(cuts)
        for index, frame in enumerate(frames, start=start):
            if index in cut_set:
                self.reset()
            output, stats = self.step(frame, index)
            if progress:
                progress(stats)
            yield output, stats
