"""Probe a video: its header plus one decode pass for the exact frame count and timing.

Frames are counted by decoding (showinfo), because container frame counts are missing (mkv)
or lie (edit lists, truncated files); the same pass gives the timestamps from which VFR is
detected. `count_packets` is the cheap count (demux only) for callers without a probe.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from statistics import median

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.size import Size
from nst_video.tasks.video.header import Header, video_header
from nst_video.tasks.video.process import (
    QUIET,
    check_input_file,
    clean,
    command,
    failure,
    ffinput,
    finish,
    run_checked,
    started,
)


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video's first video stream.

    ``width``/``height`` are as displayed, in square pixels (after the sample aspect ratio
    ``sample_aspect`` and the rotation), ``coded_*`` as stored in the stream: ``read_frames``
    decodes to the displayed size, so stylized frames have square pixels. ``rotation`` is
    clockwise degrees to apply for display (the old ``rotate`` tag's convention).
    ``frame_count`` is what a full decode yields. ``duration`` is that of the video:
    ``frame_count / avg_fps`` (the length ``write_frames`` gives at ``avg_fps``).
    """

    path: Path
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    sample_aspect: Fraction
    frame_count: int
    avg_fps: Fraction
    r_fps: Fraction
    is_vfr: bool
    pix_fmt: str
    bit_depth: int
    color_range: str
    duration: float
    has_audio: bool
    audio_codec: str | None

    @property
    def size(self) -> Size:
        """The size as displayed."""
        return Size(self.width, self.height)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video's first video stream (see VideoInfo); reject non-videos early.

    Costs one header read plus one decode of the video stream (for the exact frame count and
    the VFR check). Raises InvalidInputError for a missing, empty, still-image, audio-only,
    truncated or otherwise unreadable file.
    """
    p = check_input_file(path)
    return _video_info(p, video_header(p), _decode_timing(p))


def count_packets(path: Path) -> int:
    """Frames in the first video stream by demuxing only (stream copy, no decode): cheap,
    and equal to the decoded count for well-formed files."""
    progress = (*QUIET, "-nostats", "-progress", "pipe:1")
    args = command(ffinput(path)["v:0"], out="-", global_args=progress, c="copy", f="null")
    counts = re.findall(r"^frame=(\d+)$", run_checked(path, args).stdout, re.M)
    return int(counts[-1]) if counts else 0


def _video_info(path: Path, header: Header, timing: _Timing) -> VideoInfo:
    avg, r, vfr = _rates(timing)
    count = len(timing.pts)
    return VideoInfo(
        path=path,
        codec=header.video_codec or "?",
        width=header.size.width,
        height=header.size.height,
        coded_width=header.coded_width,
        coded_height=header.coded_height,
        rotation=header.rotation,
        sample_aspect=header.sample_aspect,
        frame_count=count,
        avg_fps=avg,
        r_fps=r,
        is_vfr=vfr,
        pix_fmt=header.pix_fmt,
        bit_depth=header.bit_depth,
        color_range=header.color_range,
        duration=float(count / avg),
        has_audio=bool(header.audio_codecs),
        audio_codec=header.audio_codecs[0] if header.audio_codecs else None,
    )


# --------------------------------------------------------------------------- timing pass


@dataclass(frozen=True)
class _Timing:
    """Result of the decode pass: one pts per decoded frame (None where unknown), in
    ``time_base`` units; the last frame's duration (0 if unknown); the guessed frame rate."""

    pts: list[int | None] = field(default_factory=list)
    last_duration: int = 0
    time_base: Fraction = Fraction(1, 1)
    frame_rate: Fraction | None = None


_SHOWINFO_FRAME = re.compile(
    r"\] n:\s*\d+\s+pts:\s*(-?\d+|NOPTS)(?:\s+pts_time:\S+\s+duration:\s*(\d+))?"
)
_SHOWINFO_CONFIG = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")


class _ShowinfoParser:
    """Collect every frame's pts from showinfo log lines (fed by StderrTail)."""

    def __init__(self) -> None:
        self.pts: list[int | None] = []
        self.last_duration = 0
        self.config: re.Match[str] | None = None
        self.partial: str | None = None

    def __call__(self, line: str) -> bool:
        if frame := _SHOWINFO_FRAME.search(line):
            self.pts.append(None if frame.group(1) == "NOPTS" else int(frame.group(1)))
            self.last_duration = int(frame.group(2) or 0)
            return True
        self.config = self.config or _SHOWINFO_CONFIG.search(line)
        if "partial file" in line:
            self.partial = self.partial or clean(line)
        return False

    def timing(self) -> _Timing:
        if not self.config:
            return _Timing(self.pts, self.last_duration)
        num, den, rate_num, rate_den = (int(g) for g in self.config.groups())
        rate = Fraction(rate_num, rate_den) if rate_den and rate_num else None
        return _Timing(self.pts, self.last_duration, Fraction(num, den), rate)


def _decode_timing(path: Path) -> _Timing:
    """Decode the first video stream once, recording every frame's pts (showinfo).

    This is the exact frame count (what ``read_frames`` will yield) and the timestamps that
    tell CFR from VFR. Frames are only decoded: not rotated, scaled or converted.
    """
    verbose = ("-hide_banner", "-nostdin", "-nostats", "-v", "info")
    stream = ffinput(path, noautorotate=None)["v:0"]
    args = command(
        stream,
        out="-",
        global_args=verbose,
        fps_mode="passthrough",
        vf="showinfo=checksum=0",
        f="null",
    )
    parser = _ShowinfoParser()
    with started(args, on_stderr=parser) as (proc, tail):
        rc = finish(proc, tail)
    if parser.partial:
        raise InvalidInputError(f"{path}: truncated or corrupt (ffmpeg: {parser.partial})")
    if not parser.pts:
        last = next((clean(x) for x in reversed(tail.lines) if clean(x)), "no output")
        raise InvalidInputError(f"{path}: no decodable video frame (ffmpeg: {last})")
    if rc != 0:
        raise failure(path, rc, tail.lines)
    return parser.timing()


def _is_vfr(intervals: list[int]) -> bool:
    """True when a frame interval differs from the median by more than timestamp rounding.

    Allowed jitter: one tick (a 1/1000 time base stores 30 fps as 33,33,34 ms) or 1 %.
    """
    typical = median(intervals)
    allowed = max(1.0, typical / 100)
    return any(abs(d - typical) > allowed for d in intervals)


def _rates(timing: _Timing) -> tuple[Fraction, Fraction, bool]:
    """(avg_fps, r_fps, is_vfr) from decoded timestamps.

    avg_fps = frames / (first pts to last pts + last frame's duration), as ffprobe computes
    it, so ``frame_count / avg_fps`` is the stream's duration; it snaps to the nominal rate
    when the stream is CFR and both agree within a tick (a 1/1000 time base still gives
    exactly 30 fps). r_fps is ffmpeg's guessed base rate (ffprobe's r_frame_rate).
    """
    pts = sorted(p for p in timing.pts if p is not None)
    intervals = [b - a for a, b in zip(pts[:-1], pts[1:], strict=True) if b > a]
    if not intervals:
        rate = timing.frame_rate or Fraction(25)
        return rate, rate, False
    tb = timing.time_base
    nominal = timing.frame_rate or 1 / (Fraction(median(intervals)) * tb)
    if timing.last_duration > 0:
        measured = Fraction(len(pts)) / ((pts[-1] - pts[0] + timing.last_duration) * tb)
    else:
        measured = Fraction(len(intervals)) / ((pts[-1] - pts[0]) * tb)
    vfr = _is_vfr(intervals)
    if not vfr and abs(1 / nominal - 1 / measured) <= tb:
        return nominal, nominal, False
    return measured.limit_denominator(1_000_000), nominal, vfr
