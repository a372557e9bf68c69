"""The train-style flow: fetch inputs -> train a fast-mode network -> publish the model ->
loss-curve and card artifacts. Orchestration only: the training is tasks/train.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from nst_video.nst_core.fast_train import FastTerms
from nst_video.nst_core.settings import TrainSettings
from nst_video.tasks import prefect_tasks, storage
from nst_video.tasks.plan import WorkDir, job_id
from nst_video.tasks.staging import local_work_dir
from nst_video.tasks.train import Progress, check_model_destination, data_identity
from nst_video.tasks.train_report import loss_curve_markdown

# Progress receivers in this process besides the UI (e.g. the CLI's progress bar).
LISTENERS: list[Progress] = []


class UiProgress:
    """Moves the run's progress artifact, once per percent, and notifies the LISTENERS."""

    def __init__(self, steps: int, description: str) -> None:
        self.steps = steps
        self.artifact = create_progress_artifact(0.0, description=description)
        self.shown = 0

    def __call__(self, step: int, terms: FastTerms) -> None:
        percent = 100 * step // self.steps
        if percent > self.shown:
            update_progress_artifact(self.artifact, float(percent))
            self.shown = percent
        for listener in LISTENERS:
            listener(step, terms)

    def finish(self) -> None:
        """Full bar: an early stop ends training before the last step."""
        update_progress_artifact(self.artifact, 100.0)


def _staging(
    work_dir: str | None, styles: list[str], identities: list[dict], settings: TrainSettings
) -> Path:
    """The folder for this training's downloads, named by its inputs and settings."""
    job = job_id(
        styles=[storage.identity(style) for style in styles],
        data=identities,
        settings=settings.stable_hash(),
    )
    return local_work_dir(work_dir) / f"train-inputs-{job}"


def _fetch_all(uris: list[str], staging: Path) -> list[str]:
    return [str(storage.fetch(uri, staging)) for uri in uris]


@flow(name="train-style", flow_run_name="train {destination}")
def train_style(
    styles: list[str],
    videos: list[str],
    destination: str,
    settings: TrainSettings | None = None,
    images: str | None = None,
    work_dir: WorkDir = None,
) -> dict:
    """Train a fast-mode network for `styles` on frames of `videos` (paths or s3:// URIs)
    and the images of the local folder `images`; save it to `destination` (`.keras`, a path
    or s3://). Returns the model's card. A rerun of a killed training resumes from its last
    checkpoint (tasks/train.py).
    """
    logger = get_run_logger()
    settings = settings or TrainSettings()
    check_model_destination(destination)
    identities = data_identity(videos, images)  # of the originals: a download is a new file
    staging = _staging(work_dir, styles, identities, settings)
    progress = UiProgress(settings.steps, f"training steps for {destination}")
    card = prefect_tasks.train_network(
        _fetch_all(styles, staging),
        _fetch_all(videos, staging),
        images,
        settings,
        destination,
        progress=progress,
        work_dir=work_dir,
        identities=identities,
    )
    progress.finish()
    training = card.training
    logger.info(
        "trained %d steps in %.1f s (resumed from step %d), final loss %.4g: %s",
        training["steps"],
        training["seconds"],
        training["resumed_from_step"],
        training["final"]["total"],
        destination,
    )
    _publish_artifacts(card.as_dict(), destination)
    shutil.rmtree(staging, ignore_errors=True)
    return card.as_dict()


def _publish_artifacts(card: dict, destination: str) -> None:
    create_markdown_artifact(
        loss_curve_markdown(card["training"]["loss_curve"], f"training loss of {destination}"),
        key="training-loss",
        description="loss curve",
    )
    create_markdown_artifact(
        f"# Trained {destination}\n\n```json\n{json.dumps(card, indent=2)}\n```",
        key="training-card",
        description="model card",
    )


def run_train_style(
    styles: list[str],
    videos: list[str],
    destination: str,
    settings: TrainSettings,
    *,
    listener: Progress | None = None,
    **params,
) -> dict:
    """Run the flow in this process; `listener(step, terms)` sees every step. Without
    PREFECT_API_URL, Prefect starts a temporary local server for the run."""
    if listener:
        LISTENERS.append(listener)
    try:
        return train_style(styles, videos, destination, settings, **params)
    finally:
        if listener:
            LISTENERS.remove(listener)
