"""The quality pass of a stylized video: the flow-free figures of nst_core.metrics measured
against its source, in one streaming decode of each file; motion fidelity on request.

Plain functions (no Prefect, no TensorFlow until motion fidelity runs): the stylize-video
flow stores `measure_quality` as its manifest's "quality", and `nst report` runs
`report_files` on any pair of videos. Frames are compared at the output's size capped at
QUALITY_SIDE. Memory does not grow with the video's length in frames: the pass keeps the
frames of the longest seam window (warm-up + 2) and one float per frame (its change, for the
interior's percentile).

Frame indices here are those of the output (output frame 0 = source frame `first`); chunk
starts and scene cuts come in source indices, as the manifest records them.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from PIL import Image
from pydantic import Field

from nst_video.nst_core.errors import InvalidInputError, one_line
from nst_video.nst_core.metrics import (
    MIN_MOVED_SHARE,
    MOTION_THRESHOLD,
    Seam,
    frame_change,
    mean_or_none,
    motion_fidelity,
    seam_jumps,
    seam_window,
    still_pair_churn,
    still_pixels,
    warp_errors,
    window_still_drift,
)
from nst_video.nst_core.size import Size
from nst_video.tasks.video import read_frames
from nst_video.tasks.video.header import video_header
from nst_video.tasks.video.probing import count_packets
from nst_video.tasks.video.process import check_input_file

if TYPE_CHECKING:
    from nst_video.nst_core.settings import VideoSettings
    from nst_video.nst_core.stylize import StyleTransfer

QUALITY_SIDE = 256  # longest side the quality pass compares frames at (never upscaled)
WARP_PAIRS = 200  # warp error (optical flow: the slow part) on at most this many pairs
FIDELITY_GAP = 15  # motion fidelity compares output frames this far apart, in one shot

# The flow parameter (and CLI flag) that turns motion fidelity on, declared once.
MotionFidelitySamples = Annotated[
    int,
    Field(
        ge=0,
        le=32,
        description="Frame pairs (where the input moved most) whose output motion is compared "
        "with cold starts of the same frames; 0 disables (each pair costs two cold starts).",
    ),
]
QUALITY = {"motion_fidelity_samples": (MotionFidelitySamples, 0)}

Frames = tuple[np.ndarray, np.ndarray]  # (input, output), float RGB in [0, 1]


def job_seams(
    chunks: Sequence[Mapping[str, int]], cuts: Collection[int], first: int, count: int
) -> list[Seam]:
    """The seams of a job, in output frames: every chunk (manifest "chunks": source `start`,
    `warmup`) that starts inside the output, after its first frame, and not at a scene cut."""
    return [
        Seam(chunk["start"] - first, chunk["warmup"])
        for chunk in sorted(chunks, key=lambda c: c["start"])
        if 0 < chunk["start"] - first < count and chunk["start"] not in cuts
    ]


def output_cuts(cuts: Collection[int], first: int, count: int) -> set[int]:
    """Scene cuts (source frames) as output frames inside the output."""
    return {cut - first for cut in cuts if 0 < cut - first < count}


def warp_sample(count: int, cuts: Collection[int], limit: int = WARP_PAIRS) -> list[int]:
    """At most `limit` pairs t (frames t - 1, t) spread evenly over the clip, none at a cut."""
    if limit <= 0:
        return []
    pairs = [t for t in range(1, count) if t not in cuts]
    return pairs[:: max(1, math.ceil(len(pairs) / limit))]


def opencv_available() -> bool:
    """Whether warp error can be measured (OpenCV, from the `bench` extra)."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _as_float(frame: np.ndarray) -> np.ndarray:
    return frame.astype("float32") / 255.0


def _resized(frame: np.ndarray, size: Size) -> np.ndarray:
    """A uint8 frame at `size` (bilinear), as is when it already has it."""
    if Size.of(frame) == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize((size.width, size.height), Image.BILINEAR))


def decoded_pairs(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    first: int,
    count: int,
    longest: int = QUALITY_SIDE,
) -> Iterator[Frames]:
    """(input, output) frames of the output's `count` frames against source frames from
    `first`: the output at its size capped at `longest`, the input at the same size. One
    decode of each file."""
    outputs = read_frames(output, count=count, size=longest)
    opening = next(outputs)
    size = Size.of(opening)
    inputs = read_frames(source, start=first, count=count, size=size.longest)
    for frame, styled in zip(inputs, chain([opening], outputs), strict=True):
        yield _as_float(_resized(frame, size)), _as_float(styled)


@dataclass
class _Streamed:
    """What one pass over the frames collects: per pair t (frames t - 1, t) its output change,
    its still churn (not at cuts) and warp error (sampled pairs); per seam its still drift."""

    changes: list[float] = field(default_factory=list)
    churns: list[float | None] = field(default_factory=list)
    warps: list[float] = field(default_factory=list)
    drifts: dict[int, float | None] = field(default_factory=dict)  # by seam start
    size: list[int] | None = None  # [width, height] measured at


def _stream_figures(
    pairs: Iterator[Frames], seams: Sequence[Seam], cuts: Collection[int], warp_at: set[int]
) -> _Streamed:
    """The figures of every pair and seam, in one pass that keeps the longest window's frames."""
    windows = {seam.start: seam_window(seam, cuts) for seam in seams}
    recent: deque[Frames] = deque(maxlen=max([2, *(len(w) + 1 for w in windows.values())]))
    seen = _Streamed()
    for t, frames in enumerate(pairs):
        recent.append(frames)
        if t == 0:
            continue
        (in0, out0), (in1, out1) = recent[-2], recent[-1]
        seen.changes.append(frame_change(out0, out1))
        if t not in cuts:
            seen.churns.append(still_pair_churn((in0, in1), (out0, out1)))
        if t in warp_at:
            seen.warps.append(warp_errors([in0, in1], [out0, out1])[0])
        if t in windows:
            span = list(recent)[-(len(windows[t]) + 1) :]
            seen.drifts[t] = window_still_drift([i for i, _ in span], span[0][1], span[-1][1])
    seen.size = Size.of(recent[-1][1]).as_list() if recent else None
    return seen


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def measure_quality(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    count: int,
    first: int = 0,
    chunks: Sequence[Mapping[str, int]] = (),
    cuts: Collection[int] = (),
    longest: int = QUALITY_SIDE,
    warp_pairs: int = WARP_PAIRS,
) -> dict:
    """The quality figures of `output` (`count` frames) against source frames from `first`.

    `chunks` and `cuts` are the job's (manifest "chunks" and "video.cuts", source frame
    indices): they place the seams; none given, there are none. Changes are in 1/255:
    still_churn_255, seam_jump (worst seam) and seam_jumps, seam_still_drift_255 (worst)
    and seam_still_drifts_255, seam_frames (each seam's first output frame),
    interior_change_p95_255; with OpenCV also warp_error, the mean over warp_pairs pairs
    spread over the clip. A figure that cannot be measured (no seam, no still pixel) is None.
    """
    seams = job_seams(chunks, cuts, first, count)
    at_cuts = output_cuts(cuts, first, count)
    warp_at = set(warp_sample(count, at_cuts, warp_pairs)) if opencv_available() else set()
    pairs = decoded_pairs(source, output, first=first, count=count, longest=longest)
    seen = _stream_figures(pairs, seams, at_cuts, warp_at)
    jumps = seam_jumps(seen.changes, seams, at_cuts)
    drifts = [_rounded(seen.drifts[seam.start]) for seam in seams]
    quality = {
        "frames": count,
        "size": seen.size,
        "motion_threshold": MOTION_THRESHOLD,
        "still_churn_255": _rounded(mean_or_none(seen.churns)),
        "seam_frames": [seam.start for seam in seams],
        "seam_jump": _rounded(jumps.worst),
        "seam_jumps": [_rounded(jump) for jump in jumps.jumps],
        "seam_still_drift_255": max((d for d in drifts if d is not None), default=None),
        "seam_still_drifts_255": drifts,
        "interior_change_p95_255": _rounded(jumps.interior_p95_255),
    }
    if warp_at:
        quality |= {
            "warp_error": _rounded(mean_or_none(seen.warps), 6),
            "warp_pairs": len(warp_at),
        }
    return quality


# --------------------------------------------------------------------------- motion fidelity


def pick_fidelity_pairs(
    source: str | os.PathLike,
    *,
    first: int,
    count: int,
    cuts: Collection[int] = (),
    samples: int,
    gap: int = FIDELITY_GAP,
) -> list[tuple[int, int]]:
    """Up to `samples` pairs of output frames (t - gap, t) of one shot, not overlapping, where
    the largest share of the input moved (at least MIN_MOVED_SHARE); one decode at
    QUALITY_SIDE. A clip shorter than the gap uses its whole length."""
    gap = min(gap, count - 1)
    at_cuts = output_cuts(cuts, first, count)
    recent: deque[np.ndarray] = deque(maxlen=gap + 1)
    scored = []
    for t, frame in enumerate(read_frames(source, first, count, size=QUALITY_SIDE)):
        recent.append(_as_float(frame))
        if gap > 0 and t >= gap and not any(t - gap < cut <= t for cut in at_cuts):
            scored.append((1.0 - still_pixels(recent[0], recent[-1]).mean(), t - gap, t))
    chosen: list[tuple[int, int]] = []
    for moved, ref, later in sorted(scored, reverse=True):
        apart = all(later < start or ref > end for start, end in chosen)
        if len(chosen) < samples and moved >= MIN_MOVED_SHARE and apart:
            chosen.append((ref, later))
    return sorted(chosen)


def _frames_at(
    path: str | os.PathLike, picks: set[int], start: int, longest: int, size: Size | None = None
) -> dict[int, np.ndarray]:
    """Frames start + i for i in `picks` (float, resized to `size` if given); one decode."""
    frames = read_frames(path, start, max(picks) + 1, size=longest)
    return {
        i: _as_float(_resized(frame, size or Size.of(frame)))
        for i, frame in enumerate(frames)
        if i in picks
    }


def cold_start(transfer: StyleTransfer, frame: np.ndarray) -> np.ndarray:
    """`frame` stylized from scratch, as a chain's first frame (settings.first_iterations)."""
    from nst_video.nst_core.temporal import FrameChain

    styled, _ = FrameChain(transfer, transfer.settings).step(frame)
    return styled


def measure_motion_fidelity(
    transfer: StyleTransfer,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    first: int,
    count: int,
    cuts: Collection[int] = (),
    samples: int,
    longest: int,
    gap: int = FIDELITY_GAP,
) -> dict:
    """Motion fidelity (nst_core.metrics.motion_fidelity) of `output` on the `samples` pairs
    where the input moved most: source frames decoded at `longest` (the processing size) and
    cold-started with `transfer`, against the output's frames resized to that size.

    -> motion_fidelity (the mean over the pairs that have one; None if none does) and
    motion_fidelity_pairs (output frames, moved share and fidelity of each pair).
    """
    pairs = pick_fidelity_pairs(
        source, first=first, count=count, cuts=cuts, samples=samples, gap=gap
    )
    if not pairs:
        return {"motion_fidelity": None, "motion_fidelity_pairs": []}
    picks = {t for pair in pairs for t in pair}
    inputs = _frames_at(source, picks, first, longest)
    size = Size.of(next(iter(inputs.values())))
    outputs = _frames_at(output, picks, 0, longest, size)
    cold = {t: cold_start(transfer, inputs[t]) for t in sorted(picks)}
    rows = [_fidelity_row(pair, inputs, outputs, cold) for pair in pairs]
    return {
        "motion_fidelity": _rounded(mean_or_none([row["fidelity"] for row in rows])),
        "motion_fidelity_pairs": rows,
    }


def _fidelity_row(pair: tuple[int, int], inputs: dict, outputs: dict, cold: dict) -> dict:
    ref, later = pair
    moved = 1.0 - still_pixels(inputs[ref], inputs[later]).mean()
    fidelity = motion_fidelity(
        (inputs[ref], inputs[later]), (outputs[ref], outputs[later]), (cold[ref], cold[later])
    )
    return {"frames": [ref, later], "moved_share": _rounded(moved), "fidelity": _rounded(fidelity)}


def job_motion_fidelity(
    source: str,
    output: str,
    styles: Sequence[str],
    settings: VideoSettings,
    *,
    first: int,
    count: int,
    cuts: Collection[int] = (),
    samples: int,
    longest: int,
) -> dict:
    """measure_motion_fidelity with the job's StyleTransfer (the chunks' cached one)."""
    from nst_video.tasks.stylize import cached_transfer  # TensorFlow: only when asked

    transfer = cached_transfer(settings, tuple(styles))
    return measure_motion_fidelity(
        transfer,
        source,
        output,
        first=first,
        count=count,
        cuts=cuts,
        samples=samples,
        longest=longest,
    )


# --------------------------------------------------------------------------- nst report


def frame_count(path: str | os.PathLike) -> int:
    """Frames in a video file (header check, then a demux: no decode); one-line errors."""
    checked = check_input_file(path)
    video_header(checked)
    count = count_packets(checked)
    if count == 0:
        raise InvalidInputError(f"{checked}: no video frames")
    return count


def _manifest_plan(manifest: Mapping, name: str) -> dict:
    """first, chunks and cuts from a stylize-video manifest; one line if it is not one."""
    try:
        video = manifest["video"]
        chunks = [
            {"start": int(c["start"]), "warmup": int(c["warmup"])} for c in manifest["chunks"]
        ]
        return {"first": int(video["first_frame"]), "chunks": chunks, "cuts": list(video["cuts"])}
    except (KeyError, TypeError, ValueError) as error:
        reason = f"missing {error}" if isinstance(error, KeyError) else one_line(error)
        raise InvalidInputError(f"{name}: not a stylize-video manifest ({reason})") from None


def report_files(source: str, output: str, manifest: Mapping | None = None) -> dict:
    """measure_quality of any two videos. With the job's manifest (`manifest`, read from the
    file OUTPUT.json), the output is source frames first .. first + n with the job's seams and
    cuts; without, both must have the same frame count and there are no seams."""
    count, available = frame_count(output), frame_count(source)
    plan = (
        _manifest_plan(manifest, f"{output}.json")
        if manifest is not None
        else {"first": 0, "chunks": [], "cuts": []}
    )
    if manifest is None and count != available:
        raise InvalidInputError(
            f"{output}: {count} frames but {source} has {available}: not the same clip (a "
            f"stylized range is measured with its manifest, {Path(output).name}.json)"
        )
    if plan["first"] + count > available:
        raise InvalidInputError(
            f"{output}: its manifest places it at frames {plan['first']}.."
            f"{plan['first'] + count - 1} of {source}, which has {available}"
        )
    return measure_quality(source, output, count=count, **plan)


# --------------------------------------------------------------------------- reading them


def count_of(count: int, noun: str) -> str:
    """'1 seam', '2 seams'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _row(name: str, value: float | None, form: str, reading: str) -> tuple[str, str, str]:
    return name, "-" if value is None else form.format(value), reading


def quality_rows(quality: Mapping) -> list[tuple[str, str, str]]:
    """(figure, value, how to read it) of the figures in `quality` (measure_quality's dict,
    maybe with motion fidelity): the UI summary's and `nst report`'s table."""
    seams = len(quality["seam_frames"])

    def per_seam(reading: str) -> str:
        return (
            f"worst of {count_of(seams, 'seam')}: {reading}"
            if seams
            else "no seams (one chunk, or no manifest)"
        )

    rows = [
        _row(
            "seam jump",
            quality["seam_jump"],
            "{:.2f}x",
            per_seam(
                "largest change in its window / the interior change; about 1 is invisible, "
                ">> 1 a visible jump"
            ),
        ),
        _row(
            "seam still drift",
            quality["seam_still_drift_255"],
            "{:.2f}/255",
            per_seam("change across it of the pixels whose input stayed still (0: none)"),
        ),
        _row(
            "interior change",
            quality["interior_change_p95_255"],
            "{:.2f}/255",
            "95th percentile of the change between frames away from seams and scene cuts",
        ),
        _row(
            "still churn",
            quality["still_churn_255"],
            "{:.2f}/255",
            "mean change per frame where the input is still (0: steady)",
        ),
    ]
    if "warp_error" in quality:
        reading = f"optical-flow warp error over {quality['warp_pairs']} pairs (lower: steadier)"
        rows.append(_row("warp error", quality["warp_error"], "{:.4g}", reading))
    if "motion_fidelity" in quality:
        reading = (
            f"over {len(quality['motion_fidelity_pairs'])} pairs: output motion where the input "
            "moved / that of cold starts (1: as responsive, 0: frozen)"
        )
        rows.append(_row("motion fidelity", quality["motion_fidelity"], "{:.2f}", reading))
    return rows
