"""Measurements of stylized video: temporal warp error and frame-to-frame change.

Warp error follows Lai et al. 2018 ("Learning Blind Video Temporal Consistency"): optical
flow is computed on the INPUT frames (never used for stylization), output t+1 is warped back
onto frame t, and the squared difference is averaged under a non-occlusion mask
M = exp(-50 * |I_t - warp(I_{t+1})|^2). Needs OpenCV (the `bench` extra) for the flow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def frame_changes(outputs: Sequence[np.ndarray]) -> list[float]:
    """Mean absolute change between consecutive frames, in 1/255 units."""
    return [
        float(np.abs(outputs[t + 1] - outputs[t]).mean() * 255) for t in range(len(outputs) - 1)
    ]
