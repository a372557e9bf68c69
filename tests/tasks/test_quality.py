"""The streaming quality pass on real encoded clips, against the in-memory metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.metrics import (
    Seam,
    frame_changes,
    seam_jumps,
    seam_still_drift,
    still_churn,
    warp_errors,
)
from nst_video.tasks import video
from nst_video.tasks.quality import (
    measure_quality,
    opencv_available,
    pick_fidelity_pairs,
    report_files,
    warp_sample,
)
from tests.media import ffmpeg, lavfi
from tests.media import testsrc as lavfi_testsrc

FIRST, COUNT = 4, 24  # the "stylized" clip is source frames 4 .. 27
CHUNKS = [  # source frames, as in a manifest: a seam at 12 (output 8); chunk 20 starts at a cut
    {"start": 4, "frames": 8, "warmup": 0},
    {"start": 12, "frames": 8, "warmup": 3},
    {"start": 20, "frames": 8, "warmup": 0},
]
CUTS = [20]


@pytest.fixture(scope="module")
def source(media: Path) -> Path:
    return lavfi(media / "quality_source.mp4", lavfi_testsrc(frames=32), "-c:v", "libx264")


@pytest.fixture(scope="module")
def styled(media: Path, source: Path) -> Path:
    """Frames 4 .. 27 of `source`, recoloured (another hue from output frame 8: a texture
    switch at the seam) with temporal noise (churn on still pixels)."""
    out = media / "quality_styled.mp4"
    recolour = "trim=start_frame=4:end_frame=28,setpts=PTS-STARTPTS,"
    recolour += "hue=h='if(gte(n,8),150,60)',noise=alls=12:allf=t"
    ffmpeg("-i", str(source), "-vf", recolour, "-c:v", "libx264", str(out))
    return out


def _floats(frames) -> list[np.ndarray]:
    return [frame.astype("float32") / 255 for frame in frames]


def test_the_streaming_pass_equals_the_metrics_on_the_whole_clip(source, styled):
    plan = {"count": COUNT, "first": FIRST, "chunks": CHUNKS, "cuts": CUTS}
    quality = measure_quality(source, styled, **plan, longest=32, warp_pairs=5)
    inputs = _floats(video.read_frames(source, FIRST, COUNT, size=32))
    outputs = _floats(video.read_frames(styled, size=32))
    seam, cuts = Seam(8, 3), {16}
    jumps = seam_jumps(frame_changes(outputs), [seam], cuts)
    assert quality["size"] == [32, 24] and quality["frames"] == COUNT
    assert quality["seam_frames"] == [8]  # the chunk at the cut is no seam
    assert quality["seam_jumps"] == [pytest.approx(jumps.jumps[0], abs=1e-4)]
    assert quality["seam_jump"] > 3  # the hue switch
    assert quality["interior_change_p95_255"] == pytest.approx(jumps.interior_p95_255, abs=1e-4)
    drift = seam_still_drift(inputs, outputs, seam, cuts)
    assert quality["seam_still_drifts_255"] == [pytest.approx(drift, abs=1e-4)]
    assert quality["seam_still_drift_255"] == quality["seam_still_drifts_255"][0]
    churn = still_churn(inputs, outputs, cuts)
    assert quality["still_churn_255"] == pytest.approx(churn, abs=1e-4) and churn > 1
    if opencv_available():
        _check_warp_error(quality, inputs, outputs, cuts)
    else:
        assert "warp_error" not in quality


def _check_warp_error(quality: dict, inputs: list, outputs: list, cuts: set[int]) -> None:
    """The pass's warp error: the mean over its sample of pairs, as warp_errors measures them."""
    warp_at = warp_sample(COUNT, cuts, 5)
    pairs = [([inputs[t - 1], inputs[t]], [outputs[t - 1], outputs[t]]) for t in warp_at]
    warps = [warp_errors(*pair)[0] for pair in pairs]
    assert quality["warp_pairs"] == len(warp_at) == 5
    assert quality["warp_error"] == pytest.approx(np.mean(warps), abs=1e-6)


def test_without_chunks_there_are_no_seams(source, styled):
    quality = measure_quality(source, styled, count=COUNT, first=FIRST, warp_pairs=0)
    assert quality["seam_frames"] == [] and quality["seam_jump"] is None
    assert quality["seam_still_drift_255"] is None and "warp_error" not in quality
    assert quality["interior_change_p95_255"] > 0 and quality["still_churn_255"] > 0


def test_warp_pairs_are_spread_and_skip_cuts():
    assert warp_sample(11, {5}, 100) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert warp_sample(101, set(), 10) == list(range(1, 101, 10))
    assert warp_sample(10, set(), 0) == []


def test_fidelity_pairs_stay_in_one_shot_and_apart(two_scenes):
    pairs = pick_fidelity_pairs(two_scenes, first=0, count=24, cuts=[12], samples=3, gap=5)
    assert 1 <= len(pairs) <= 3
    for ref, later in pairs:
        assert later - ref == 5 and (later < 12 or ref >= 12)  # never across the cut at 12
    spans = sorted(pairs)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_a_report_needs_the_same_clip_or_a_manifest(source, styled):
    with pytest.raises(InvalidInputError, match="24 frames but .* has 32"):
        report_files(str(source), str(styled))
    manifest = {"video": {"first_frame": FIRST, "cuts": CUTS}, "chunks": CHUNKS}
    assert report_files(str(source), str(styled), manifest)["seam_frames"] == [8]
    late = {**manifest, "video": {"first_frame": 10, "cuts": CUTS}}
    with pytest.raises(InvalidInputError, match="frames 10..33 .* which has 32"):
        report_files(str(source), str(styled), late)
    with pytest.raises(InvalidInputError, match="not a stylize-video manifest"):
        report_files(str(source), str(styled), {"chunks": CHUNKS})
