"""Measurement 2 of benchmarks.temporal: temporal warp error and loss of every chain on a clip.

All warm variants fork one chain after its cold-started first frame; the convergence probes
(benchmarks.temporal_convergence) run on the way. Also finds each clip's static stretch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.temporal_convergence import probe_frame, reference
from benchmarks.temporal_plan import (
    INDEPENDENT,
    MIN_STRETCH,
    STATIC_CHANGE,
    STATIC_PIXELS,
    TARGET_RATIO,
    WARM_VARIANTS,
    Clip,
    Plan,
    Variant,
    gatys_loss,
    load_frames,
    log,
    with_changes,
)
from nst_video.nst_core.metrics import frame_changes, warp_errors
from nst_video.nst_core.settings import VideoSettings
from nst_video.nst_core.stylize import StyleTransfer
from nst_video.nst_core.temporal import FrameChain
from nst_video.tasks.video import probe as probe_video


def static_transitions(frames: Sequence[np.ndarray], sigma: float) -> list[bool]:
    """Whether each input transition is static (tiny mean change, almost no moving pixel)."""
    flags = []
    for before, after in zip(frames, frames[1:], strict=False):
        change = np.abs(after - before)
        moving = float((change.max(axis=-1) > sigma).mean())
        flags.append(change.mean() * 255 <= STATIC_CHANGE and moving <= STATIC_PIXELS)
    return flags


def longest_run(flags: Sequence[bool]) -> tuple[int, int]:
    """(first, length) of the longest run of True values; (0, 0) if none."""
    best, start = (0, 0), None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            best = max(best, (start, index - start), key=lambda run: run[1])
            start = None
    return best


def scan_clip(clip: Clip, size: int, sigma: float) -> dict:
    """Input change of every transition of the whole clip and its longest static stretch."""
    frames = load_frames(clip, size, start=0, count=probe_video(clip.path).frame_count)
    first, length = longest_run(static_transitions(frames, sigma))
    return {
        "frames": len(frames),
        "input_change_255": [round(c, 3) for c in frame_changes(frames)],
        "static_stretch": [first, first + length] if length >= MIN_STRETCH else None,
    }


@dataclass
class ChainRun:
    """Outputs and per-frame numbers of one chain over a clip range."""

    name: str
    outputs: list[np.ndarray]
    losses: list[float]
    iterations: list[int]
    seconds: float
    probes: list[dict] = field(default_factory=list)


def run_variant(
    base: FrameChain,
    first: np.ndarray,
    variant: Variant,
    frames: list[np.ndarray],
    clip: Clip,
    plan: Plan,
    references: dict[int, dict],
    start_iterations: int,
) -> ChainRun:
    """Continue the cold-started `base` with `variant` over `frames`, probing sample frames."""
    transfer = base.transfer
    chain = base.fork(variant.settings(base.settings))
    run = ChainRun(
        variant.name, [first], [gatys_loss(transfer, first, frames[0])], [start_iterations], 0.0
    )
    for offset, frame in enumerate(frames[1:], start=1):
        index = clip.start + offset
        if index in references:
            target = TARGET_RATIO * references[index]["l_ref"]
            for carry in variant.probes:
                result = probe_frame(chain, frame, index, target, plan.cap, carry)
                run.probes.append({"frame": index, "carry_state": carry, **result})
                log(f"{clip.name} {variant.name}: probe frame {index} carry={carry}: {result}")
        output, stats = chain.step(frame, index)
        run.seconds += stats.seconds
        run.outputs.append(output)
        run.losses.append(gatys_loss(transfer, output, frame))
        run.iterations.append(stats.iterations)
    return run


def independent(
    transfer: StyleTransfer, frames: list[np.ndarray], settings: VideoSettings
) -> ChainRun:
    """Every frame cold-started from its content (frame_init content)."""
    chain = FrameChain(transfer, settings)
    started = time.perf_counter()
    run = ChainRun(INDEPENDENT, [], [], [], 0.0)
    for index, frame in enumerate(frames):
        output, stats = chain.step(frame, index)
        run.outputs.append(output)
        run.losses.append(gatys_loss(transfer, output, frame))
        run.iterations.append(stats.iterations)
    run.seconds = time.perf_counter() - started
    return run


def stretch_change(outputs: Sequence[np.ndarray], stretch: tuple[int, int] | None) -> float | None:
    """Mean frame-to-frame output change (/255) over transitions first..last-1 (range-relative)."""
    if stretch is None:
        return None
    changes = frame_changes(outputs[stretch[0] : stretch[1] + 1])
    return float(np.mean(changes)) if changes else None


def measure_clip(
    transfer: StyleTransfer, clip: Clip, plan: Plan, settings: VideoSettings, scan: dict
) -> tuple[list[dict], dict]:
    """Warp error, losses and convergence probes of every chain on one clip range."""
    frames = load_frames(clip, plan.size)
    log(
        f"{clip.name}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} "
        f"from frame {clip.start}"
    )
    references = {}
    for index in clip.samples:
        references[index] = reference(
            transfer, frames[index - clip.start], settings, plan.reference_iterations
        )
        log(f"{clip.name}: reference frame {index}: {references[index]}")
    base = FrameChain(transfer, settings)
    first, first_stats = base.step(frames[0], clip.start)
    runs = [
        run_variant(base, first, variant, frames, clip, plan, references, first_stats.iterations)
        for variant in WARM_VARIANTS
    ]
    for run in runs:
        log(f"{clip.name}: {run.name}: {run.seconds:.0f} s")
    lo = clip.independent_start - clip.start
    window = frames[lo : lo + plan.independent_count]
    alone = independent(
        transfer,
        window,
        with_changes(settings, frame_init="content", first_iterations=plan.independent_iterations),
    )
    log(f"{clip.name}: independent x{len(window)}: {alone.seconds:.0f} s")
    stretch = _stretch_in_range(scan["static_stretch"], clip)
    rows = warp_rows(clip, frames, runs, alone, lo, stretch)
    series = {
        "frames": [clip.start + k for k in range(len(frames))],
        "independent_frames": [clip.start + lo + k for k in range(len(window))],
        "static_stretch": None if stretch is None else [clip.start + s for s in stretch],
        "warp_error": {row["variant"]: row.pop("warp_series") for row in rows},
        "gatys_loss": {run.name: run.losses for run in [*runs, alone]},
        "iterations": {run.name: run.iterations for run in [*runs, alone]},
        "references": {str(k): v for k, v in references.items()},
        "probes": {run.name: run.probes for run in runs if run.probes},
    }
    return rows, series


def _stretch_in_range(stretch: list[int] | None, clip: Clip) -> tuple[int, int] | None:
    """The clip's static stretch clipped to the measured range, range-relative (or None)."""
    if stretch is None:
        return None
    first, last = max(stretch[0], clip.start), min(stretch[1], clip.start + clip.count - 1)
    return (first - clip.start, last - clip.start) if last - first >= 2 else None


def warp_rows(
    clip: Clip,
    frames: list[np.ndarray],
    runs: list[ChainRun],
    alone: ChainRun,
    lo: int,
    stretch: tuple[int, int] | None,
) -> list[dict]:
    """One row per chain: warp error over the range and on the independent frames' pairs."""
    hi = lo + len(alone.outputs)
    floor = warp_errors(frames, frames)
    alone_warp = warp_errors(frames[lo:hi], alone.outputs)
    alone_loss = float(np.mean(alone.losses))
    rows = [
        _row(
            clip,
            "input (floor)",
            floor,
            floor[lo : hi - 1],
            alone_warp,
            None,
            alone_loss,
            frame_changes(frames),
            stretch,
            frames,
        )
    ]
    rows.append(
        _row(
            clip,
            alone.name,
            None,
            alone_warp,
            alone_warp,
            alone.losses,
            alone_loss,
            frame_changes(alone.outputs),
            None,
            None,
            alone.iterations,
            alone.seconds,
        )
    )
    for run in runs:
        warp = warp_errors(frames, run.outputs)
        rows.append(
            _row(
                clip,
                run.name,
                warp,
                warp[lo : hi - 1],
                alone_warp,
                run.losses[lo:hi],
                alone_loss,
                frame_changes(run.outputs),
                stretch,
                run.outputs,
                run.iterations,
                run.seconds,
                run.losses,
            )
        )
    return rows


def _row(
    clip: Clip,
    name: str,
    warp: list[float] | None,
    window_warp: list[float],
    alone_warp: list[float],
    window_losses: list[float] | None,
    alone_loss: float,
    changes: list[float],
    stretch: tuple[int, int] | None,
    outputs: Sequence[np.ndarray] | None,
    iterations: list[int] | None = None,
    seconds: float | None = None,
    losses: list[float] | None = None,
) -> dict:
    """The numbers of one chain on one clip (see warp_rows)."""
    window = float(np.mean(window_warp))
    loss_ratio = None if window_losses is None else float(np.mean(window_losses)) / alone_loss
    return {
        "measure": "warp",
        "clip": clip.name,
        "variant": name,
        "warp_error": None if warp is None else float(np.mean(warp)),
        "warp_error_on_independent_pairs": window,
        "warp_over_independent": window / float(np.mean(alone_warp)),
        "gatys_loss_mean": None if losses is None else float(np.mean(losses)),
        "gatys_over_independent": loss_ratio,
        "change_per_frame_255": float(np.mean(changes)),
        "static_stretch_change_255": None if outputs is None else stretch_change(outputs, stretch),
        "mean_iterations": None
        if iterations is None
        else float(np.mean(iterations[1:] or iterations)),
        "seconds": seconds,
        "warp_series": warp if warp is not None else window_warp,
    }
