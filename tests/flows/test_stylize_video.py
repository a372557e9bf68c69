"""The stylize-video flow on a real Prefect server with real ffmpeg and VGG19 (48 px frames)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from nst_video.flows.stylize_video import stylize_video
from nst_video.nst_core.errors import InvalidInputError, InvalidSettingsError
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import stylize as stylize_module
from nst_video.tasks import video
from nst_video.tasks.quality import opencv_available
from tests.media import md5

FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


def _run(source, style, out: Path, tmp_path: Path, **params) -> dict:
    return stylize_video(
        str(source), [style], str(out), FAST, work_dir=str(tmp_path / "work"), **params
    )


def _x264_crf(path: Path) -> str:
    """The CRF libx264 wrote into its settings SEI (first frame, in the first kilobytes)."""
    match = re.search(rb"crf=(\d+\.\d+)", path.read_bytes()[:65536])
    assert match, f"{path}: no x264 settings SEI"
    return match.group(1).decode()


def test_chunked_run_keeps_frames_fps_and_audio(prefect_api_url, with_long_audio, style, tmp_path):
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    manifest = _run(with_long_audio, style, out, tmp_path, chunk_frames=4, overlap=2)
    source, styled = video.probe(with_long_audio), video.probe(out)
    assert styled.frame_count == source.frame_count == 12
    assert styled.avg_fps == source.avg_fps
    assert abs(styled.duration - source.duration) < 1e-6
    assert styled.has_audio and (styled.width, styled.height) == (48, 36)
    assert [c["start"] for c in manifest["chunks"]] == [0, 4, 8]
    assert [c["warmup"] for c in manifest["chunks"]] == [0, 2, 2]
    assert [k["index"] for k in manifest["keyframes"]] == [0]  # one shot, one keyframe
    iterations = [c["iterations"] for c in manifest["chunks"]] + [6]
    assert manifest["totals"]["iterations"] == sum(iterations)
    assert _x264_crf(out) == "18.0"  # cross-faded and encoded once more at the default CRF
    assert manifest["totals"]["frames"] == 12 and manifest["totals"]["resumed_chunks"] == 0
    on_disk = json.loads(Path(str(out) + ".json").read_text())
    assert on_disk["job_id"] == manifest["job_id"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.mp4", "styled.mp4.json"]
    assert not (tmp_path / "work" / manifest["job_id"]).exists()  # staging cleaned up


def test_audio_is_bit_exact_and_rerun_does_nothing(
    prefect_api_url, with_short_audio, style, tmp_path
):
    out = tmp_path / "styled.mp4"
    first = _run(with_short_audio, style, out, tmp_path, chunk_frames=5)
    assert md5(out, "0:a") == md5(with_short_audio, "0:a")
    before = out.stat().st_mtime_ns
    again = _run(with_short_audio, style, out, tmp_path, chunk_frames=5)
    assert again["skipped"] and again["job_id"] == first["job_id"]
    assert out.stat().st_mtime_ns == before


def test_a_one_chunk_clip_is_encoded_at_the_requested_crf(prefect_api_url, basic, style, tmp_path):
    out = tmp_path / "styled.mp4"
    manifest = _run(basic, style, out, tmp_path, crf=23)  # 12 frames, overlap 8: one chunk
    assert [(c["start"], c["warmup"]) for c in manifest["chunks"]] == [(0, 0)]
    assert _x264_crf(out) == "23.0"


def test_run_shows_progress_table_and_link_in_the_ui(prefect_api_url, basic, style, tmp_path):
    out = tmp_path / "styled.mp4"
    state = stylize_video(
        str(basic),
        [style],
        str(out),
        FAST,
        chunk_frames=6,
        work_dir=str(tmp_path / "w"),
        return_state=True,
    )
    assert state.is_completed()
    artifacts = _artifacts(state)
    progress = [a for a in artifacts if a.type == "progress"]
    assert [float(a.data) for a in progress if a.task_run_id is None] == [100.0]  # the flow's
    of_chunks = {a.description: float(a.data) for a in progress if a.task_run_id}
    chunks = state.result()["chunks"]
    assert len(chunks) > 1
    assert of_chunks == {f"frames of chunk_{c['index']:04d}": 100.0 for c in chunks}
    markdown = [a.data for a in artifacts if a.type == "markdown"]
    assert any("| chunk |" in m and "| 1 |" in m for m in markdown)
    assert any("data:image/jpeg;base64," in m for m in markdown)
    links = [a.data for a in artifacts if a.description == "stylized video"]
    assert links == [f"[styled.mp4]({out.as_uri()})"]


def _artifacts(state) -> list:
    """The artifacts of a finished flow run."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )


def test_manifest_and_summary_carry_the_quality_figures(prefect_api_url, basic, style, tmp_path):
    settings = make_video_settings(size=48, first_iterations=3, iterations=2, tolerance=0.0)
    out = tmp_path / "styled.mp4"
    state = stylize_video(
        str(basic),
        [style],
        str(out),
        settings,
        chunk_frames=6,
        overlap=2,
        work_dir=str(tmp_path / "w"),
        motion_fidelity_samples=1,
        return_state=True,
    )
    quality = state.result()["quality"]
    assert quality["frames"] == 12 and quality["size"] == [48, 36]
    assert quality["seam_frames"] == [6] and len(quality["seam_jumps"]) == 1
    figures = ["seam_jump", "seam_still_drift_255", "still_churn_255", "interior_change_p95_255"]
    figures += ["motion_fidelity", *(["warp_error"] if opencv_available() else [])]
    assert all(math.isfinite(quality[name]) for name in figures), quality
    assert [pair["frames"] for pair in quality["motion_fidelity_pairs"]] == [[0, 11]]
    assert json.loads(Path(f"{out}.json").read_text())["quality"] == quality
    summary = next(a.data for a in _artifacts(state) if a.key == "stylize-summary")
    assert "| seam jump |" in summary and "| motion fidelity |" in summary


def test_scene_cut_starts_a_chunk_cold(prefect_api_url, two_scenes, style, tmp_path):
    settings = make_video_settings(**{**FAST.model_dump(), "scene_threshold": 0.3})
    manifest = stylize_video(
        str(two_scenes),
        [style],
        str(tmp_path / "o.mp4"),
        settings,
        chunk_frames=10,
        overlap=3,
        work_dir=str(tmp_path / "w"),
    )
    assert manifest["video"]["cuts"] == [12]
    assert [(c["start"], c["warmup"]) for c in manifest["chunks"]] == [(0, 0), (12, 0), (22, 3)]
    assert [k["index"] for k in manifest["keyframes"]] == [0, 12]
    assert [c["iterations"] for c in manifest["chunks"]][:2] == [11 * 2, 9 * 2]  # replayed


@pytest.mark.parametrize("clip", ["odd", "rot90", "ten_bit", "full_range", "vfr", "one_frame"])
def test_formats_come_out_with_every_frame(prefect_api_url, clip, request, style, tmp_path):
    source = request.getfixturevalue(clip)
    out = tmp_path / "out.mp4"
    _run(source, style, out, tmp_path, chunk_frames=8)
    src, dst = video.probe(source), video.probe(out)
    assert dst.frame_count == src.frame_count
    assert abs(dst.duration - src.duration) < 0.05
    assert dst.rotation == 0 and (dst.width > dst.height) == (src.width > src.height)


def test_time_range_gives_matching_frames_and_audio(
    prefect_api_url, with_long_audio, style, tmp_path
):
    out = tmp_path / "part.mp4"
    manifest = _run(with_long_audio, style, out, tmp_path, start=0.1, duration=0.2)
    info = video.probe(out)
    assert info.frame_count == 6 == manifest["totals"]["frames"]
    assert manifest["video"]["first_frame"] == 3
    assert info.has_audio and info.duration == pytest.approx(0.2)


def test_a_failing_chunk_fails_the_flow_and_publishes_nothing(
    prefect_api_url, basic, style, tmp_path, monkeypatch
):
    real_write = stylize_module.write_frames
    calls = []

    def failing_second_chunk(frames, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise InvalidInputError(f"{path}: disk full (injected)")
        return real_write(frames, path, *args, **kwargs)

    monkeypatch.setattr(stylize_module, "write_frames", failing_second_chunk)
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    state = stylize_video(
        str(basic),
        [style],
        str(out),
        FAST,
        chunk_frames=4,
        work_dir=str(tmp_path / "w"),
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(InvalidInputError, match="disk full"):
        state.result()
    assert list(out.parent.iterdir()) == []


def test_s3_to_s3_with_s3_style(
    prefect_api_url, s3_endpoint, s3_bucket, with_long_audio, assets, tmp_path
):
    from tests.s3 import admin_client

    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(with_long_audio), s3_bucket, "in/clip.mp4")
    s3.upload_file(str(assets / "styles" / "the_scream.jpg"), s3_bucket, "styles/scream.jpg")
    destination = f"s3://{s3_bucket}/out/clip.mp4"
    manifest = stylize_video(
        f"s3://{s3_bucket}/in/clip.mp4",
        [f"s3://{s3_bucket}/styles/scream.jpg"],
        destination,
        FAST,
        chunk_frames=5,
        work_dir=str(tmp_path / "w"),
    )
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {"out/clip.mp4", "out/clip.mp4.json"} <= keys
    s3.download_file(s3_bucket, "out/clip.mp4", str(tmp_path / "got.mp4"))
    got = video.probe(tmp_path / "got.mp4")
    assert got.frame_count == 12 and got.has_audio
    assert manifest["identity"]["source"]["etag"]
    assert (
        json.loads(s3.get_object(Bucket=s3_bucket, Key="out/clip.mp4.json")["Body"].read())[
            "job_id"
        ]
        == manifest["job_id"]
    )


def test_missing_s3_input_fails_with_one_clear_error(prefect_api_url, s3_bucket, style, tmp_path):
    state = stylize_video(
        f"s3://{s3_bucket}/nope.mp4",
        [style],
        str(tmp_path / "o.mp4"),
        FAST,
        work_dir=str(tmp_path / "w"),
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(InvalidInputError) as caught:
        state.result()
    assert "nope.mp4" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, r"needs the job's staging on S3 \(the pool's workers cannot read the local .*\): "
         r"give an s3:// --work-dir or an s3:// output"),
        ({"mode": "fast", "model": "m.keras"}, r"runs optimization chunks, not --mode fast "
         r"\(a fast chunk costs less than its run's start\): fan fast videos out per video, "
         r"with nst batch"),
    ],
)  # fmt: skip
def test_chunks_on_a_pool_need_s3_staging_and_optimization(
    prefect_api_url, basic, style, tmp_path, params, reason
):
    with pytest.raises(InvalidSettingsError, match=f"^--fan-out pool {reason}$"):
        _run(basic, style, tmp_path / "o.mp4", tmp_path, fan_out="pool", **params)
    assert not (tmp_path / "o.mp4").exists()
