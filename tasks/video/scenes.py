"""Scene cuts: ffmpeg's own scene score (the ``select`` filter's ``scene``), printed for every
frame by the ``metadata`` filter, so indices are exact decode indices."""

from __future__ import annotations

import os
import re

from nst_video.tasks.video.header import video_header
from nst_video.tasks.video.process import check_input_file, command, ffinput, run_checked


def scene_scores(path: str | os.PathLike[str], size: int | None = None) -> list[float]:
    """ffmpeg's scene-change score (0..1) of every frame against the previous one.

    Frame 0 scores 0. ``size`` downscales first (faster, nearly the same scores).
    """
    p = check_input_file(path)
    header = video_header(p)
    filters = []
    if size is not None:
        scaled = header.coded_size.fit(size)
        filters.append(f"scale={scaled.width}:{scaled.height}")
    filters += ["select=gte(scene\\,0)", "metadata=mode=print:key=lavfi.scene_score:file=-"]
    stream = ffinput(p, noautorotate=None)["v:0"]
    args = command(stream, out="-", fps_mode="passthrough", vf=",".join(filters), f="null")
    return _parse_scores(run_checked(p, args).stdout)


def _parse_scores(text: str) -> list[float]:
    """Scores from the metadata filter's "frame:N ..." / "lavfi.scene_score=X" line pairs."""
    scores: dict[int, float] = {}
    frame = -1
    for line in text.splitlines():
        if match := re.match(r"frame:(\d+)", line):
            frame = int(match.group(1))
        elif line.startswith("lavfi.scene_score=") and frame >= 0:
            scores[frame] = float(line.split("=", 1)[1])
    return [scores.get(i, 0.0) for i in range(max(scores, default=-1) + 1)]


def detect_scene_cuts(
    path: str | os.PathLike[str], threshold: float = 0.3, size: int | None = None
) -> list[int]:
    """Indices of frames that start a new scene (score > threshold); frame 0 is implied.

    Method: ffmpeg's scene score (robust to motion: it compares the change against the
    previous frame's change), one value per decoded frame, so indices match read_frames.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    scores = scene_scores(path, size)
    return [i for i, s in enumerate(scores) if i > 0 and s > threshold]
