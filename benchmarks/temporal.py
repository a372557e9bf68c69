"""Warm-started frame chains: steps to converge, temporal warp error, drift on static input.

Three measurements of `nst_video.nst_core.temporal.FrameChain` on the bundled clips (starry_night
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
- Chains that share a history are forked (`FrameChain.fork`) instead of being rerun: all
  variants of a clip fork after the common cold-started frame 0, and every convergence probe
  forks the chain at t-1 and steps it with a `ProbeStop`. A chain's memory (previous frame,
  reference, Adam state) is immutable, so forks share it without changing it.
- Losses are those of the returned image (`StyleTransfer.loss`), not the last recorded step.

Modules: benchmarks.temporal_plan (plans, variants, inputs), temporal_convergence
(measurement 1), temporal_warp (2), temporal_static (3), temporal_report (tables, plots);
this one runs them.
"""

from __future__ import annotations

import time

import tensorflow as tf

from benchmarks.common import REPO_ROOT, RESULTS_DIR, Report
from benchmarks.temporal_convergence import convergence_rows
from benchmarks.temporal_plan import (
    FULL,
    HOPELESS_WINDOW,
    LONG,
    MIN_STRETCH,
    PROBE_CHUNK,
    QUICK,
    STATIC_CHANGE,
    STATIC_PIXELS,
    STYLE,
    TARGET_RATIO,
    TARGETS,
    WARM_VARIANTS,
    Plan,
)
from benchmarks.temporal_report import plot_static, plot_warp, tables
from benchmarks.temporal_static import measure_static
from benchmarks.temporal_warp import measure_clip, scan_clip
from nst_video.nst_core.images import load_image
from nst_video.nst_core.settings import VideoSettings, make_video_settings
from nst_video.nst_core.stylize import StyleTransfer

NAME = "temporal"


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
    settings = make_video_settings(size=plan.size, precision="float32", **changes)
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
