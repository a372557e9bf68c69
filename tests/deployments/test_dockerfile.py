"""The worker image's Dockerfile and .dockerignore, checked statically (no Docker engine here):
what `docker build` or the container would trip on, against pyproject.toml and prefect.yaml."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from nst_video.deployments.validate import PREFECT_YAML, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    pairs = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


INSTRUCTIONS = _instructions(DOCKERFILE)


def _all(keyword: str) -> list[str]:
    return [rest for kind, rest in INSTRUCTIONS if kind == keyword]


def _arg_defaults() -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in _all("ARG") if "=" in arg)


def _pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as Docker matches it: `*` and `?` stop at `/`, `**/` spans."""
    text = re.escape(pattern.strip("/"))
    text = text.replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.compile(text)


IGNORED = [
    _pattern(line.strip())
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(pattern.fullmatch(prefix) for pattern in IGNORED for prefix in prefixes)


def _copy_sources() -> list[str]:
    return [source for args in _all("COPY") for source in shlex.split(args)[:-1]]


def test_one_stage_on_python_311_which_the_project_supports():
    (base,) = _all("FROM")
    assert re.fullmatch(r"python:3\.11(-[a-z0-9.-]+)?", base), base
    assert "3.11" in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_every_copy_source_exists_and_is_in_the_build_context():
    sources = _copy_sources()
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not _ignored(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_every_package_folder_and_the_package_data_are_copied():
    copied = {source.rstrip("/") for source in _copy_sources()}
    folders = {package.split(".")[1] for package in PYPROJECT["tool"]["setuptools"]["packages"][1:]}
    needed = folders | {"assets", "pyproject.toml", PYPROJECT["project"]["readme"]}
    assert needed <= copied, f"not copied: {sorted(needed - copied)}"


def test_pip_installs_the_project_with_extras_that_exist():
    extras_known = set(PYPROJECT["project"]["optional-dependencies"])
    installs = [run for run in _all("RUN") if "pip install" in run]
    assert len(installs) == 1
    spec = re.search(r"""pip install ["']?\.\[([^\]]+)\]""", installs[0])
    assert spec, installs[0]
    chosen = spec.group(1).replace("${EXTRAS}", _arg_defaults()["EXTRAS"])
    variants = re.findall(r"--build-arg EXTRAS=(\S+)", DOCKERFILE.read_text())
    assert variants, "the Dockerfile's header shows the CUDA variant's extras"
    for extras in [chosen, *variants]:
        unknown = set(extras.split(",")) - extras_known
        assert not unknown, f"extras {sorted(unknown)} are not in pyproject.toml"
    assert "cpu" in chosen.split(",")


def _console_scripts(distribution: str) -> set[str]:
    points = importlib.metadata.distribution(distribution).entry_points
    return {point.name for point in points if point.group == "console_scripts"}


def test_commands_are_console_scripts_of_the_project_or_its_dependencies():
    provided = set(PYPROJECT["project"]["scripts"])
    for requirement in PYPROJECT["project"]["dependencies"]:
        provided |= _console_scripts(Requirement(requirement).name)
    (cmd,) = _all("CMD")
    argv = json.loads(cmd)  # exec form: no shell between Docker and the worker
    assert argv[0] == "prefect" and argv[0] in provided and _all("ENTRYPOINT") == []
    assert argv[1:4] == ["worker", "start", "--pool"]
    deployments = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    assert argv[4] in pools, f"the worker polls {argv[4]!r}, the deployments use {pools}"
    commands = [shlex.split(run)[0] for run in _all("RUN")]
    assert "nst" in commands and "nst" in provided  # the weights are fetched by `nst weights`


def test_runs_as_a_user_it_creates_not_root():
    users = _all("USER")
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    assert any("useradd" in run and run.split()[-1] == users[-1] for run in _all("RUN"))
    kinds = [kind for kind, _ in INSTRUCTIONS]
    assert kinds.index("USER") < kinds.index("CMD")


@pytest.mark.parametrize(
    "path", [".venv", ".git", "output", "tasks/__pycache__", ".pytest_cache", ".ruff_cache"]
)
def test_dockerignore_keeps_environments_outputs_and_caches_out(path):
    assert _ignored(path)


def test_dockerignore_keeps_what_the_build_needs():
    assert not _ignored("tasks/storage.py") and not _ignored("assets/styles")
