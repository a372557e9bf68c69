"""Writing files so that a destination holds a complete file or nothing.

Every writer of the project (images, weights cache, chunk markers, videos, local storage)
goes through `atomic_path`, and every "can I write there?" check before work through
`check_writable`, so all of them fail alike: one line naming the path and the reason.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nst_video.nst_core.errors import InvalidInputError


def check_writable(path: Path) -> None:
    """Fail before any work when a file cannot be written at `path`.

    The folder is probed by creating (and dropping) an unnamed file in it, which also
    catches read-only mounts where permission bits say yes.
    """
    folder = path.parent
    if path.is_dir():
        raise InvalidInputError(f"cannot write {path}: it is a folder; name the file")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInputError(f"cannot write {path}: destination folder {folder} {what}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or error
        raise InvalidInputError(
            f"cannot write {path}: destination folder {folder} is not writable ({reason})"
        ) from None


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a hidden temporary name beside `dest`; on success make it `dest`.

    The name keeps `dest`'s extension (ffmpeg and Pillow pick a format from it) and is
    created by the caller, so the file gets the user's umask permissions. On success it is
    fsynced and renamed over `dest`, and the rename is persisted; on any failure it is
    removed and an existing `dest` is left untouched.
    """
    tmp = dest.with_name(f".{dest.stem[:80]}.{secrets.token_hex(4)}.tmp{dest.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(dest.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Persist a rename (best effort: some filesystems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
