"""train_style on a real tiny clip and the real VGG19: card, checkpoints, resume, plateau stop,
and the model cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nst_video.nst_core.fast_model import file_sha256, load_fast_model
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import TrainSettings
from nst_video.tasks.train import CHECKPOINT, Plateau, cached_model, load_checkpoint, train_style
from tests.s3 import admin_client

TINY = TrainSettings(
    size=48,
    crop=32,
    batch_size=2,
    width=4,
    residual_blocks=1,
    steps=4,
    checkpoint_every=2,
    frames_per_video=4,
    tolerance=0,
)


class Crash(Exception):
    """Stands for a killed process (the CLI test kills a real one with SIGKILL)."""


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


def _train(style, basic, out, work, settings=TINY, **kwargs):
    return train_style([style], [basic], None, settings, str(out), work_dir=work, **kwargs)


def test_trains_saves_a_loadable_model_with_a_full_card(style, basic, tmp_path):
    out = tmp_path / "model.keras"
    seen: list[int] = []
    card = _train(style, basic, out, tmp_path / "w", progress=lambda step, _: seen.append(step))
    assert seen == [1, 2, 3, 4]
    net, loaded = load_fast_model(out, (file_sha256(style),))
    assert loaded == card
    assert card.settings_hash == TINY.stable_hash() and card.settings == TINY.model_dump(
        mode="json"
    )
    training = card.training
    assert training["steps"] == 4 and not training["stopped_early"]
    assert card.settings["precision"] == "auto"  # the key: the cache serves any machine
    assert training["precision"] == resolve_precision("auto")  # what it trained in here
    assert training["data"]["sources"] == [{"video": basic.name, "frames": 4}]
    assert set(training["final"]) == {"total", "content", "style", "tv", "noise", "frame"}
    assert training["final"]["frame"] > 0  # consecutive frames differ: the frame term is live
    assert [point[0] for point in training["loss_curve"]] == [1, 2, 3, 4]
    assert card.backend == "tensorflow" and "keras" in card.versions
    assert net(np.zeros((1, 20, 24, 3), "float32")).shape == (1, 20, 24, 3)
    assert list((tmp_path / "w").iterdir()) == []  # checkpoints removed with the training


def test_a_crashed_training_resumes_from_its_checkpoint_and_matches(style, basic, tmp_path):
    whole = _train(style, basic, tmp_path / "whole.keras", tmp_path / "w1")

    def crash_at_step_3(step, _terms):
        if step == 3:
            raise Crash

    out = tmp_path / "resumed.keras"
    with pytest.raises(Crash):
        _train(style, basic, out, tmp_path / "w2", progress=crash_at_step_3)
    assert not out.exists()
    (checkpoint,) = (tmp_path / "w2").glob(f"*/{CHECKPOINT}")
    run, _ = load_checkpoint(checkpoint, whole.training["key"])
    assert run.step == 2
    resumed = _train(style, basic, out, tmp_path / "w2")
    assert resumed.training["resumed_from_step"] == 2 and resumed.training["steps"] == 4
    # Same crops, noise, weights and Adam state: the same losses as the uninterrupted run.
    np.testing.assert_allclose(
        [p[1] for p in resumed.training["loss_curve"]],
        [p[1] for p in whole.training["loss_curve"]],
        rtol=1e-4,
    )


def test_a_training_with_an_s3_work_dir_resumes_on_another_machine(
    style, basic, tmp_path, s3_bucket, monkeypatch, vgg_weights
):
    """Machine A crashes after its step-2 checkpoint; machine B (another cache, nothing
    shared but the bucket) resumes from the uploaded checkpoint and cleans up after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NST_VGG19_WEIGHTS", str(vgg_weights.path))  # the caches move
    work = f"s3://{s3_bucket}/work"
    s3 = admin_client(os.environ["AWS_ENDPOINT_URL"])

    def crash_at_step_3(step, _terms):
        if step == 3:
            raise Crash

    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "machine_a"))
    with pytest.raises(Crash):
        _train(style, basic, tmp_path / "a.keras", work, progress=crash_at_step_3)
    (uploaded,) = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert uploaded.startswith("work/train-") and uploaded.endswith(f"/{CHECKPOINT}")
    assert not (tmp_path / "s3:").exists()  # an s3:// work dir is no local folder
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "machine_b"))
    out = f"s3://{s3_bucket}/models/b.keras"
    resumed = _train(style, basic, out, work)
    assert resumed.training["resumed_from_step"] == 2 and resumed.training["steps"] == 4
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["models/b.keras"]  # the checkpoint went with the finished training
    assert not list((tmp_path / "machine_b").rglob(CHECKPOINT))


def test_a_plateau_stops_training_early(style, basic, tmp_path):
    settings = TINY.model_copy(update={"steps": 50, "tolerance": 1.0, "patience": 2})
    card = _train(style, basic, tmp_path / "m.keras", tmp_path / "w", settings)
    assert card.training["stopped_early"] and card.training["steps"] == 3


def test_plateau_compares_the_best_smoothed_loss_over_patience():
    flat = Plateau(tolerance=0.01, patience=3)
    assert [flat.update(1.0) for _ in range(5)] == [False, False, False, True, True]
    falling = Plateau(tolerance=0.01, patience=3)
    assert not any(falling.update(0.5**i) for i in range(20))
    assert not any(Plateau(0, 1).update(1.0) for _ in range(5))  # 0 disables


def test_model_cache_trains_once_per_styles_data_and_settings(style, basic, tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NST_WORK_DIR", str(tmp_path / "work"))
    steps: list[int] = []
    first = cached_model([style], [basic], TINY, progress=lambda step, _: steps.append(step))
    assert first.parent == tmp_path / "cache" / "models" and first.is_file()
    made = first.stat().st_mtime_ns
    again = cached_model([style], [basic], TINY, progress=lambda step, _: steps.append(step))
    assert again == first and again.stat().st_mtime_ns == made
    assert steps == [1, 2, 3, 4]  # trained once
    other = cached_model([style], [basic], TINY.model_copy(update={"seed": 1, "steps": 1}))
    assert other != first and other.is_file()
    assert load_fast_model(first)[1].training["key"] == first.stem
