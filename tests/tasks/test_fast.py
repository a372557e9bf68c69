"""tasks.fast: a fast-mode chunk on real ffmpeg with a tiny real network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import fast, storage, video
from nst_video.tasks.plan import Chunk
from nst_video.tasks.staging import Staging
from nst_video.tasks.stylize import stylize_chunk
from tests.fast_models import tiny_model

SETTINGS = make_video_settings(size=48)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


@pytest.fixture
def model(style, tmp_path):
    return tiny_model(tmp_path / "tiny.keras", [style])


def test_chunk_is_stylized_frame_by_frame_and_marked(basic, model, style, tmp_path):
    segment, staging = tmp_path / "chunks" / "chunk_0001.mp4", Staging(str(tmp_path))
    result = fast.stylize_chunk_fast(basic, model, [style], SETTINGS, Chunk(1, 4, 5, 0), staging)
    assert (result.start, result.frames, result.warmup, result.iterations) == (4, 5, 0, 0)
    assert video.probe(segment).frame_count == 5 and result.processing == [48, 36]
    assert SETTINGS.precision == "auto" and result.precision == resolve_precision("auto")
    source = np.stack(list(video.read_frames(basic, start=4, count=5, size=48))).astype(float)
    styled = np.stack(list(video.read_frames(segment))).astype(float)
    assert np.abs(styled - source).mean() > 5  # stylized, not copied
    assert json.loads(segment.with_suffix(".json").read_text())["frames"] == 5


def test_finished_chunk_is_not_recomputed(basic, model, style, tmp_path):
    segment, staging = tmp_path / "chunks" / "chunk_0000.mp4", Staging(str(tmp_path))
    first = fast.stylize_chunk_fast(basic, model, [style], SETTINGS, Chunk(0, 0, 4, 0), staging)
    written = segment.stat().st_mtime_ns
    again = fast.stylize_chunk_fast(basic, model, [style], SETTINGS, Chunk(0, 0, 4, 0), staging)
    assert again.resumed and again.seconds == first.seconds
    assert segment.stat().st_mtime_ns == written


def test_optimization_chunks_still_resume_through_the_shared_marker(basic, style, tmp_path):
    settings = make_video_settings(size=48, first_iterations=2, iterations=1, tolerance=0.0)
    staging = Staging(str(tmp_path))
    first = stylize_chunk(basic, [style], settings, Chunk(0, 0, 2, 0), staging)
    again = stylize_chunk(basic, [style], settings, Chunk(0, 0, 2, 0), staging)
    assert not first.resumed and again.resumed and again.iterations == first.iterations == 3
    assert again.precision == first.precision == resolve_precision("auto")


def test_network_is_loaded_once_per_file_content(model, style, tmp_path):
    first, card = fast.cached_network(model, [style])
    assert fast.cached_network(model, [style])[0] is first
    tiny_model(model, [style], seed=2)  # the same path, another network
    assert fast.cached_network(model, [style])[0] is not first
    assert card.network.width == 4


def test_a_model_runs_in_any_precision_asked_for(model, style):
    # The card records how it was trained; inference precision is the run's own choice.
    for precision in ("float32", "bfloat16", "auto"):
        net, _ = fast.cached_network(model, [style], precision)
        expected = resolve_precision(precision)
        assert net.layers[-1].compute_dtype == expected


def test_a_model_for_other_styles_is_refused(model, assets):
    other = str(assets / "styles" / "the_scream.jpg")
    with pytest.raises(InvalidInputError, match="trained for other styles"):
        fast.model_record(model, [other])


def test_s3_model_is_fetched_once_and_hashed(s3_endpoint, s3_bucket, model, tmp_path):
    from tests.s3 import admin_client

    admin_client(s3_endpoint).upload_file(str(model), s3_bucket, "models/tiny.keras")
    uri = f"s3://{s3_bucket}/models/tiny.keras"
    local, sha256 = fast.fetch_model(uri, tmp_path / "work")
    assert sha256 == fast.file_sha256(model) and local.read_bytes() == model.read_bytes()
    mtime = local.stat().st_mtime_ns
    assert fast.fetch_model(uri, tmp_path / "work") == (local, sha256)
    assert local.stat().st_mtime_ns == mtime  # reused, not downloaded again


def test_a_local_model_is_staged_once_by_content_for_a_pools_workers(model, s3_bucket, tmp_path):
    root = f"s3://{s3_bucket}/out/.nst-staging"
    staged = fast.model_for_workers(str(model), root)
    assert staged.startswith(f"{root}/models/") and staged.endswith("-tiny.keras")
    fetched = storage.fetch(staged, tmp_path / "worker")
    assert fetched.read_bytes() == model.read_bytes()
    assert fast.model_for_workers(str(model), root) == staged  # same bytes: same object
    assert fast.model_for_workers(staged, root) == staged  # on S3 already
    assert fast.model_for_workers(str(model), str(tmp_path / "w")) == str(model)  # local staging
