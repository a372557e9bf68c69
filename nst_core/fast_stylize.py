"""Fast-mode inference: a trained network (nst_core.fastnet) stylizes frames in batches.

One forward pass per frame, no optimization, no VGG19: the output of a frame depends on
that frame only, so a still input gives a still output and chunks stitched together have
no seam. Frames are float RGB in [0, 1], (H, W, 3), any size the network takes.

Decisions:
- Batches of `batch` frames (default 8): on a 2-core CPU larger batches gain little and
  cost memory; a short last batch is run as it is (one more trace per new shape).
- The forward pass is Keras's own `predict_on_batch`, compiled once per input shape on
  TensorFlow (tf.function) and JAX (jit): the same call works on both backends.
- `precision="bfloat16"` runs a bf16 copy of the network (nst_core.model.with_dtype_policy,
  weights cast per layer, output cast back to float32); "auto" (the settings' default) is
  resolved by nst_core.precision.
- `original_colors` keeps each frame's colours after inference (luminance transfer,
  nst_core.stylize.preserve_colors), as the optimization mode does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.fastnet import MIN_SIDE
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.stylize import preserve_colors

DEFAULT_BATCH = 8


def for_precision(net: Any, precision: str) -> Any:
    """`net` to run in `precision`: itself for float32, a bf16 copy for bfloat16; "auto" is
    resolved (nst_core.precision)."""
    if resolve_precision(precision) == "float32":
        return net
    from nst_video.nst_core.model import with_dtype_policy

    return with_dtype_policy(net, "mixed_bfloat16")


def stylize_batch(net: Any, frames: np.ndarray, original_colors: bool = False) -> np.ndarray:
    """Stylize a (B, H, W, 3) float batch in [0, 1]; -> float32 (B, H, W, 3) in [0, 1]."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected a (B, H, W, 3) batch, got shape {frames.shape}")
    if min(frames.shape[1:3]) < MIN_SIDE:
        raise InvalidSettingsError(
            f"frames of {frames.shape[2]}x{frames.shape[1]} px are too small for the fast-mode "
            f"network (shortest side at least {MIN_SIDE})"
        )
    batch = np.ascontiguousarray(frames, dtype="float32")
    styled = np.asarray(net.predict_on_batch(batch), dtype="float32")
    return preserve_colors(styled, batch) if original_colors else styled


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive groups of `size` frames (the last one may be shorter)."""
    group: list[np.ndarray] = []
    for frame in frames:
        group.append(frame)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def stylize_frames(
    net: Any,
    frames: Iterable[np.ndarray],
    *,
    batch: int = DEFAULT_BATCH,
    original_colors: bool = False,
) -> Iterator[np.ndarray]:
    """Stylize a stream of (H, W, 3) frames `batch` at a time; yields them in order."""
    if batch < 1:
        raise InvalidSettingsError(f"invalid batch {batch}: must be >= 1")
    for group in _batches(frames, batch):
        yield from stylize_batch(net, np.stack(group), original_colors)
