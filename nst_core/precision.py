"""The compute precision of VGG19 and of fast-mode networks: "auto" resolved for this machine.

"auto" (the default of LossSettings.precision) means bfloat16 where bf16 convolutions are
fast, float32 elsewhere:
- a GPU visible to the active Keras backend (TensorFlow: a physical "GPU" device; JAX: a
  default backend other than "cpu");
- on TensorFlow (oneDNN), a CPU with bf16 matrix units: AMX (cpuinfo flags `amx_bf16` or
  `amx_tile`) or AVX512-BF16 (`avx512_bf16`). Measured: a Xeon with AMX at 256x144, 307 ms
  an iteration in float32, 116 ms in bf16 at the same loss; an EPYC Zen4 with AVX512-BF16
  1.6-1.8x. A CPU without them emulates bf16 and is much slower, so it gets float32; so
  does a machine without /proc/cpuinfo (macOS, Windows).
- JAX on a CPU: float32. XLA:CPU did not run the bf16 step faster on that EPYC (96 px,
  1.5-3.0 s an iteration in bf16 against 1.5-1.9 s in float32, a busy machine).

Settings, job ids and caches keep "auto" (a job resumes on any machine); whatever builds a
network resolves it here, and manifests, chunk markers and model cards record the result.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from nst_video.nst_core.errors import InvalidSettingsError

Computed = Literal["float32", "bfloat16"]
Precision = Literal["auto", Computed]  # the setting's values (nst_core/settings.py)
AUTO = "auto"
COMPUTED: tuple[str, ...] = get_args(Computed)
BF16_CPU_FLAGS = frozenset({"amx_bf16", "amx_tile", "avx512_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_has_bf16(cpuinfo_text: str) -> bool:
    """Whether /proc/cpuinfo text lists AMX or AVX512-BF16 on its first `flags` line."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return not BF16_CPU_FLAGS.isdisjoint(value.split())
    return False


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:  # no /proc (macOS, Windows): float32
        return ""


def gpu_available(backend: str) -> bool:
    """Whether Keras `backend` computes on a GPU (or another accelerator)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False


@lru_cache(maxsize=1)
def auto_precision() -> str:
    """What "auto" means on this machine and Keras backend (decided once per process)."""
    import keras

    backend = keras.backend.backend()
    fast_cpu = backend == "tensorflow" and cpu_has_bf16(_cpuinfo())
    return "bfloat16" if fast_cpu or gpu_available(backend) else "float32"


def resolve_precision(requested: str) -> str:
    """The precision to compute in: `requested` itself, or what "auto" means here."""
    if requested == AUTO:
        return auto_precision()
    if requested not in COMPUTED:
        raise InvalidSettingsError(
            f"invalid precision {requested!r}: choose from {AUTO}, {', '.join(COMPUTED)}"
        )
    return requested
