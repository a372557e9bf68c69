"""The stylize-batch flow: every video under a folder or S3 prefix, each one a stylize-video
subflow, at most `concurrency` at a time. Orchestration only: no tensors here.

Decisions (see docs/deployment.md):
- Concurrency: each video runs in a `stylize-one` task that calls the `stylize_video` flow,
  so every video is its own flow run in the UI (a child of its task run). The tasks are
  submitted to a ThreadPoolTaskRunner sized by `concurrency`, opened inside the flow: the
  bound is a flow parameter (a deployment can set it) instead of a decorator constant.
- Which files: by default every file whose extension is one of VIDEO_EXTENSIONS (any case);
  `glob` (an fnmatch pattern on the file name, case-insensitive) replaces that rule. Other
  files are listed as ignored; files under the destination are never inputs.
- Outputs: destination + the path relative to the source, extension .mp4.
- Failures: a video that fails (corrupt, unreadable...) fails its own task and subflow; the
  other videos go on. At the end the summary artifact is written and, if any video failed,
  the batch raises BatchFailedError naming them, so the run ends Failed (a scheduled batch
  with a bad input must show red). The error carries the summary (`error.summary`).
- Fan-out: `fan_out="threads"` runs the videos as above, in the batch's process;
  `fan_out="pool"` submits each video as a run of the `deployment` (the on-demand video
  deployment of deployments/prefect.yaml) so that every worker of its pool can take videos
  (flows/batch_pool.py). Rows, failures and the summary are the same in both.
- Done already: the subflow returns `skipped=True` when the output and manifest of the same
  job (same inputs, settings and plan) exist; the batch reports that as "skipped".
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path, PurePosixPath
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from nst_video.flows.batch_options import VIDEO_DEPLOYMENT, FanOut
from nst_video.flows.batch_pool import run_on_pool
from nst_video.flows.stylize_video import Mode, stylize_video
from nst_video.nst_core.errors import InvalidInputError, NSTError, one_line
from nst_video.nst_core.files import check_writable
from nst_video.nst_core.settings import TrainSettings, VideoSettings
from nst_video.tasks import fast, storage
from nst_video.tasks.plan import (
    CHUNK_FRAMES,
    CRF,
    OVERLAP,
    ChunkFrames,
    Crf,
    MaxFrames,
    Overlap,
    WorkDir,
)
from nst_video.tasks.quality import MotionFidelitySamples
from nst_video.tasks.staging import STAGING_FOLDER, local_work_dir, work_root

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
OUTPUT_SUFFIX = ".mp4"


class BatchFailedError(NSTError):
    """Some videos of a batch failed; `summary` holds every entry (the good ones too)."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self):  # Prefect may pickle a flow's exception: keep the summary
        return (type(self), (str(self), self.summary))


def is_video(name: str, glob: str | None = None) -> bool:
    """A batch input? `glob` (case-insensitive fnmatch) if given, else a video extension."""
    if glob:
        return fnmatch.fnmatch(name.lower(), glob.lower())
    return PurePosixPath(name).suffix.lower() in VIDEO_EXTENSIONS


def relative_path(uri: str, root: str) -> str:
    """`uri`'s path below the folder or S3 prefix `root`, '/'-separated."""
    loc, base = storage.parse_uri(uri), storage.parse_uri(root)
    if loc.is_s3:
        prefix = base.key.rstrip("/") + "/" if base.key.strip("/") else ""
        return loc.key[len(prefix) :]
    return Path(uri).relative_to(Path(root)).as_posix()


def output_for(uri: str, source: str, destination: str) -> str:
    """destination + the relative path of `uri` under `source`, with the extension .mp4."""
    rel = PurePosixPath(relative_path(uri, source)).with_suffix(OUTPUT_SUFFIX)
    return storage.join_uri(destination, *rel.parts)


def _inside(uri: str, folder: str) -> bool:
    """Is `uri` at or below the folder / S3 prefix `folder`?"""
    a, b = storage.parse_uri(uri).uri, storage.parse_uri(folder).uri.rstrip("/")
    return a == b or a.startswith(b + "/")


def plan_batch(source: str, destination: str, glob: str | None = None) -> tuple[list, list]:
    """-> ([(input, output)], [(ignored file, reason)]) for every file under `source`."""
    jobs: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    taken: dict[str, str] = {}
    for uri in storage.list_files(source):
        name = storage.parse_uri(uri).name
        if _inside(uri, destination):
            continue  # our own outputs and manifests, when destination is inside source
        if not is_video(name, glob):
            ignored.append((uri, f"not matching {glob}" if glob else "not a video"))
            continue
        out = output_for(uri, source, destination)
        if out in taken:
            ignored.append((uri, f"same output as {taken[out]}"))
            continue
        taken[out] = uri
        jobs.append((uri, out))
    return jobs, ignored


def check_destination(destination: str) -> None:
    """Local destinations: create the folder and check it takes files, before any work.

    S3 has no cheap equivalent without writing an object; a refused write there fails each
    video's own entry instead.
    """
    if destination.startswith("s3://"):
        return
    folder = Path(destination)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"destination {destination} is not writable: {exc.strerror or exc}"
        ) from None
    check_writable(folder / "video.mp4")


@task(name="stylize-one", task_run_name="video {source}")
def stylize_one(
    source: str, styles: list[str], output: str, settings: VideoSettings, params: dict
) -> dict:
    """Run the stylize-video subflow for one video; -> its summary row (raises if it failed)."""
    started = time.perf_counter()
    if not output.startswith("s3://"):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    manifest = stylize_video(source, styles, output, settings, **params)
    return {
        "video": source,
        "output": output,
        "status": "skipped" if manifest.get("skipped") else "done",
        "frames": manifest["totals"]["frames"],
        "seconds": round(time.perf_counter() - started, 2),
        "job_id": manifest["job_id"],
        "error": "",
    }


@flow(name="stylize-batch", flow_run_name="batch {source}")
def stylize_batch(
    source: str,
    styles: Annotated[list[str], Field(min_length=1)],
    destination: str,
    settings: VideoSettings | None = None,
    glob: str | None = None,
    concurrency: Annotated[int, Field(ge=1, le=64)] = 2,
    chunk_frames: ChunkFrames = CHUNK_FRAMES,
    overlap: Overlap = OVERLAP,
    max_frames: MaxFrames = None,
    crf: Crf = CRF,
    work_dir: WorkDir = None,
    mode: Mode = "optimize",
    model: str | None = None,
    training: TrainSettings | None = None,
    motion_fidelity_samples: MotionFidelitySamples = 0,
    fan_out: FanOut = "threads",
    deployment: str = VIDEO_DEPLOYMENT,
) -> dict:
    """Stylize every video under `source` into `destination`; -> the batch summary.

    Raises BatchFailedError (run Failed) when any video failed; the others are still done.
    `mode` and `model` go to every video (see stylize_video); in fast mode without a
    model, one model is made for the styles from all the batch's videos, then shared.
    `fan_out="pool"` runs each video as a run of `deployment` on its work pool's workers.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    settings = settings or VideoSettings()
    jobs, ignored = plan_batch(source, destination, glob)
    for uri, reason in ignored:
        logger.warning("ignored %s: %s", uri, reason)
    if not jobs:
        logger.info("nothing to do: no videos under %s", source)
    else:
        check_destination(destination)
    if mode == "fast" and model is None and jobs:
        staging = local_work_dir(work_dir) / "train-inputs"
        videos = [uri for uri, _ in jobs]
        model = str(fast.model_needed(styles, videos, settings, staging, training))
    params = {"chunk_frames": chunk_frames, "overlap": overlap, "max_frames": max_frames}
    params |= {"mode": mode, "model": model, "motion_fidelity_samples": motion_fidelity_samples}
    params |= {"crf": crf, "work_dir": work_dir}
    if fan_out == "pool" and jobs:
        if model is not None:  # e.g. just trained here: the workers must read it too
            params["model"] = fast.model_for_workers(model, batch_work_root(work_dir, destination))
        video = {"styles": styles, "settings": settings.model_dump(mode="json"), **params}
        rows = run_on_pool(jobs, video, concurrency, deployment)
    else:
        rows = _run_all(jobs, styles, settings, concurrency, **params)
    summary = _summary(source, destination, rows, ignored, time.perf_counter() - started)
    _publish_summary(summary)
    failed = [row["video"] for row in rows if row["status"] == "failed"]
    if failed:
        raise BatchFailedError(
            f"{len(failed)} of {len(rows)} videos failed: {', '.join(failed)}", summary
        )
    return summary


def batch_work_root(work_dir: str | None, destination: str) -> str:
    """Where the batch stages what its videos share (a fast model for a pool): the work
    dir, else `.nst-staging` inside an S3 destination, else the default."""
    if work_dir or not storage.parse_uri(destination).is_s3:
        return work_root(work_dir, destination)
    return storage.join_uri(destination, STAGING_FOLDER)


def _run_all(jobs: list, styles: list[str], settings: VideoSettings, concurrency: int, **params):
    """Submit one stylize-one task per video, at most `concurrency` at once; -> rows.

    Every future is resolved here: a failed one becomes a "failed" row with its error.
    """
    logger = get_run_logger()
    if not jobs:
        return []
    with ThreadPoolTaskRunner(max_workers=concurrency) as runner:
        futures = [
            runner.submit(
                stylize_one,
                {
                    "source": src,
                    "styles": styles,
                    "output": out,
                    "settings": settings,
                    "params": params,
                },
            )
            for src, out in jobs
        ]
        rows = []
        for (src, out), future in zip(jobs, futures, strict=True):
            future.wait()
            value = future.result(raise_on_failure=False)
            if isinstance(value, BaseException) or not future.state.is_completed():
                message = _error_line(value) if isinstance(value, BaseException) else "no result"
                logger.error("%s failed: %s", src, message)
                value = _failed_row(src, out, message)
            rows.append(value)
    return rows


def _failed_row(source: str, output: str, message: str) -> dict:
    return {
        "video": source,
        "output": output,
        "status": "failed",
        "frames": 0,
        "seconds": 0.0,
        "job_id": "",
        "error": message,
    }


def _error_line(error: BaseException) -> str:
    """A failed entry's reason: our own errors as they are, others with their type."""
    if isinstance(error, NSTError):
        return one_line(error, limit=None)
    return one_line(f"{type(error).__name__}: {error}", limit=300)


def _summary(source: str, destination: str, rows: list, ignored: list, seconds: float) -> dict:
    """The batch's result: every video's row, the ignored files and the counts."""
    statuses = ("done", "skipped", "failed")
    counts = {status: sum(r["status"] == status for r in rows) for status in statuses}
    return {
        "source": source,
        "destination": destination,
        "videos": rows,
        "ignored": [{"file": uri, "reason": reason} for uri, reason in ignored],
        "counts": {**counts, "videos": len(rows), "ignored": len(ignored)},
        "wall_seconds": round(seconds, 2),
    }


def _link(uri: str) -> str:
    """A Markdown link to an output: file:// for local paths, the s3:// URI otherwise."""
    target = uri if uri.startswith("s3://") else Path(uri).resolve().as_uri()
    return f"[{os.path.basename(uri)}]({target})"


def summary_markdown(summary: dict) -> str:
    """Markdown: counts, one row per video (status, frames, seconds, output), ignored files."""
    c = summary["counts"]
    lines = [
        f"# Batch {summary['source']} -> {summary['destination']}",
        f"- videos: {c['videos']} ({c['done']} done, {c['skipped']} skipped, "
        f"{c['failed']} failed); ignored files: {c['ignored']}; wall {summary['wall_seconds']} s",
        "",
    ]
    if not summary["videos"]:
        lines.append(f"Nothing to do: no videos under `{summary['source']}`.")
    else:
        lines += ["| video | status | frames | seconds | output |", "|---|:---:|---:|---:|---|"]
        for r in summary["videos"]:
            out = _link(r["output"]) if r["status"] != "failed" else r["error"].replace("|", "/")
            lines.append(
                f"| `{r['video']}` | {r['status']} | {r['frames']} | {r['seconds']} | {out} |"
            )
    if summary["ignored"]:
        lines += ["", "Ignored files:", ""]
        lines += [f"- `{i['file']}`: {i['reason']}" for i in summary["ignored"]]
    return "\n".join(lines)


def _publish_summary(summary: dict) -> None:
    """The UI's view of the batch: a Markdown summary and a sortable table."""
    create_markdown_artifact(
        summary_markdown(summary), key="batch-summary", description="videos of the batch"
    )
    if summary["videos"]:
        columns = ("video", "status", "frames", "seconds", "output", "error")
        create_table_artifact(
            [{k: r[k] for k in columns} for r in summary["videos"]],
            key="batch-videos",
            description="one row per video",
        )


def run_stylize_batch(
    source: str, styles: list[str], destination: str, settings: VideoSettings, **params
) -> dict:
    """Run the flow in this process; -> the summary, also when some videos failed.

    Raises BatchFailedError only through the summary's counts: callers check "failed".
    """
    try:
        return stylize_batch(source, styles, destination, settings, **params)
    except BatchFailedError as error:
        return {**error.summary, "error": str(error)}
