"""ms per Adam iteration of the real stylization step: tf.function vs tf.function + XLA.

Uses the project's code path: a `StyleTransfer` (VGG19 features, relative Gatys losses) and
its `AdamStepper` (tf.function, jit_compile=False) against a second `AdamStepper` on the same
loss with jit_compile=True. Content bottles.jpg and style starry_night.jpg, both
center-cropped to a square; the content is resized to each size, the style Grams come from
`StyleTransfer.style_grams` (style image sized like the output, style_scale 1).

Method, for a shared and noisy machine:
- every (size, variant) is warmed up first: one call with a fresh Adam state (traces and, for
  XLA, compiles: reported as "first call") and a 2-iteration call that calibrates how many
  iterations make one timed block of about `block_seconds`;
- timed blocks reuse that Adam state (`run(..., state=...)`, as a video's warm frames do), so
  they measure steady-state iterations; rounds visit every (size, variant) once, in an
  order reversed and rotated every round, so load changes hit all variants alike;
- each block also records the share of the CPUs that other processes used meanwhile
  (/proc/stat minus this process's CPU time); a block is "quiet" below QUIET_SHARE. Rounds
  go on past `min_rounds` until every size has `quiet_pairs` rounds quiet for both variants;
  after `max_timed_seconds` no new round starts (once MIN_QUIET rounds ran), which keeps a
  run on a busy machine short; medians are over quiet blocks when there are enough;
- the XLA / tf.function ratio is the median, over rounds quiet for both, of the ratio
  within one round;
- last, `run` with a fresh state (state=None, what every cold start does) is timed to show
  the cost of a call that starts from scratch, and the retraces it causes are counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from benchmarks.common import (
    REPO_ROOT,
    Report,
    cpu_counters,
    interference,
    markdown_table,
    summarize,
)
from nst_core.images import load_image, resize
from nst_core.optimize import AdamConfig, AdamStepper
from nst_core.settings import make_settings
from nst_core.stylize import StyleTransfer

NAME = "speed"
SIZES = (64, 128, 256)
TF_FUNCTION, XLA = "tf.function", "tf.function+XLA"
VARIANTS = (TF_FUNCTION, XLA)
# A timed block counts as quiet when other processes (or the hypervisor) took less than this
# share of the CPUs meanwhile; medians are over quiet blocks when there are enough of them.
QUIET_SHARE = 0.10
CONTENT = REPO_ROOT / "assets" / "content" / "bottles.jpg"
STYLE = REPO_ROOT / "assets" / "styles" / "starry_night.jpg"


@dataclass(frozen=True)
class Plan:
    min_rounds: int  # timed rounds, time permitting (one block per (size, variant) each)
    quiet_pairs: int  # then go on until every size has this many rounds quiet for both variants
    max_timed_seconds: float  # ... or until the timed rounds have taken this long
    block_seconds: float  # target length of one timed block
    fresh_calls: int  # fresh-state calls per (size, variant)
    min_iterations: int = 2
    max_iterations: int = 200


FULL = Plan(min_rounds=7, quiet_pairs=5, max_timed_seconds=90, block_seconds=1.2, fresh_calls=2)
QUICK = Plan(
    min_rounds=3,
    quiet_pairs=3,
    max_timed_seconds=12,
    block_seconds=0.4,
    fresh_calls=1,
    min_iterations=1,
)
# Statistics are over quiet blocks (or rounds) when there are at least this many, else over all.
MIN_QUIET = 3


@dataclass
class Case:
    size: int
    variant: str
    stepper: AdamStepper
    init: np.ndarray
    targets: list
    grams: list
    state: object = None
    iterations: int = 0
    first_call_s: float = 0.0
    ms_per_iteration: list[float] = field(default_factory=list)
    others_share: list[float] = field(default_factory=list)  # per timed block
    fresh_call_s: list[float] = field(default_factory=list)
    fresh_others_share: list[float] = field(default_factory=list)

    def run(self, iterations: int, fresh: bool = False, keep: bool = True) -> tuple[float, float]:
        """Time one `AdamStepper.run` of `iterations` steps from the content image.

        Returns (seconds, share of the CPUs that other processes used meanwhile). `fresh`
        starts from a new Adam state (state=None); `keep` stores the state it ends with.
        """
        state = None if fresh else self.state
        counters = cpu_counters()
        started = time.perf_counter()
        _, curve, state = self.stepper.run(
            self.init, iterations, self.targets, self.grams, state=state
        )
        seconds = time.perf_counter() - started
        others = interference(counters, cpu_counters())
        if len(curve) != iterations:
            raise RuntimeError(f"expected {iterations} iterations, ran {len(curve)}")
        if keep:
            self.state = state
        return seconds, others.get("others_cpu_share", 0.0) + others.get("steal_share", 0.0)

    def quiet_rounds(self) -> list[int]:
        """Rounds whose timed block ran while other processes used < QUIET_SHARE of the CPUs."""
        return [i for i, share in enumerate(self.others_share) if share < QUIET_SHARE]


def center_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def tracing_count(stepper: AdamStepper) -> int | None:
    step = getattr(stepper, "_step", None)
    counter = getattr(step, "experimental_get_tracing_count", None)
    return counter() if counter else None


def quiet_pairs(by_key: dict, size: int) -> list[int]:
    """Rounds in which both variants at `size` ran quiet blocks."""
    return sorted(
        set(by_key[(size, TF_FUNCTION)].quiet_rounds()) & set(by_key[(size, XLA)].quiet_rounds())
    )


def _delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def run(quick: bool = False) -> Report:
    plan = QUICK if quick else FULL
    tf.get_logger().setLevel("ERROR")  # the fresh-state calls retrace on purpose
    settings = make_settings(size=max(SIZES))
    content = center_square(load_image(CONTENT))
    style = center_square(load_image(STYLE))
    transfer = StyleTransfer([style], settings)
    config: AdamConfig = transfer.adam.config
    steppers = {
        TF_FUNCTION: transfer.adam,
        XLA: AdamStepper(transfer.loss_fn, config, jit_compile=True),
    }

    cases: list[Case] = []
    for size in SIZES:
        image = resize(content, size, size)
        targets = transfer.content_targets(image)
        grams = transfer.style_grams(size, size)
        for variant in VARIANTS:
            cases.append(Case(size, variant, steppers[variant], image[None], targets, grams))

    # Warm-up: trace/compile, then calibrate the block length.
    for case in cases:
        case.first_call_s = case.run(1, fresh=True)[0]
        estimate = case.run(2)[0] / 2
        wanted = math.ceil(plan.block_seconds / max(estimate, 1e-6))
        case.iterations = min(plan.max_iterations, max(plan.min_iterations, wanted))
        print(
            f"  warm {case.size:>3} px {case.variant:<16} first call {case.first_call_s:6.2f} s, "
            f"~{estimate * 1000:7.1f} ms/iter -> {case.iterations} iterations/block",
            flush=True,
        )

    # Timed rounds, interleaved, until enough of them ran undisturbed (or time is up).
    traces_before = {v: tracing_count(s) for v, s in steppers.items()}
    timing_started = time.perf_counter()
    by_key = {(c.size, c.variant): c for c in cases}
    round_index = 0
    while round_index < MIN_QUIET or (
        time.perf_counter() - timing_started < plan.max_timed_seconds
        and (
            round_index < plan.min_rounds
            or min(len(quiet_pairs(by_key, size)) for size in SIZES) < plan.quiet_pairs
        )
    ):
        order = cases if round_index % 2 == 0 else cases[::-1]
        shift = round_index % len(order)
        for case in order[shift:] + order[:shift]:
            seconds, others = case.run(case.iterations)
            case.ms_per_iteration.append(1000 * seconds / case.iterations)
            case.others_share.append(others)
        round_index += 1
    timing_seconds = time.perf_counter() - timing_started
    retraces = {v: _delta(tracing_count(s), traces_before[v]) for v, s in steppers.items()}

    # Calls that start from a fresh Adam state, as a cold start does.
    traces_before_fresh = {v: tracing_count(s) for v, s in steppers.items()}
    for repeat in range(plan.fresh_calls):
        for case in cases if repeat % 2 == 0 else cases[::-1]:
            seconds, others = case.run(1, fresh=True, keep=False)
            case.fresh_call_s.append(seconds)
            case.fresh_others_share.append(others)
    fresh_traces = {
        v: _delta(tracing_count(s), traces_before_fresh[v]) for v, s in steppers.items()
    }
    fresh_calls_per_variant = plan.fresh_calls * len(SIZES)

    results = []
    for case in cases:
        quiet = case.quiet_rounds()
        use_quiet = len(quiet) >= MIN_QUIET
        samples = [case.ms_per_iteration[i] for i in quiet] if use_quiet else case.ms_per_iteration
        stats = summarize(samples)
        fresh = summarize(case.fresh_call_s)
        row = {
            "size": case.size,
            "variant": case.variant,
            "jit_compile": case.variant == XLA,
            "iterations_per_block": case.iterations,
            "blocks": len(case.ms_per_iteration),
            "quiet_blocks": len(quiet),
            "stats_over": "quiet blocks" if use_quiet else "all blocks (too few quiet ones)",
            "ms_per_iteration": stats,
            "ms_per_iteration_all_blocks": summarize(case.ms_per_iteration),
            "samples_ms_per_iteration": case.ms_per_iteration,
            "samples_others_cpu_share": case.others_share,
            "first_call_s": case.first_call_s,
            "fresh_state_call_s": fresh["median"],
            "fresh_state_call_samples_s": case.fresh_call_s,
            "fresh_state_call_others_cpu_share": case.fresh_others_share,
            "fresh_state_overhead_s": fresh["median"] - stats["median"] / 1000,
            "retraces_during_timing": retraces[case.variant],
            "traces_per_fresh_state_call": (
                None
                if fresh_traces[case.variant] is None
                else fresh_traces[case.variant] / fresh_calls_per_variant
            ),
        }
        if case.variant == XLA:
            base = by_key[(case.size, TF_FUNCTION)]
            both = quiet_pairs(by_key, case.size)
            rounds = both if len(both) >= MIN_QUIET else list(range(round_index))
            paired = [case.ms_per_iteration[i] / base.ms_per_iteration[i] for i in rounds]
            row["ratio_vs_tf_function"] = summarize(paired)
            row["ratio_rounds"] = rounds
            base_samples = [base.ms_per_iteration[i] for i in base.quiet_rounds()]
            if len(base_samples) < MIN_QUIET:
                base_samples = base.ms_per_iteration
            row["ratio_of_medians"] = stats["median"] / summarize(base_samples)["median"]
        results.append(row)

    return Report(
        results=results,
        table=_table(results),
        config={
            "sizes": list(SIZES),
            "variants": list(VARIANTS),
            "content": str(CONTENT.relative_to(REPO_ROOT)),
            "style": str(STYLE.relative_to(REPO_ROOT)),
            "crop": "center square, then nst_core.images.resize (bicubic, antialiased)",
            "settings_hash": settings.stable_hash(),
            "adam": {
                "learning_rate": config.learning_rate,
                "beta1": config.beta1,
                "beta2": config.beta2,
                "epsilon": config.epsilon,
            },
            "content_layers": list(settings.content_layers),
            "style_layers": list(settings.style_layers),
            "min_rounds": plan.min_rounds,
            "quiet_pairs_wanted": plan.quiet_pairs,
            "max_timed_seconds": plan.max_timed_seconds,
            "quiet_share_below": QUIET_SHARE,
            "rounds": round_index,
            "block_seconds": plan.block_seconds,
            "fresh_calls": plan.fresh_calls,
            "timed_seconds": round(timing_seconds, 1),
        },
        plot=lambda path: _plot(results, path),
    )


def _range(stats: dict, digits: int = 1) -> str:
    return f"{stats['p25']:.{digits}f}–{stats['p75']:.{digits}f}"


def _table(results: list[dict]) -> str:
    rows = []
    for row in results:
        stats, every = row["ms_per_iteration"], row["ms_per_iteration_all_blocks"]
        ratio = row.get("ratio_vs_tf_function")
        rows.append(
            [
                row["size"],
                row["variant"],
                f"{stats['median']:.1f}",
                _range(stats),
                f"{every['min']:.1f}–{every['max']:.1f}",
                f"{row['quiet_blocks']}/{row['blocks']}×{row['iterations_per_block']}",
                f"{row['first_call_s']:.2f}",
                f"{row['fresh_state_call_s']:.2f}",
                (
                    f"**{ratio['median']:.2f}** ({ratio['min']:.2f}–{ratio['max']:.2f})"
                    if ratio
                    else "1 (baseline)"
                ),
            ]
        )
    headers = [
        "size px",
        "variant",
        "ms/iter (median*)",
        "IQR ms*",
        "min–max ms (all)",
        "quiet/all blocks × iters",
        "first call s",
        "fresh-state call s",
        "XLA / tf.function (paired median, min–max)",
    ]
    note = (
        f"\n\n\\* over quiet blocks (other processes < {QUIET_SHARE:.0%} of the CPUs) where at "
        f"least {MIN_QUIET} were quiet, else over all blocks. Ratio: median over rounds quiet for "
        "both variants of XLA / tf.function timed in the same round. "
        "First call: trace (+ XLA compile); "
        "fresh-state call: one `run(..., state=None)` after warm-up."
    )
    noisy = [
        f"{row['size']} px {row['variant']}"
        for row in results
        if row["stats_over"] != "quiet blocks"
    ]
    if noisy:
        note += (
            f"\n\n**Too few quiet blocks for {', '.join(noisy)}**: those numbers include "
            "slowdown from other processes; rerun on an idle machine."
        )
    return markdown_table(headers, rows) + note


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for variant, marker in zip(VARIANTS, ("o", "s"), strict=True):
        rows = [r for r in results if r["variant"] == variant]
        sizes = [r["size"] for r in rows]
        medians = [r["ms_per_iteration"]["median"] for r in rows]
        low = [m - r["ms_per_iteration"]["p25"] for m, r in zip(medians, rows, strict=True)]
        high = [r["ms_per_iteration"]["p75"] - m for m, r in zip(medians, rows, strict=True)]
        line = ax.errorbar(
            sizes, medians, yerr=[low, high], marker=marker, capsize=3, label=variant
        )
        for r in rows:
            for quiet, dot in ((True, "o"), (False, "x")):
                samples = [
                    ms
                    for ms, share in zip(
                        r["samples_ms_per_iteration"], r["samples_others_cpu_share"], strict=True
                    )
                    if (share < QUIET_SHARE) == quiet
                ]
                ax.scatter(
                    [r["size"]] * len(samples),
                    samples,
                    s=8,
                    marker=dot,
                    alpha=0.35,
                    color=line[0].get_color(),
                )
            if "ratio_vs_tf_function" in r:
                ax.annotate(
                    f"×{r['ratio_vs_tf_function']['median']:.2f}",
                    (r["size"], r["ms_per_iteration"]["median"]),
                    textcoords="offset points",
                    xytext=(6, 6),
                    fontsize=8,
                )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(SIZES), [str(s) for s in SIZES])
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel("image size (px, square)")
    ax.set_ylabel("ms per Adam iteration\n(median, IQR of quiet blocks; x: noisy block)")
    ax.set_title("Stylization step: tf.function vs XLA (×: XLA / tf.function)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
