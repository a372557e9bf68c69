"""The wheel works outside the repository: a plain `pip install .` (not editable), run elsewhere.

The wheel is built here and installed into a fresh venv whose only other packages are this
venv's dependencies (one .pth line; the editable install's own .pth is not processed there),
so every command below runs the installed copy, never the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout (a build writes beside its sources)."""
    dist, source = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("src") / "nst-video"
    skipped = (".*", "__pycache__", "*.egg-info", "build", "output", "benchmarks", "docs")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skipped))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return next(dist.glob("nst_video-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """The venv's bin folder, with the wheel installed and nothing from the checkout."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    return env_dir / "bin"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_installs_one_namespace_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"nst_video", wheel.name.split("-py")[0] + ".dist-info"}
    for data in ("assets/videos/bottles_with_tone.mp4", "assets/styles/starry_night.jpg",
                 "deployments/prefect.yaml", "flows/stylize_video.py"):  # fmt: skip
        assert f"nst_video/{data}" in names


def test_installed_commands_run_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    code = "import nst_video.tasks as t; print(t.__file__)"
    where = _run([str(installed / "python"), "-c", code], tmp_path)
    assert where.returncode == 0, where.stderr
    assert not where.stdout.strip().startswith(str(ROOT)), where.stdout
    for command in (["weights", "--verify"], ["demo", "--help"], ["serve", "--help"]):
        result = _run([str(installed / "nst"), *command], tmp_path)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    assert "sha256" in _run([str(installed / "nst"), "weights", "--verify"], tmp_path).stdout


def test_installed_deployments_load_their_flows(installed: Path, tmp_path: Path) -> None:
    result = _run([str(installed / "python"), "-m", "nst_video.deployments.validate"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stylize-batch" in result.stdout and "stylize-video" in result.stdout


def test_installed_image_command_writes_an_image(installed: Path, tmp_path: Path) -> None:
    assets = ROOT / "assets"
    out = tmp_path / "out.png"
    result = _run(
        [str(installed / "nst"), "image", str(assets / "content" / "bottles.jpg"),
         str(assets / "styles" / "starry_night.jpg"), "-o", str(out), "--size", "64",
         "--iterations", "3"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    assert max(Image.open(out).size) == 64


def test_every_package_folder_is_in_the_wheel() -> None:
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        "nst_video." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("nst_core", "tasks", "flows", "nst_cli", "deployments")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert folders | {"nst_video"} == listed
