"""`nst demo` picks a larger frame where bfloat16 is fast, and keeps 128 px in float32."""

from pathlib import Path

import pytest

from nst_video.nst_cli.main import BF16_DEMO_SIZE, DEMO_SETTINGS, _demo_size, keras_backend
from nst_video.nst_core.precision import cpu_has_bf16, gpu_available


def test_demo_size_follows_the_precision():
    assert _demo_size("float32") == DEMO_SETTINGS["size"] == 128
    assert _demo_size("bfloat16") == BF16_DEMO_SIZE > 128


def test_auto_gives_the_bf16_size_exactly_on_cpus_with_bf16_units():
    """TensorFlow on a CPU: bf16 units in /proc/cpuinfo decide (JAX on a CPU: float32)."""
    if gpu_available(keras_backend()):
        pytest.skip("a GPU resolves auto to bfloat16 whatever the CPU")
    cpuinfo = Path("/proc/cpuinfo")
    tensorflow = keras_backend() == "tensorflow"
    fast_bf16 = tensorflow and cpuinfo.is_file() and cpu_has_bf16(cpuinfo.read_text())
    assert _demo_size("auto") == (BF16_DEMO_SIZE if fast_bf16 else 128)
