"""What a run shows in the Prefect UI: progress, a per-chunk table, the output link, a preview.

Pure formatting functions (testable without Prefect) plus thin calls to prefect.artifacts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from nst_video.tasks.quality import quality_rows
from nst_video.tasks.stylize import ChunkResult
from nst_video.tasks.video import VideoInfo, probe, read_frames


def chunk_table(results: Sequence[ChunkResult]) -> str:
    """Markdown table: one row per chunk with frames, iterations, seconds and final losses."""
    rows = [
        "| chunk | frames | warm-up | iterations | seconds | s/frame | loss | content | style "
        "| resumed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        per_frame = r.seconds / max(r.frames, 1)
        rows.append(
            f"| {r.index} | {r.start}-{r.start + r.frames - 1} | {r.warmup} | {r.iterations} "
            f"| {r.seconds:.1f} | {per_frame:.2f} | {r.loss:.4g} | {r.content_loss:.4g} "
            f"| {r.style_loss:.4g} | {'yes' if r.resumed else ''} |"
        )
    return "\n".join(rows)


def preview_markdown(frame: np.ndarray, caption: str, longest: int = 320) -> str:
    """A stylized frame embedded as a small JPEG data URI: shows in the UI with no file server."""
    image = Image.fromarray(frame)
    image.thumbnail((longest, longest))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"![{caption}](data:image/jpeg;base64,{data})\n\n{caption}"


def quality_markdown(quality: Mapping) -> str:
    """Markdown table of the quality figures (tasks/quality.py), with how to read each."""
    rows = ["| quality | value | how to read it |", "|---|---:|---|"]
    rows += [f"| {name} | {value} | {reading} |" for name, value, reading in quality_rows(quality)]
    return "\n".join(rows)


def summary_markdown(manifest: dict, results: Sequence[ChunkResult]) -> str:
    """The run's summary artifact: output, totals, the chunk table, then the quality table."""
    quality = manifest.get("quality")
    totals = manifest["totals"]
    return "\n".join(
        [
            f"# Stylized {manifest['source']}",
            f"- output: `{manifest['output']}`",
            f"- mode: {_mode_line(manifest)}",
            f"- frames: {totals['frames']} in {len(results)} chunks, "
            f"{totals['iterations']} iterations",
            f"- stylization: {totals['stylize_seconds']:.1f} s of chunk time, "
            f"wall {totals['wall_seconds']:.1f} s",
            f"- settings hash: `{manifest['settings_hash'][:16]}`, job `{manifest['job_id']}`",
            "",
            chunk_table(results),
            *(["", quality_markdown(quality)] if quality else []),
        ]
    )


def _mode_line(manifest: dict) -> str:
    """The mode, with the model's URI and sha256 in fast mode."""
    mode = manifest.get("mode", "optimize")
    if model := manifest.get("model"):
        return f"{mode} (model `{model['uri']}`, sha256 `{model['sha256'][:16]}`)"
    return mode


def _frames_at(
    path: str, picks: list[int], longest: int, info: VideoInfo | None = None
) -> list[np.ndarray]:
    """The frames at indices `picks` (ascending), from one decode of the file."""
    frames = read_frames(path, count=picks[-1] + 1, size=longest, info=info)
    kept = {i: frame for i, frame in enumerate(frames) if i in picks}
    return [kept[i] for i in picks]


def contact_sheet(source: str, stylized: str, out: str, columns: int = 4, height: int = 144) -> str:
    """Input frames above their stylized counterparts, evenly spaced through the clip.

    One probe (of the stylized clip, for its frame count) and one decode of each file.
    """
    info = probe(stylized)
    count = info.frame_count
    picks = [round(i * (count - 1) / max(columns - 1, 1)) for i in range(columns)]
    rows = []
    for path, known in ((source, None), (stylized, info)):
        frames = _frames_at(path, picks, height * 4, known)
        scaled = [
            Image.fromarray(f).resize((round(f.shape[1] * height / f.shape[0]), height))
            for f in frames
        ]
        rows.append(scaled)
    width = sum(image.width for image in rows[0])
    sheet = Image.new("RGB", (width, 2 * height))
    for row, images in enumerate(rows):
        x = 0
        for image in images:
            sheet.paste(image, (x, row * height))
            x += image.width
    sheet.save(out, quality=88)
    return out
