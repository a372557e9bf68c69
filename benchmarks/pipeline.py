"""Chunk seams and orchestration overhead of the stylize-video flow.

Seams: the clip is stylized through the real flow with chunks of `CHUNK` frames and
overlap 0 and 8 (the default; plus one unchunked run); the output is decoded and the warp error
(Lai et al., flow on the input frames) of each consecutive pair is split into pairs that
straddle a chunk boundary and interior pairs. Target: seam / interior <= 1.2.

Overhead: flow wall time (probe, planning, encode, concat, audio, publish, artifacts)
against the sum of chunk stylization time, from the run's manifest. Target: <= 5%.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import common

CLIP = common.REPO_ROOT / "assets" / "videos" / "bottles_with_tone.mp4"
STYLE = common.REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
CHUNK = 15


def _frames(path: Path) -> list[np.ndarray]:
    from nst_video.tasks.video import read_frames

    return [f.astype("float32") / 255.0 for f in read_frames(path)]


def _run_flow(out: Path, frames: int, chunk_frames: int, overlap: int, size: int) -> dict:
    from nst_video.flows.stylize_video import stylize_video
    from nst_video.nst_core.settings import make_video_settings

    settings = make_video_settings(size=size, first_iterations=300, iterations=30)
    return stylize_video(
        str(CLIP),
        [str(STYLE)],
        str(out),
        settings,
        chunk_frames=chunk_frames,
        overlap=overlap,
        max_frames=frames,
        work_dir=str(out.parent / "work"),
    )


def _seam_ratio(manifest: dict, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict:
    from nst_video.nst_core.metrics import warp_errors

    errors = warp_errors(inputs, outputs)
    boundaries = {c["start"] for c in manifest["chunks"]} - {0}
    seams = [errors[b - 1] for b in sorted(boundaries)]
    interior = [e for i, e in enumerate(errors) if i + 1 not in boundaries]
    return {
        "seam_warp_error": float(np.mean(seams)) if seams else None,
        "interior_warp_error": float(np.mean(interior)),
        "seam_over_interior": float(np.mean(seams) / np.mean(interior)) if seams else None,
        "seams": len(seams),
    }


def run(quick: bool) -> common.Report:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    frames, size = (30, 64) if quick else (45, 96)
    variants = [("one chunk", frames, 0), *[(f"overlap {o}", CHUNK, o) for o in (0, 8)]]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = None
        for name, chunk_frames, overlap in variants:
            out = Path(tmp) / f"{name.replace(' ', '_')}.mp4"
            manifest = _run_flow(out, frames, chunk_frames, overlap, size)
            outputs = _frames(out)
            if inputs is None:
                from nst_video.tasks.video import read_frames

                inputs = [
                    f.astype("float32") / 255.0 for f in read_frames(CLIP, count=frames, size=size)
                ]
            totals = manifest["totals"]
            overhead = (totals["wall_seconds"] - totals["stylize_seconds"]) / totals["wall_seconds"]
            results.append(
                {
                    "variant": name,
                    "chunk_frames": chunk_frames,
                    "overlap": overlap,
                    **_seam_ratio(manifest, inputs, outputs),
                    "wall_seconds": round(totals["wall_seconds"], 2),
                    "stylize_seconds": round(totals["stylize_seconds"], 2),
                    "overhead": round(overhead, 4),
                    "iterations": totals["iterations"],
                }
            )
    table = common.markdown_table(
        [
            "variant",
            "seams",
            "seam warp err",
            "interior warp err",
            "seam/interior",
            "iterations",
            "wall s",
            "overhead",
        ],
        [
            [
                r["variant"],
                r["seams"],
                _fmt(r["seam_warp_error"]),
                _fmt(r["interior_warp_error"]),
                _fmt(r["seam_over_interior"], ".2f"),
                r["iterations"],
                r["wall_seconds"],
                f"{100 * r['overhead']:.1f}%",
            ]
            for r in results
        ],
    )
    config = {
        "clip": CLIP.name,
        "style": STYLE.name,
        "frames": frames,
        "size": size,
        "first_iterations": 300,
        "iterations": 30,
    }
    return common.Report(results=results, table=table, config=config)


def _fmt(value: float | None, spec: str = ".5f") -> str:
    return "-" if value is None else format(value, spec)
