"""The temporal benchmark's plans, chain variants and shared helpers (see benchmarks.temporal)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import REPO_ROOT
from nst_video.nst_core.settings import VideoSettings, make_video_settings
from nst_video.nst_core.stylize import StyleTransfer
from nst_video.tasks.video import probe as probe_video
from nst_video.tasks.video import read_frames

STYLE = REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
VIDEOS = REPO_ROOT / "assets" / "videos"
TARGET_RATIO = 1.05  # "converged": Gatys loss <= 1.05 x L_ref
HOPELESS_WINDOW = 100  # steps over which a probe's rate of progress is measured
PROBE_CHUNK = 25  # steps between target checks of a probe
STATIC_CHANGE = 0.7  # /255: an input transition at most this (mean abs) is "static" ...
STATIC_PIXELS = 0.005  # ... if also at most this share of pixels changed by > motion_sigma
MIN_STRETCH = 5  # transitions: a shorter static run does not count as a static stretch
TARGETS = {
    "warm_steps_over_cold": 0.1,
    "warp_over_independent": 0.1,
    "loss_over_independent": 1.05,
    "static_change_per_frame_255": 1.0,
    "static_drift_at_end_255": 2.0,
}


@dataclass(frozen=True)
class Clip:
    """A frame range of a bundled clip and where in it the sub-measurements sit."""

    name: str
    file: str
    start: int
    count: int
    independent_start: int  # first frame (absolute) of the independently stylized frames
    samples: tuple[int, ...] = ()  # frames (absolute) for the convergence probes

    @property
    def path(self) -> Path:
        return VIDEOS / self.file


@dataclass(frozen=True)
class Plan:
    """Sizes and budgets of one run (FULL or QUICK)."""

    size: int
    clips: tuple[Clip, ...]
    independent_count: int
    independent_iterations: int
    reference_iterations: int
    cap: int
    static_size: int
    static_frames: int
    static_part_frames: int
    static_iterations: int
    static_source: tuple[str, int] = ("bottles_with_tone.mp4", 45)
    first_iterations: int | None = None  # None: the VideoSettings default


FULL = Plan(
    size=96,
    clips=(Clip("bottles", "bottles_with_tone.mp4", 40, 30, 59, samples=(60, 64, 68)),),
    independent_count=6,
    independent_iterations=300,
    reference_iterations=1000,
    cap=1000,
    static_size=64,
    static_frames=100,
    static_part_frames=40,
    static_iterations=10,
)
LONG = dataclasses.replace(
    FULL,
    clips=(*FULL.clips, Clip("thanks", "thanks.mkv", 0, 30, 0)),
    independent_count=10,
    static_frames=300,
    static_part_frames=100,
)
QUICK = Plan(
    size=64,
    clips=(
        Clip("bottles", "bottles_with_tone.mp4", 56, 8, 58, samples=(62,)),
        Clip("thanks", "thanks.mkv", 3, 6, 3),
    ),
    independent_count=4,
    independent_iterations=100,
    reference_iterations=300,
    cap=300,
    static_size=64,
    static_frames=40,
    static_part_frames=20,
    static_iterations=5,
    first_iterations=100,
)


@dataclass(frozen=True)
class Variant:
    """A warm chain configuration; `probes` lists the carry_state of its convergence probes."""

    name: str
    frame_init: str
    carry_state: bool
    temporal: bool
    probes: tuple[bool, ...] = ()

    def settings(self, base: VideoSettings) -> VideoSettings:
        """`base` with this variant's warm-start fields (temporal weight: base's or 0)."""
        weight = base.temporal_weight if self.temporal else 0.0
        return with_changes(
            base, frame_init=self.frame_init, carry_state=self.carry_state, temporal_weight=weight
        )


GUARDED = Variant("prev, default (carry + temporal)", "prev", True, True, probes=(True, False))
NAIVE = Variant("prev, naive (fresh Adam, tw 0)", "prev", False, False)
CARRY_ONLY = Variant("prev, carry only (tw 0)", "prev", True, False, probes=(True, False))
TEMPORAL_ONLY = Variant("prev, temporal only (fresh Adam)", "prev", False, True)
DELTA = Variant("prev+delta, default (carry + temporal)", "prev+delta", True, True, (True,))
DELTA_NO_TEMPORAL = Variant("prev+delta, carry, tw 0", "prev+delta", True, False, (True,))
WARM_VARIANTS = (GUARDED, TEMPORAL_ONLY, DELTA, CARRY_ONLY, NAIVE, DELTA_NO_TEMPORAL)
STATIC_VARIANTS = (NAIVE, GUARDED, CARRY_ONLY, TEMPORAL_ONLY)
INDEPENDENT = "independent (frame_init content)"


def with_changes(settings: VideoSettings, **changes: object) -> VideoSettings:
    """A validated copy of `settings` with some fields changed."""
    return make_video_settings(**(settings.model_dump() | changes))


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def gatys_loss(transfer: StyleTransfer, image: np.ndarray, content: np.ndarray) -> float:
    """Content + style + tv loss of `image` as a stylization of `content`."""
    return transfer.loss(image, content).gatys


def load_frames(
    clip: Clip, size: int, start: int | None = None, count: int | None = None
) -> list[np.ndarray]:
    """Frames of `clip` as float RGB in [0, 1], longest side `size` (see tasks.video)."""
    info = probe_video(clip.path)
    frames = read_frames(
        clip.path,
        clip.start if start is None else start,
        clip.count if count is None else count,
        size=size,
        info=info,
    )
    return [frame.astype("float32") / 255.0 for frame in frames]
