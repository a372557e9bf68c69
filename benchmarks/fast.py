"""Fast mode against the optimization mode, side by side in one run.

- speed: frames per second of the shipped network (assets/models/starry_night_fast.keras)
  at 256x144 and 1280x720, float32 and bfloat16, batches of 4, inference alone; and the
  optimization chain's frames per second on the same 256x144 frames (product budgets:
  400 iterations cold, 40 warm, early stop);
- quality on the bottles clip (frames 12..31: hands reach in) and on a static input
  (frame 12 repeated), at 256x144, for fast mode, the warm-started chain and independent
  cold starts of the same frames: the Gatys loss (content + style + TV, the objective both
  modes share), warp error (optical flow on the inputs; needs opencv from the bench extra),
  the change between consecutive outputs on still pixels (churn), the last static frame
  against the first (drift), and the seam / interior ratio of fast-mode chunks (a chunk
  boundary every 10 frames);
- training: the shipped model's card (steps, seconds, final terms).
Writes benchmarks/results/fast.json, fast.png (fast vs chain vs independent frames) and
fast_frames.jpg (the strip the README shows).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks import common

MODEL = common.REPO_ROOT / "assets" / "models" / "starry_night_fast.keras"
CLIP = common.REPO_ROOT / "assets" / "videos" / "bottles_with_tone.mp4"
STYLE = common.REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
FIRST, COUNT, STATIC, CHUNK = 12, 20, 12, 10
# An input pixel is still when it changed by less than this: stricter than the jobs' quality
# report (nst_core.metrics.MOTION_THRESHOLD), kept so that the published figures compare.
STILL = 2.0 / 255


def _frames(size: int, first: int, count: int) -> list[np.ndarray]:
    from nst_video.tasks.video import read_frames

    return [f.astype("float32") / 255 for f in read_frames(CLIP, first, count, size=size)]


def _fast_fps(net, frames: np.ndarray, repeats: int) -> float:
    from nst_video.nst_core.fast_stylize import stylize_batch

    stylize_batch(net, frames[:4])  # build and warm up at this size
    started = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(frames), 4):
            stylize_batch(net, frames[i : i + 4])
    return repeats * len(frames) / (time.perf_counter() - started)


def speed(card_net, quick: bool) -> list[dict]:
    from nst_video.nst_core.fast_stylize import for_precision
    from nst_video.nst_core.images import resize
    from nst_video.nst_core.size import Size

    rows = []
    clip = np.stack(_frames(256, FIRST, 8))  # the bundled clip is 256x144
    for width, height in ((256, 144), (1280, 720)):
        frames = resize(clip, Size(width, height)) if width != 256 else clip
        for precision in ("float32", "bfloat16"):
            net = for_precision(card_net, precision)
            fps = _fast_fps(net, frames, 1 if quick or width > 256 else 3)
            rows.append({"what": "fast", "size": f"{width}x{height}", "precision": precision,
                         "fps": round(fps, 2)})  # fmt: skip
    return rows


def _chain(frames: list[np.ndarray], settings) -> tuple[list[np.ndarray], float]:
    from nst_video.nst_core.images import load_image
    from nst_video.nst_core.stylize import StyleTransfer
    from nst_video.nst_core.temporal import FrameChain

    transfer = StyleTransfer([load_image(STYLE)], settings)
    started = time.perf_counter()
    outputs = [out for out, _ in FrameChain(transfer, settings).run(frames)]
    return outputs, time.perf_counter() - started


def _gatys(frames: list[np.ndarray], outputs: list[np.ndarray], transfer) -> float:
    return float(np.mean([transfer.loss(o, f).gatys for f, o in zip(frames, outputs, strict=True)]))


def _seam_ratio(outputs: list[np.ndarray], chunk: int) -> float:
    """Mean change at chunk boundaries / mean change inside chunks (1.0: no seam)."""
    change = [np.abs(outputs[t] - outputs[t - 1]).mean() for t in range(1, len(outputs))]
    seams = [c for t, c in enumerate(change, start=1) if t % chunk == 0]
    inside = [c for t, c in enumerate(change, start=1) if t % chunk]
    seam, interior = float(np.mean(seams)), float(np.mean(inside))
    if interior == 0:  # a still input: any change at a seam would be a seam
        return 1.0 if seam == 0 else float("inf")
    return seam / interior


def _warp(frames, outputs) -> float | None:
    from nst_video.nst_core.metrics import warp_error

    try:
        return round(warp_error(frames, outputs), 6)
    except ImportError:  # opencv (bench extra) is missing
        return None


def quality(net, quick: bool) -> tuple[list[dict], dict]:
    from nst_video.nst_core.fast_stylize import stylize_frames
    from nst_video.nst_core.images import load_image
    from nst_video.nst_core.metrics import still_churn
    from nst_video.nst_core.settings import make_video_settings
    from nst_video.nst_core.stylize import StyleTransfer

    count, size = (6, 64) if quick else (COUNT, 256)
    moving = _frames(size, FIRST, count)
    static = [moving[0]] * (4 if quick else STATIC)
    budget = {"first_iterations": 50, "iterations": 10} if quick else {}
    settings = make_video_settings(size=size, precision="bfloat16", **budget)
    independent = settings.model_copy(update={"frame_init": "content"})
    scorer = make_video_settings(size=size, precision="float32")  # losses of every row
    transfer = StyleTransfer([load_image(STYLE)], scorer)
    runs: dict[str, dict] = {}
    for name, frames in (("moving", moving), ("static", static)):
        fast_started = time.perf_counter()
        fast = list(stylize_frames(net, frames))
        fast_seconds = time.perf_counter() - fast_started
        chain, chain_seconds = _chain(frames, settings)
        runs[name] = {"fast": (fast, fast_seconds), "chain": (chain, chain_seconds)}
        if name == "moving":
            runs[name]["independent"] = _chain(frames[: max(3, count // 4)], independent)
    rows, chunk = [], 3 if quick else CHUNK
    for name, modes in runs.items():
        frames = moving if name == "moving" else static
        for mode, (outputs, seconds) in modes.items():
            inputs = frames[: len(outputs)]
            rows.append({
                "clip": name, "mode": mode, "frames": len(outputs),
                "fps": round(len(outputs) / seconds, 3),
                "gatys_loss": round(_gatys(inputs, outputs, transfer), 4),
                "warp_error": _warp(inputs, outputs) if name == "moving" else None,
                "churn_still_255": round(still_churn(inputs, outputs, threshold=STILL), 3),
                "drift_255": round(255 * float(np.abs(outputs[-1] - outputs[0]).mean()), 3),
                "seam_ratio": round(_seam_ratio(outputs, chunk), 3) if mode == "fast" else None,
            })  # fmt: skip
    strip = {mode: runs["moving"][mode][0] for mode in ("fast", "chain")}
    return rows, {"inputs": moving, **strip}


def _strip(pictures: dict, path: Path) -> None:
    """Inputs, fast mode and the chain, four frames each, one row per kind."""
    from PIL import Image

    picks = [0, 6, 12, 18]
    rows = [np.concatenate([pictures[kind][min(i, len(pictures[kind]) - 1)] for i in picks], 1)
            for kind in ("inputs", "fast", "chain")]  # fmt: skip
    Image.fromarray((np.concatenate(rows, 0) * 255).round().astype("uint8")).save(path, quality=88)


def _plot(speed_rows: list[dict], quality_rows: list[dict]):
    """Frames per second (log scale) and Gatys loss / still churn of each mode, side by side."""

    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        moving = [r for r in quality_rows if r["clip"] == "moving"]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        labels = [f"fast {r['size']}\n{r['precision']}" for r in speed_rows]
        labels += [f"{r['mode']}\n256x144" for r in moving if r["mode"] != "fast"]
        fps = [r["fps"] for r in speed_rows] + [r["fps"] for r in moving if r["mode"] != "fast"]
        axes[0].bar(labels, fps, color="tab:blue")
        axes[0].set_yscale("log")
        axes[0].set_title("frames per second (CPU)")
        for axis, key, title in (
            (axes[1], "gatys_loss", "Gatys loss (moving clip)"),
            (axes[2], "churn_still_255", "still-pixel churn, /255"),
        ):
            axis.bar([r["mode"] for r in moving], [r[key] for r in moving], color="tab:orange")
            axis.set_title(title)
        for axis in axes:
            axis.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return draw


def run(quick: bool = False) -> common.Report:
    from nst_video.nst_core.fast_model import load_fast_model

    net, card = load_fast_model(MODEL)
    speed_rows = speed(net, quick)
    quality_rows, pictures = quality(net, quick)
    chain_fps = next(
        r["fps"] for r in quality_rows if r["mode"] == "chain" and r["clip"] == "moving"
    )
    for row in speed_rows:
        if row["size"] == "256x144":
            row["x_chain"] = round(row["fps"] / chain_fps, 1)
    training = {k: card.training.get(k) for k in ("steps", "seconds", "stopped_early", "final")}
    strip_path = common.RESULTS_DIR / "fast_frames.jpg"
    _strip(pictures, strip_path)
    table = "\n\n".join([
        common.markdown_table(
            ["size", "precision", "fast fps", "x chain fps (256x144)"],
            [[r["size"], r["precision"], r["fps"], r.get("x_chain", "-")] for r in speed_rows],
        ),
        common.markdown_table(
            ["clip", "mode", "frames", "fps", "Gatys loss", "warp error", "still churn /255",
             "last - first /255", "seam / interior"],
            [[r["clip"], r["mode"], r["frames"], r["fps"], r["gatys_loss"], r["warp_error"],
              r["churn_still_255"], r["drift_255"], r["seam_ratio"]] for r in quality_rows],
        ),
        f"training (model card): {training}",
    ])  # fmt: skip
    return common.Report(
        results=speed_rows + quality_rows,
        table=table,
        config={
            "model": MODEL.name,
            "frames": [FIRST, COUNT],
            "static_frames": STATIC,
            "chunk": CHUNK,
            "still": STILL,
        },  # fmt: skip
        extra={"training": training, "strip": strip_path.name},
        plot=_plot(speed_rows, quality_rows),
    )
