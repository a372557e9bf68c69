"""Frame chains with the real VGG19 on 48-64 px frames."""

import numpy as np
import pytest

from nst_video.nst_core.metrics import frame_changes
from nst_video.nst_core.settings import make_video_settings
from nst_video.nst_core.stylize import StyleTransfer
from nst_video.nst_core.temporal import FrameChain, Keyframe, still_mask

BASE = {"size": 64, "tolerance": 0.0, "first_iterations": 8, "iterations": 3}


@pytest.fixture(scope="module")
def moving_frames(content_64):
    """Six frames of the bundled photo panning right by 2 px per frame."""
    return [np.roll(content_64, 2 * t, axis=1) for t in range(6)]


def _chain(styles, vgg_weights, **values):
    settings = make_video_settings(**{**BASE, **values})
    return FrameChain(StyleTransfer(styles, settings, vgg_weights), settings)


def test_first_frame_and_cuts_cold_start_others_warm(moving_frames, starry_64, vgg_weights):
    chain = _chain([starry_64], vgg_weights)
    stats = [s for _, s in chain.run(moving_frames, cuts=[3])]
    assert [s.cold_start for s in stats] == [True, False, False, True, False, False]
    assert [s.iterations for s in stats] == [8, 3, 3, 8, 3, 3]
    assert [s.index for s in stats] == list(range(6))


def test_content_init_stylizes_every_frame_independently(moving_frames, starry_64, vgg_weights):
    chain = _chain([starry_64], vgg_weights, frame_init="content")
    stats = [s for _, s in chain.run(moving_frames[:3])]
    assert all(s.cold_start and s.iterations == 8 for s in stats)


def test_prev_plus_delta_carries_the_input_change_into_the_next_frame(
    content_64, starry_64, vgg_weights
):
    """With no warm iterations a frame's output is its warm start: "prev" repeats the last
    output, "prev+delta" darkens it by about as much as the input darkened."""
    frames = [content_64, content_64 * 0.7]
    darkening = float((frames[0] - frames[1]).mean())
    outputs = {}
    for frame_init in ("prev", "prev+delta"):
        chain = _chain(
            [starry_64], vgg_weights, frame_init=frame_init, first_iterations=2, iterations=0
        )
        outputs[frame_init] = [image for image, _ in chain.run(frames)]
    held, carried = outputs["prev"], outputs["prev+delta"]
    np.testing.assert_array_equal(held[1], held[0])
    change = carried[0] - carried[1]
    assert change.min() >= 0
    assert 0.8 * darkening < change.mean() <= darkening + 1e-4


def test_still_mask_is_one_where_nothing_moved():
    previous = np.zeros((4, 4, 3), "float32")
    current = previous.copy()
    current[0, 0] = 0.5
    mask = still_mask(current, previous, sigma=0.05)
    assert mask.shape == (4, 4, 1)
    assert mask[1:, 1:].min() == 1.0 and mask[0, 0, 0] < 1e-6


def test_warm_start_tracks_content_cheaper_than_cold(moving_frames, starry_64, vgg_weights):
    """A warm frame with 1/4 of the budget ends near the loss of a cold start."""
    warm = _chain([starry_64], vgg_weights, first_iterations=60, iterations=15)
    warm_stats = [s for _, s in warm.run(moving_frames[:3])]
    cold = _chain([starry_64], vgg_weights, first_iterations=60, frame_init="content")
    cold_stats = [s for _, s in cold.run(moving_frames[:3])]
    for w, c in zip(warm_stats[1:], cold_stats[1:], strict=True):
        assert w.iterations * 4 == c.iterations
        assert w.loss < 1.2 * c.loss


def test_guarded_chain_holds_a_static_input_still(content_64, starry_64, vgg_weights):
    """Fresh Adam per frame churns a static scene; carried state + the temporal term do not."""
    static = [content_64] * 8
    common = {"first_iterations": 150, "iterations": 15}
    naive = [
        f
        for f, _ in _chain(
            [starry_64], vgg_weights, **common, carry_state=False, temporal_weight=0.0
        ).run(static)
    ]
    guarded = [f for f, _ in _chain([starry_64], vgg_weights, **common).run(static)]
    naive_change = np.mean(frame_changes(naive[1:]))
    guarded_change = np.mean(frame_changes(guarded[1:]))
    assert guarded_change < 1.0 < naive_change  # in 1/255 units
    assert np.abs(guarded[-1] - guarded[1]).mean() * 255 < 2.0


def test_temporal_term_leaves_moving_pixels_free(moving_frames, starry_64, vgg_weights):
    """A pan moves every pixel: the mask is ~0, so the term must not pin the old output."""
    common = {"first_iterations": 100, "iterations": 10}
    with_term = _chain([starry_64], vgg_weights, **common, temporal_weight=1e4)
    without = _chain([starry_64], vgg_weights, **common, temporal_weight=0.0)
    a = [s.loss for _, s in with_term.run(moving_frames)]
    b = [s.loss for _, s in without.run(moving_frames)]
    assert a[-1] < 1.1 * b[-1]


def test_reference_follows_a_changed_pixel_until_it_settles_then_holds_it():
    from nst_video.nst_core.temporal import Reference

    still = np.zeros((1, 2, 3), "float32")
    moved = still.copy()
    moved[0, 1] = 1.0  # the right pixel's input changes once, at the first update
    reference = Reference(still, np.zeros_like(still), np.full((1, 2, 1), 3.0, "float32"))
    outputs = [np.full_like(still, 0.1 * k) for k in range(1, 7)]
    masks = []
    for k, output in enumerate(outputs):
        reference = reference.updated(moved, output, sigma=0.05, settle=2)
        masks.append(reference.mask(moved, sigma=0.05, settle=2)[0, 1, 0])
        if k == 0:
            assert reference.age[0, 0, 0] == 4 and reference.age[0, 1, 0] == 0
    # The unchanged pixel was held at its first output all along (it had settled before).
    assert reference.output[0, 0, 0] == 0.0
    # The changed pixel followed the output for settle=2 frames after the change, then held.
    assert reference.output[0, 1, 0] == pytest.approx(0.3)
    assert masks[:3] == [0.0, 0.5, 1.0] and masks[-1] == 1.0


def test_a_fork_goes_on_like_the_chain_and_leaves_it_unchanged(
    moving_frames, starry_64, vgg_weights
):
    """A fork continues from the chain's memory; the chain, stepped later, is unaffected."""
    chain = _chain([starry_64], vgg_weights)
    for frame in moving_frames[:2]:
        chain.step(frame)
    before = chain.snapshot()
    fork = chain.fork()
    forked = [fork.step(frame)[0] for frame in moving_frames[2:4]]
    assert chain.snapshot() is before
    for frame, expected in zip(moving_frames[2:4], forked, strict=True):
        np.testing.assert_allclose(chain.step(frame)[0], expected, atol=1e-6)
    chain.restore(before)
    again, stats = chain.step(moving_frames[2])
    assert not stats.cold_start
    np.testing.assert_allclose(again, forked[0], atol=1e-6)


def test_a_step_takes_its_own_stop(moving_frames, starry_64, vgg_weights):
    """`stop` replaces the settings' early stop; it sees every step's loss terms."""

    class AfterTwo:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def update(self, terms) -> bool:
            self.seen.append(terms.gatys)
            return len(self.seen) == 2

    chain = _chain([starry_64], vgg_weights)
    chain.step(moving_frames[0])
    stop = AfterTwo()
    _, stats = chain.step(moving_frames[1], 1, stop=stop)
    assert stats.iterations == 2 and len(stop.seen) == 2
    assert stats.loss == stop.seen[-1]


def _keyframe(chain: FrameChain, frame: np.ndarray) -> Keyframe:
    output, stats = chain.step(frame, 0)
    return Keyframe(0, frame, output, stats)


def test_a_chain_goes_on_from_a_keyframe_without_restylizing_it(
    moving_frames, starry_64, vgg_weights
):
    keyframe = _keyframe(_chain([starry_64], vgg_weights), moving_frames[0])
    chain = _chain([starry_64], vgg_weights)
    runs = list(chain.run(moving_frames[:3], keyframes={0: keyframe}))
    np.testing.assert_array_equal(runs[0][0], keyframe.output)
    assert runs[0][1].iterations == 0 and runs[0][1].loss == keyframe.stats.loss
    assert [s.cold_start for _, s in runs[1:]] == [False, False]


def test_the_first_frame_after_a_keyframe_gets_iterations_for_what_changed(
    content_64, starry_64, vgg_weights
):
    """A leap from the keyframe to a frame where half the picture changed gets about half
    of the cold start's extra budget; an unchanged frame gets the warm budget."""
    changed = content_64.copy()
    changed[:, :32] = (changed[:, :32] + 0.5) % 1.0
    moved_share = 1.0 - still_mask(changed, content_64, 0.05).mean()
    budgets = {}
    for name, frame in (("same", content_64), ("changed", changed)):
        chain = _chain([starry_64], vgg_weights, first_iterations=40, iterations=4)
        keyframe = _keyframe(_chain([starry_64], vgg_weights), content_64)
        chain.restore(keyframe.snapshot(settle=8, leap=True))
        budgets[name] = chain.step(frame)[1].iterations
        budgets[name + " next"] = chain.step(frame)[1].iterations
    assert budgets["same"] == 4
    assert budgets["changed"] == 4 + round(36 * moved_share) and 10 < budgets["changed"] < 40
    assert budgets["changed next"] == budgets["same next"] == 4


def test_masked_init_starts_changed_pixels_from_the_content(content_64, starry_64, vgg_weights):
    """With no warm iterations a frame's output is its warm start: still pixels repeat the
    last output, pixels whose input changed show the new input."""
    changed = content_64.copy()
    changed[:, :32] = (changed[:, :32] + 0.5) % 1.0
    chain = _chain([starry_64], vgg_weights, frame_init="masked", first_iterations=2, iterations=0)
    (first, _), (second, _) = chain.run([content_64, changed])
    moved = still_mask(changed, content_64, 0.05)[..., 0] < 1e-3
    still = still_mask(changed, content_64, 0.05)[..., 0] == 1.0
    assert moved.mean() > 0.3 and still.mean() > 0.3
    np.testing.assert_allclose(second[moved], changed[moved], atol=1e-3)
    np.testing.assert_allclose(second[still], first[still], atol=1e-6)


def test_original_colors_show_each_frames_colours_and_the_chain_keeps_its_own(
    moving_frames, starry_64, vgg_weights
):
    """Luminance transfer per shown frame: its chroma (BT.601 U, V) is the input's, while
    the next frame warm-starts from the chain's own stylized output."""
    chain = _chain([starry_64], vgg_weights, original_colors=True)
    shown = [image for image, _ in chain.run(moving_frames[:2])]
    uv = np.array([[-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]], "float32")

    def chroma_error(image: np.ndarray) -> float:
        return float(np.abs((image - moving_frames[1]) @ uv.T).mean())

    kept = chain.snapshot().previous_output
    assert chroma_error(shown[1]) < 0.25 * chroma_error(kept)
    assert chroma_error(shown[1]) < 0.01
