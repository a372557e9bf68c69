"""Seams and motion of the optimization chain: keyframe-started chunks against cold-started
ones, side by side in one run.

Each clip is planned as a job plans it (tasks.plan), its chunks stylized by the job's own
functions (tasks.stylize): every chunk started from the shot's keyframe (what jobs do), or
every chunk cold-started (the design it replaced); the overlaps cross-faded (tasks.stylize)
and the result measured as every job is (tasks.quality: seam jump, seam still drift, still
churn), plus the warp error at the seams over the interior's and motion fidelity on the pairs
of frames where the input moved most. Total iterations are counted, keyframes included.
Writes benchmarks/results/seams.json, seams.png and seams_frames.jpg (the README strip).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import common

STYLE = common.REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
VIDEOS = common.REPO_ROOT / "assets" / "videos"
VARIANTS = ("keyframe", "cold")
FIDELITY_SAMPLES = 2
TARGETS = {
    "seam_jump": 1.5,
    "seam_still_drift_255": 3.0,
    "warp_seam_ratio": 1.2,
    "motion_fidelity": 0.8,
    "still_churn_255": 1.0,
}


@dataclass(frozen=True)
class Clip:
    name: str
    file: str
    chunk_frames: int  # the job default (48) where the clip is long enough for two chunks

    @property
    def path(self) -> Path:
        return VIDEOS / self.file


CLIPS = (
    Clip("bottles", "bottles_with_tone.mp4", 48),  # 90 frames: hands lift two bottles
    Clip("thanks", "thanks.mkv", 24),  # 51 frames: a person signing, two seams
)


def _settings(quick: bool):
    from nst_video.nst_core.settings import make_video_settings

    if quick:
        return make_video_settings(size=64, first_iterations=20, iterations=4)
    return make_video_settings(precision="bfloat16")  # the defaults, at 256 px


def _stylize(clip: Clip, variant: str, settings, folder: Path) -> tuple[Path, list, int]:
    """The clip through keyframe (or cold) chunks and the cross-fade: (final, chunks,
    iterations)."""
    from nst_video.tasks.assemble import segment_crf
    from nst_video.tasks.plan import OVERLAP, plan_chunks
    from nst_video.tasks.staging import Staging
    from nst_video.tasks.stylize import crossfade_frames, stylize_chunk, stylize_keyframe
    from nst_video.tasks.video import probe, write_frames

    info, staging = probe(clip.path), Staging(str(folder))
    chunks = plan_chunks(0, info.frame_count, clip.chunk_frames, OVERLAP)
    iterations, keyframes = 0, []
    if variant == "keyframe":
        keyframe = stylize_keyframe(clip.path, [str(STYLE)], settings, 0, staging, info=info)
        iterations, keyframes = keyframe.iterations, [keyframe.path]
    crf = segment_crf([c.warmup for c in chunks], 18)
    results = [
        stylize_chunk(
            clip.path,
            [str(STYLE)],
            settings,
            chunk,
            staging,
            info=info,
            crf=crf,
            keyframes=keyframes,
        )
        for chunk in chunks
    ]
    final = folder / "final.mp4"
    write_frames(crossfade_frames([(r.segment, r.warmup) for r in results]), final, info.avg_fps)
    return final, [vars(r) for r in results], iterations + sum(r.iterations for r in results)


def _warp_seam_ratio(clip: Clip, final: Path, chunks: list, size: int) -> float | None:
    """Mean warp error of the seam windows' pairs over that of the interior pairs."""
    from nst_video.nst_core.metrics import interior_pairs, seam_window, warp_errors
    from nst_video.tasks.quality import job_seams
    from nst_video.tasks.video import read_frames

    def decoded(path: Path) -> list[np.ndarray]:
        return [f.astype("float32") / 255 for f in read_frames(path, size=size)]

    inputs, outputs = decoded(clip.path), decoded(final)
    errors = warp_errors(inputs, outputs)  # errors[t - 1]: pair (t - 1, t)
    seams = job_seams(chunks, (), 0, len(outputs))
    at_seams = {t for seam in seams for t in seam_window(seam, ())}
    interior = interior_pairs(len(outputs), seams, ())
    seam_mean = np.mean([errors[t - 1] for t in at_seams])
    return round(float(seam_mean / np.mean([errors[t - 1] for t in interior])), 3)


def _measure(clip: Clip, variant: str, settings, folder: Path) -> tuple[dict, Path]:
    from nst_video.tasks.quality import measure_motion_fidelity, measure_quality, opencv_available
    from nst_video.tasks.stylize import cached_transfer
    from nst_video.tasks.video import probe

    final, chunks, iterations = _stylize(clip, variant, settings, folder)
    count = probe(final).frame_count
    quality = measure_quality(clip.path, final, count=count, chunks=chunks)
    row = {
        "clip": clip.name,
        "variant": variant,
        "frames": count,
        "chunk_frames": clip.chunk_frames,
        "iterations": iterations,
        **{k: quality[k] for k in ("seam_jump", "seam_still_drift_255", "still_churn_255")},
        "seam_jumps": quality["seam_jumps"],
        "interior_change_p95_255": quality["interior_change_p95_255"],
        "warp_seam_ratio": (
            _warp_seam_ratio(clip, final, chunks, settings.size) if opencv_available() else None
        ),
    }
    if variant == "keyframe":  # the cold starts of fidelity cost as much as a chunk
        transfer = cached_transfer(settings, (str(STYLE),))
        fidelity = measure_motion_fidelity(
            transfer, clip.path, final, first=0, count=count,
            samples=FIDELITY_SAMPLES, longest=settings.size,
        )  # fmt: skip
        row |= fidelity
    return row, final


def _strip(finals: dict, path: Path, size: int) -> None:
    """Bottles input / keyframe chunks / cold chunks at frames around the seam and the hands."""
    from PIL import Image

    from nst_video.tasks.video import read_frames

    picks = [20, 38, 43, 47, 48, 60]
    rows = []
    for source in (VIDEOS / "bottles_with_tone.mp4", finals["keyframe"], finals["cold"]):
        frames = list(read_frames(source, size=size))
        rows.append(np.concatenate([frames[min(i, len(frames) - 1)] for i in picks], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path, quality=90)


def _plot(rows: list[dict]):
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figures = ("seam_jump", "seam_still_drift_255", "warp_seam_ratio", "iterations")
        fig, axes = plt.subplots(1, len(figures), figsize=(4 * len(figures), 3.2))
        labels = [f"{r['clip']}\n{r['variant']}" for r in rows]
        for axis, key in zip(axes, figures, strict=True):
            values = [r[key] or 0 for r in rows]
            axis.bar(
                labels, values, color=["C0" if r["variant"] == "keyframe" else "C3" for r in rows]
            )
            if key in TARGETS:
                axis.axhline(TARGETS[key], color="k", linestyle="--", linewidth=1)
            axis.set_title(key)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return draw


def run(quick: bool = False) -> common.Report:
    settings = _settings(quick)
    rows, finals = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in CLIPS:
            for variant in VARIANTS:
                folder = Path(tmp) / clip.name / variant
                folder.mkdir(parents=True)
                row, final = _measure(clip, variant, settings, folder)
                rows.append(row)
                print(row, flush=True)
                if clip.name == "bottles":
                    finals[variant] = final
        strip = common.RESULTS_DIR / "seams_frames.jpg"
        _strip(finals, strip, settings.size)
    keys = ("seam_jump", "seam_still_drift_255", "warp_seam_ratio", "still_churn_255",
            "motion_fidelity", "iterations")  # fmt: skip
    table = common.markdown_table(
        ["clip", "chunks start from", *keys],
        [[r["clip"], r["variant"], *(r.get(k, "-") for k in keys)] for r in rows],
    )
    return common.Report(
        results=rows,
        table=table + f"\n\ntargets: {TARGETS}",
        config={"settings": settings.model_dump(mode="json"), "clips": [vars(c) for c in CLIPS]},
        extra={"strip": strip.name, "targets": TARGETS},
        plot=_plot(rows),
    )
