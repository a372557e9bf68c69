"""A job's staging: a local folder or an S3 prefix holding its keyframes, chunk segments and
completion markers, so that any machine can run a chunk, assemble, or resume the job.

Plain functions (no Prefect). Layout of a job (docs/deployment.md, "Staging and resume"):
``<work root>/<job id>/{inputs,keyframes,chunks}/...``; the work root is `--work-dir`, else
``.nst-staging/`` beside an S3 destination, else the local default. Tasks get URIs: they
read through this machine's cache (`fetch_cached`) and write through `made_here` + `upload`
(a local work dir is the degenerate case: files are made in place, nothing is uploaded).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.weights.cache import cache_dir
from nst_video.tasks import storage

STAGING_FOLDER = ".nst-staging"  # beside an S3 destination; hidden, so never a batch input
WORK_DIR_ENV = "NST_WORK_DIR"
MARKER_SUFFIX = ".json"
_JOB_ID_RE = re.compile(r"[0-9a-f]{16}")  # tasks.plan.job_id


def default_work_dir() -> str:
    """The work root when no `--work-dir` is given: `NST_WORK_DIR` (a folder or an s3://
    prefix, e.g. set once on every worker of a pool), else ~/.cache/nst-video/jobs."""
    root = os.environ.get(WORK_DIR_ENV) or Path.home() / ".cache" / "nst-video" / "jobs"
    return storage.parse_uri(str(root)).uri


def cache_root() -> Path:
    """This machine's cache of staged files, one folder per job: `staged/` in the cache root
    ($NST_CACHE_DIR or ~/.cache/nst-video), beside the weights and trained models."""
    return cache_dir() / "staged"


def work_root(work_dir: str | None, destination: str) -> str:
    """Where jobs stage: `work_dir`; else `.nst-staging` beside an S3 destination; else the
    default (`NST_WORK_DIR` or the local folder)."""
    if work_dir:
        return storage.parse_uri(work_dir).uri
    target = storage.parse_uri(destination)
    if not target.is_s3:
        return default_work_dir()
    folder = target.key.rpartition("/")[0]
    return storage.join_uri(f"s3://{target.bucket}/", folder, STAGING_FOLDER)


def local_work_dir(work_dir: str | None) -> Path:
    """This machine's folder for files of a job that are not staged (training downloads,
    checkpoints before upload): the work dir when it is a folder, else this machine's cache
    (an s3:// work dir is no local path)."""
    root = storage.parse_uri(work_dir).uri if work_dir else default_work_dir()
    return cache_root() if storage.parse_uri(root).is_s3 else Path(root)


@dataclass(frozen=True)
class Staging:
    """One job's staging folder or prefix; `root` is ``<work root>/<job id>``."""

    root: str

    @property
    def remote(self) -> bool:
        return storage.parse_uri(self.root).is_s3

    @property
    def job(self) -> str:
        return storage.parse_uri(self.root).name

    def uri(self, *parts: str) -> str:
        return storage.join_uri(self.root, *parts)

    def cache(self) -> Path:
        """This machine's folder for the job's fetched and assembled files."""
        return cache_root() / self.job if self.remote else Path(self.root, "cache")


def fetch_cached(uri: str, cache: Path) -> Path:
    """A local path holding `uri`: a local file as it is; an S3 object downloaded once per
    content identity (size, ETag) into `cache`/<identity hash>/<staged name>."""
    location = storage.parse_uri(uri, object_required=True)
    if not location.is_s3:
        return storage.fetch(uri, cache)
    identity = storage.identity(uri)
    key = hashlib.sha256(f"{identity['size']}:{identity['etag']}".encode()).hexdigest()[:16]
    folder = cache / key
    staged = folder / storage.staged_name(location)
    return staged if staged.is_file() else storage.fetch(uri, folder)


def upload(local: Path, uri: str) -> str:
    """Put a file made by `made_here` at its staging URI (in place already when local)."""
    if storage.parse_uri(uri).is_s3:
        storage.publish(local, uri)
    return uri


@contextmanager
def made_here(uri: str) -> Iterator[Path]:
    """The local path to write the file for `uri`: `uri` itself when local (its folder made),
    else a temporary file, removed after the block (upload it inside the block)."""
    location = storage.parse_uri(uri, object_required=True)
    if location.path is not None:
        location.path.parent.mkdir(parents=True, exist_ok=True)
        yield location.path
        return
    with tempfile.TemporaryDirectory(prefix="nst-made-") as folder:
        yield Path(folder) / location.name


def marker_uri(segment: str) -> str:
    """A chunk's completion marker: JSON beside its segment."""
    return segment.rpartition(".")[0] + MARKER_SUFFIX


def stage_input(uri: str, staging: Staging) -> str:
    """A URI every worker can read: S3 inputs as they are; a local input uploaded once to
    ``<staging>/inputs/`` when staging is on S3 (remote workers cannot see local paths)."""
    location = storage.parse_uri(uri, object_required=True)
    if location.is_s3 or not staging.remote:
        return location.uri
    path = storage.fetch(uri, staging.cache())  # checks that it is a file
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    target = staging.uri("inputs", f"{digest}-{path.name}")
    if not storage.exists(target):
        storage.publish(path, target)
    return target


def remove(staging: Staging) -> None:
    """Remove a job's staging (folder or prefix) and this machine's cache of it."""
    storage.remove_tree(staging.root)
    shutil.rmtree(staging.cache(), ignore_errors=True)


@dataclass(frozen=True)
class JobEntry:
    """An unfinished (or running) job found under a work root."""

    job: str
    modified: datetime  # newest file
    size: int  # bytes
    chunks_done: int  # completion markers

    def age_hours(self, now: datetime | None = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (now - self.modified).total_seconds() / 3600


def list_jobs(root: str) -> list[JobEntry]:
    """The jobs staged under `root` (folders or prefixes named by a job id), newest first."""
    by_job: dict[str, list[storage.FileStat]] = {}
    for stat in storage.list_stats(root):
        job, _, inside = stat.relative.partition("/")
        if _JOB_ID_RE.fullmatch(job) and inside:
            by_job.setdefault(job, []).append(stat)
    entries = [
        JobEntry(
            job,
            max(s.modified for s in stats),
            sum(s.size for s in stats),
            sum(_is_marker(s.relative) for s in stats),
        )
        for job, stats in by_job.items()
    ]
    return sorted(entries, key=lambda e: e.modified, reverse=True)


def _is_marker(relative: str) -> bool:
    return relative.split("/")[1:2] == ["chunks"] and relative.endswith(MARKER_SUFFIX)


def job_staging(root: str, job: str) -> Staging:
    """The staging of `job` under `root`; a malformed id is refused on one line."""
    if not _JOB_ID_RE.fullmatch(job):
        raise InvalidInputError(f"job id {job!r}: not a job id (16 hex digits, see nst jobs)")
    return Staging(storage.join_uri(root, job))
