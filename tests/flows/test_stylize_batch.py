"""The stylize-batch flow on a real Prefect server, real ffmpeg and VGG19 (48 px, 4 frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from nst_video.flows.stylize_batch import (
    BatchFailedError,
    is_video,
    output_for,
    plan_batch,
    run_stylize_batch,
    stylize_batch,
)
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks import video
from tests.media import lavfi
from tests.media import testsrc as lavfi_testsrc
from tests.s3 import admin_client

FAST = make_video_settings(size=48, first_iterations=6, iterations=2, tolerance=0.0)
PARAMS = {"chunk_frames": 8, "max_frames": 4}


@pytest.fixture
def style(assets) -> str:
    return str(assets / "styles" / "starry_night.jpg")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Three tiny clips in three containers (mp4, mov in a subfolder, mkv)."""
    folder = tmp_path_factory.mktemp("clips")
    (folder / "sub").mkdir()
    src = lavfi_testsrc("48x36", 6)
    return {
        "a.mp4": lavfi(folder / "a.mp4", src, "-c:v", "libx264", "-pix_fmt", "yuv420p"),
        "sub/b.mov": lavfi(folder / "sub" / "b.mov", src, "-c:v", "libx264", "-pix_fmt", "yuv420p"),
        "c.mkv": lavfi(folder / "c.mkv", src, "-c:v", "libx264", "-pix_fmt", "yuv420p"),
    }


@pytest.fixture
def mixed(tmp_path, clips, truncated) -> Path:
    """The three clips, a text file and a corrupt .mp4 (half of a real one)."""
    folder = tmp_path / "in"
    for rel, path in clips.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / rel)
    (folder / "notes.txt").write_text("not a video")
    shutil.copy(truncated, folder / "broken.mp4")
    return folder


def _artifacts(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


# --- pure planning: no Prefect --------------------------------------------------------------


def test_video_rule_and_glob():
    assert all(is_video(n) for n in ("a.mp4", "B.MOV", "c.mkv", "d.webm", "e.avi"))
    assert not any(is_video(n) for n in ("a.txt", "a.mp4.json", "mp4"))
    assert is_video("x.MTS", "*.mts") and not is_video("a.mp4", "*.mov")


def test_outputs_keep_the_tree_and_end_in_mp4(tmp_path):
    assert (
        output_for(str(tmp_path / "s" / "a" / "b.mov"), str(tmp_path / "s"), "/o") == "/o/a/b.mp4"
    )
    assert (
        output_for("s3://bk1/in/x/y.mkv", "s3://bk1/in", "s3://bk2/out") == "s3://bk2/out/x/y.mp4"
    )
    assert output_for("s3://bk1/y.mkv", "s3://bk1", "s3://bk2") == "s3://bk2/y.mp4"


def test_plan_ignores_other_files_collisions_and_own_outputs(tmp_path):
    for name in ("a.mp4", "a.mov", "n.txt", "out/a.mp4", "out/a.mp4.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    jobs, ignored = plan_batch(str(tmp_path), str(tmp_path / "out"))
    assert jobs == [(str(tmp_path / "a.mov"), str(tmp_path / "out" / "a.mp4"))]
    reasons = dict(ignored)
    assert reasons[str(tmp_path / "n.txt")] == "not a video"
    assert reasons[str(tmp_path / "a.mp4")].startswith("same output as")


# --- the flow -----------------------------------------------------------------------------------


def test_bad_video_fails_its_entry_and_rerun_skips_the_rest(
    prefect_api_url, mixed, style, tmp_path
):
    out = tmp_path / "out"
    state = stylize_batch(
        str(mixed), [style], str(out), FAST, concurrency=2, work_dir=str(tmp_path / "w"),
        return_state=True, **PARAMS,
    )  # fmt: skip
    assert state.is_failed() and "broken.mp4" in state.message
    error = state.result(raise_on_failure=False)
    assert isinstance(error, BatchFailedError)
    summary = error.summary
    by_name = {Path(r["video"]).name: r for r in summary["videos"]}
    assert {n: r["status"] for n, r in by_name.items()} == {
        "a.mp4": "done", "b.mov": "done", "c.mkv": "done", "broken.mp4": "failed",
    }  # fmt: skip
    assert by_name["broken.mp4"]["error"]
    assert summary["ignored"] == [{"file": str(mixed / "notes.txt"), "reason": "not a video"}]
    for rel in ("a.mp4", "sub/b.mp4", "c.mp4"):
        assert video.probe(out / rel).frame_count == 4
        assert json.loads((out / (rel + ".json")).read_text())["totals"]["frames"] == 4
    markdown = [a.data for a in _artifacts(state.state_details.flow_run_id) if a.type == "markdown"]
    assert any("| `" + str(mixed / "c.mkv") + "` | done | 4 |" in m for m in markdown)

    again = run_stylize_batch(
        str(mixed), [style], str(out), FAST, work_dir=str(tmp_path / "w"), **PARAMS
    )
    assert again["counts"] == {"done": 0, "skipped": 3, "failed": 1, "videos": 4, "ignored": 1}
    assert "broken.mp4" in again["error"]


def test_empty_folder_is_success_with_nothing_to_do(prefect_api_url, style, tmp_path):
    (tmp_path / "empty").mkdir()
    summary = stylize_batch(str(tmp_path / "empty"), [style], str(tmp_path / "out"), FAST)
    assert summary["videos"] == [] and summary["counts"]["videos"] == 0
    assert not (tmp_path / "out").exists()  # nothing to do: nothing created


def test_s3_prefix_to_s3_destination(
    prefect_api_url, s3_endpoint, s3_bucket, clips, style, tmp_path
):
    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(clips["a.mp4"]), s3_bucket, "in/a.mp4")
    s3.upload_file(str(clips["sub/b.mov"]), s3_bucket, "in/sub/b.mov")
    s3.put_object(Bucket=s3_bucket, Key="in/readme.txt", Body=b"hello")
    s3.put_object(Bucket=s3_bucket, Key="inbox/z.mp4", Body=b"not under the prefix")
    summary = stylize_batch(
        f"s3://{s3_bucket}/in", [style], f"s3://{s3_bucket}/out", FAST,
        work_dir=str(tmp_path / "w"), **PARAMS,
    )  # fmt: skip
    assert summary["counts"]["done"] == 2 and summary["counts"]["ignored"] == 1
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="out/")["Contents"]}
    assert keys == {"out/a.mp4", "out/a.mp4.json", "out/sub/b.mp4", "out/sub/b.mp4.json"}
    local = tmp_path / "b.mp4"
    s3.download_file(s3_bucket, "out/sub/b.mp4", str(local))
    assert video.probe(local).frame_count == 4


def test_unwritable_destination_fails_before_any_video(prefect_api_url, mixed, style, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    state = stylize_batch(
        str(mixed), [style], str(blocker / "out"), FAST, return_state=True, **PARAMS
    )
    assert state.is_failed() and "is not writable" in state.message
    assert not (blocker / "out").exists()


def test_bad_parameters_are_refused_before_the_run(prefect_api_url, style, tmp_path):
    with pytest.raises(Exception, match="concurrency"):
        stylize_batch(str(tmp_path), [style], str(tmp_path / "o"), FAST, concurrency=0)


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_batch_json_on_an_empty_folder(prefect_api_url, style, tmp_path, capsys):
    from nst_video.nst_cli.main import main

    (tmp_path / "in").mkdir()
    code = main(["batch", str(tmp_path / "in"), style, "-o", str(tmp_path / "o"), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["counts"]["videos"] == 0


def test_cli_video_refuses_two_dask_targets(basic, style, tmp_path, capsys):
    from nst_video.nst_cli.main import main

    args = ["video", str(basic), style, "-o", str(tmp_path / "o.mp4")]
    code = main([*args, "--dask-address", "tcp://127.0.0.1:1", "--dask-workers", "2"])
    assert code == 2 and "not both" in capsys.readouterr().err
