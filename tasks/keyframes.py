"""A shot's keyframe on disk: its input, its stylized output and how it was made.

Every chunk of a shot starts its chain from the shot's keyframe (nst_core.temporal.Keyframe),
so the keyframe is stylized once, before the chunks, and stored in the job's staging
(tasks/staging.py: a folder or an S3 prefix) as an .npz (arrays only: it loads with
allow_pickle=False). A stored keyframe made at another processing size is not reused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nst_video.nst_core.files import atomic_path
from nst_video.nst_core.size import Size
from nst_video.nst_core.temporal import FrameStats, Keyframe
from nst_video.tasks import storage
from nst_video.tasks.staging import fetch_cached


@dataclass(frozen=True)
class KeyframeResult:
    """Where a shot's keyframe is (path or URI) and what it cost (`resumed` = found made)."""

    index: int
    path: str
    iterations: int
    seconds: float
    resumed: bool = False


def keyframe_name(index: int) -> str:
    return f"keyframe_{index:06d}.npz"


def save_keyframe(path: Path, keyframe: Keyframe) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        np.savez(
            file,
            content=keyframe.content,
            output=keyframe.output,
            stats=np.array(json.dumps(asdict(keyframe.stats))),
        )


def load_keyframe(path: str | Path) -> Keyframe:
    with np.load(path, allow_pickle=False) as data:
        stats = FrameStats(**json.loads(str(data["stats"])))
        return Keyframe(stats.index, data["content"], data["output"], stats)


def stored_keyframe(uri: str, processing: Size, cache: Path) -> KeyframeResult | None:
    """The keyframe already at `uri` (fetched into `cache`), if made at this processing size."""
    if not storage.exists(uri):
        return None
    keyframe = load_keyframe(fetch_cached(uri, cache))
    if Size.of(keyframe.output) != processing:
        return None
    stats = keyframe.stats
    return KeyframeResult(stats.index, uri, stats.iterations, stats.seconds, resumed=True)
