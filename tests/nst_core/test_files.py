"""nst_core.files: every writer's atomic rename and every pre-flight write check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.files import atomic_path, check_writable


def test_atomic_path_publishes_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "clip.mp4"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert dest.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["clip.mp4"]
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".")
        tmp.write_text("new")
    assert dest.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["clip.mp4"]


def test_atomic_file_gets_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda root: root / "missing" / "out.jpg", "destination folder .*missing does not exist"),
        (lambda root: _file(root) / "out.jpg", "destination folder .*a_file is not a folder"),
        (lambda root: root, "it is a folder; name the file"),
    ],
)
def test_check_writable_names_the_path_and_reason(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InvalidInputError, match=f"cannot write {path}: {reason}"):
        check_writable(path)


def test_check_writable_leaves_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "out.mp4")
    assert os.listdir(tmp_path) == []


def _file(root: Path) -> Path:
    path = root / "a_file"
    path.write_text("x")
    return path
