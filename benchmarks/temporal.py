"""Warm-started frame chains: steps to converge, temporal warp error, drift on static input.

Three measurements of `nst_core.temporal.FrameChain` on the bundled clips (starry_night
style, defaults from `VideoSettings` unless a row says otherwise):

1. Steps to converge. For sample frames t of a moving clip, L_ref(t) is the Gatys loss
   (content + style + tv, no temporal term) after a long cold start of frame t. From each
   chain's state at frame t-1 (the chain run normally up to t-1), frame t is optimized with
   the chain's own objective and the Adam steps until its Gatys loss is <= 1.05 x L_ref(t)
   are counted (tolerance 0, cap `cap`). "content" (a cold start) counts the steps of the
   reference run itself. A probe stops before the cap once it cannot reach the target at its
   current rate: the best loss's drop over the last `HOPELESS_WINDOW` steps, extrapolated
   linearly (optimistic, since the curve flattens), would not get there by the cap; such a
   frame counts as "not reached" (= cap in the median).
2. Temporal warp error (`nst_core.metrics.warp_error`, Lai et al. 2018; optical flow on the
   input only) of the input frames (the floor), of independently stylized frames (frame_init
   content, `independent_iterations` each) and of warm chains, with the mean Gatys loss of
   each chain relative to the independent frames on the same frames.
3. Static input: one frame repeated; frame-to-frame change and drift from frame 1 for the
   naive chain (fresh Adam per frame, no temporal term) and the guarded default, and each
   guard alone. Also the longest static stretch of a real clip, when the chain covers one.

FULL (`temporal`, part of `make bench`, about 10 min): 96 px, bottles 96x54, frames 40..69
(a static stretch 40..52, then hands moving), six warm chains, independent frames with 300
steps each on the 6 frames of strongest motion (59..64; ratios compare the same frames and
pairs), references of 1000 steps and probes capped at 1000 on frames 60, 64, 68; static
input at 64 px (64x36), 100 frames for naive and guarded, 40 for each guard alone, 10 Adam
steps per warm frame instead of 40 to keep the time down. LONG (`temporal_long`, run on
its own, about 25 min): also the thanks clip (96x72, frames 0..29, independent frames
0..9), 10 independent frames, 300/100 static frames. QUICK (~3 min) is a smoke run at
64 px with a few frames of each.

Method notes:
- Chains that share a history are forked (`fork`) instead of being rerun: all variants of a
  clip fork after the common cold-started frame 0, and every convergence probe forks the
  chain at t-1. Each chain gets its own `_ChainTransfer`; Adam states are immutable (each
  run returns a new one), so forks share the parent's moments without changing them.
- Losses are those of the returned image (`StyleTransfer.loss`), not the last recorded step.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from benchmarks.common import REPO_ROOT, RESULTS_DIR, Report, markdown_table
from nst_core.images import load_image
from nst_core.metrics import frame_changes, warp_errors
from nst_core.optimize import EarlyStop, LossCurve, Progress
from nst_core.settings import VideoSettings, make_video_settings
from nst_core.stylize import StyleTransfer, initial_image
from nst_core.temporal import FrameChain
from nst_core.tf_step import AdamState, AdamStepper
from tasks.video import probe as probe_video
from tasks.video import read_frames

NAME = "temporal"
STYLE = REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
VIDEOS = REPO_ROOT / "assets" / "videos"
TARGET_RATIO = 1.05  # "converged": Gatys loss <= 1.05 x L_ref
HOPELESS_WINDOW = 100  # steps over which a probe's rate of progress is measured
PROBE_CHUNK = 25  # steps between target checks of a probe
STATIC_CHANGE = 0.7  # /255: an input transition at most this (mean abs) is "static" ...
STATIC_PIXELS = 0.005  # ... if also at most this share of pixels changed by > motion_sigma
MIN_STRETCH = 5  # transitions: a shorter static run does not count as a static stretch
TARGETS = {
    "warm_steps_over_cold": 0.1,
    "warp_over_independent": 0.1,
    "loss_over_independent": 1.05,
    "static_change_per_frame_255": 1.0,
    "static_drift_at_end_255": 2.0,
}


@dataclass(frozen=True)
class Clip:
    """A frame range of a bundled clip and where in it the sub-measurements sit."""

    name: str
    file: str
    start: int
    count: int
    independent_start: int  # first frame (absolute) of the independently stylized frames
    samples: tuple[int, ...] = ()  # frames (absolute) for the convergence probes

    @property
    def path(self) -> Path:
        return VIDEOS / self.file


@dataclass(frozen=True)
class Plan:
    """Sizes and budgets of one run (FULL or QUICK)."""

    size: int
    clips: tuple[Clip, ...]
    independent_count: int
    independent_iterations: int
    reference_iterations: int
    cap: int
    static_size: int
    static_frames: int
    static_part_frames: int
    static_iterations: int
    static_source: tuple[str, int] = ("bottles_with_tone.mp4", 45)
    first_iterations: int | None = None  # None: the VideoSettings default


FULL = Plan(
    size=96,
    clips=(Clip("bottles", "bottles_with_tone.mp4", 40, 30, 59, samples=(60, 64, 68)),),
    independent_count=6,
    independent_iterations=300,
    reference_iterations=1000,
    cap=1000,
    static_size=64,
    static_frames=100,
    static_part_frames=40,
    static_iterations=10,
)
LONG = dataclasses.replace(
    FULL,
    clips=(*FULL.clips, Clip("thanks", "thanks.mkv", 0, 30, 0)),
    independent_count=10,
    static_frames=300,
    static_part_frames=100,
)
QUICK = Plan(
    size=64,
    clips=(
        Clip("bottles", "bottles_with_tone.mp4", 56, 8, 58, samples=(62,)),
        Clip("thanks", "thanks.mkv", 3, 6, 3),
    ),
    independent_count=4,
    independent_iterations=100,
    reference_iterations=300,
    cap=300,
    static_size=64,
    static_frames=40,
    static_part_frames=20,
    static_iterations=5,
    first_iterations=100,
)


@dataclass(frozen=True)
class Variant:
    """A warm chain configuration; `probes` lists the carry_state of its convergence probes."""

    name: str
    frame_init: str
    carry_state: bool
    temporal: bool
    probes: tuple[bool, ...] = ()

    def settings(self, base: VideoSettings) -> VideoSettings:
        """`base` with this variant's warm-start fields (temporal weight: base's or 0)."""
        weight = base.temporal_weight if self.temporal else 0.0
        return with_changes(
            base, frame_init=self.frame_init, carry_state=self.carry_state, temporal_weight=weight
        )


GUARDED = Variant("prev, default (carry + temporal)", "prev", True, True, probes=(True, False))
NAIVE = Variant("prev, naive (fresh Adam, tw 0)", "prev", False, False)
CARRY_ONLY = Variant("prev, carry only (tw 0)", "prev", True, False, probes=(True, False))
TEMPORAL_ONLY = Variant("prev, temporal only (fresh Adam)", "prev", False, True)
DELTA = Variant("prev+delta, default (carry + temporal)", "prev+delta", True, True, (True,))
DELTA_NO_TEMPORAL = Variant("prev+delta, carry, tw 0", "prev+delta", True, False, (True,))
WARM_VARIANTS = (GUARDED, TEMPORAL_ONLY, DELTA, CARRY_ONLY, NAIVE, DELTA_NO_TEMPORAL)
STATIC_VARIANTS = (NAIVE, GUARDED, CARRY_ONLY, TEMPORAL_ONLY)
INDEPENDENT = "independent (frame_init content)"


def with_changes(settings: VideoSettings, **changes: object) -> VideoSettings:
    """A validated copy of `settings` with some fields changed."""
    return make_video_settings(**(settings.model_dump() | changes))


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- chain plumbing


class _Optimizer:
    """Stands in for `StyleTransfer.adam` inside one chain (see the module docstring).

    With `target` set it runs in chunks until the Gatys loss reaches `target` (or cannot by
    the iteration budget); it keeps the last curve.
    """

    def __init__(self, adam: AdamStepper) -> None:
        self.adam = adam
        self.target: float | None = None
        self.curve = LossCurve()

    def run(
        self,
        init: np.ndarray,
        iterations: int,
        content_targets: Sequence,
        style_grams: Sequence,
        *,
        anchor: tuple | None = None,
        state: AdamState | None = None,
        stop: EarlyStop | None = None,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, LossCurve, AdamState]:
        """`AdamStepper.run`, chunked towards `target` if set."""
        if self.target is None:
            image, self.curve, state = self.adam.run(
                init,
                iterations,
                content_targets,
                style_grams,
                anchor=anchor,
                state=state,
                stop=stop,
                progress=progress,
            )
            return image, self.curve, state
        self.curve, image = LossCurve(), init
        while len(self.curve) < iterations:
            steps = min(PROBE_CHUNK, iterations - len(self.curve))
            image, part, state = self.adam.run(
                image, steps, content_targets, style_grams, anchor=anchor, state=state
            )
            for terms in zip(
                part.total, part.content, part.style, part.tv, part.temporal, strict=True
            ):
                self.curve.append(*terms)
            if _reached_or_hopeless(gatys_curve(self.curve), self.target, iterations):
                break
        return image, self.curve, state


class _ChainTransfer:
    """A `StyleTransfer` as one chain sees it: shared model and targets, own optimizer."""

    def __init__(self, transfer: StyleTransfer) -> None:
        self.base = transfer
        self.adam = _Optimizer(transfer.adam)

    def __getattr__(self, name: str):
        return getattr(self.base, name)


def new_chain(transfer: StyleTransfer, settings: VideoSettings) -> FrameChain:
    """A FrameChain whose optimizer state is its own (so that it can be forked)."""
    return FrameChain(_ChainTransfer(transfer), settings)  # type: ignore[arg-type]


def fork(chain: FrameChain, settings: VideoSettings) -> FrameChain:
    """A copy of `chain` (previous frame, reference, Adam state) that goes on with `settings`.

    Everything the chain remembers is deep-copied (whatever FrameChain keeps), except the
    Adam state, which is immutable and so shared safely.
    """
    twin = copy.copy(chain)
    for name, value in vars(chain).items():
        if name not in ("transfer", "settings") and not isinstance(value, AdamState):
            setattr(twin, name, copy.deepcopy(value))
    twin.settings = settings
    twin.transfer = _ChainTransfer(chain.transfer.base)  # type: ignore[attr-defined]
    return twin


def gatys_curve(curve: LossCurve) -> np.ndarray:
    """Per-step Gatys loss (total minus temporal term) of the image before each update."""
    return np.asarray(curve.total) - np.asarray(curve.temporal)


def _reached_or_hopeless(gatys: np.ndarray, target: float, budget: int) -> bool:
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


def gatys_loss(transfer: StyleTransfer, image: np.ndarray, content: np.ndarray) -> float:
    """Content + style + tv loss of `image` as a stylization of `content`."""
    return transfer.loss(image, content)[0]


# --------------------------------------------------------------------------- inputs


def load_frames(
    clip: Clip, size: int, start: int | None = None, count: int | None = None
) -> list[np.ndarray]:
    """Frames of `clip` as float RGB in [0, 1], longest side `size` (see tasks.video)."""
    info = probe_video(clip.path)
    frames = read_frames(
        clip.path,
        clip.start if start is None else start,
        clip.count if count is None else count,
        size=size,
        info=info,
    )
    return [frame.astype("float32") / 255.0 for frame in frames]


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


# --------------------------------------------------------------------------- measurement 1


def reference(
    transfer: StyleTransfer, frame: np.ndarray, settings: VideoSettings, iterations: int
) -> dict:
    """Long cold start of one frame: L_ref and the steps a cold start needs to 1.05 x L_ref."""
    image, curve, _ = transfer.adam.run(
        initial_image(frame, settings)[None],
        iterations,
        transfer.content_targets(frame),
        transfer.style_grams(*frame.shape[:2]),
    )
    loss = gatys_loss(transfer, image[0], frame)
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
    twin = fork(
        chain, with_changes(chain.settings, iterations=cap, tolerance=0.0, carry_state=carry)
    )
    optimizer: _Optimizer = twin.transfer.adam  # type: ignore[attr-defined]
    optimizer.target = target
    output, _ = twin.step(frame, index)
    gatys = gatys_curve(optimizer.curve)
    steps = steps_to(gatys, target)
    final = gatys_loss(chain.transfer.base, output, frame)  # type: ignore[attr-defined]
    if steps is None and final <= target:
        steps = len(gatys)
    return {
        "steps": steps,
        "ran": len(gatys),
        "init_ratio": float(gatys[0] / target * TARGET_RATIO),
        "best_ratio": float(min(gatys.min(), final) / target * TARGET_RATIO),
    }


# --------------------------------------------------------------------------- measurement 2


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
    transfer: StyleTransfer = base.transfer.base  # type: ignore[attr-defined]
    chain = fork(base, variant.settings(base.settings))
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
    chain = new_chain(transfer, settings)
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
    base = new_chain(transfer, settings)
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


# --------------------------------------------------------------------------- measurement 3


def measure_static(
    transfer: StyleTransfer, plan: Plan, settings: VideoSettings
) -> tuple[list[dict], dict]:
    """One frame repeated: per-frame change and drift from frame 1 for each guard variant."""
    name, index = plan.static_source
    clip = Clip(name, name, index, 1, index)
    frame = load_frames(clip, plan.static_size)[0]
    log(f"static: frame {index} of {name} at {frame.shape[1]}x{frame.shape[0]}")
    settings = with_changes(settings, iterations=plan.static_iterations)
    base = new_chain(transfer, settings)
    first, _ = base.step(frame, 0)
    rows, series = [], {}
    for variant in STATIC_VARIANTS:
        count = plan.static_frames if variant in (NAIVE, GUARDED) else plan.static_part_frames
        chain = fork(base, variant.settings(settings))
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


# --------------------------------------------------------------------------- summary


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


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if value != 0 and (abs(value) < 10**-digits or abs(value) >= 1e5):
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


def _censored(row: dict, value: float | None, digits: int) -> str:
    """A median-based number, marked as a lower bound when unreached frames decide it."""
    bound = row["median_steps"] is not None and row["reached"] * 2 <= len(row["steps"])
    return ("≥" if bound and row["reached"] < len(row["steps"]) else "") + _fmt(value, digits)


def tables(rows: list[dict], cap: int) -> str:
    """Markdown tables of the three measurements."""
    conv = [r for r in rows if r["measure"] == "convergence"]
    conv_table = markdown_table(
        [
            "init",
            "objective",
            "Adam state",
            "steps per frame",
            "median",
            "÷ cold",
            "init loss ÷ L_ref",
            "best ÷ L_ref",
        ],
        [
            [
                r["init"],
                r["objective"],
                r["adam_state"],
                ", ".join(str(s) if s is not None else f">{cap}" for s in r["steps"]),
                _censored(r, r["median_steps"], 0),
                _censored(r, r["over_cold"], 2),
                ", ".join(_fmt(x) for x in r["init_loss_over_ref"]),
                ", ".join(_fmt(x) for x in r["best_loss_over_ref"]),
            ]
            for r in conv
        ],
    )
    warp = [r for r in rows if r["measure"] == "warp"]
    warp_table = markdown_table(
        [
            "clip",
            "chain",
            "warp error",
            "on indep. pairs",
            "÷ indep.",
            "Gatys ÷ indep.",
            "change /255",
            "static stretch /255",
            "iters/frame",
        ],
        [
            [
                r["clip"],
                r["variant"],
                _fmt(r["warp_error"], 5),
                _fmt(r["warp_error_on_independent_pairs"], 5),
                _fmt(r["warp_over_independent"], 3),
                _fmt(r["gatys_over_independent"], 3),
                _fmt(r["change_per_frame_255"]),
                _fmt(r["static_stretch_change_255"]),
                _fmt(r["mean_iterations"], 0),
            ]
            for r in warp
        ],
    )
    static = [r for r in rows if r["measure"] == "static"]
    static_table = markdown_table(
        [
            "chain",
            "frames",
            "change/frame /255",
            "last 100",
            "max",
            "drift at end /255",
            "RGB shift at end /255",
            "Gatys end ÷ first",
        ],
        [
            [
                r["variant"],
                r["frames"],
                _fmt(r["change_per_frame_255"]),
                _fmt(r["change_per_frame_last_100_255"]),
                _fmt(r["max_change_255"]),
                _fmt(r["drift_at_end_255"]),
                ", ".join(f"{c:+.1f}" for c in r["channel_shift_at_end_255"]),
                _fmt(r["gatys_end_over_first"], 3),
            ]
            for r in static
        ],
    )
    note = (
        f"`>{cap}`: not reached. A probe stops early once its progress over the last "
        f"{HOPELESS_WINDOW} steps, extrapolated linearly, cannot reach the target by {cap} "
        "steps (`ran` in series.probes); `≥`: the median includes such frames."
    )
    return (
        f"### Steps to reach 1.05 x L_ref\n\n{conv_table}\n\n{note}\n\n"
        f"### Temporal warp error and loss\n\n{warp_table}\n\n"
        f"### Static input\n\n{static_table}"
    )


# --------------------------------------------------------------------------- plots


def plot_static(series: dict, plan: Plan, path: Path) -> None:
    """Per-frame change and drift from frame 1 on a repeated frame, per chain."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    colors = _colors(plt)
    for name, data in series.items():
        style = "-" if name in (NAIVE.name, GUARDED.name) else "--"
        frames = np.arange(2, len(data["change_255"]) + 2)  # frame 1 is the cold start
        for ax, values in zip(axes, (data["change_255"], data["drift_255"][1:]), strict=True):
            ax.plot(frames, np.maximum(values, 1e-3), style, lw=1, color=colors[name], label=name)
    axes[0].axhline(
        TARGETS["static_change_per_frame_255"], color="k", ls=":", lw=1, label="target 1/255"
    )
    axes[1].axhline(
        TARGETS["static_drift_at_end_255"], color="k", ls=":", lw=1, label="target 2/255"
    )
    axes[0].set(
        yscale="log",
        xlabel="frame",
        ylabel="mean |out_t - out_t-1| (/255)",
        title="frame-to-frame change",
    )
    axes[1].set(
        yscale="log",
        xlabel="frame",
        ylabel="mean |out_t - out_1| (/255)",
        title="drift from frame 1",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"Static input: one frame repeated, {plan.static_size} px, "
        f"{plan.static_iterations} Adam steps per warm frame",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_warp(rows: list[dict], clip_series: dict, path: Path) -> None:
    """Per-pair warp error over each clip, and warp error vs Gatys loss per chain."""
    plt = _pyplot()
    clips = list(clip_series)
    fig, axes = plt.subplots(2, len(clips), figsize=(6 * len(clips), 8.5), dpi=110, squeeze=False)
    colors = _colors(plt)
    for column, clip in enumerate(clips):
        data = clip_series[clip]
        ax = axes[0][column]
        for name, values in data["warp_error"].items():
            first = data["independent_frames" if name.startswith("independent") else "frames"][0]
            frames = np.arange(first, first + len(values))
            ax.plot(frames, np.maximum(values, 1e-7), lw=1, color=colors[name], label=name)
        if data["static_stretch"]:
            ax.axvspan(*data["static_stretch"], color="grey", alpha=0.15, label="static input")
        ax.set(yscale="log", xlabel="frame t", ylabel="warp error (t, t+1)", title=clip)
        ax.grid(alpha=0.3)
        ax = axes[1][column]
        for row in (r for r in rows if r["measure"] == "warp" and r["clip"] == clip):
            if row["gatys_over_independent"] is not None:
                x, y = row["warp_over_independent"], row["gatys_over_independent"]
                ax.scatter(x, y, s=30, color=colors[row["variant"]], label=row["variant"])
        ax.axvline(TARGETS["warp_over_independent"], color="k", ls=":", lw=1)
        ax.axhline(TARGETS["loss_over_independent"], color="k", ls=":", lw=1)
        ax.set(
            xscale="log",
            xlabel="warp error ÷ independent (same pairs)",
            ylabel="mean Gatys loss ÷ independent (same frames)",
            title=f"{clip}: targets dotted (x <= 0.1, y <= 1.05)",
        )
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    axes[1][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _colors(plt) -> dict[str, object]:
    """One fixed colour per chain, the same in every panel."""
    names = ["input (floor)", INDEPENDENT, *(v.name for v in WARM_VARIANTS)]
    cycle = plt.get_cmap("tab10").colors
    return {name: cycle[k % len(cycle)] for k, name in enumerate(names)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- entry point


def run(quick: bool = False) -> Report:
    """The standard plan (FULL), or QUICK."""
    return _run(QUICK if quick else FULL, quick, NAME)


def run_long(quick: bool = False) -> Report:
    """LONG: both clips and the longer static run (QUICK with --quick)."""
    return _run(QUICK if quick else LONG, quick, f"{NAME}_long")


def _run(plan: Plan, quick: bool, name: str) -> Report:
    """Run the three measurements; write the two plots; return rows, series and tables."""
    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    changes = {} if plan.first_iterations is None else {"first_iterations": plan.first_iterations}
    settings = make_video_settings(size=plan.size, **changes)
    transfer = StyleTransfer([load_image(STYLE)], settings)
    rows: list[dict] = []
    series: dict = {"scan": {}, "clips": {}}
    timings: dict[str, float] = {}
    for clip in plan.clips:
        clip_started = time.perf_counter()
        series["scan"][clip.name] = scan_clip(clip, plan.size, settings.motion_sigma)
        clip_rows, series["clips"][clip.name] = measure_clip(
            transfer, clip, plan, settings, series["scan"][clip.name]
        )
        if clip.samples:
            rows += convergence_rows(clip, series["clips"][clip.name], plan)
        rows += clip_rows
        timings[clip.name] = time.perf_counter() - clip_started
    static_started = time.perf_counter()
    static_rows, series["static"] = measure_static(transfer, plan, settings)
    rows += static_rows
    timings["static"] = time.perf_counter() - static_started
    plots = _write_plots(rows, series, plan, name)
    return Report(
        results=rows,
        table=tables(rows, plan.cap),
        config=_config(plan, settings, quick),
        extra={
            "series": series,
            "plots": plots,
            "targets": TARGETS,
            "section_seconds": {k: round(v, 1) for k, v in timings.items()},
            "measured_seconds": round(time.perf_counter() - started, 1),
        },
    )


def _write_plots(rows: list[dict], series: dict, plan: Plan, name: str) -> list[str]:
    """<name>_static.png and <name>_warp.png next to the JSON result."""
    static_path = RESULTS_DIR / f"{name}_static.png"
    warp_path = RESULTS_DIR / f"{name}_warp.png"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot_static(series["static"], plan, static_path)
    plot_warp(rows, series["clips"], warp_path)
    return [
        str(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p)
        for p in (static_path, warp_path)
    ]


def _config(plan: Plan, settings: VideoSettings, quick: bool) -> dict:
    """Everything that defines the run, for the JSON file."""
    return {
        "quick": quick,
        "style": str(STYLE.relative_to(REPO_ROOT)),
        "settings": settings.model_dump(mode="json"),
        "settings_hash": settings.stable_hash(),
        "plan": {
            "size": plan.size,
            "clips": [
                {**c.__dict__, "file": str(c.path.relative_to(REPO_ROOT))} for c in plan.clips
            ],
            "independent_count": plan.independent_count,
            "independent_iterations": plan.independent_iterations,
            "reference_iterations": plan.reference_iterations,
            "cap": plan.cap,
            "static_size": plan.static_size,
            "static_frames": plan.static_frames,
            "static_part_frames": plan.static_part_frames,
            "static_iterations": plan.static_iterations,
            "static_source": list(plan.static_source),
        },
        "target_ratio": TARGET_RATIO,
        "hopeless_window": HOPELESS_WINDOW,
        "probe_chunk": PROBE_CHUNK,
        "static_rule": {
            "mean_change_255_max": STATIC_CHANGE,
            "moving_share_max": STATIC_PIXELS,
            "min_transitions": MIN_STRETCH,
        },
        "variants": [v.__dict__ for v in WARM_VARIANTS],
    }
