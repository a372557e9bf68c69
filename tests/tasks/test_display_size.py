"""A video with non-square pixels: the memory guard and the chunks (fast mode here; the flow
test covers optimization) plan, decode and encode at one size, the display size."""

from __future__ import annotations

from nst_video.nst_core.memory import Budget, estimate_bytes
from nst_video.nst_core.settings import make_video_settings
from nst_video.nst_core.size import Size
from nst_video.tasks import fast, video
from nst_video.tasks.memory_guard import plan_video_size
from nst_video.tasks.plan import Chunk
from nst_video.tasks.staging import Staging
from tests.fast_models import tiny_model

SETTINGS = make_video_settings(size=64, precision="float32")  # the budget is a float32 estimate


def test_memory_guard_and_fast_chunk_use_the_display_size(non_square, assets, tmp_path):
    info = video.probe(non_square)
    plan = plan_video_size(info, SETTINGS, budget=None)
    assert plan.processing == Size(64, 36)  # 213x120 displayed, not 160x120 stored
    budget = Budget(estimate_bytes(Size(48, 27)) + 1000, "test")
    small = plan_video_size(info, SETTINGS, budget=budget)
    assert (small.requested, small.processing) == (Size(64, 36), Size(48, 28))
    style = str(assets / "styles" / "starry_night.jpg")
    model = tiny_model(tmp_path / "tiny.keras", [style])
    segment = tmp_path / "chunks" / "chunk_0000.mp4"
    result = fast.stylize_chunk_fast(
        non_square, model, [style], SETTINGS, Chunk(0, 0, 6, 0), Staging(str(tmp_path)), info=info
    )
    assert result.processing == [64, 36] and video.probe(segment).size == Size(64, 36)
