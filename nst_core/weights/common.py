"""Shared by the weights modules: the chosen file's description, hashing, one-line errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_video.nst_core.errors import WeightsError


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights file was chosen, its sha256 and where it came from."""

    path: Path
    origin: str
    sha256: str
    detail: str


class Unavailable(Exception):
    """A source that does not apply or failed; resolution moves on to the next one."""


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _hash_file(path: Path, digest: Any) -> str:
    """Feed a file to ``digest`` in 1 MiB chunks; return the hex digest."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return _hash_file(path, hashlib.sha256())


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Raise WeightsError unless ``path`` hashes to ``expected`` (a pinned download)."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{path.name}: {what} sha256 mismatch (expected {expected}, got {actual}); "
            "refusing to use it"
        )


def md5_file(path: Path) -> str:
    """Hex md5 of a file: Keras pins its weight files by md5."""
    return _hash_file(path, hashlib.md5(usedforsecurity=False))

