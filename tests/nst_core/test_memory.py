"""The memory guard's arithmetic and its reading of the machine (no TensorFlow step here)."""

from __future__ import annotations

import pytest

from nst_video.nst_core import memory
from nst_video.nst_core.memory import (
    Budget,
    InsufficientMemoryError,
    available_memory,
    estimate_bytes,
    fit_budget,
    fit_pixels,
    plan_size,
)
from nst_video.nst_core.size import Size

UHD = Size(3840, 2160)
SIZES = [Size(16, 16), Size(48, 36), Size(320, 240), Size(1280, 720), Size(1920, 1080), UHD]


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_estimate_grows_with_pixels_and_bf16_never_needs_more(device):
    for precision in ("float32", "bfloat16"):
        values = [estimate_bytes(size, precision, device) for size in SIZES]
        assert values == sorted(values) and len(set(values)) == len(values)
    for size in SIZES:
        assert estimate_bytes(size, "bfloat16", device) <= estimate_bytes(size, "float32", device)
    # 4K float32 needs well over a few GiB on either device: the guard has work to do.
    assert estimate_bytes(UHD, "float32", device) > 8 * memory.GIB


@pytest.mark.parametrize(("height", "width"), [(2160, 3840), (1080, 1920), (480, 640), (37, 61)])
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_fit_budget_keeps_the_aspect_ratio_with_even_sides_and_is_the_largest(
    height, width, precision
):
    size = Size(width, height)
    base = memory.STEP_BASE_BYTES["cpu"]
    budget = base + (estimate_bytes(size, precision) - base) // 5
    fitted = fit_budget(size, budget, precision)
    h, w = fitted.height, fitted.width
    assert h % 2 == 0 and w % 2 == 0
    ratio = width / height  # kept within rounding each side to even (at most 1 px each)
    assert abs(w / h - ratio) <= ratio * (1.01 / h + 1.01 / w)
    assert estimate_bytes(fitted, precision) <= budget
    # The next even size up (longest side + 2) no longer fits.
    bigger = size.fit(max(h, w) + 2)
    assert estimate_bytes(bigger, precision) > budget


def test_fit_budget_keeps_a_request_that_fits_and_gives_up_below_the_base():
    assert fit_budget(UHD, estimate_bytes(UHD)) == UHD
    assert fit_budget(UHD, memory.STEP_BASE_BYTES["cpu"] // 2) is None
    assert fit_pixels(Size(16, 9), 3) is None


def test_fit_pixels_rounds_like_the_video_decoder():
    # The decoder's size for 3840x2160 at 2000 px is 2000x1124: the same rounding here.
    assert UHD.fit(2000) == Size(2000, 1124)
    assert fit_pixels(UHD, 2000 * 1124) == Size(2000, 1124)


def test_override_sets_the_budget(monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "1.5")
    budget = available_memory("cpu")
    assert budget == Budget(1_500_000_000, f"{memory.ENV_LIMIT}=1.5", "cpu")


@pytest.mark.parametrize("value", ["0", "-2", "lots"])
def test_a_bad_override_is_one_clear_error(monkeypatch, value):
    monkeypatch.setenv(memory.ENV_LIMIT, value)
    with pytest.raises(InsufficientMemoryError, match=memory.ENV_LIMIT):
        available_memory("cpu")


def test_cpu_budget_is_a_share_of_available_ram(monkeypatch):
    monkeypatch.delenv(memory.ENV_LIMIT, raising=False)
    budget = available_memory("cpu")
    free = memory._meminfo_bytes("MemAvailable")
    assert budget is not None and free is not None
    assert 0 <= budget.bytes < free
    assert "MemAvailable" in budget.source or "cgroup" in budget.source


def test_meminfo_and_cgroup_files_are_read(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemAvailable:    512 kB\n")
    assert memory._meminfo_bytes("MemAvailable", str(meminfo)) == 512 * 1024
    assert memory._meminfo_bytes("Missing", str(meminfo)) is None
    (tmp_path / "memory.max").write_text("max\n")
    assert memory._cgroup_headroom(str(tmp_path)) is None
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("250000\n")
    assert memory._cgroup_headroom(str(tmp_path)) == 750000


def test_plan_keeps_a_size_that_fits_and_skips_without_a_budget():
    plenty = Budget(10**12, "test", "cpu")
    plan = plan_size(UHD, budget=plenty)
    assert not plan.reduced and plan.as_dict()["strategy"] == "none"
    unknown = plan_size(UHD, budget=None)
    assert not unknown.reduced and "skipped" in unknown.reason


def test_plan_reduces_4k_and_says_why():
    budget = Budget(4 * 10**9, "NST_MEMORY_LIMIT_GB=4", "cpu")
    plan = plan_size(UHD, "float32", budget=budget)
    assert plan.reduced and plan.requested == UHD
    w, h = plan.processing.width, plan.processing.height
    assert estimate_bytes(plan.processing) <= budget.bytes and w > 1000
    record = plan.as_dict()
    assert record["strategy"] == "reduce"
    assert record["requested"] == [3840, 2160] and record["processing"] == [w, h]
    assert f"{w}x{h}" in record["reason"] and "3840x2160" in record["reason"]
    assert "NST_MEMORY_LIMIT_GB=4" in record["reason"]


def test_plan_refuses_when_even_the_smallest_size_does_not_fit():
    budget = Budget(estimate_bytes(Size(8, 8)), "tiny", "cpu")
    with pytest.raises(InsufficientMemoryError, match="not enough memory for 3840x2160"):
        plan_size(UHD, budget=budget, min_side=16)
