"""S3 credentials from a Prefect AwsCredentials block (tasks/credentials.py), on moto's S3
and a real Prefect server: the block's keys and endpoint are used, its secret shows nowhere."""

from __future__ import annotations

import importlib.util
import json
import logging
import uuid

import pytest

from nst_video.nst_core.errors import InvalidInputError, InvalidSettingsError
from nst_video.tasks import storage
from nst_video.tasks.credentials import BLOCK_ENV

HAS_PREFECT_AWS = importlib.util.find_spec("prefect_aws") is not None
needs_prefect_aws = pytest.mark.skipif(
    not HAS_PREFECT_AWS,
    reason="prefect-aws is not installed (the `aws` extra): installing it into this venv "
    "would downgrade boto3/botocore, so the block tests run where it is installed",
)
# AWS's documented example key pair: shaped like real keys, different from the environment's.
BLOCK_KEY_ID = "AKIAI44QH8DHBEXAMPLE"
BLOCK_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
_ENV_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")


@pytest.mark.skipif(HAS_PREFECT_AWS, reason="checks the message shown without prefect-aws")
def test_a_block_name_without_prefect_aws_is_one_line_naming_the_extra(s3_bucket, monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "nst-s3")
    with pytest.raises(InvalidSettingsError) as caught:
        storage.read_text(f"s3://{s3_bucket}/manifest.json")
    message = str(caught.value)
    assert "nst-s3" in message and "nst-video[aws]" in message and "\n" not in message


def test_an_empty_block_name_keeps_the_default_chain(s3_bucket, monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "  ")
    uri = storage.write_text(f"s3://{s3_bucket}/a.txt", "default chain")
    assert storage.read_text(uri) == "default chain"


@pytest.fixture
def block_only(prefect_api_url, s3_endpoint, monkeypatch) -> str:
    """A saved AwsCredentials block holding moto's endpoint and its own keys; the
    environment keeps no keys and no endpoint, so only the block can make S3 work."""
    from prefect_aws import AwsCredentials

    name = f"nst-test-{uuid.uuid4().hex[:8]}"
    AwsCredentials(
        aws_access_key_id=BLOCK_KEY_ID,
        aws_secret_access_key=BLOCK_SECRET,
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": s3_endpoint},
    ).save(name, overwrite=True, _sync=True)
    for variable in _ENV_CREDENTIALS:
        monkeypatch.delenv(variable, raising=False)
    return name


@needs_prefect_aws
def test_the_block_supplies_keys_and_endpoint(block_only, s3_bucket, monkeypatch, tmp_path):
    with pytest.raises(storage.StorageError, match="no AWS credentials"):
        storage.read_text(f"s3://{s3_bucket}/a.txt")  # nothing in the environment
    monkeypatch.setenv(BLOCK_ENV, block_only)
    uri = storage.write_text(f"s3://{s3_bucket}/a.txt", "through the block")
    assert storage.read_text(uri) == "through the block"
    (tmp_path / "v.bin").write_bytes(b"\x00video")
    storage.publish(tmp_path / "v.bin", f"s3://{s3_bucket}/out/v.bin")
    assert storage.fetch(f"s3://{s3_bucket}/out/v.bin", tmp_path / "s").read_bytes() == (
        b"\x00video"
    )


@needs_prefect_aws
def test_an_unknown_block_is_one_line_naming_it(prefect_api_url, s3_bucket, monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "no-such-block")
    with pytest.raises(InvalidSettingsError, match="no AwsCredentials block named 'no-such-block'"):
        storage.read_text(f"s3://{s3_bucket}/a.txt")


@needs_prefect_aws
def test_the_secret_shows_in_no_log_artifact_manifest_or_error(
    block_only, s3_bucket, monkeypatch, assets, basic, tmp_path, caplog
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from nst_video.flows.stylize_video import stylize_video
    from nst_video.nst_core.settings import make_video_settings

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(BLOCK_ENV, block_only)
    storage.publish(basic, f"s3://{s3_bucket}/in/clip.mp4")
    storage.publish(assets / "styles" / "the_scream.jpg", f"s3://{s3_bucket}/styles/s.jpg")
    settings = make_video_settings(size=48, first_iterations=3, iterations=2, tolerance=0.0)
    state = stylize_video(
        f"s3://{s3_bucket}/in/clip.mp4",
        [f"s3://{s3_bucket}/styles/s.jpg"],
        f"s3://{s3_bucket}/out/clip.mp4",
        settings,
        chunk_frames=6,
        work_dir=str(tmp_path / "w"),
        return_state=True,
    )
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    manifest = storage.read_text(f"s3://{s3_bucket}/out/clip.mp4.json")
    with pytest.raises(InvalidInputError) as missing:
        storage.read_text(f"s3://{s3_bucket}/nope.json")
    assert logs and artifacts and json.loads(manifest)["job_id"]
    seen = [
        caplog.text,
        manifest,
        str(missing.value),
        *(entry.message for entry in logs),
        *(json.dumps(a.data) for a in artifacts),
    ]
    assert not [text for text in seen if BLOCK_SECRET in text]
