"""Measurement 1 of benchmarks.temporal: Adam steps for a frame to converge, per chain.

For sample frames t, L_ref(t) is the Gatys loss after a long cold start of frame t; a probe
forks a chain at t-1 and counts the steps until frame t reaches TARGET_RATIO x L_ref(t).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.temporal_plan import (
    HOPELESS_WINDOW,
    PROBE_CHUNK,
    TARGET_RATIO,
    WARM_VARIANTS,
    Clip,
    Plan,
    gatys_loss,
    with_changes,
)
from nst_video.nst_core.settings import VideoSettings
from nst_video.nst_core.stepper import EarlyStop, LossCurve, LossTerms
from nst_video.nst_core.stylize import StyleTransfer, initial_image
from nst_video.nst_core.temporal import FrameChain

NEVER = EarlyStop(tolerance=0.0, patience=1)  # a tolerance of 0 never stops


class ProbeStop:
    """Stops a probe once its Gatys loss reaches `target` or cannot by `budget` steps.

    Checked every PROBE_CHUNK steps; records the Gatys loss of every step.
    """

    def __init__(self, target: float, budget: int) -> None:
        self.target = target
        self.budget = budget
        self.gatys: list[float] = []

    def update(self, terms: LossTerms[float]) -> bool:
        self.gatys.append(terms.gatys)
        if len(self.gatys) % PROBE_CHUNK:
            return False
        return reached_or_hopeless(np.asarray(self.gatys), self.target, self.budget)


def gatys_curve(curve: LossCurve) -> np.ndarray:
    """Per-step Gatys loss (total minus temporal term) of the image before each update."""
    return np.asarray(curve.total) - np.asarray(curve.temporal)


def reached_or_hopeless(gatys: np.ndarray, target: float, budget: int) -> bool:
    """True once the target is reached, or cannot be by `budget` at the current rate."""
    if gatys.size and gatys.min() <= target:
        return True
    if gatys.size <= HOPELESS_WINDOW:
        return False
    best = np.minimum.accumulate(gatys)
    rate = (best[-1 - HOPELESS_WINDOW] - best[-1]) / HOPELESS_WINDOW
    return rate <= 0 or (best[-1] - target) / rate > budget - gatys.size


def steps_to(gatys: np.ndarray, target: float) -> int | None:
    """Updates applied before the loss first reached `target` (None if it never did)."""
    hits = np.flatnonzero(gatys <= target)
    return int(hits[0]) if hits.size else None


def reference(
    transfer: StyleTransfer, frame: np.ndarray, settings: VideoSettings, iterations: int
) -> dict:
    """Long cold start of one frame: L_ref and the steps a cold start needs to 1.05 x L_ref."""
    image, curve, _ = transfer.optimize(
        initial_image(frame, settings), frame, iterations, stop=NEVER
    )
    loss = gatys_loss(transfer, image, frame)
    gatys = gatys_curve(curve)
    checkpoints = {
        str(k): float(gatys[k] / loss) for k in (100, 200, 300, 400, 600) if k < gatys.size
    }
    return {
        "l_ref": loss,
        "cold_steps": steps_to(gatys, TARGET_RATIO * loss),
        "cold_loss_ratio_at": checkpoints,
    }


def probe_frame(
    chain: FrameChain, frame: np.ndarray, index: int, target: float, cap: int, carry: bool
) -> dict:
    """Steps from the chain's state at index-1 until frame `index` reaches `target`."""
    twin = chain.fork(
        with_changes(chain.settings, iterations=cap, tolerance=0.0, carry_state=carry)
    )
    stop = ProbeStop(target, cap)
    output, _ = twin.step(frame, index, stop=stop)
    gatys = np.asarray(stop.gatys)
    steps = steps_to(gatys, target)
    final = gatys_loss(chain.transfer, output, frame)
    if steps is None and final <= target:
        steps = len(gatys)
    return {
        "steps": steps,
        "ran": len(gatys),
        "init_ratio": float(gatys[0] / target * TARGET_RATIO),
        "best_ratio": float(min(gatys.min(), final) / target * TARGET_RATIO),
    }


def convergence_rows(clip: Clip, series: dict, plan: Plan) -> list[dict]:
    """Median steps to 1.05 x L_ref per init mode / objective / Adam state, vs cold start."""
    references = series["references"]
    cold = [ref["cold_steps"] for ref in references.values()]
    cold_median = _median_steps(cold, plan.reference_iterations)
    rows = [
        _convergence_row(
            clip,
            "content (cold start)",
            "Gatys",
            "fresh",
            cold,
            plan.reference_iterations,
            cold_median,
            [None] * len(cold),
            [None] * len(cold),
        )
    ]
    for name, probes in series["probes"].items():
        variant = next(v for v in WARM_VARIANTS if v.name == name)
        for carry in variant.probes:
            mine = [p for p in probes if p["carry_state"] == carry]
            rows.append(
                _convergence_row(
                    clip,
                    variant.frame_init,
                    "Gatys + temporal" if variant.temporal else "Gatys",
                    "carried" if carry else "fresh",
                    [p["steps"] for p in mine],
                    plan.cap,
                    cold_median,
                    [p["init_ratio"] for p in mine],
                    [p["best_ratio"] for p in mine],
                )
            )
    return rows


def _median_steps(steps: Sequence[int | None], cap: int) -> float | None:
    """Median with never-reached frames counted as the cap (None without frames)."""
    values = [cap if s is None else s for s in steps]
    return float(np.median(values)) if values else None


def _convergence_row(
    clip: Clip,
    mode: str,
    objective: str,
    state: str,
    steps: list[int | None],
    cap: int,
    cold_median: float | None,
    init_ratios: list,
    best_ratios: list,
) -> dict:
    median = _median_steps(steps, cap)
    return {
        "measure": "convergence",
        "clip": clip.name,
        "init": mode,
        "objective": objective,
        "adam_state": state,
        "frames": list(clip.samples),
        "steps": steps,
        "reached": sum(s is not None for s in steps),
        "median_steps": median,
        "over_cold": None if median is None or not cold_median else median / cold_median,
        "init_loss_over_ref": init_ratios,
        "best_loss_over_ref": best_ratios,
    }
