"""How much memory a stylization step needs, how much there is, and the largest size that fits.

The guard behind "never crash on a 4K frame": callers (the CLI and the video flow's tasks)
ask `plan_size` before stylizing. When the requested processing size does not fit, the
strategy is *reduce*: stylize at the largest size with the same aspect ratio that fits and
upscale the result to the requested size. Tiling is not used: tiles would be optimized
independently (each with its own Gram statistics), so their textures disagree and the seams
show.

Estimates are `base + slope * pixels` of the Adam step's peak over a process that already
holds the model (TensorFlow + VGG19, about RESIDENT_MODEL_BYTES). No TensorFlow import here
except to ask whether TensorFlow sees a GPU.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from nst_video.nst_core.errors import NSTError
from nst_video.nst_core.size import Size

GIB = 2**30
ENV_LIMIT = "NST_MEMORY_LIMIT_GB"  # the step's budget in GB (1e9 bytes); overrides detection

# Peak of the step (content targets, style Grams and Adam iterations) over the loaded model,
# bytes = base + bytes_per_pixel * height * width.
# CPU: measured on TensorFlow 2.21 / Keras 3.15 (AMD EPYC, 2 cores) by `python -m benchmarks
# memory` (benchmarks/memory.py; benchmarks/results/memory.json, "cpu_fit"): VmHWM of a
# fresh process per size, 128..1024 px squares and 1280x720. Slopes are the larger upper
# envelope ("guard_bytes_per_pixel") of two runs: float32 2530 B/px (2449 in the second),
# bfloat16 1562 (1401 in the first); least squares gave 2174-2200 and 1354-1393.
# GPU: projected, not measured: the same benchmark's fit ("gpu_projection") of the PyTorch
# reference's torch.cuda.max_memory_allocated on an H200 (benchmarks/results/gpu.json),
# until benchmarks/gpu/run_gpu_bench.py (which now records JAX's peak) measures our own step.
# Both precisions share the larger intercept, so bfloat16 is never estimated above float32.
STEP_BASE_BYTES = {"cpu": 82_837_504, "gpu": int(0.143 * GIB)}
STEP_BYTES_PER_PIXEL = {
    ("cpu", "float32"): 2530.3,
    ("cpu", "bfloat16"): 1562.0,
    ("gpu", "float32"): 3160.8,
    ("gpu", "bfloat16"): 2180.0,
}
RESIDENT_MODEL_BYTES = int(0.8 * GIB)  # TensorFlow + VGG19 in RAM (benchmark base: 0.69-0.80)
CPU_HEADROOM = 0.85  # share of available RAM given to the step (frames, ffmpeg, encoder)
GPU_RESERVE = 0.10  # CUDA context, cuDNN workspaces, allocator fragmentation


class InsufficientMemoryError(NSTError):
    """Not even the smallest usable size fits the memory available."""


def estimate_bytes(size: Size, precision: str = "float32", device: str = "cpu") -> int:
    """Estimated peak bytes of the stylization step at `size` over the loaded model."""
    return int(STEP_BASE_BYTES[device] + _slope(precision, device) * size.pixels)


def _slope(precision: str, device: str) -> float:
    return STEP_BYTES_PER_PIXEL.get((device, precision), STEP_BYTES_PER_PIXEL[(device, "float32")])


def fit_pixels(size: Size, max_pixels: int) -> Size | None:
    """The largest `size.fit(...)` (the decoder's rounding) with at most `max_pixels` pixels."""
    if max_pixels < 4:
        return None
    longest = min(size.longest, math.floor(size.longest * math.sqrt(max_pixels / size.pixels)) + 2)
    while longest >= 2:
        fitted = size.fit(longest)
        if fitted.pixels <= max_pixels:
            return fitted
        longest -= 1
    return None


def fit_budget(
    size: Size, budget: int, precision: str = "float32", device: str = "cpu"
) -> Size | None:
    """The largest size with the aspect ratio of `size`, even sides, whose step fits in
    `budget` bytes; `size` itself when it fits; None when nothing does."""
    if estimate_bytes(size, precision, device) <= budget:
        return size
    max_pixels = math.floor((budget - STEP_BASE_BYTES[device]) / _slope(precision, device))
    return fit_pixels(size, max_pixels)


@dataclass(frozen=True)
class Budget:
    """Bytes the step may use, where that figure came from, and the device it is for."""

    bytes: int
    source: str
    device: str = "cpu"


def step_device() -> str:
    """ "gpu" when the Keras backend (TensorFlow or JAX) sees a GPU, where the step runs."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return "gpu" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def _meminfo_bytes(key: str, path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom(root: str = "/sys/fs/cgroup") -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), if it has a limit."""
    try:
        with open(os.path.join(root, "memory.max"), encoding="utf-8") as handle:
            limit = handle.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(root, "memory.current"), encoding="utf-8") as handle:
            current = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return max(0, int(limit) - current)


def _gpu_total_bytes() -> tuple[int, str] | None:
    """memory.total of the first visible GPU from nvidia-smi, or None."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
    query = [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", visible]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
        mib = float(done.stdout.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return int(mib * 2**20), f"nvidia-smi memory.total of GPU {visible}"


def available_memory(device: str | None = None) -> Budget | None:
    """The bytes a step may use: NST_MEMORY_LIMIT_GB if set; on a GPU its total (nvidia-smi)
    less GPU_RESERVE; on the CPU CPU_HEADROOM of MemAvailable (or of the cgroup's headroom,
    whichever is less) less the model's resident size. None when it cannot be told (a GPU
    without nvidia-smi): then the guard is skipped.

    tf.config.experimental.get_memory_info reports what TensorFlow allocated, not the
    device's size, so it cannot serve here.
    """
    device = device or step_device()
    override = os.environ.get(ENV_LIMIT, "").strip()
    if override:
        try:
            gigabytes = float(override)
        except ValueError:
            gigabytes = -1.0
        if not gigabytes > 0:
            raise InsufficientMemoryError(f"{ENV_LIMIT}={override!r} is not a positive number")
        return Budget(int(gigabytes * 1e9), f"{ENV_LIMIT}={override}", device)
    if device == "gpu":
        total = _gpu_total_bytes()
        if total is None:
            return None
        return Budget(int(total[0] * (1 - GPU_RESERVE)), total[1], "gpu")
    figures = {"MemAvailable": _meminfo_bytes("MemAvailable"), "cgroup": _cgroup_headroom()}
    known = {k: v for k, v in figures.items() if v is not None}
    if not known:
        return None
    source, free = min(known.items(), key=lambda item: item[1])
    usable = int(free * CPU_HEADROOM) - RESIDENT_MODEL_BYTES
    label = "MemAvailable" if source == "MemAvailable" else "cgroup memory.max - memory.current"
    return Budget(max(0, usable), f"{CPU_HEADROOM:.0%} of {label} less the model", "cpu")


@dataclass(frozen=True)
class SizePlan:
    """The processing size chosen for a requested size, and why."""

    requested: Size
    processing: Size
    precision: str = "float32"
    device: str = "cpu"
    estimate_bytes: int = 0
    budget: Budget | None = field(default=None)

    @property
    def reduced(self) -> bool:
        return self.processing != self.requested

    @property
    def reason(self) -> str:
        if self.budget is None:
            return "memory guard skipped: available memory unknown"
        need = f"{self.requested} ({self.precision}) needs ~{self.estimate_bytes / GIB:.2f} GiB"
        have = f"{self.budget.bytes / GIB:.2f} GiB available ({self.budget.source})"
        if not self.reduced:
            return f"{need}, fits in {have}"
        return (
            f"{need}, more than the {have}: stylizing at {self.processing} and "
            f"upscaling to {self.requested}"
        )

    def as_dict(self) -> dict:
        """For manifests and JSON reports; sizes as [width, height]."""
        return {
            "strategy": "reduce" if self.reduced else "none",
            "requested": self.requested.as_list(),
            "processing": self.processing.as_list(),
            "precision": self.precision,
            "device": self.device,
            "estimate_bytes": self.estimate_bytes,
            "budget_bytes": None if self.budget is None else self.budget.bytes,
            "budget_source": None if self.budget is None else self.budget.source,
            "reason": self.reason,
        }


_DETECT = object()


def plan_size(
    size: Size,
    precision: str = "float32",
    *,
    budget: Budget | None | object = _DETECT,
    min_side: int = 16,
) -> SizePlan:
    """Keep `size` when its step fits the budget, else the largest that fits.

    `budget` defaults to `available_memory()`; None skips the guard. Raises
    InsufficientMemoryError when even a `min_side` shorter side would not fit.
    """
    chosen = available_memory() if budget is _DETECT else budget
    device = chosen.device if isinstance(chosen, Budget) else step_device()
    estimate = estimate_bytes(size, precision, device)
    plan = SizePlan(size, size, precision, device, estimate, chosen)
    if not isinstance(chosen, Budget) or estimate <= chosen.bytes:
        return plan
    fitted = fit_budget(size, chosen.bytes, precision, device)
    if fitted is None or fitted.shortest < min_side:
        raise InsufficientMemoryError(
            f"not enough memory for {size}: {plan.reason.split(',')[0]}, "
            f"{chosen.bytes / GIB:.2f} GiB available ({chosen.source}); even a {min_side} px "
            "shorter side would not fit"
        )
    return SizePlan(size, fitted, precision, device, estimate, chosen)
