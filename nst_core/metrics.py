"""Measurements of stylized video: warp error, frame-to-frame change, and the flow-free
quality figures every job reports (still churn, seam jump, seam still drift, motion fidelity).

Frames are float RGB in [0, 1] of one size; changes are reported in 1/255 units (one 8-bit
code value). Warp error follows Lai et al. 2018 ("Learning Blind Video Temporal
Consistency"): optical flow is computed on the INPUT frames (never used for stylization),
output t+1 is warped back onto frame t, and the squared difference is averaged under a
non-occlusion mask M = exp(-50 * |I_t - warp(I_{t+1})|^2). Needs OpenCV (the `bench` extra)
for the flow. Everything else is numpy and needs no flow: an input pixel is "still" between
two frames when its largest channel change is below MOTION_THRESHOLD, "moved" otherwise.

Pairs are named by their later frame: pair t is (t - 1, t).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from nst_video.nst_core.settings import VideoSettings

# The chain's default motion_sigma: the input change at which its temporal term releases a
# pixel. The metrics call a pixel moved by the same measure the chain uses.
MOTION_THRESHOLD: float = VideoSettings.model_fields["motion_sigma"].default
# Seam jump's denominator never falls below half a code value: a mean change under 0.5/255 is
# invisible, and the floor keeps a perfectly still clip from dividing by ~0.
SEAM_FLOOR_255 = 0.5
# Motion fidelity needs this share of the frame to have moved, else it is None.
MIN_MOVED_SHARE = 0.01


def _flow(current: np.ndarray, following: np.ndarray) -> np.ndarray:
    """Dense flow (Farneback) such that current(y, x) ~ following(y + fy, x + fx)."""
    import cv2

    def gray(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor((image * 255).astype("uint8"), cv2.COLOR_RGB2GRAY)

    return cv2.calcOpticalFlowFarneback(
        gray(current), gray(following), None, 0.5, 3, 15, 3, 5, 1.2, 0
    )


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2

    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype="float32"), np.arange(height, dtype="float32"))
    return cv2.remap(
        image.astype("float32"),
        xs + flow[..., 0],
        ys + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def warp_errors(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> list[float]:
    """Masked warp error of each consecutive output pair (float RGB in [0, 1], same size)."""
    errors = []
    for t in range(len(inputs) - 1):
        flow = _flow(inputs[t], inputs[t + 1])
        warped_input = _warp(inputs[t + 1], flow)
        mask = np.exp(-50.0 * np.square(inputs[t] - warped_input).sum(axis=-1))
        difference = np.square(outputs[t] - _warp(outputs[t + 1], flow)).mean(axis=-1)
        errors.append(float((mask * difference).sum() / max(mask.sum(), 1e-8)))
    return errors


def warp_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float:
    """Mean warp error over a clip (see module docstring)."""
    errors = warp_errors(inputs, outputs)
    return float(np.mean(errors)) if errors else 0.0


def frame_change(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute change between two frames (every pixel and channel), in 1/255 units."""
    return float(np.abs(current - previous).mean() * 255)


def frame_changes(outputs: Sequence[np.ndarray]) -> list[float]:
    """Mean absolute change between consecutive frames, in 1/255 units (item t - 1: pair t)."""
    return [frame_change(outputs[t - 1], outputs[t]) for t in range(1, len(outputs))]


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    known = [value for value in values if value is not None]
    return float(np.mean(known)) if known else None


def still_pixels(
    reference: np.ndarray, current: np.ndarray, threshold: float = MOTION_THRESHOLD
) -> np.ndarray:
    """(H, W) mask of the pixels whose input changed by less than `threshold` (largest
    channel change) from `reference` to `current`."""
    return np.abs(current - reference).max(axis=-1) < threshold


def masked_change(previous: np.ndarray, current: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean absolute change over the pixels in `mask` (every channel), 1/255; None if none."""
    if not mask.any():
        return None
    return float(np.abs(current - previous)[mask].mean() * 255)


def still_pair_churn(
    inputs: tuple[np.ndarray, np.ndarray],
    outputs: tuple[np.ndarray, np.ndarray],
    threshold: float = MOTION_THRESHOLD,
) -> float | None:
    """One pair's output change over the pixels whose input stayed still, 1/255 (None: none)."""
    return masked_change(*outputs, still_pixels(*inputs, threshold))


def still_churn(
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    cuts: Collection[int] = (),
    threshold: float = MOTION_THRESHOLD,
) -> float | None:
    """Still churn: the mean over consecutive pairs of the output's mean absolute change over
    the pixels whose input changed by less than `threshold`, in 1/255: the flicker where
    nothing moves. Pairs at a scene cut (frame indices in `cuts`) and pairs without a still
    pixel are left out; None when no pair is left."""
    return mean_or_none(
        [
            still_pair_churn((inputs[t - 1], inputs[t]), (outputs[t - 1], outputs[t]), threshold)
            for t in range(1, len(inputs))
            if t not in cuts
        ]
    )


@dataclass(frozen=True)
class Seam:
    """Where a chunk after the first joins the previous one, in output frame indices: the
    chunk's first frame `start`, after `warmup` overlap frames cross-faded between the two
    chunks' chains (frames start - warmup .. start - 1)."""

    start: int
    warmup: int


def seam_window(seam: Seam, cuts: Collection[int] = ()) -> range:
    """The pairs t (frames t - 1, t) a seam can disturb: (s-w-1, s-w) .. (s-1, s), the fade and
    the steps into and out of it; just (s-1, s) without warm-up. Clipped to the clip's start
    and to after a scene cut (a chunk that starts at a cut has no seam)."""
    after_cut = [cut + 1 for cut in cuts if cut <= seam.start]
    return range(max(seam.start - seam.warmup, 1, *after_cut), seam.start + 1)


def interior_pairs(
    frame_count: int, seams: Sequence[Seam], cuts: Collection[int] = ()
) -> list[int]:
    """The pairs t in no seam window and not at a scene cut: the clip's own motion."""
    windows = {t for seam in seams for t in seam_window(seam, cuts)}
    return [t for t in range(1, frame_count) if t not in windows and t not in cuts]


@dataclass(frozen=True)
class SeamJumps:
    """Each seam's jump, and the interior's 95th-percentile change (raw, 1/255) they divide."""

    jumps: tuple[float, ...]
    interior_p95_255: float | None

    @property
    def worst(self) -> float | None:
        return max(self.jumps, default=None)


def seam_jumps(
    changes: Sequence[float], seams: Sequence[Seam], cuts: Collection[int] = ()
) -> SeamJumps:
    """Seam jump of each seam, from the output's `changes` (frame_changes: item t - 1 is pair t).

    A seam's jump = the largest change in its window / the 95th percentile of the interior
    pairs' changes, that percentile floored at SEAM_FLOOR_255. A cross-fade spreads a jump
    over the window, it does not remove it: hence the window's maximum, against the interior's
    p95. About 1 or below: the seam moves no more than the clip itself; >> 1: a visible jump.
    Without interior pairs there is nothing to compare with: no jumps, p95 None.
    """
    interior = [changes[t - 1] for t in interior_pairs(len(changes) + 1, seams, cuts)]
    if not interior:
        return SeamJumps((), None)
    p95 = float(np.percentile(interior, 95))
    scale = max(p95, SEAM_FLOOR_255)
    jumps = tuple(max(changes[t - 1] for t in seam_window(seam, cuts)) / scale for seam in seams)
    return SeamJumps(jumps, p95)


def window_still_drift(
    inputs: Sequence[np.ndarray],
    before: np.ndarray,
    after: np.ndarray,
    threshold: float = MOTION_THRESHOLD,
) -> float | None:
    """Mean |after - before|, 1/255, over the pixels whose input stays within `threshold`
    (largest channel change) of inputs[0] in every one of `inputs`; None when none does."""
    still = np.ones(inputs[0].shape[:2], dtype=bool)
    for frame in inputs[1:]:
        still &= still_pixels(inputs[0], frame, threshold)
    return masked_change(before, after, still)


def seam_still_drift(
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    seam: Seam,
    cuts: Collection[int] = (),
    threshold: float = MOTION_THRESHOLD,
) -> float | None:
    """Seam still drift, 1/255: over the pixels whose input stays unchanged across the seam's
    window (every input frame from s-w-1 to s within `threshold` of frame s-w-1), the mean
    absolute difference between the output just before the window (s-w-1) and the output just
    after the seam (s). A perfect seam leaves still pixels as they were: 0."""
    before = seam_window(seam, cuts)[0] - 1
    return window_still_drift(
        inputs[before : seam.start + 1], outputs[before], outputs[seam.start], threshold
    )


def motion_response(before: np.ndarray, after: np.ndarray, moved: np.ndarray) -> float:
    """Mean |after - before| over the `moved` pixels minus that over the others, 1/255 (the
    others count 0 when every pixel moved). `moved` must hold at least one pixel."""
    still = masked_change(before, after, ~moved)
    return masked_change(before, after, moved) - (still or 0.0)


def motion_fidelity(
    inputs: tuple[np.ndarray, np.ndarray],
    chain: tuple[np.ndarray, np.ndarray],
    cold: tuple[np.ndarray, np.ndarray],
    threshold: float = MOTION_THRESHOLD,
    min_moved: float = MIN_MOVED_SHARE,
) -> float | None:
    """How fully the output follows the input's motion between two frames (ref, t) of a shot.

    moved = pixels whose input changed by `threshold` or more (largest channel) from ref to t;
    response = mean |out_t - out_ref| over moved pixels - the same over the still ones. The
    fidelity is the job's response (`chain`: its outputs at ref and t) over that of
    independent cold starts of both frames (`cold`): 1.0 is as responsive as stylizing each
    frame from scratch, 0 frozen. None when less than `min_moved` of the frame moved or the
    cold starts' response is <= 0 (nothing to compare with).
    """
    moved = ~still_pixels(*inputs, threshold)
    if moved.mean() < min_moved:
        return None
    reference = motion_response(*cold, moved)
    if reference <= 0:
        return None
    return motion_response(*chain, moved) / reference
