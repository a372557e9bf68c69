"""`--precision auto`: the cpuinfo parser, the decision per machine and backend, pass-through."""

from __future__ import annotations

import subprocess
from pathlib import Path

import keras
import pytest

from nst_video.nst_core import precision
from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.precision import auto_precision, cpu_has_bf16, resolve_precision
from nst_video.nst_core.settings import make_settings

# The flags of an AMD EPYC (Zen 4) as /proc/cpuinfo prints them: AVX512-BF16, no AMX.
ZEN4_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
    "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor "
    "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall "
    "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap "
    "avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 "
    "xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes "
    "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm"
)
# The tail of an Intel Xeon (Sapphire Rapids) flags line: AMX tiles and AMX-BF16.
SPR_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep avx512f avx512dq rdseed adx smap avx512ifma "
    "clflushopt clwb intel_pt avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves "
    "avx_vnni avx512_bf16 wbnoinvd dtherm ida arat pln pts hfi vnmi avx512vbmi umip pku ospke "
    "waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq "
    "la57 rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear serialize "
    "tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d "
    "arch_capabilities"
)
# A Xeon (Cascade Lake): AVX-512 and VNNI, no bf16 unit.
CASCADE_LAKE_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep avx2 smep bmi2 erms invpcid avx512f avx512dq "
    "rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves "
    "arat pku ospke avx512_vnni md_clear flush_l1d arch_capabilities"
)


def cpuinfo(flags: str, vendor: str = "AuthenticAMD", extra: str = "") -> str:
    """Two processors of /proc/cpuinfo with `flags` (the kernel's tab layout)."""
    block = (
        f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: 25\nmodel name\t: test\n"
        f"flags\t\t: {flags}\n{extra}bugs\t\t: sysret_ss_attrs spectre_v1\n"
        "bogomips\t: 4792.81\n\n"
    )
    return block.format(n=0) + block.format(n=1)


def without(flags: str, *names: str) -> str:
    return " ".join(f for f in flags.split() if f not in names)


@pytest.fixture
def fresh_auto():
    """auto_precision decided anew in this test and after it."""
    auto_precision.cache_clear()
    yield
    auto_precision.cache_clear()


def test_avx512_bf16_or_amx_flags_mean_a_bf16_cpu():
    assert cpu_has_bf16(cpuinfo(ZEN4_FLAGS))
    assert not cpu_has_bf16(cpuinfo(without(ZEN4_FLAGS, "avx512_bf16")))
    intel = cpuinfo(SPR_FLAGS, "GenuineIntel")
    assert cpu_has_bf16(intel)
    assert cpu_has_bf16(cpuinfo(without(SPR_FLAGS, "avx512_bf16", "amx_bf16"), "GenuineIntel"))
    assert cpu_has_bf16(cpuinfo(without(SPR_FLAGS, "avx512_bf16", "amx_tile"), "GenuineIntel"))
    no_bf16 = without(SPR_FLAGS, "avx512_bf16", "amx_bf16", "amx_tile")
    assert not cpu_has_bf16(cpuinfo(no_bf16, "GenuineIntel"))
    assert not cpu_has_bf16(cpuinfo(CASCADE_LAKE_FLAGS, "GenuineIntel"))


def test_only_the_flags_line_counts():
    # Intel kernels print a "vmx flags" line; names elsewhere are not CPU features.
    vmx = "vmx flags\t: vnmi amx_tile avx512_bf16\n"
    assert not cpu_has_bf16(cpuinfo(CASCADE_LAKE_FLAGS, "GenuineIntel", extra=vmx))
    assert not cpu_has_bf16("model name\t: avx512_bf16 amx_bf16\n")
    assert not cpu_has_bf16("")  # no /proc/cpuinfo (macOS, Windows)
    # 64-bit Arm lists "Features", bf16 among them: not measured, float32.
    assert not cpu_has_bf16("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")


def test_auto_on_this_machine_follows_its_cpu_flags(fresh_auto):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the CPU rule is TensorFlow's")
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: auto is bfloat16 whatever the CPU")
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo here")
    listed = subprocess.run(
        ["grep", "-qwE", "avx512_bf16|amx_bf16|amx_tile", "/proc/cpuinfo"], check=False
    ).returncode == 0  # fmt: skip
    assert resolve_precision("auto") == ("bfloat16" if listed else "float32")


def test_auto_without_bf16_units_or_cpuinfo_is_float32(fresh_auto, monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "gpu_available", lambda backend: False)
    plain = tmp_path / "cpuinfo"
    plain.write_text(cpuinfo(CASCADE_LAKE_FLAGS, "GenuineIntel"))
    monkeypatch.setattr(precision, "CPUINFO", plain)
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    assert resolve_precision("auto") == "float32"
    auto_precision.cache_clear()
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    assert resolve_precision("auto") == "float32"


def test_auto_by_backend_and_device(fresh_auto, monkeypatch, tmp_path):
    amx = tmp_path / "cpuinfo"
    amx.write_text(cpuinfo(SPR_FLAGS, "GenuineIntel"))
    monkeypatch.setattr(precision, "CPUINFO", amx)
    monkeypatch.setattr(precision, "gpu_available", lambda backend: False)
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    assert resolve_precision("auto") == "bfloat16"  # oneDNN uses AMX
    auto_precision.cache_clear()
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert resolve_precision("auto") == "float32"  # XLA:CPU gains nothing from bf16
    auto_precision.cache_clear()
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(precision, "gpu_available", lambda backend: backend == "jax")
    assert resolve_precision("auto") == "bfloat16"  # a GPU, whatever the CPU


def test_explicit_precisions_pass_through(fresh_auto, monkeypatch):
    for forced in ("float32", "bfloat16"):
        monkeypatch.setattr(precision, "auto_precision", lambda forced=forced: forced)
        assert resolve_precision("auto") == forced
        assert resolve_precision("float32") == "float32"
        assert resolve_precision("bfloat16") == "bfloat16"
    with pytest.raises(InvalidSettingsError, match="invalid precision 'fp16'"):
        resolve_precision("fp16")


def test_settings_default_to_auto_and_keep_it_in_their_hash():
    default = make_settings()
    assert default.precision == "auto"
    pinned = make_settings(precision=resolve_precision("auto"))
    assert default.stable_hash() != pinned.stable_hash()  # jobs keyed by "auto" resume anywhere
