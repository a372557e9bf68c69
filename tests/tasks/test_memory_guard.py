"""The memory guard's task-layer pieces: sizes that match the decoder, chunk markers keyed by
the processing size, and the image path (real ffmpeg and VGG19, frames of 48 px or less)."""

from __future__ import annotations

import numpy as np
import pytest

from nst_video.nst_core.memory import Budget, estimate_bytes
from nst_video.nst_core.settings import make_settings, make_video_settings
from nst_video.nst_core.size import Size
from nst_video.tasks import video
from nst_video.tasks.memory_guard import (
    plan_image_size,
    plan_video_size,
    stylize_image_within_memory,
)
from nst_video.tasks.plan import Chunk
from nst_video.tasks.staging import Staging
from nst_video.tasks.stylize import stylize_chunk

# float32: the budgets below are float32 estimates (the default "auto" may mean bfloat16).
FAST = make_video_settings(
    size=48, first_iterations=6, iterations=2, tolerance=0.0, precision="float32"
)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


def _budget_for(size: Size) -> Budget:
    return Budget(estimate_bytes(size) + 1000, "test", "cpu")


def test_video_plan_uses_the_decoders_sizes(basic):
    info = video.probe(basic)  # 64x48
    plan = plan_video_size(info, FAST, budget=_budget_for(Size(32, 24)))
    assert plan.requested == Size(48, 36) and plan.processing == Size(32, 24)
    assert info.size.fit(32) == Size(32, 24)
    assert not plan_video_size(info, FAST, budget=None).reduced


def test_chunk_markers_depend_on_the_processing_size(basic, style, tmp_path):
    segment, staging = tmp_path / "chunks" / "chunk_0000.mp4", Staging(str(tmp_path))
    reduced = {"processing": Size(32, 24), "output_size": Size(48, 36)}
    small = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 3, 0), staging, **reduced)
    styled = video.probe(segment)
    assert (styled.width, styled.height, styled.frame_count) == (48, 36, 3)
    assert small.processing == [32, 24] and not small.resumed
    again = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 3, 0), staging, **reduced)
    assert again.resumed
    full = stylize_chunk(basic, [style], FAST, Chunk(0, 0, 3, 0), staging, processing=Size(48, 36))
    assert not full.resumed and full.processing == [48, 36]


def test_image_is_stylized_smaller_and_upscaled_to_the_requested_size(
    content_64, starry_64, vgg_weights, caplog
):
    settings = make_settings(size=48, iterations=3, tolerance=0.0, precision="float32")
    size = Size.of(content_64)  # 64x36: requested 48x27, fits 32x18
    plan = plan_image_size(size, settings, budget=_budget_for(Size(32, 18)))
    assert plan.requested == Size(48, 27) and plan.processing == Size(32, 18)
    image, stats, plan = stylize_image_within_memory(
        content_64, [starry_64], settings, plan=plan, name="bottles.jpg", weights=vgg_weights
    )
    assert Size.of(image) == plan.requested and plan.requested.longest == 48
    assert np.isfinite(stats.final_loss) and stats.iterations == 3
    assert any("bottles.jpg" in r.getMessage() and "memory guard" in r.getMessage()
               for r in caplog.records)  # fmt: skip
