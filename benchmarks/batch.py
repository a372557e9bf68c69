"""Wall time of `stylize_batch` over many tiny clips: a first run, then a rerun that skips.

20 clips (8 frames, 48x36, a different lavfi pattern and hue each) in a temporary folder,
Starry Night, 48 px, 20 cold / 5 warm iterations, concurrency 2, one chunk per clip. The
flow runs in this process against a temporary Prefect server unless PREFECT_API_URL is set.
Checks every output (8 frames, 48x36) and that the rerun skipped every clip.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO_ROOT, Report, markdown_table

NAME = "batch"
CLIPS, QUICK_CLIPS = 20, 6
FRAMES, CONCURRENCY = 8, 2
STYLE = REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
PATTERNS = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc", "smptehdbars")


def make_clips(folder: Path, count: int) -> list[Path]:
    """`count` tiny H.264 clips of FRAMES frames, different patterns and hues."""
    from nst_video.tasks.video import ffmpeg_exe

    clips = []
    for i in range(count):
        source = f"{PATTERNS[i % len(PATTERNS)]}=s=48x36:r=24:d={FRAMES / 24}"
        out = folder / f"clip_{i:02d}.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source,
             "-vf", f"hue=h={i * 18}", "-frames:v", str(FRAMES), "-c:v", "libx264",
             "-pix_fmt", "yuv420p", str(out)],
            check=True,
        )  # fmt: skip
        clips.append(out)
    return clips


def timed_batch(source: Path, destination: Path, work: Path) -> tuple[dict, float]:
    from nst_video.flows.stylize_batch import run_stylize_batch
    from nst_video.nst_core.settings import make_video_settings

    settings = make_video_settings(size=48, first_iterations=20, iterations=5, tolerance=0.0)
    started = time.perf_counter()
    summary = run_stylize_batch(
        str(source), [str(STYLE)], str(destination), settings,
        concurrency=CONCURRENCY, chunk_frames=FRAMES, overlap=0, work_dir=str(work),
    )  # fmt: skip
    return summary, time.perf_counter() - started


def check_outputs(summary: dict) -> int:
    """Number of outputs that are valid videos of FRAMES frames at 48x36."""
    from nst_video.tasks.video import probe

    good = 0
    for row in summary["videos"]:
        info = probe(row["output"])
        good += info.frame_count == FRAMES and (info.width, info.height) == (48, 36)
    return good


def run(quick: bool) -> Report:
    count = QUICK_CLIPS if quick else CLIPS
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="nst-batch-bench-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        make_clips(root / "in", count)
        first, first_s = timed_batch(root / "in", root / "out", root / "work")
        valid = check_outputs(first)
        second, second_s = timed_batch(root / "in", root / "out", root / "work")
    results = [
        {"run": "first", "wall_seconds": round(first_s, 1), **first["counts"], "valid": valid},
        {"run": "second", "wall_seconds": round(second_s, 1), **second["counts"]},
    ]
    assert valid == count, f"only {valid} of {count} outputs are valid"
    assert second["counts"]["skipped"] == count, second["counts"]
    rows = [
        [r["run"], r["videos"], r["done"], r["skipped"], r["failed"], r["wall_seconds"]]
        for r in results
    ]
    table = markdown_table(["run", "videos", "done", "skipped", "failed", "wall s"], rows)
    config = {
        "clips": count, "frames": FRAMES, "size": "48x36", "concurrency": CONCURRENCY,
        "first_iterations": 20, "iterations": 5, "style": STYLE.name,
        "prefect_api": os.environ.get("PREFECT_API_URL") or "temporary server",
    }  # fmt: skip
    per_clip = {
        "first_s_per_clip": round(first_s / count, 2),
        "second_s_per_clip": round(second_s / count, 2),
    }
    return Report(results=results, table=table, config=config, extra={"per_clip": per_clip})
