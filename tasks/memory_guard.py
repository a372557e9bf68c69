"""The memory guard for jobs: choose the processing size before stylizing, never run out.

A requested processing size (a video's decoded frame size, an image's output size) whose
stylization step would not fit the memory available is reduced to the largest size with the
same aspect ratio that fits (nst_core.memory.plan_size); the stylized result is upscaled
back to the requested size, and the reduction is logged as a WARNING and recorded in the
job's manifest or report. Tiling is not used: independently stylized tiles show seams.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from nst_core.images import fit_size, resize
from nst_core.memory import Budget, SizePlan, plan_size
from nst_core.settings import StyleSettings, make_settings
from tasks.video import VideoInfo, scaled_size

logger = logging.getLogger(__name__)

DETECT = "detect"  # measure the memory available (nst_core.memory.available_memory)


def precision_of(settings: StyleSettings) -> str:
    return getattr(settings, "precision", "float32")


def min_side(settings: StyleSettings) -> int:
    """The shortest side the chosen layers accept (VGG19 halves it before blocks 2..5)."""
    layers = (*settings.content_layers, *settings.style_layers)
    return 2 ** (max(int(name[5]) for name in layers) - 1)


def _plan(
    height: int, width: int, settings: StyleSettings, budget: Budget | None | str
) -> SizePlan:
    extra = {} if budget == DETECT else {"budget": budget}
    return plan_size(height, width, precision_of(settings), min_side=min_side(settings), **extra)


def plan_video_size(
    info: VideoInfo, settings: StyleSettings, budget: Budget | None | str = DETECT
) -> SizePlan:
    """The processing size of a video's frames: read_frames' size for settings.size, or the
    largest that fits, with read_frames' own rounding (so frames decode at exactly it)."""
    width, height = scaled_size(info.width, info.height, settings.size)
    plan = _plan(height, width, settings, budget)
    if not plan.reduced:
        return plan
    w, h = scaled_size(info.width, info.height, max(plan.processing))
    return dataclasses.replace(plan, processing=(h, w))


def plan_image_size(
    height: int, width: int, settings: StyleSettings, budget: Budget | None | str = DETECT
) -> SizePlan:
    """The output size of stylize_image for an image of (height, width), or the largest
    that fits, with stylize_image's own rounding."""
    requested = fit_size(height, width, settings.size)
    plan = _plan(*requested, settings, budget)
    if not plan.reduced:
        return plan
    return dataclasses.replace(plan, processing=fit_size(height, width, max(plan.processing)))


def warn_if_reduced(plan: SizePlan, name: str, log: logging.Logger | None = None) -> None:
    """One WARNING line naming the input, the requested and reduced sizes and the reason."""
    if plan.reduced:
        (log or logger).warning("memory guard: %s: %s", name, plan.reason)


def reduced_settings(settings: StyleSettings, plan: SizePlan) -> StyleSettings:
    """`settings` with size set to the plan's processing size (same settings class)."""
    if not plan.reduced:
        return settings
    values = {**settings.model_dump(), "size": max(plan.processing)}
    return make_settings(type(settings), **values)


def stylize_image_within_memory(
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    settings: StyleSettings,
    *,
    plan: SizePlan | None = None,
    name: str = "image",
    warn: bool = True,
    **kwargs,
):
    """nst_core.stylize_image at the plan's processing size, upscaled to the requested size.

    Returns (image, stats, plan); stats are those of the processing size. A reduction is
    logged as a WARNING unless `warn` is False (the caller says so itself).
    """
    from nst_core.stylize import stylize_image

    plan = plan or plan_image_size(*content.shape[:2], settings)
    if warn:
        warn_if_reduced(plan, name)
    image, stats = stylize_image(content, styles, reduced_settings(settings, plan), **kwargs)
    if plan.reduced:
        image = resize(image, *plan.requested)
    return image, stats, plan
