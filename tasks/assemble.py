"""Assemble a stylized video from its chunk segments: the one place that decides how the
output is encoded.

Segments are (path, warm-up frames). Without warm-ups they are concatenated losslessly
(stream copy), so the segments themselves must be encoded at the requested CRF. With warm-ups
the overlaps are cross-faded and every frame is encoded once more at the requested CRF; the
segments are then an intermediate generation, kept finer (SEGMENT_CRF) so that the second
encode loses little.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

from nst_video.tasks.stylize import crossfade_frames
from nst_video.tasks.video import VideoInfo, concat, mux_audio, write_frames

SEGMENT_CRF = 12


def reencodes(warmups: Iterable[int]) -> bool:
    """Whether assembly encodes the frames again (some chunk has warm-up frames to fade)."""
    return any(warmups)


def segment_crf(warmups: Iterable[int], crf: int) -> int:
    """The CRF to encode chunk segments at, for chunks with these warm-ups and output `crf`."""
    return min(crf, SEGMENT_CRF) if reencodes(warmups) else crf


def audio_range(info: VideoInfo, first: int, count: int) -> tuple[float, float | None]:
    """(start, duration) in seconds of the source's audio that goes with frames [first,
    first + count); no duration (to the audio's end) when they reach the last frame, so
    audio that outlasts the video is kept as the source plays it."""
    start = float(first / info.avg_fps)
    return start, None if first + count >= info.frame_count else float(count / info.avg_fps)


def assemble(
    segments: list[tuple[str, int]],
    source: str,
    out: str,
    fps: Fraction,
    audio_start: float,
    crf: int = 18,
    audio_duration: float | None = None,
) -> str:
    """Join the chunk segments at `crf` and put the source's audio back (from `audio_start`
    for `audio_duration` seconds, see `audio_range`); returns `out`."""
    joined = Path(out).with_name("joined" + Path(out).suffix)
    if reencodes(warmup for _, warmup in segments):
        write_frames(crossfade_frames(segments), joined, fps, crf=crf)
    else:
        concat([path for path, _ in segments], joined)
    mux_audio(joined, source, out, audio_start=audio_start, audio_duration=audio_duration)
    joined.unlink()
    return out
