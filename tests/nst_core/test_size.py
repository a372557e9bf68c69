"""Size: one (width, height) type and one rounding rule for images, frames and memory."""

from __future__ import annotations

import numpy as np
import pytest

from nst_video.nst_core.size import Size, min_side


def test_of_and_hw_are_the_only_order_flips():
    size = Size.of(np.zeros((36, 64, 3)))
    assert size == Size(64, 36) and size.hw == (36, 64) and str(size) == "64x36"
    assert Size.of(np.zeros((2, 36, 64, 3))) == size  # a batch
    assert (size.longest, size.shortest, size.pixels) == (64, 36, 64 * 36)
    assert size.as_list() == [64, 36]


def test_scale_to_sets_the_longest_side_up_or_down():
    assert Size(640, 360).scale_to(64) == Size(64, 36)
    assert Size(360, 640).scale_to(64) == Size(36, 64)
    assert Size(64, 36).scale_to(48) == Size(48, 27)  # odd sides are fine for images
    assert Size(32, 18).scale_to(64) == Size(64, 36)  # upscaled
    assert Size(1000, 1).scale_to(10) == Size(10, 1)  # at least one pixel


@pytest.mark.parametrize(
    ("size", "longest", "expected"),
    [
        (Size(64, 48), None, Size(64, 48)),
        (Size(64, 48), 32, Size(32, 24)),
        (Size(1920, 1080), 256, Size(256, 144)),
        (Size(48, 64), 100, Size(48, 64)),
        (Size(33, 25), None, Size(33, 25)),
        (Size(1000, 10), 100, Size(100, 2)),
        (Size(640, 360), 101, Size(100, 56)),
    ],
)
def test_fit_caps_the_longest_side_with_even_sides(size, longest, expected):
    assert size.fit(longest) == expected


def test_fit_refuses_less_than_two_pixels():
    with pytest.raises(ValueError, match="size must be >= 2"):
        Size(64, 48).fit(1)


def test_min_side_follows_the_deepest_vgg_block():
    assert min_side(["block1_conv1"]) == 1
    assert min_side(["block4_conv2", "block1_conv1", "block5_conv1"]) == 16
