"""Measurement 3 of benchmarks.temporal: one frame repeated, change and drift per chain."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.temporal_plan import (
    GUARDED,
    NAIVE,
    STATIC_VARIANTS,
    Clip,
    Plan,
    gatys_loss,
    load_frames,
    log,
    with_changes,
)
from nst_video.nst_core.metrics import frame_changes
from nst_video.nst_core.settings import VideoSettings
from nst_video.nst_core.stylize import StyleTransfer
from nst_video.nst_core.temporal import FrameChain


def measure_static(
    transfer: StyleTransfer, plan: Plan, settings: VideoSettings
) -> tuple[list[dict], dict]:
    """One frame repeated: per-frame change and drift from frame 1 for each guard variant."""
    name, index = plan.static_source
    clip = Clip(name, name, index, 1, index)
    frame = load_frames(clip, plan.static_size)[0]
    log(f"static: frame {index} of {name} at {frame.shape[1]}x{frame.shape[0]}")
    settings = with_changes(settings, iterations=plan.static_iterations)
    base = FrameChain(transfer, settings)
    first, _ = base.step(frame, 0)
    rows, series = [], {}
    for variant in STATIC_VARIANTS:
        count = plan.static_frames if variant in (NAIVE, GUARDED) else plan.static_part_frames
        chain = base.fork(variant.settings(settings))
        outputs, started = [first], time.perf_counter()
        for k in range(1, count):
            outputs.append(chain.step(frame, k)[0])
        seconds = time.perf_counter() - started
        changes = frame_changes(outputs)
        drift = [float(np.abs(out - first).mean() * 255) for out in outputs]
        channels = (outputs[-1] - first).reshape(-1, 3).mean(axis=0) * 255
        rows.append(
            {
                "measure": "static",
                "variant": variant.name,
                "frames": count,
                "change_per_frame_255": float(np.mean(changes)),
                "change_per_frame_last_100_255": float(np.mean(changes[-100:])),
                "max_change_255": float(np.max(changes)),
                "drift_at_end_255": drift[-1],
                "channel_shift_at_end_255": [round(float(c), 3) for c in channels],
                "gatys_end_over_first": gatys_loss(transfer, outputs[-1], frame)
                / gatys_loss(transfer, first, frame),
                "seconds": seconds,
            }
        )
        series[variant.name] = {"change_255": changes, "drift_255": drift}
        log(f"static {variant.name}: {rows[-1]}")
    return rows, series
