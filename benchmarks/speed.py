"""ms per Adam iteration of the real stylization step, beside a PyTorch CPU reference.

Variants, all on the same problem (VGG19 to block5_conv1, content block4_conv2, 5 Gram
layers, TV, Adam on the image):
- tf.function: the project's `StyleTransfer.stepper` (the product's default);
- tf.function+XLA: a second `AdamStepper` on the same loss with jit_compile=True;
- tf.function bf16: `StyleTransfer` with precision="bfloat16" (bf16 convolutions);
- torch eager / torch eager bf16: benchmarks/torch_reference.py, PyTorch 2.13 CPU, eager,
  bf16 by CPU autocast. Before timing, `check_parity` proves it computes the same losses
  and gradient as the TensorFlow step (recorded in the JSON).
Content bottles.jpg and style starry_night.jpg, both center-cropped to a square; the content
is resized to each size, the style Grams come from `StyleTransfer.style_grams`.

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
- a ratio A / B is the median, over rounds quiet for both, of the ratio within one round
  (see RATIOS);
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
import torch

from benchmarks.common import (
    REPO_ROOT,
    Report,
    cpu_counters,
    interference,
    markdown_table,
    summarize,
)
from benchmarks.torch_reference import TorchStepper, check_parity, nchw_targets
from nst_video.nst_core.images import load_image, resize
from nst_video.nst_core.settings import make_settings
from nst_video.nst_core.size import Size
from nst_video.nst_core.stepper import AdamConfig, RunRequest, Targets
from nst_video.nst_core.stylize import StyleTransfer
from nst_video.nst_core.tf_step import AdamStepper

NAME = "speed"
SIZES = (64, 128, 256)
TF_FUNCTION, XLA, TF_BF16 = "tf.function", "tf.function+XLA", "tf.function bf16"
TORCH, TORCH_BF16 = "torch eager", "torch eager bf16"
VARIANTS = (TF_FUNCTION, XLA, TF_BF16, TORCH, TORCH_BF16)
# (numerator, denominator): the ratios the table reports, paired within rounds.
RATIOS = (
    (TF_FUNCTION, TORCH),  # the CPU target: <= 0.75 at 128 and 256 px
    (TF_BF16, TORCH_BF16),
    (TF_BF16, TF_FUNCTION),
    (XLA, TF_FUNCTION),
)
TARGET = (TF_FUNCTION, TORCH, 0.75, (128, 256))
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


FULL = Plan(min_rounds=7, quiet_pairs=5, max_timed_seconds=150, block_seconds=1.0, fresh_calls=2)
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
    stepper: AdamStepper | TorchStepper
    init: np.ndarray
    targets: Targets
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
        request = RunRequest(self.init, iterations, self.targets, state=state)
        _, curve, state = self.stepper.run(request)
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


def quiet_pairs(by_key: dict, size: int, pair: tuple[str, str] = TARGET[:2]) -> list[int]:
    """Rounds in which both variants of `pair` at `size` ran quiet blocks."""
    first, second = (by_key[(size, variant)].quiet_rounds() for variant in pair)
    return sorted(set(first) & set(second))


def paired_ratio(by_key: dict, size: int, pair: tuple[str, str], rounds: int) -> dict:
    """Median (and spread) over rounds quiet for both of time(pair[0]) / time(pair[1])."""
    top, bottom = (by_key[(size, variant)] for variant in pair)
    both = quiet_pairs(by_key, size, pair)
    used = both if len(both) >= MIN_QUIET else list(range(rounds))
    ratios = [top.ms_per_iteration[i] / bottom.ms_per_iteration[i] for i in used]
    return {
        "size": size,
        "ratio": f"{pair[0]} / {pair[1]}",
        "paired": summarize(ratios),
        "rounds": used,
        "over": "quiet rounds" if used is both else "all rounds (too few quiet ones)",
    }


def _delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def run(quick: bool = False) -> Report:
    plan = QUICK if quick else FULL
    tf.get_logger().setLevel("ERROR")  # the fresh-state calls retrace on purpose
    settings = make_settings(size=max(SIZES), precision="float32")  # the fp32 column
    bf16 = settings.model_copy(update={"precision": "bfloat16"})
    content = center_square(load_image(CONTENT))
    style = center_square(load_image(STYLE))
    transfer = StyleTransfer([style], settings)
    transfer_bf16 = StyleTransfer([style], bf16)
    config: AdamConfig = transfer.stepper.config
    steppers = {
        TF_FUNCTION: transfer.stepper,
        XLA: AdamStepper(
            transfer.model, transfer.n_content, transfer.loss_weights, config, jit_compile=True
        ),
        TF_BF16: transfer_bf16.stepper,
        TORCH: TorchStepper(settings),
        TORCH_BF16: TorchStepper(bf16),
    }
    parity = check_parity(transfer, steppers[TORCH], resize(content, Size(64, 64)))
    print(f"  torch reference parity: {parity}", flush=True)

    cases: list[Case] = []
    for size in SIZES:
        image = resize(content, Size(size, size))
        for variant in VARIANTS:
            source = transfer_bf16 if variant == TF_BF16 else transfer
            targets = source.targets(image)
            if variant in (TORCH, TORCH_BF16):
                targets = nchw_targets(targets)
            cases.append(Case(size, variant, steppers[variant], image[None], targets))

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
            or min(len(quiet_pairs(by_key, size)) for size in TARGET[3]) < plan.quiet_pairs
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
        results.append(row)

    ratios = [paired_ratio(by_key, size, pair, round_index) for pair in RATIOS for size in SIZES]
    target_rows = [
        r for r in ratios if r["ratio"] == f"{TARGET[0]} / {TARGET[1]}" and r["size"] in TARGET[3]
    ]
    target = {
        "ratio": f"{TARGET[0]} / {TARGET[1]}",
        "at_most": TARGET[2],
        "sizes": list(TARGET[3]),
        "measured": {r["size"]: r["paired"]["median"] for r in target_rows},
        "met": all(r["paired"]["median"] <= TARGET[2] for r in target_rows),
    }
    return Report(
        results=results,
        table=_table(results, ratios, target),
        extra={"ratios": ratios, "target": target, "torch_parity": parity},
        config={
            "sizes": list(SIZES),
            "variants": list(VARIANTS),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
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


def _table(results: list[dict], ratios: list[dict], target: dict) -> str:
    rows = []
    for row in results:
        stats, every = row["ms_per_iteration"], row["ms_per_iteration_all_blocks"]
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
    ]
    ratio_rows = [
        [
            r["ratio"],
            r["size"],
            f"**{r['paired']['median']:.2f}** ({r['paired']['min']:.2f}–{r['paired']['max']:.2f})",
            f"{len(r['rounds'])} {r['over']}",
        ]
        for r in ratios
    ]
    measured = ", ".join(f"{v:.2f} at {k} px" for k, v in target["measured"].items())
    note = (
        f"\n\n\\* over quiet blocks (other processes < {QUIET_SHARE:.0%} of the CPUs) where at "
        f"least {MIN_QUIET} were quiet, else over all blocks. "
        "First call: trace (+ XLA compile); "
        "fresh-state call: one `run(..., state=None)` after warm-up.\n\n"
        + markdown_table(["ratio", "size px", "paired median (min–max)", "rounds"], ratio_rows)
        + f"\n\nTarget {target['ratio']} <= {target['at_most']}: {measured}: "
        + ("**met**." if target["met"] else "**missed**.")
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

    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    for variant, marker in zip(VARIANTS, ("o", "s", "D", "^", "v"), strict=True):
        rows = [r for r in results if r["variant"] == variant]
        sizes = [r["size"] for r in rows]
        medians = [r["ms_per_iteration"]["median"] for r in rows]
        low = [m - r["ms_per_iteration"]["p25"] for m, r in zip(medians, rows, strict=True)]
        high = [r["ms_per_iteration"]["p75"] - m for m, r in zip(medians, rows, strict=True)]
        style = "--" if variant.startswith("torch") else "-"
        ax.errorbar(
            sizes, medians, yerr=[low, high], marker=marker, capsize=3, label=variant, ls=style
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(SIZES), [str(s) for s in SIZES])
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel("image size (px, square)")
    ax.set_ylabel("ms per Adam iteration (median, IQR of quiet blocks)")
    ax.set_title("Stylization step on this CPU: TensorFlow vs PyTorch reference")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
