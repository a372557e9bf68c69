"""Split a video into chunks that can be stylized independently, and name the job.

A chunk is a range of frames stylized as one warm-started chain. Boundaries prefer scene
cuts: a chunk that starts at a cut cold-starts exactly as a single chain would, so its seam
is invisible. Other chunks start `overlap` frames early: those warm-up frames are stylized
and thrown away, so the chain has settled by the chunk's first real frame.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.tasks.video import VideoInfo

# The chunking parameters of both flows, declared once: Prefect validates flow parameters
# against these bounds, and the CLI's --chunk-frames ... --work-dir flags read their help,
# bounds and defaults from CHUNKING.
ChunkFrames = Annotated[int, Field(ge=1, description="Frames per chunk (unit of parallel work).")]
Overlap = Annotated[int, Field(ge=0, description="Warm-up frames stylized before a chunk.")]
MaxFrames = Annotated[int | None, Field(ge=1, description="Stylize at most this many frames.")]
Crf = Annotated[int, Field(ge=0, le=51, description="H.264 quality (lower is better).")]
WorkDir = Annotated[
    str | None,
    Field(
        description="Staging folder or s3:// prefix for resumable jobs (default: beside an "
        "s3:// output, else ~/.cache/nst-video/jobs)."
    ),
]
CHUNK_FRAMES, OVERLAP, CRF = 48, 8, 18
CHUNKING = {
    "chunk_frames": (ChunkFrames, CHUNK_FRAMES),
    "overlap": (Overlap, OVERLAP),
    "max_frames": (MaxFrames, None),
    "crf": (Crf, CRF),
    "work_dir": (WorkDir, None),
}


@dataclass(frozen=True)
class Chunk:
    """Frames [start, start + count) of the output, decoded from start - warmup."""

    index: int
    start: int
    count: int
    warmup: int

    @property
    def first_decoded(self) -> int:
        return self.start - self.warmup

    @property
    def name(self) -> str:
        return f"chunk_{self.index:04d}"


def _next_boundary(position: int, chunk_frames: int, total: int, cuts: Sequence[int]) -> int:
    """The end of the chunk starting at `position`: a nearby scene cut, else chunk_frames on."""
    target = position + chunk_frames
    if target >= total:
        return total
    slack = chunk_frames // 4
    near = [cut for cut in cuts if position < cut < total and abs(cut - target) <= slack]
    return min(near, key=lambda cut: abs(cut - target)) if near else target


def plan_chunks(
    start: int, count: int, chunk_frames: int, overlap: int, cuts: Sequence[int] = ()
) -> list[Chunk]:
    """Chunks covering frames [start, start + count) of a video with scene cuts at `cuts`."""
    if chunk_frames < 1 or overlap < 0:
        raise ValueError("chunk_frames must be >= 1 and overlap >= 0")
    end = start + count
    cold_starts = {start, *cuts}
    chunks, position = [], start
    while position < end:
        boundary = _next_boundary(position, chunk_frames, end, cuts)
        # Warm-up stays within the previous chunk (its frames are cross-faded with that
        # chunk's) and never reaches back across a scene cut or before the range.
        last_cut = max(cut for cut in cold_starts if cut <= position)
        previous_start = chunks[-1].start if chunks else start
        warmup = min(overlap, position - max(last_cut, previous_start))
        chunks.append(Chunk(len(chunks), position, boundary - position, warmup))
        position = boundary
    return chunks


def chunk_shots(chunk: Chunk, shot_starts: Sequence[int]) -> list[int]:
    """The shots whose keyframes a chunk's chain needs (by first frame): the shot of its
    first decoded frame, then every shot that starts inside it. `shot_starts` holds the
    range's first frame and its scene cuts."""
    end = chunk.start + chunk.count
    current = max(start for start in shot_starts if start <= chunk.first_decoded)
    return [current, *sorted(s for s in shot_starts if chunk.first_decoded < s < end)]


def frame_range(
    info: VideoInfo,
    start_seconds: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
) -> tuple[int, int]:
    """(first frame, frame count) for a time range, checked against the video's length."""
    name = Path(info.path).name
    if start_seconds < 0 or (duration is not None and duration <= 0):
        raise InvalidSettingsError(f"{name}: start must be >= 0 and duration > 0")
    if max_frames is not None and max_frames <= 0:
        raise InvalidSettingsError(f"{name}: max_frames must be > 0")
    start = round(start_seconds * info.avg_fps)
    if start >= info.frame_count:
        raise InvalidSettingsError(
            f"{name}: start {start_seconds:g} s is past the end ({info.duration:.2f} s)"
        )
    count = info.frame_count - start
    if duration is not None:
        count = min(count, max(1, round(duration * info.avg_fps)))
    if max_frames is not None:
        count = min(count, max_frames)
    return start, count


def job_id(**identity: object) -> str:
    """A deterministic id from everything that determines the output (inputs, settings, plan).

    Equal identity gives an equal id across processes and machines, which is what lets a
    rerun find the chunks a killed run already finished.
    """
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
