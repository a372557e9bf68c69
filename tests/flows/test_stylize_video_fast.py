"""The stylize-video flow in fast mode: real Prefect server, real ffmpeg, a tiny real network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nst_video.flows.stylize_video import stylize_video
from nst_video.nst_core.errors import InvalidInputError, InvalidSettingsError
from nst_video.nst_core.fast_model import file_sha256
from nst_video.nst_core.settings import make_train_settings, make_video_settings
from nst_video.nst_core.weights.cache import CACHE_FILE, SIDECAR_FILE, cache_dir
from nst_video.tasks import stylize as stylize_module
from nst_video.tasks import video
from tests.fast_models import tiny_model
from tests.media import md5

SETTINGS = make_video_settings(size=48)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


@pytest.fixture
def model(style, tmp_path) -> Path:
    return tiny_model(tmp_path / "tiny.keras", [style])


def _run(source, style, model, out: Path, tmp_path: Path, **params) -> dict:
    return stylize_video(
        str(source),
        [style],
        str(out),
        SETTINGS,
        work_dir=str(tmp_path / "work"),
        mode="fast",
        model=str(model),
        **params,
    )


def _x264_crf(path: Path) -> str:
    match = re.search(rb"crf=(\d+\.\d+)", path.read_bytes()[:65536])
    assert match, f"{path}: no x264 settings SEI"
    return match.group(1).decode()


def test_fast_run_keeps_frames_fps_duration_and_audio(
    prefect_api_url, with_long_audio, style, model, tmp_path
):
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    manifest = _run(with_long_audio, style, model, out, tmp_path, chunk_frames=5)
    source, styled = video.probe(with_long_audio), video.probe(out)
    assert styled.frame_count == source.frame_count == 12
    assert styled.avg_fps == source.avg_fps
    assert abs(styled.duration - source.duration) < 1e-6
    assert styled.has_audio and (styled.width, styled.height) == (48, 36)
    assert [(c["start"], c["warmup"]) for c in manifest["chunks"]] == [(0, 0), (5, 0), (10, 0)]
    assert _x264_crf(out) == "18.0"  # segments concatenated, encoded once at the asked CRF
    assert manifest["mode"] == "fast" and manifest["video"]["cuts"] == []
    assert manifest["model"]["sha256"] == file_sha256(model)
    assert manifest["model"]["card"]["network"] == {"width": 4, "residual_blocks": 1}
    assert manifest["totals"]["iterations"] == 0 and manifest["totals"]["frames"] == 12
    assert manifest["identity"]["model_sha256"] == file_sha256(model)
    quality = manifest["quality"]  # no warm-up: every chunk boundary is a seam of one pair
    assert quality["seam_frames"] == [5, 10] and len(quality["seam_jumps"]) == 2
    assert quality["seam_jump"] >= 0 and quality["still_churn_255"] >= 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.mp4", "styled.mp4.json"]
    assert not (tmp_path / "work" / manifest["job_id"]).exists()


def test_two_chunks_give_exactly_the_frames_of_one(prefect_api_url, basic, style, model, tmp_path):
    # CRF 0 is lossless H.264: any difference would be the network's, i.e. a seam.
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    whole = _run(basic, style, model, one, tmp_path, chunk_frames=12, crf=0)
    split = _run(basic, style, model, two, tmp_path, chunk_frames=6, crf=0)
    assert (len(whole["chunks"]), len(split["chunks"])) == (1, 2)
    assert whole["job_id"] != split["job_id"]
    frames_one, frames_two = (np.stack(list(video.read_frames(p))) for p in (one, two))
    assert frames_one.shape == (12, 36, 48, 3)
    np.testing.assert_array_equal(frames_one, frames_two)


def test_killed_run_resumes_without_recomputing_finished_chunks(
    prefect_api_url, with_short_audio, style, model, tmp_path, monkeypatch
):
    real_write = stylize_module.write_frames
    calls: list[Path] = []

    def failing_second_chunk(frames, path, *args, **kwargs):
        calls.append(Path(path))
        if len(calls) == 2:
            raise InvalidInputError(f"{path}: disk full (injected)")
        return real_write(frames, path, *args, **kwargs)

    monkeypatch.setattr(stylize_module, "write_frames", failing_second_chunk)
    out = tmp_path / "styled.mp4"
    with pytest.raises(InvalidInputError, match="disk full"):
        _run(with_short_audio, style, model, out, tmp_path, chunk_frames=6)
    assert not out.exists()
    monkeypatch.setattr(stylize_module, "write_frames", real_write)
    manifest = _run(with_short_audio, style, model, out, tmp_path, chunk_frames=6)
    assert [c["resumed"] for c in manifest["chunks"]] == [True, False]
    assert manifest["totals"]["resumed_chunks"] == 1
    assert video.probe(out).frame_count == 12 and md5(out, "0:a") == md5(with_short_audio, "0:a")


def test_s3_to_s3_with_s3_model(
    prefect_api_url, s3_endpoint, s3_bucket, with_long_audio, style, model, tmp_path
):
    from tests.s3 import admin_client

    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(with_long_audio), s3_bucket, "in/clip.mp4")
    s3.upload_file(style, s3_bucket, "styles/starry.jpg")
    s3.upload_file(str(model), s3_bucket, "models/tiny.keras")
    manifest = stylize_video(
        f"s3://{s3_bucket}/in/clip.mp4",
        [f"s3://{s3_bucket}/styles/starry.jpg"],
        f"s3://{s3_bucket}/out/clip.mp4",
        SETTINGS,
        chunk_frames=5,
        work_dir=str(tmp_path / "w"),
        mode="fast",
        model=f"s3://{s3_bucket}/models/tiny.keras",
    )
    s3.download_file(s3_bucket, "out/clip.mp4", str(tmp_path / "got.mp4"))
    got, source = video.probe(tmp_path / "got.mp4"), video.probe(with_long_audio)
    assert got.frame_count == 12 and got.has_audio and got.avg_fps == source.avg_fps
    assert abs(got.duration - source.duration) < 1e-6
    body = s3.get_object(Bucket=s3_bucket, Key="out/clip.mp4.json")["Body"].read()
    assert json.loads(body)["model"]["sha256"] == file_sha256(model) == manifest["model"]["sha256"]


def test_model_for_other_styles_fails_before_any_chunk(
    prefect_api_url, basic, assets, model, tmp_path
):
    out = tmp_path / "o.mp4"
    other = str(assets / "styles" / "the_scream.jpg")
    with pytest.raises(InvalidInputError, match="trained for other styles") as caught:
        _run(basic, other, model, out, tmp_path)
    assert "\n" not in str(caught.value) and not out.exists()


def test_model_without_fast_mode_is_refused(prefect_api_url, basic, style, model, tmp_path):
    with pytest.raises(InvalidSettingsError, match="only used with --mode fast"):
        stylize_video(str(basic), [style], str(tmp_path / "o.mp4"), SETTINGS, model=str(model))


def test_fast_mode_without_a_model_trains_once_then_reuses_it(
    prefect_api_url, basic, style, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in (CACHE_FILE, SIDECAR_FILE):  # the real VGG19 weights, in the moved cache
        (cache / name).symlink_to(cache_dir() / name)
    monkeypatch.setenv("NST_CACHE_DIR", str(cache))
    training = make_train_settings(
        width=4, residual_blocks=1, steps=2, batch_size=1, crop=16, frames_per_video=2, size=48
    )

    def run(name: str) -> dict:
        return stylize_video(
            str(basic), [style], str(tmp_path / name), SETTINGS,
            work_dir=str(tmp_path / "work"), mode="fast", training=training,
        )  # fmt: skip

    first = run("a.mp4")
    (model,) = (cache / "models").glob("*.keras")
    trained_at = model.stat().st_mtime_ns
    second = run("b.mp4")
    assert first["model"]["sha256"] == second["model"]["sha256"] == file_sha256(model)
    assert first["model"]["card"]["training"]["steps"] == 2
    assert model.stat().st_mtime_ns == trained_at  # found in the cache, not trained again
    assert video.probe(tmp_path / "b.mp4").frame_count == video.probe(basic).frame_count
