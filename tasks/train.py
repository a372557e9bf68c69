"""Train a fast-mode network on frames of videos (plain functions, no Prefect), and the cache
of trained models that fast mode uses when no model is given.

Decisions:
- One key names a training: sha256 of the styles' bytes (sha256 of each file, in order), the
  data's identity (nst_video.tasks.storage.identity of each video, in order, then of each
  image of the extra folder) and TrainSettings.stable_hash() (every training setting,
  steps and seed included). It names the checkpoint folder and the cached model.
- Checkpoints live in the work dir (`work_dir`, env NST_WORK_DIR, default
  ~/.cache/nst-video/jobs, like the video flow's) under `train-<key[:16]>/checkpoint.npz`,
  never beside the output, which only ever receives the finished model. With an s3://
  work dir each checkpoint is written in this machine's cache and uploaded there, and a
  training starts from the uploaded one when it exists: a killed training resumes on any
  machine. A checkpoint holds the network's weights,
  Adam's variables, the noise stream's position, the step and the loss history (which
  replays the plateau stop); crops need no state (tasks.train_data.CropSampler). The
  folder is removed once the model is saved.
- Early stop: an exponential moving average of the total loss (SMOOTHING) whose best value
  improved by less than `tolerance` (relative) over `patience` steps.
- The card's final terms are the mean of the last FINAL_WINDOW steps' terms (one step's
  are noisy: each sees other crops).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nst_video.nst_core.errors import InvalidInputError, InvalidSettingsError
from nst_video.nst_core.fast_model import (
    SUFFIX,
    ModelCard,
    file_sha256,
    runtime_versions,
    save_fast_model,
)
from nst_video.nst_core.fast_train import (
    TERM_NAMES,
    FastTerms,
    Objective,
    Trainer,
    TrainerState,
    blended_style_grams,
)
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet, config_of
from nst_video.nst_core.files import atomic_path, check_writable
from nst_video.nst_core.images import load_image, resize
from nst_video.nst_core.model import feature_model
from nst_video.nst_core.settings import TrainSettings
from nst_video.nst_core.size import Size, min_side
from nst_video.nst_core.weights import WeightsInfo
from nst_video.nst_core.weights.cache import cache_dir
from nst_video.tasks import storage
from nst_video.tasks.staging import default_work_dir, local_work_dir
from nst_video.tasks.train_data import CropSampler, folder_images, load_training_data

Progress = Callable[[int, FastTerms], None]
SMOOTHING = 0.05  # weight of the newest loss in the moving average of the plateau stop
FINAL_WINDOW = 20
CURVE_POINTS = 200
CHECKPOINT = "checkpoint.npz"


@dataclass(frozen=True)
class CheckpointPlace:
    """Where a training's checkpoint is written, and its copy on S3 (an s3:// work dir)."""

    local: Path
    remote: str | None = None

    @classmethod
    def of(cls, work_dir: str | os.PathLike | None, key: str) -> CheckpointPlace:
        folder = f"train-{key[:16]}"
        root = str(work_dir) if work_dir else default_work_dir()
        local = local_work_dir(root) / folder / CHECKPOINT
        remote = storage.parse_uri(root).is_s3
        return cls(local, storage.join_uri(root, folder, CHECKPOINT) if remote else None)

    def pull(self) -> None:
        """Put the uploaded checkpoint (the newest: every save uploads) in place locally."""
        if self.remote and storage.exists(self.remote):
            fetched = storage.fetch(self.remote, self.local.parent / "fetched")
            os.replace(fetched, self.local)

    def push(self) -> None:
        if self.remote:
            storage.publish(self.local, self.remote)

    def remove(self) -> None:
        shutil.rmtree(self.local.parent, ignore_errors=True)
        if self.remote:
            storage.remove_tree(self.remote.rpartition("/")[0])


def model_cache_dir() -> Path:
    """The model cache: `models/` in the cache root ($NST_CACHE_DIR or ~/.cache/nst-video)."""
    return cache_dir() / "models"


def data_identity(videos: Sequence[str | os.PathLike], images_dir: str | None) -> list[dict]:
    """The identity of the training data: of each video, then of each image of the folder."""
    found = [storage.identity(str(video)) for video in videos]
    if images_dir is not None:
        found += [storage.identity(str(path)) for path in folder_images(images_dir)]
    return found


def training_key(style_sha256: Sequence[str], data: Sequence[dict], settings: TrainSettings) -> str:
    """sha256 of what determines a trained network (see the module docstring)."""
    identity = {
        "styles": list(style_sha256),
        "data": list(data),
        "settings": settings.stable_hash(),
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Plateau:
    """Stop when the best smoothed loss improved by less than `tolerance` in `patience` steps."""

    def __init__(self, tolerance: float, patience: int) -> None:
        self.tolerance = tolerance
        self.patience = patience
        self.smoothed: float | None = None
        self.best: list[float] = []

    def update(self, loss: float) -> bool:
        """Record a step's loss; True once the plateau is reached."""
        previous = self.smoothed
        self.smoothed = loss if previous is None else previous + SMOOTHING * (loss - previous)
        self.best.append(min(self.smoothed, self.best[-1]) if self.best else self.smoothed)
        return self.stopped

    @property
    def stopped(self) -> bool:
        if self.tolerance <= 0 or len(self.best) <= self.patience:
            return False
        before = self.best[-1 - self.patience]
        return before - self.best[-1] <= self.tolerance * abs(before)


@dataclass
class Run:
    """Where a training stands: steps done, seconds spent, the terms of every step."""

    step: int = 0
    seconds: float = 0.0
    history: list[list[float]] = field(default_factory=list)

    def plateau(self, settings: TrainSettings) -> Plateau:
        """The plateau detector replayed over the history (a resumed run stops where the
        uninterrupted one would)."""
        plateau = Plateau(settings.tolerance, settings.patience)
        for terms in self.history:
            plateau.update(terms[0])
        return plateau

    def final_terms(self) -> dict[str, float]:
        recent = np.asarray(self.history[-FINAL_WINDOW:], dtype="float64")
        return dict(zip(TERM_NAMES, (float(v) for v in recent.mean(axis=0)), strict=True))

    def loss_curve(self) -> list[list[float]]:
        """[step, total loss] at up to CURVE_POINTS steps, for plots."""
        every = max(1, -(-len(self.history) // CURVE_POINTS))
        picks = [*range(0, len(self.history), every), len(self.history) - 1]
        return [[i + 1, self.history[i][0]] for i in sorted(set(picks))]


def save_checkpoint(path: Path, key: str, run: Run, state: TrainerState) -> None:
    """Write the run and the trainer's state to `path` atomically (one .npz file)."""
    meta = {"key": key, "step": run.step, "seconds": run.seconds, "history": run.history}
    arrays = {f"weight_{i}": w for i, w in enumerate(state.weights)}
    arrays |= {f"optimizer_{i}": v for i, v in enumerate(state.optimizer)}
    meta["rng"] = state.rng
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)


def load_checkpoint(path: Path, key: str) -> tuple[Run, TrainerState] | None:
    """The run and trainer state saved at `path` for training `key`, or None."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["key"] != key:
            return None
        state = TrainerState(
            weights=_numbered(saved, "weight"),
            optimizer=_numbered(saved, "optimizer"),
            rng=meta["rng"],
        )
    return Run(meta["step"], meta["seconds"], meta["history"]), state


def _numbered(saved, prefix: str) -> list[np.ndarray]:
    count = sum(1 for name in saved.files if name.startswith(prefix + "_"))
    return [saved[f"{prefix}_{i}"] for i in range(count)]


def check_model_destination(out: str) -> None:
    """Fail before any work when `out` cannot receive a model file."""
    if not out.endswith(SUFFIX):
        raise InvalidInputError(f"{out}: a fast-mode model file must end in {SUFFIX}")
    if not out.startswith("s3://"):
        check_writable(Path(out))


def build_trainer(
    styles: Sequence[np.ndarray], settings: TrainSettings, weights: WeightsInfo | None = None
) -> Trainer:
    """A fresh network (seeded) and its Trainer, with the blended Gram targets of `styles`.

    Style images are scaled so their longest side is style_scale x the training frames'.
    """
    layers = (*settings.content_layers, *settings.style_layers)
    features = feature_model(layers, settings.pooling, weights)  # float32: the Trainer casts
    n_content = len(settings.content_layers)
    longest = max(1, round(settings.style_scale * settings.size))
    sized = [_style_at(style, longest, min_side(layers)) for style in styles]
    grams = blended_style_grams(features, n_content, sized, settings.blend_weights(len(styles)))
    net = build_fastnet(FastNetConfig(settings.width, settings.residual_blocks), settings.seed)
    return Trainer(
        net,
        features,
        n_content,
        grams,
        Objective.from_settings(settings),
        learning_rate=settings.learning_rate,
        seed=settings.seed,
        precision=settings.precision,
    )


def _style_at(style: np.ndarray, longest: int, smallest: int) -> np.ndarray:
    size = Size.of(style).scale_to(longest)
    if size.shortest < smallest:
        raise InvalidSettingsError(
            f"style image too small at style_scale: {size} px, the layers need {smallest} px"
        )
    return resize(style, size)


def run_steps(
    trainer: Trainer,
    sampler: CropSampler,
    run: Run,
    settings: TrainSettings,
    save: Callable[[Run], None],
    progress: Progress | None = None,
) -> None:
    """Train from `run.step` to settings.steps or a plateau; `save` every checkpoint_every
    steps (not after the last)."""
    plateau = run.plateau(settings)
    with_previous = settings.frame_weight > 0
    started = time.perf_counter()
    while run.step < settings.steps and not plateau.stopped:
        frames, previous = sampler.batch(run.step)
        terms = trainer.step(frames, previous if with_previous else None)
        run.step += 1
        run.history.append(terms.as_array().tolist())
        plateau.update(terms.total)
        if progress:
            progress(run.step, terms)
        if run.step % settings.checkpoint_every == 0 and run.step < settings.steps:
            run.seconds += time.perf_counter() - started
            started = time.perf_counter()
            save(run)
    run.seconds += time.perf_counter() - started


def train_style(
    style_paths: Sequence[str | os.PathLike],
    videos: Sequence[str | os.PathLike],
    images_dir: str | os.PathLike | None,
    settings: TrainSettings,
    out: str,
    *,
    progress: Progress | None = None,
    work_dir: str | os.PathLike | None = None,
    identities: list[dict] | None = None,
    weights: WeightsInfo | None = None,
) -> ModelCard:
    """Train a network for `style_paths` on frames of local `videos` (+ images of
    `images_dir`) and save it to `out` (a `.keras` path or s3:// URI); returns its card.

    `progress(step, terms)` is called after every step. A rerun of a killed training
    resumes from its last checkpoint. `identities` replaces the data's identity in the key
    (the flow passes those of the original s3:// URIs, which a download does not keep).
    """
    check_model_destination(out)
    styles = [load_image(path) for path in style_paths]
    style_sha256 = [file_sha256(path) for path in style_paths]
    images = None if images_dir is None else str(images_dir)
    data_id = identities if identities is not None else data_identity(videos, images)
    key = training_key(style_sha256, data_id, settings)
    data = load_training_data(
        videos,
        images,
        size=settings.size,
        frames_per_video=settings.frames_per_video,
        crop=settings.crop,
    )
    trainer = build_trainer(styles, settings, weights)
    place = CheckpointPlace.of(work_dir, key)
    place.pull()
    run, resumed_from = _resume(trainer, place.local, key)

    def save(at: Run) -> None:
        save_checkpoint(place.local, key, at, trainer.snapshot())
        place.push()

    sampler = CropSampler(data, settings.crop, settings.batch_size, settings.seed)
    run_steps(trainer, sampler, run, settings, save, progress)
    described = {**data.describe(), "identity": data_id}
    card = _card(trainer, settings, style_paths, style_sha256, described, key, run, resumed_from)
    _save_model(trainer.sync(), card, out, place.local.parent)
    place.remove()
    return card


def _resume(trainer: Trainer, checkpoint: Path, key: str) -> tuple[Run, int]:
    """(run, step resumed from): the checkpoint's, restored into `trainer`, or a fresh one."""
    saved = load_checkpoint(checkpoint, key)
    if saved is None:
        return Run(), 0
    run, state = saved
    trainer.restore(state)
    return run, run.step


def _card(
    trainer: Trainer,
    settings: TrainSettings,
    style_paths: Sequence[str | os.PathLike],
    style_sha256: list[str],
    data: dict,
    key: str,
    run: Run,
    resumed_from: int,
) -> ModelCard:
    import keras

    training = {
        "key": key,
        "styles": [Path(path).name for path in style_paths],
        "data": data,
        "steps": run.step,
        "stopped_early": run.step < settings.steps,
        "resumed_from_step": resumed_from,
        "precision": trainer.precision,  # settings keep "auto"; this is what it trained in
        "seconds": round(run.seconds, 3),
        "final": run.final_terms(),
        "loss_curve": run.loss_curve(),
    }
    return ModelCard(
        network=config_of(trainer.net),
        style_sha256=tuple(style_sha256),
        settings=settings.model_dump(mode="json"),
        settings_hash=settings.stable_hash(),
        training=training,
        backend=keras.backend.backend(),
        versions=runtime_versions(),
    )


def _save_model(net, card: ModelCard, out: str, folder: Path) -> None:
    """Save locally (atomically) or stage in `folder` and publish to S3."""
    if not out.startswith("s3://"):
        save_fast_model(net, card, out)
        return
    folder.mkdir(parents=True, exist_ok=True)
    staged = save_fast_model(net, card, folder / f"model{SUFFIX}")
    storage.publish(staged, out)


def cached_model(
    style_paths: Sequence[str | os.PathLike],
    videos: Sequence[str | os.PathLike],
    settings: TrainSettings,
    *,
    images_dir: str | os.PathLike | None = None,
    identities: list[dict] | None = None,
    progress: Progress | None = None,
    weights: WeightsInfo | None = None,
) -> Path:
    """The cached model for these styles, data and settings, trained first when missing.

    The file is `model_cache_dir()/<key>.keras`, `key` as in training_key (the module
    docstring): equal styles (bytes), data (identity) and settings find the same model.
    """
    images = None if images_dir is None else str(images_dir)
    data_id = identities if identities is not None else data_identity(videos, images)
    key = training_key([file_sha256(path) for path in style_paths], data_id, settings)
    path = model_cache_dir() / f"{key}{SUFFIX}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        train_style(
            style_paths,
            videos,
            images,
            settings,
            str(path),
            progress=progress,
            identities=data_id,
            weights=weights,
        )
    return path
