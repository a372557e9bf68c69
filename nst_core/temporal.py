"""The frame chain: each frame warm-starts from the previous stylized frame (no optical flow).

Frame 0 and every scene cut cold-start with `first_iterations`; later frames start from the
previous output (`prev`, the default), from it plus the input's change (`prev+delta`, a
flow-free motion hint), or from it where the input is still and from the content where it
changed (`masked`), with `iterations` steps. `content` stylizes every frame independently
(the baseline that flickers). benchmarks/seams.py measured `masked` against `prev`: it
follows motion more than a cold start does (raw content shows through where things move)
and churns more, so `prev` stays the default.

Chunks and keyframes: the chains of one shot, one per chunk, all start from the shot's
`Keyframe` (its first frame, cold-started once), so still pixels carry the same texture on
both sides of a seam. The first frame after a keyframe at a distance (a `leap`) gets
`iterations` plus the share of pixels that changed since the keyframe of the rest of
`first_iterations`.

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
benchmarks/temporal.py measures both guards; it forks chains (`FrameChain.fork`) to run
variants from a shared history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nst_video.nst_core.settings import VideoSettings
from nst_video.nst_core.stepper import EarlyStop, Stop, TemporalAnchor
from nst_video.nst_core.stylize import StyleTransfer, initial_image, preserve_colors


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


@dataclass(frozen=True)
class Reference:
    """Per pixel: the input and output it is held to, and frames since its input changed."""

    input: np.ndarray
    output: np.ndarray
    age: np.ndarray  # (H, W, 1) frames since the last change

    @classmethod
    def settled(cls, content: np.ndarray, output: np.ndarray, settle: int) -> Reference:
        """Every pixel held at once (a converged cold start)."""
        age = np.full(content.shape[:2] + (1,), settle, dtype="float32")
        return cls(content, output, age)

    def updated(
        self, content: np.ndarray, output: np.ndarray, sigma: float, settle: int
    ) -> Reference:
        """The reference after a frame with input `content` was stylized as `output`."""
        changed = still_mask(content, self.input, sigma) < np.exp(-1)
        age = np.where(changed, 0, self.age + 1)
        return Reference(
            input=np.where(changed, content, self.input),
            output=np.where(age <= settle, output, self.output),
            age=age,
        )

    def mask(self, content: np.ndarray, sigma: float, settle: int) -> np.ndarray:
        """Temporal weight per pixel: still input, ramping up as a change settles."""
        ramp = np.minimum(1.0, self.age / max(settle, 1))
        return (still_mask(content, self.input, sigma) * ramp).astype("float32")


@dataclass(frozen=True)
class ChainSnapshot:
    """What a chain remembers between frames; immutable, so chains can share it (`fork`)."""

    previous_input: np.ndarray | None = None
    previous_output: np.ndarray | None = None
    reference: Reference | None = None
    adam_state: Any = None  # the stepper's state, carried across warm frames
    leap: bool = False  # the next frame may be far from previous_input (a chain seeded
    # from its shot's keyframe): its budget grows with the share of changed pixels

    @property
    def cold(self) -> bool:
        return self.previous_output is None


@dataclass(frozen=True)
class Keyframe:
    """A shot's first frame, stylized from a cold start; every chain of the shot starts
    from it, so chunks share its texture and their still pixels are held to the same
    output on both sides of a seam."""

    index: int
    content: np.ndarray
    output: np.ndarray
    stats: FrameStats

    def snapshot(self, settle: int, *, leap: bool = False) -> ChainSnapshot:
        """A chain's memory just after this frame; `leap`: the chain goes on from it at a
        later frame than the next one."""
        reference = Reference.settled(self.content, self.output, settle)
        return ChainSnapshot(self.content, self.output, reference, leap=leap)


class FrameChain:
    """Stylizes a sequence of frames of one shot or clip, warm-starting each from the last."""

    def __init__(
        self,
        transfer: StyleTransfer,
        settings: VideoSettings,
        snapshot: ChainSnapshot | None = None,
    ) -> None:
        self.transfer = transfer
        self.settings = settings
        self._memory = snapshot or ChainSnapshot()

    def reset(self) -> None:
        """Forget the previous frame: the next one cold-starts (a scene cut)."""
        self._memory = ChainSnapshot()

    def snapshot(self) -> ChainSnapshot:
        """The chain's memory now; `restore` or `fork` go on from it."""
        return self._memory

    def restore(self, snapshot: ChainSnapshot) -> None:
        self._memory = snapshot

    def fork(self, settings: VideoSettings | None = None) -> FrameChain:
        """A chain that goes on from this one's memory (with other settings, if given)."""
        return FrameChain(self.transfer, settings or self.settings, self._memory)

    def _reference_after(self, content: np.ndarray, output: np.ndarray) -> Reference:
        s, reference = self.settings, self._memory.reference
        if reference is None:  # a cold start: converged, so held at once
            return Reference.settled(content, output, s.settle_frames)
        return reference.updated(content, output, s.motion_sigma, s.settle_frames)

    def _warm_init(self, content: np.ndarray) -> np.ndarray:
        memory, init = self._memory, self.settings.frame_init
        if init == "prev":
            return memory.previous_output
        if init == "prev+delta":
            return np.clip(memory.previous_output + content - memory.previous_input, 0.0, 1.0)
        # masked: still pixels from prev, pixels whose input changed from the content
        still = still_mask(content, memory.previous_input, self.settings.motion_sigma)
        return still * memory.previous_output + (1.0 - still) * content

    def _anchor(self, content: np.ndarray) -> TemporalAnchor | None:
        s, reference = self.settings, self._memory.reference
        if s.temporal_weight <= 0 or reference is None:
            return None
        mask = reference.mask(content, s.motion_sigma, s.settle_frames)
        return TemporalAnchor(reference.output[None], mask[None], s.temporal_weight)

    def _warm_iterations(self, content: np.ndarray) -> int:
        """`iterations`, or after a leap up to `first_iterations` as the picture changed."""
        s, memory = self.settings, self._memory
        if not memory.leap:
            return s.iterations
        changed = 1.0 - float(still_mask(content, memory.previous_input, s.motion_sigma).mean())
        return s.iterations + round(max(s.first_iterations - s.iterations, 0) * changed)

    def step(
        self, content: np.ndarray, index: int = 0, *, stop: Stop | None = None
    ) -> tuple[np.ndarray, FrameStats]:
        """Stylize one frame (float RGB in [0, 1], processing size) after the previous one.

        `stop` replaces the settings' early stop for this frame.
        """
        s = self.settings
        started = time.perf_counter()
        cold = self._memory.cold or s.frame_init == "content"
        if cold:
            init, iterations = initial_image(content, s), s.first_iterations
            anchor, state = None, None
        else:
            init, iterations = self._warm_init(content), self._warm_iterations(content)
            anchor = self._anchor(content)
            state = self._memory.adam_state if s.carry_state else None
        output, curve, state = self.transfer.optimize(
            init,
            content,
            iterations,
            anchor=anchor,
            state=state,
            stop=EarlyStop(s.tolerance, s.patience) if stop is None else stop,
        )
        self._memory = ChainSnapshot(content, output, self._reference_after(content, output), state)
        last = curve.last()
        stats = FrameStats(
            index=index,
            cold_start=cold,
            iterations=len(curve),
            loss=last.gatys,
            content_loss=last.content,
            style_loss=last.style,
            temporal_loss=last.temporal,
            seconds=time.perf_counter() - started,
        )
        return output, stats

    def run(
        self,
        frames: Iterable[np.ndarray],
        *,
        cuts: Iterable[int] = (),
        keyframes: Mapping[int, Keyframe] | None = None,
        start: int = 0,
        progress: Callable[[FrameStats], None] | None = None,
    ) -> Iterator[tuple[np.ndarray, FrameStats]]:
        """Yield (stylized frame, stats) for each frame; frames at `cuts` cold-start.
        With `original_colors`, the yielded frames keep their input's colours.

        At a frame with a keyframe the chain yields the keyframe's output (stats with no
        iterations: they were spent on the keyframe) and goes on from it.
        """
        cut_set, keyframes = set(cuts), keyframes or {}
        for index, frame in enumerate(frames, start=start):
            if index in keyframes:
                keyframe = keyframes[index]
                self.restore(keyframe.snapshot(self.settings.settle_frames))
                output, stats = keyframe.output, replace(keyframe.stats, iterations=0, seconds=0)
            else:
                if index in cut_set:
                    self.reset()
                output, stats = self.step(frame, index)
            if self.settings.original_colors:  # shown with the input's colours; the chain
                output = preserve_colors(output, frame)  # goes on from its own output
            if progress:
                progress(stats)
            yield output, stats
