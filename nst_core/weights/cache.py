"""The weights cache: decoded npz, its sidecar (sha256, size, provenance), atomic writes.

``$NST_CACHE_DIR`` or ``~/.cache/nst-video`` holds ``vgg19_notop.npz`` (float32, kernels
(kh, kw, in, out)) and ``vgg19_notop.json``. Writes go through a temporary file and
``os.replace``; the npz bytes are deterministic, so two processes racing to fill the cache
write identical files. Reading trusts the sidecar's size; ``verify`` hashes and decodes.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nst_video.nst_core.errors import WeightsError
from nst_video.nst_core.files import atomic_path
from nst_video.nst_core.weights.common import Unavailable, WeightsInfo, sha256_bytes, sha256_file
from nst_video.nst_core.weights.formats import Weights, decode_weights

ENV_CACHE = "NST_CACHE_DIR"
CACHE_FILE = "vgg19_notop.npz"
SIDECAR_FILE = "vgg19_notop.json"
SIDECAR_FORMAT = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


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
    """Write `path` atomically (nst_core.files), creating the cache folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        write(handle)


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


def read_sidecar(path: Path) -> dict[str, Any] | None:
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


def corrupted(path: Path, reason: str) -> WeightsError:
    """The one-line error for a file that no longer matches its recorded sha256 or size."""
    return WeightsError(
        f"{path}: weights file is corrupted ({reason}); "
        "delete it or run `nst weights --refetch` to re-fetch"
    )


def check_recorded(path: Path, expected: str, actual: str) -> None:
    """Raise the corrupted-file error unless ``actual`` is the recorded sha256."""
    if actual != expected:
        reason = f"sha256 {actual[:16]}... does not match the recorded {expected[:16]}..."
        raise corrupted(path, reason)


def from_cache(directory: Path, verify: bool) -> WeightsInfo:
    """The cached npz, trusted by its sidecar (size checked; hashed when ``verify``)."""
    npz = directory / CACHE_FILE
    if not npz.is_file():
        raise Unavailable(f"{npz} not found")
    meta = read_sidecar(directory / SIDECAR_FILE)
    if meta is None:
        raise Unavailable(f"{directory / SIDECAR_FILE} missing or unreadable")
    size = npz.stat().st_size
    if meta.get("size") != size:
        raise corrupted(npz, f"size {size} bytes, sidecar records {meta.get('size')}")
    if verify:
        verify_file(npz, meta["sha256"])
    detail = f"{meta.get('detail', '')} [cached from {meta.get('origin')}, {meta.get('created')}]"
    return WeightsInfo(path=npz, origin="cache", sha256=meta["sha256"], detail=detail)


def decode_recorded(path: Path, data: bytes, expected: str) -> Weights:
    """Decode ``data`` (read from ``path``) only if it hashes to the recorded sha256."""
    check_recorded(path, expected, sha256_bytes(data))
    return decode_weights(data, str(path))


def verify_file(path: Path, expected: str) -> None:
    """Hash and fully decode a file; raise if either fails."""
    decode_recorded(path, path.read_bytes(), expected)
