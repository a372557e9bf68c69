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

from nst_video.nst_core.images import resize
from nst_video.nst_core.memory import Budget, SizePlan, plan_size
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import StyleSettings, make_settings
from nst_video.nst_core.size import Size, min_side
from nst_video.tasks.video import VideoInfo

logger = logging.getLogger(__name__)

DETECT = "detect"  # measure the memory available (nst_core.memory.available_memory)


def precision_of(settings: StyleSettings) -> str:
    """The precision the step will run in ("auto" resolved): what the estimate is for."""
    return resolve_precision(settings.precision)


def _plan(size: Size, settings: StyleSettings, budget: Budget | None | str) -> SizePlan:
    extra = {} if budget == DETECT else {"budget": budget}
    layers = (*settings.content_layers, *settings.style_layers)
    return plan_size(size, precision_of(settings), min_side=min_side(layers), **extra)


def plan_video_size(
    info: VideoInfo, settings: StyleSettings, budget: Budget | None | str = DETECT
) -> SizePlan:
    """The processing size of a video's frames: read_frames' size for settings.size, or the
    largest that fits, with read_frames' own rounding (so frames decode at exactly it)."""
    plan = _plan(info.size.fit(settings.size), settings, budget)
    if not plan.reduced:
        return plan
    return dataclasses.replace(plan, processing=info.size.fit(plan.processing.longest))


def plan_image_size(
    size: Size, settings: StyleSettings, budget: Budget | None | str = DETECT
) -> SizePlan:
    """The output size of stylize_image for an image of `size`, or the largest that fits,
    with stylize_image's own rounding."""
    plan = _plan(size.scale_to(settings.size), settings, budget)
    if not plan.reduced:
        return plan
    return dataclasses.replace(plan, processing=size.scale_to(plan.processing.longest))


def warn_if_reduced(plan: SizePlan, name: str, log: logging.Logger | None = None) -> None:
    """One WARNING line naming the input, the requested and reduced sizes and the reason."""
    if plan.reduced:
        (log or logger).warning("memory guard: %s: %s", name, plan.reason)


def reduced_settings(settings: StyleSettings, plan: SizePlan) -> StyleSettings:
    """`settings` with size set to the plan's processing size (same settings class)."""
    if not plan.reduced:
        return settings
    values = {**settings.model_dump(), "size": plan.processing.longest}
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
    from nst_video.nst_core.stylize import stylize_image

    plan = plan or plan_image_size(Size.of(content), settings)
    if warn:
        warn_if_reduced(plan, name)
    image, stats = stylize_image(content, styles, reduced_settings(settings, plan), **kwargs)
    if plan.reduced:
        image = resize(image, plan.requested)
    return image, stats, plan
