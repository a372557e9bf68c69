"""Tables and plots of benchmarks.temporal's rows and series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import markdown_table
from benchmarks.temporal_plan import (
    GUARDED,
    HOPELESS_WINDOW,
    INDEPENDENT,
    NAIVE,
    TARGETS,
    WARM_VARIANTS,
    Plan,
)


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
