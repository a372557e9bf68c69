"""The flow-free quality metrics on synthetic frames whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from nst_video.nst_core.metrics import (
    MOTION_THRESHOLD,
    Seam,
    frame_changes,
    interior_pairs,
    motion_fidelity,
    seam_jumps,
    seam_still_drift,
    seam_window,
    still_churn,
)
from nst_video.nst_core.settings import VideoSettings

HEIGHT, WIDTH, FRAMES, SEAM = 32, 48, 24, 12
RNG = np.random.default_rng(0)
BACKGROUND = RNG.uniform(0.2, 0.8, (HEIGHT, WIDTH, 3)).astype("float32")
TEXTURE_A, TEXTURE_B = RNG.uniform(0.0, 1.0, (2, HEIGHT, WIDTH, 3)).astype("float32")


def square_at(x: int) -> np.ndarray:
    """A still background with a white 8x8 square at column x (it moves 1 px a frame)."""
    frame = BACKGROUND.copy()
    frame[8:16, x : x + 8] = 1.0
    return frame


INPUTS = [square_at(2 + t) for t in range(FRAMES)]


def painted(frame: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """A stand-in for a stylized frame: the input over one chain's texture."""
    return 0.5 * frame + 0.5 * texture


def switched(warmup: int) -> list[np.ndarray]:
    """Texture A, then texture B from frame SEAM, faded over `warmup` frames as assembly does."""
    outputs = []
    for t, frame in enumerate(INPUTS):
        a, b = painted(frame, TEXTURE_A), painted(frame, TEXTURE_B)
        weight = 1.0 if t >= SEAM else max(0.0, (t - (SEAM - warmup) + 1) / (warmup + 1))
        outputs.append((1 - weight) * a + weight * b)
    return outputs


def test_the_motion_threshold_is_the_chains_motion_sigma():
    assert MOTION_THRESHOLD == VideoSettings().motion_sigma == 0.05


def test_a_continuous_clip_has_no_seam_jump():
    outputs = [painted(frame, TEXTURE_A) for frame in INPUTS]
    jumps = seam_jumps(frame_changes(outputs), [Seam(SEAM, 4)])
    assert 0.7 < jumps.worst <= 1.2, jumps


def test_an_abrupt_texture_switch_is_a_large_jump_and_a_crossfade_only_spreads_it():
    abrupt = seam_jumps(frame_changes(switched(0)), [Seam(SEAM, 0)])
    faded = seam_jumps(frame_changes(switched(4)), [Seam(SEAM, 4)])
    assert abrupt.worst > 20
    assert 2 < faded.worst < abrupt.worst / 3
    assert abrupt.interior_p95_255 == pytest.approx(faded.interior_p95_255, rel=0.2)


def test_a_still_clip_divides_by_the_floor_and_reports_the_raw_percentile():
    still = [BACKGROUND] * 10
    outputs = [BACKGROUND] * 5 + [BACKGROUND + 1 / 255] * 5
    jumps = seam_jumps(frame_changes(outputs), [Seam(5, 2)])
    assert jumps.interior_p95_255 == 0.0
    assert jumps.jumps == pytest.approx((2.0,))  # 1/255 over the 0.5/255 floor
    assert still_churn(still, outputs) == pytest.approx(1 / 9)  # one pair of 9 changed by 1/255


def test_windows_start_after_a_scene_cut_and_cuts_are_not_interior():
    assert list(seam_window(Seam(10, 3))) == [7, 8, 9, 10]
    assert list(seam_window(Seam(10, 3), cuts=[7])) == [8, 9, 10]
    assert list(seam_window(Seam(2, 4))) == [1, 2]  # clipped to the first pair
    assert interior_pairs(14, [Seam(10, 3)], cuts=[4]) == [1, 2, 3, 5, 6, 11, 12, 13]


def test_without_interior_pairs_there_is_no_jump():
    jumps = seam_jumps([1.0, 2.0, 3.0], [Seam(3, 2)])
    assert jumps.jumps == () and jumps.interior_p95_255 is None and jumps.worst is None


def test_still_churn_counts_only_pixels_whose_input_stayed_still():
    calm = [painted(frame, TEXTURE_A) for frame in INPUTS]
    assert still_churn(INPUTS, calm) == 0.0  # only the moving square's pixels change
    flicker = [output + 0.02 * (t % 2) for t, output in enumerate(calm)]
    assert still_churn(INPUTS, flicker) == pytest.approx(0.02 * 255, rel=1e-4)


def test_still_churn_leaves_out_pairs_at_a_scene_cut():
    new_shot = [frame.copy() for frame in INPUTS[6:]]
    for frame in new_shot:
        frame[:, WIDTH // 2 :] = 1.0 - frame[:, WIDTH // 2 :]  # the left half stays as it was
    inputs = INPUTS[:6] + new_shot
    outputs = [painted(f, TEXTURE_A if t < 6 else TEXTURE_B) for t, f in enumerate(inputs)]
    assert still_churn(inputs, outputs) > 0  # the cold start repaints the still left half
    assert still_churn(inputs, outputs, cuts=[6]) == 0.0


def test_seam_still_drift_sees_only_pixels_still_across_the_window():
    seam = Seam(SEAM, 4)  # window: frames 7 .. 12
    before = painted(INPUTS[7], TEXTURE_A)
    flashed = list(INPUTS)
    flashed[10] = INPUTS[10].copy()
    flashed[10][24:30, 30:40] = 0.0  # a flash in the middle of the window, gone by the seam
    moved = np.zeros((HEIGHT, WIDTH), dtype=bool)
    moved[8:16, 9:14] = moved[8:16, 17:22] = True  # where the square came or left (it
    # covers columns 14 .. 16 throughout frames 7 .. 12: still there)
    moved[24:30, 30:40] = True
    after = before + np.where(moved[..., None], 0.5, 0.1)
    outputs = [before] * SEAM + [after] * (FRAMES - SEAM)
    assert seam_still_drift(flashed, outputs, seam) == pytest.approx(0.1 * 255, rel=1e-4)
    only_moved = [before] * SEAM + [before + 0.5 * moved[..., None]] * (FRAMES - SEAM)
    assert seam_still_drift(flashed, only_moved, seam) == 0.0


def test_motion_fidelity_is_one_as_responsive_as_cold_starts_and_zero_frozen():
    ref, later = INPUTS[0], INPUTS[15]
    cold = (painted(ref, TEXTURE_A), painted(later, TEXTURE_B))
    frozen = (cold[0], cold[0])
    halfway = (cold[0], cold[0] + 0.5 * (cold[1] - cold[0]))
    assert motion_fidelity((ref, later), cold, cold) == pytest.approx(1.0)
    assert motion_fidelity((ref, later), frozen, cold) == 0.0
    assert motion_fidelity((ref, later), halfway, cold) == pytest.approx(0.5)


def test_motion_fidelity_needs_motion_and_a_responsive_reference():
    ref, later = INPUTS[0], INPUTS[15]
    chain = (painted(ref, TEXTURE_A), painted(later, TEXTURE_A))
    assert motion_fidelity((ref, ref), chain, chain) is None  # nothing moved
    still_cold = (chain[0], chain[0])
    assert motion_fidelity((ref, later), chain, still_cold) is None  # reference response 0
    assert motion_fidelity((ref, later), chain, chain, min_moved=0.5) is None  # 14% moved
