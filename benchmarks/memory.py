"""Peak memory of the real stylization step by frame size; a projection for 24 GB GPUs.

Measured here (CPU): each (size, precision) runs in a fresh subprocess (`python -m
benchmarks.memory --worker H W PRECISION`), so peaks never mix. The worker imports
TensorFlow, builds a `StyleTransfer` (VGG19 features, style image at the output size) and
reads VmHWM (the process's peak resident set) from /proc/self/status: that is the base.
Then it computes the content targets and style Grams at the frame size and runs a few
iterations of the transfer's `AdamStepper` (`.run`, tf.function, as every frame of a video
does) and reads VmHWM again. The difference is what one frame size costs on top of the
loaded model; a least-squares line `base + slope * pixels` per precision is fitted to it and
its constants go to `nst_core/memory.py`, which the memory guard uses.

Projected (GPU): benchmarks/results/gpu.json holds PyTorch rows from an H200 run with
`peak_gib` (torch.cuda.max_memory_allocated, model weights included) for bf16 (autocast,
channels_last) and fp32 at 512x512, 1280x720 (batch 1 and 4) and 1920x1080. A line
GiB = a + b * megapixels is fitted per precision and gives the largest 16:9 frame that fits
a 24 GB card (after GPU_RESERVE_FRACTION for the CUDA context, workspaces and
fragmentation) and whether 3840x2160 fits. These are the reference implementation's figures,
not this project's: run benchmarks/gpu/run_gpu_bench.py, which now records JAX's peak, to
replace them.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO_ROOT, RESULTS_DIR, Report, markdown_table

NAME = "memory"
CONTENT = REPO_ROOT / "assets" / "content" / "bottles.jpg"
STYLE = REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
# (height, width): square frames by longest side, then 720p.
FULL_SIZES = ((128, 128), (256, 256), (512, 512), (768, 768), (1024, 1024), (720, 1280))
QUICK_SIZES = ((128, 128), (256, 256), (512, 512))
ITERATIONS = 3  # the first traces the step; the peak of a step does not grow after that
GPU_JSON = RESULTS_DIR / "gpu.json"
GPU_TOTAL_GIB = 24.0  # a "24 GB" card (RTX 4090, L4, A10: 24 GiB nominal)
GPU_RESERVE_FRACTION = 0.10  # CUDA context, cuDNN workspaces, allocator fragmentation
UHD = (2160, 3840)
GIB = 2**30


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmHWM: peak resident set, VmRSS: current), bytes."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs).

    Loading the weights leaves a transient peak above the settled model; without the reset
    a small frame's step would hide below it.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def precisions() -> list[str]:
    """float32, and bfloat16 where StyleSettings has a precision field."""
    from nst_video.nst_core.settings import StyleSettings

    return ["float32", "bfloat16"] if "precision" in StyleSettings.model_fields else ["float32"]


def worker(height: int, width: int, precision: str, iterations: int = ITERATIONS) -> dict:
    """Measure one (size, precision) in this process; meant for a fresh process."""
    import tensorflow as tf

    from nst_video.nst_core.images import load_image, resize
    from nst_video.nst_core.settings import make_settings
    from nst_video.nst_core.size import Size
    from nst_video.nst_core.stepper import RunRequest
    from nst_video.nst_core.stylize import StyleTransfer

    tf.get_logger().setLevel("ERROR")
    values: dict = {"size": max(height, width), "tolerance": 0.0}
    if len(precisions()) > 1:  # always pinned: the default "auto" may mean either
        values["precision"] = precision
    settings = make_settings(**values)
    content = resize(load_image(CONTENT), Size(width, height))
    transfer = StyleTransfer([load_image(STYLE)], settings)
    gc.collect()
    build_peak = _status_bytes("VmHWM")
    reset = _reset_peak()
    base = _status_bytes("VmRSS") if reset else build_peak
    targets = transfer.targets(content)
    after_targets = _status_bytes("VmHWM")
    started = time.perf_counter()
    _, curve, _ = transfer.stepper.run(RunRequest(content[None], iterations, targets))
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM")
    if len(curve) != iterations or not all(math.isfinite(v) for v in curve.total):
        raise RuntimeError(f"{width}x{height} {precision}: the step did not run cleanly")
    return {
        "height": height,
        "width": width,
        "pixels": height * width,
        "precision": precision,
        "iterations": iterations,
        "build_hwm_bytes": build_peak,
        "peak_reset": reset,
        "base_rss_bytes": base,
        "targets_hwm_bytes": after_targets,
        "peak_hwm_bytes": peak,
        "step_peak_bytes": peak - base,
        "targets_peak_bytes": after_targets - base,
        "step_seconds": round(seconds, 2),
    }


def _measure(height: int, width: int, precision: str) -> dict:
    """Run `worker` in a fresh Python process and return its row."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    args = [sys.executable, "-m", "benchmarks.memory", "--worker"]
    done = subprocess.run(
        [*args, str(height), str(width), precision],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"worker {width}x{height} {precision} failed: {' | '.join(tail)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of ys against xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        return mean_y, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    return mean_y - slope * mean_x, slope


ENVELOPE_MIN_PIXELS = 250_000  # sizes where the per-pixel term dominates the peak


def cpu_fits(rows: list[dict]) -> dict:
    """Per precision: step peak bytes = base + slope * pixels, with the worst residual.

    `guard_bytes_per_pixel` is the upper envelope the memory guard uses: the largest
    (peak - base) / pixels over frames of at least ENVELOPE_MIN_PIXELS, so that no measured
    large frame lies above the guard's line (the least-squares line runs through the
    scatter and under-estimates some sizes).
    """
    fits = {}
    for precision in sorted({r["precision"] for r in rows}):
        mine = [r for r in rows if r["precision"] == precision]
        xs = [r["pixels"] for r in mine]
        ys = [r["step_peak_bytes"] for r in mine]
        base, slope = linear_fit(xs, ys)
        worst = max(abs(y - (base + slope * x)) / y for x, y in zip(xs, ys, strict=True))
        large = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= ENVELOPE_MIN_PIXELS]
        envelope = max(((y - base) / x for x, y in large), default=slope)
        fits[precision] = {
            "base_bytes": round(base),
            "bytes_per_pixel": round(slope, 1),
            "max_relative_residual": round(worst, 3),
            "guard_bytes_per_pixel": round(max(slope, envelope), 1),
            "points": len(mine),
        }
    return fits


def largest_frame(base_gib: float, gib_per_mp: float, budget_gib: float, aspect=(9, 16)):
    """The largest (height, width) of `aspect` (even sides) whose projected peak fits."""
    if gib_per_mp <= 0 or budget_gib <= base_gib:
        return None
    from nst_video.nst_core.memory import fit_pixels
    from nst_video.nst_core.size import Size

    pixels = (budget_gib - base_gib) / gib_per_mp * 1e6
    fitted = fit_pixels(Size(aspect[1] * 1000, aspect[0] * 1000), int(pixels))
    return None if fitted is None else fitted.hw


def gpu_projection(path: Path = GPU_JSON) -> dict:
    """Fit GiB per megapixel to the PyTorch rows of gpu.json; project a 24 GB card."""
    if not path.is_file():
        return {"error": f"{path.name} not found"}
    data = json.loads(path.read_text(encoding="utf-8"))
    budget = GPU_TOTAL_GIB * (1 - GPU_RESERVE_FRACTION)
    out: dict = {
        "source": str(path.relative_to(REPO_ROOT)),
        "card_of_source": data.get("card"),
        "what": "torch.cuda.max_memory_allocated of the PyTorch reference step "
        "(VGG19 features[:30], relu4_2 content, relu1_1..5_1 Grams, TV, Adam); not this "
        "project's TensorFlow/JAX step",
        "card_gib": GPU_TOTAL_GIB,
        "reserve_fraction": GPU_RESERVE_FRACTION,
        "budget_gib": round(budget, 2),
        "precisions": {},
    }
    modes = {"bfloat16": "bf16_cl", "float32": "fp32"}
    for precision, mode in modes.items():
        rows = [
            r
            for r in data.get("rows", [])
            if r.get("framework") == "torch" and r.get("mode") == mode and "peak_gib" in r
        ]
        if len(rows) < 2:
            continue
        mps = [r["h"] * r["w"] * r["batch"] / 1e6 for r in rows]
        gib = [r["peak_gib"] for r in rows]
        base, slope = linear_fit(mps, gib)
        largest = largest_frame(base, slope, budget)
        uhd_gib = base + slope * UHD[0] * UHD[1] / 1e6
        out["precisions"][precision] = {
            "torch_mode": mode,
            "points": [
                {"h": r["h"], "w": r["w"], "batch": r["batch"], "peak_gib": r["peak_gib"]}
                for r in rows
            ],
            "base_gib": round(base, 3),
            "gib_per_megapixel": round(slope, 3),
            "bytes_per_pixel": round(slope * GIB / 1e6, 1),
            "largest_16x9": None
            if largest is None
            else {"height": largest[0], "width": largest[1]},
            "uhd_projected_gib": round(uhd_gib, 2),
            "uhd_fits": uhd_gib <= budget,
        }
    return out


def run(quick: bool = False) -> Report:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows = []
    for precision in precisions():
        for height, width in sizes:
            row = _measure(height, width, precision)
            print(
                f"  {width:>4}x{height:<4} {precision:<8} step peak "
                f"{row['step_peak_bytes'] / GIB:6.2f} GiB over base "
                f"{row['base_rss_bytes'] / GIB:.2f} GiB ({row['step_seconds']:.1f} s)",
                flush=True,
            )
            rows.append(row)
    fits = cpu_fits(rows)
    projection = gpu_projection()
    return Report(
        results=rows,
        table=_table(rows, fits, projection),
        config={
            "sizes": [list(s) for s in sizes],
            "precisions": precisions(),
            "iterations": ITERATIONS,
            "content": str(CONTENT.relative_to(REPO_ROOT)),
            "style": str(STYLE.relative_to(REPO_ROOT)),
            "measure": "VmHWM of a fresh process per row: after the StyleTransfer is built "
            "(base) and after targets, Grams and the Adam iterations (peak)",
        },
        extra={"cpu_fit": fits, "gpu_projection": projection},
        plot=lambda path: _plot(rows, fits, path),
    )


def _table(rows: list[dict], fits: dict, projection: dict) -> str:
    measured = markdown_table(
        ["frame (WxH)", "megapixels", "precision", "base GiB", "step peak GiB", "bytes/px"],
        [
            [
                f"{r['width']}x{r['height']}",
                f"{r['pixels'] / 1e6:.3f}",
                r["precision"],
                f"{r['base_rss_bytes'] / GIB:.2f}",
                f"{r['step_peak_bytes'] / GIB:.2f}",
                f"{r['step_peak_bytes'] / r['pixels']:.0f}",
            ]
            for r in rows
        ],
    )
    fit_lines = [
        f"- {p}: step peak ≈ {f['base_bytes'] / 2**20:.0f} MiB + {f['bytes_per_pixel']:.0f} B "
        f"× pixels (least squares, worst residual {f['max_relative_residual']:.0%}, "
        f"{f['points']} sizes); upper envelope for the guard: "
        f"{f['guard_bytes_per_pixel']:.0f} B/px; 3840x2160 ≈ "
        f"{(f['base_bytes'] + f['guard_bytes_per_pixel'] * UHD[0] * UHD[1]) / GIB:.1f} GiB"
        for p, f in fits.items()
    ]
    parts = [
        "**Measured here (CPU, TensorFlow, VmHWM of a fresh process per row; step peak = "
        "peak minus the base after the model was built):**",
        measured,
        "Fit (measured):",
        "\n".join(fit_lines),
    ]
    if projection.get("precisions"):
        proj_rows = []
        for precision, p in projection["precisions"].items():
            largest = p["largest_16x9"]
            proj_rows.append(
                [
                    precision,
                    f"{p['base_gib']:.2f} + {p['gib_per_megapixel']:.2f} × MP",
                    f"{p['bytes_per_pixel']:.0f}",
                    f"{largest['width']}x{largest['height']}" if largest else "none",
                    f"{p['uhd_projected_gib']:.1f}",
                    "yes" if p["uhd_fits"] else "**no**",
                ]
            )
        parts += [
            f"**Projected from the PyTorch GPU rows of {projection['source']} "
            f"({projection['card_of_source']}), not measured on our own step:** a "
            f"{projection['card_gib']:.0f} GiB card with {projection['reserve_fraction']:.0%} "
            f"reserved ({projection['budget_gib']:.1f} GiB for the step).",
            markdown_table(
                [
                    "precision",
                    "peak GiB (fit)",
                    "bytes/px",
                    "largest 16:9 frame that fits",
                    "3840x2160 GiB",
                    "4K fits",
                ],
                proj_rows,
            ),
        ]
    return "\n\n".join(parts)


def _plot(rows: list[dict], fits: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for precision, marker in zip(fits, ("o", "s"), strict=False):
        mine = [r for r in rows if r["precision"] == precision]
        xs = [r["pixels"] / 1e6 for r in mine]
        ys = [r["step_peak_bytes"] / GIB for r in mine]
        points = ax.scatter(xs, ys, marker=marker, label=f"{precision} (measured)")
        fit = fits[precision]
        top = max(xs) * 1.05
        ax.plot(
            [0, top],
            [
                fit["base_bytes"] / GIB,
                (fit["base_bytes"] + fit["bytes_per_pixel"] * top * 1e6) / GIB,
            ],
            color=points.get_facecolor()[0],
            alpha=0.6,
            label=f"{precision} fit: {fit['bytes_per_pixel']:.0f} B/px",
        )
        for r, x, y in zip(mine, xs, ys, strict=True):
            ax.annotate(
                f"{r['width']}x{r['height']}",
                (x, y),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    ax.set_xlabel("frame megapixels")
    ax.set_ylabel("step peak over base (GiB, VmHWM)")
    ax.set_title("Peak memory of the stylization step on CPU (TensorFlow)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])), flush=True)
    else:
        sys.exit("usage: python -m benchmarks.memory --worker HEIGHT WIDTH PRECISION")
