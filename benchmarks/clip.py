"""Whole-clip cost: iterations and seconds per frame, cold vs warm; GPU-s per video-second.

Derived from the other benchmarks' latest results (it runs no model itself, so it runs last):
- iterations: `temporal` convergence probes, steps until a frame's Gatys loss is <= 1.05x a
  1000-step cold start: cold start ("content") vs the warm chains without the temporal term
  (with it, the loss levels off above 1.05x by design: see README, video engine), and the
  product's budgets (VideoSettings.first_iterations / iterations, early stop may end sooner);
- CPU seconds: those iteration counts x the `speed` benchmark's ms/iteration at 128 and 256 px
  (float32 and bf16), measured on this machine;
- GPU: x the ms per frame-iteration of the project's JAX step measured on a lent H200
  (benchmarks/results/gpu.json; the torch.compile reference beside it), times 30 fps.
A shot is SHOT_FRAMES long: its first frame is a cold start, the rest are warm.

Iteration counts were measured at 96 px; they are assumed to hold at other sizes (Adam on
pixels in [0, 1] with a fixed step: per-pixel convergence does not depend on the frame size to
first order). The pipeline benchmark's unchunked run gives a measured check (iterations per
warm frame with the product's defaults and early stop).
"""

from __future__ import annotations

import json

from benchmarks.common import RESULTS_DIR, Report, markdown_table

FPS = 30
SHOT_FRAMES = 300  # a scene cut every 10 s at 30 fps
GPU_ROWS = (  # (label, framework, height, width, batch, mode) from gpu.json
    ("512x512", "jax", 512, 512, 1, "bf16"),
    ("1280x720", "jax", 720, 1280, 1, "bf16"),
    ("1280x720 (batch 4)", "jax", 720, 1280, 4, "bf16"),
    ("1920x1080", "jax", 1080, 1920, 1, "bf16"),
)
TORCH_COMPILE_720P_MS = 4.04  # torch.compile bf16 batch 4, per frame-iteration (issue #7, H200)


def _load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def equal_loss_iterations(temporal: dict) -> dict[str, dict]:
    """Adam steps to 1.05x of the reference loss, cold start and warm chains: the mean over
    the sampled frames (what a clip costs) and the median (what a typical frame needs)."""
    found = {}
    for row in temporal["results"]:
        if row["measure"] != "convergence" or row["objective"] != "Gatys":
            continue
        steps = {"mean": sum(row["steps"]) / len(row["steps"]), "median": row["median_steps"]}
        if row["init"].startswith("content"):
            found["cold start"] = steps
        elif row["adam_state"] == "carried":
            found[f"warm ({row['init']})"] = steps
    return found


def budgets() -> dict[str, int]:
    from nst_video.nst_core.settings import VideoSettings

    fields = VideoSettings.model_fields
    return {"cold": fields["first_iterations"].default, "warm": fields["iterations"].default}


def measured_warm_iterations(pipeline: dict | None) -> dict | None:
    """Iterations per warm frame in the pipeline's unchunked run (defaults + early stop)."""
    if not pipeline:
        return None
    config = pipeline["config"]
    for row in pipeline["results"]:
        if row.get("chunk_frames") == config["frames"]:
            warm = (row["iterations"] - config["first_iterations"]) / (config["frames"] - 1)
            return {"frames": config["frames"], "budget": config["iterations"], "mean": warm}
    return None


def cpu_ms_per_iteration(speed: dict) -> dict[tuple[int, str], float]:
    return {
        (row["size"], row["variant"]): row["ms_per_iteration"]["median"]
        for row in speed["results"]
        if row["variant"] in ("tf.function", "tf.function bf16") and row["size"] >= 128
    }


def gpu_ms_per_frame_iteration(gpu: dict) -> dict[str, float]:
    found = {}
    for label, framework, height, width, batch, mode in GPU_ROWS:
        for row in gpu["rows"]:
            key = (row["framework"], row["h"], row["w"], row["batch"], row["mode"])
            if key == (framework, height, width, batch, mode) and row.get("ms_per_frame_iter"):
                found[label] = row["ms_per_frame_iter"]
    return found


def per_frame(cold: float, warm: float) -> float:
    """Mean iterations per frame over a shot of SHOT_FRAMES frames."""
    return (cold + (SHOT_FRAMES - 1) * warm) / SHOT_FRAMES


def run(quick: bool = False) -> Report:
    del quick  # derived from stored results: nothing to shorten
    temporal, speed, gpu = _load("temporal"), _load("speed"), _load("gpu")
    missing = [n for n, d in (("temporal", temporal), ("speed", speed), ("gpu", gpu)) if not d]
    if missing:
        raise RuntimeError(f"run these benchmarks first: {', '.join(missing)}")
    steps = equal_loss_iterations(temporal)
    budget = budgets()
    warm_name = min((k for k in steps if k.startswith("warm")), key=lambda k: steps[k]["mean"])
    scenarios = {
        "equal loss (<=1.05x), mean of frames": (
            steps["cold start"]["mean"],
            steps[warm_name]["mean"],
        ),
        "equal loss (<=1.05x), median frame": (
            steps["cold start"]["median"],
            steps[warm_name]["median"],
        ),
        "product budgets": (budget["cold"], budget["warm"]),
    }
    results: list[dict] = []
    for scenario, (cold, warm) in scenarios.items():
        mean = per_frame(cold, warm)
        row = {
            "scenario": scenario,
            "cold_iterations": cold,
            "warm_iterations": warm,
            "warm_over_cold": warm / cold,
            "mean_iterations_per_frame": mean,
            "cpu_seconds_per_frame": {},
            "gpu_seconds_per_video_second": {},
        }
        for (size, variant), ms in cpu_ms_per_iteration(speed).items():
            row["cpu_seconds_per_frame"][f"{size} px {variant}"] = {
                "cold": cold * ms / 1000,
                "warm": warm * ms / 1000,
                "mean": mean * ms / 1000,
            }
        for label, ms in gpu_ms_per_frame_iteration(gpu).items():
            row["gpu_seconds_per_video_second"][label] = mean * ms / 1000 * FPS
        row["gpu_seconds_per_video_second"]["1280x720 torch.compile reference"] = (
            mean * TORCH_COMPILE_720P_MS / 1000 * FPS
        )
        results.append(row)
    check = measured_warm_iterations(_load("pipeline"))
    return Report(
        results=results,
        table=_table(results, warm_name, check),
        config={
            "fps": FPS,
            "shot_frames": SHOT_FRAMES,
            "warm_chain": warm_name,
            "sources": {
                name: {"created": data.get("created"), "card": data.get("card")}
                for name, data in (("temporal", temporal), ("speed", speed), ("gpu", gpu))
            },
        },
        extra={"pipeline_check": check},
    )


def _table(results: list[dict], warm_name: str, check: dict | None) -> str:
    headers = ["scenario", "cold iters", "warm iters", "warm / cold", "mean iters/frame"]
    rows = [
        [
            r["scenario"],
            f"{r['cold_iterations']:.0f}",
            f"{r['warm_iterations']:.0f}",
            f"{r['warm_over_cold']:.3f}",
            f"{r['mean_iterations_per_frame']:.1f}",
        ]
        for r in results
    ]
    cpu_keys = list(results[0]["cpu_seconds_per_frame"])
    cpu_rows = [
        [r["scenario"], key]
        + [f"{r['cpu_seconds_per_frame'][key][part]:.2f}" for part in ("cold", "warm", "mean")]
        for r in results
        for key in cpu_keys
    ]
    gpu_keys = list(results[0]["gpu_seconds_per_video_second"])
    gpu_rows = [
        [key] + [f"{r['gpu_seconds_per_video_second'][key]:.1f}" for r in results]
        for key in gpu_keys
    ]
    text = (
        markdown_table(headers, rows)
        + f"\n\nWarm chain: {warm_name}; a shot of {SHOT_FRAMES} frames starts cold.\n\n"
        + "CPU (this machine), seconds per frame:\n\n"
        + markdown_table(["scenario", "size / step", "cold s", "warm s", "mean s"], cpu_rows)
        + f"\n\nGPU-seconds per video-second at {FPS} fps (H200, measured ms/frame-iteration x "
        "iterations):\n\n"
        + markdown_table(["frame (bf16)", *(r["scenario"] for r in results)], gpu_rows)
    )
    if check:
        text += (
            f"\n\nCheck (pipeline benchmark, unchunked, {check['frames']} frames): "
            f"{check['mean']:.1f} iterations per warm frame with a budget of {check['budget']}."
        )
    return text
