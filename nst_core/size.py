"""Image and frame sizes: one (width, height) type, one rounding rule, one layer constraint.

Sizes are always width x height, the way people and ffmpeg write them; numpy arrays are
(height, width, ...), so `Size.of` and `Size.hw` are the only places the order flips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class _Shaped(Protocol):
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    @classmethod
    def of(cls, image: _Shaped) -> Size:
        """The size of an (H, W, C) image or a (B, H, W, C) batch."""
        return cls(int(image.shape[-2]), int(image.shape[-3]))

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width): array order, for resize."""
        return self.height, self.width

    @property
    def longest(self) -> int:
        return max(self.width, self.height)

    @property
    def shortest(self) -> int:
        return min(self.width, self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def scale_to(self, longest: int, step: int = 1) -> Size:
        """This size with its longest side at `longest` (up or down), the aspect ratio kept,
        each side rounded to the nearest multiple of `step` (at least `step`)."""
        scale = longest / self.longest
        return Size(_round(self.width * scale, step), _round(self.height * scale, step))

    def fit(self, longest: int | None) -> Size:
        """The decode size: longest side at most `longest` (never upscaled), even sides.

        None keeps the size as is. Even sides (>= 2) let frames be encoded to yuv420p
        without padding.
        """
        if longest is None:
            return self
        if longest < 2:
            raise ValueError(f"size must be >= 2 pixels, got {longest}")
        return self.scale_to(min(longest, self.longest), step=2)

    def as_list(self) -> list[int]:
        """[width, height]: the JSON form of manifests, chunk markers and reports."""
        return [self.width, self.height]

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def _round(value: float, step: int) -> int:
    return max(step, round(value / step) * step)


def min_side(layers: Sequence[str]) -> int:
    """The shortest side VGG19 layers accept: it halves the resolution before blocks 2..5,
    so a layer in block k ("block3_conv1") needs 2**(k-1) pixels."""
    deepest_block = max(int(name[5]) for name in layers)
    return 2 ** (deepest_block - 1)
