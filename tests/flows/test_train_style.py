"""The train-style flow on a real Prefect server, real ffmpeg and VGG19, local and S3."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from nst_video.flows.train_style import train_style
from nst_video.nst_core.fast_model import file_sha256, load_fast_model
from nst_video.nst_core.settings import TrainSettings

TINY = TrainSettings(
    size=48, crop=32, batch_size=2, width=4, residual_blocks=1, steps=3, frames_per_video=2
)


def _artifacts(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_run_shows_progress_loss_curve_and_card(prefect_api_url, basic, assets, tmp_path):
    style = str(assets / "styles" / "starry_night.jpg")
    out = tmp_path / "model.keras"
    state = train_style(
        [style], [str(basic)], str(out), TINY, work_dir=str(tmp_path / "w"), return_state=True
    )
    assert state.is_completed()
    card = state.result()
    assert load_fast_model(out, (file_sha256(style),))[1].as_dict() == card
    artifacts = _artifacts(state.state_details.flow_run_id)
    progress = [a for a in artifacts if a.type == "progress"]
    assert [float(a.data) for a in progress] == [100.0]
    markdown = {a.key: a.data for a in artifacts if a.type == "markdown"}
    assert "data:image/png;base64," in markdown["training-loss"]
    assert card["settings_hash"] in markdown["training-card"]
    assert list((tmp_path / "w").glob("*")) == []  # staging and checkpoints removed


def test_s3_styles_videos_model_and_work_dir(
    prefect_api_url, s3_endpoint, s3_bucket, basic, assets, tmp_path, monkeypatch, vgg_weights
):
    from tests.s3 import admin_client

    monkeypatch.chdir(tmp_path)  # an s3:// work dir must not become a local "s3:" folder
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NST_VGG19_WEIGHTS", str(vgg_weights.path))

    s3 = admin_client(s3_endpoint)
    s3.upload_file(str(basic), s3_bucket, "in/clip.mp4")
    s3.upload_file(str(assets / "styles" / "the_scream.jpg"), s3_bucket, "styles/scream.jpg")
    destination = f"s3://{s3_bucket}/models/scream.keras"
    card = train_style(
        [f"s3://{s3_bucket}/styles/scream.jpg"],
        [f"s3://{s3_bucket}/in/clip.mp4"],
        destination,
        TINY.model_copy(update={"checkpoint_every": 1}),
        work_dir=f"s3://{s3_bucket}/work",
    )
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert keys == {"in/clip.mp4", "styles/scream.jpg", "models/scream.keras"}  # no checkpoint
    assert card["style_sha256"] == [file_sha256(assets / "styles" / "the_scream.jpg")]
    (source,) = card["training"]["data"]["sources"]
    assert source["video"].endswith("clip.mp4") and source["frames"] == 2  # the staged copy
    (identity,) = card["training"]["data"]["identity"]
    assert identity["uri"] == f"s3://{s3_bucket}/in/clip.mp4"  # the original
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # downloads, checkpoints
    assert card["training"]["steps"] == 3
