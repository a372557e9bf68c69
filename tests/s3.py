"""A real S3 endpoint for tests: moto's server on 127.0.0.1, spoken to over HTTP by boto3.

A pytest plugin (see tests/conftest.py): its fixtures serve every test module. All moto
servers in this process share one in-memory backend, so a bucket created through one is
seen through another (the outage tests use their own server on their own port).
"""

from __future__ import annotations

import functools
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.client import BaseClient

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# Fake, but shaped like real ones, so that redaction is exercised on realistic strings.
FAKE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "NST_S3_UNAVAILABLE_SECONDS",
)


def start_moto(port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start a moto server thread on 127.0.0.1 (``port`` 0: a free one); -> (server, URL)."""
    from moto.server import ThreadedMotoServer  # imported late: only S3 tests pay for it

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return server, f"http://{host}:{bound}"


@functools.cache
def admin_client(endpoint: str, service: str = "s3") -> BaseClient:
    """A client for test setup that does not go through tasks.storage (one per endpoint)."""
    return boto3.session.Session(
        aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET, region_name=REGION
    ).client(service, endpoint_url=endpoint)


@contextmanager
def iam_auth(endpoint: str) -> Iterator[None]:
    """Make moto check signatures and IAM policies (off by default), then turn it off.

    moto's ``/moto-api/reset-auth`` sets INITIAL_NO_AUTH_ACTION_COUNT for the server; 0 means
    every request from now on is authenticated against the IAM users moto knows.
    """
    _reset_auth(endpoint, b"0")
    try:
        yield
    finally:
        _reset_auth(endpoint, b"inf")


def _reset_auth(endpoint: str, count: bytes) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=count,
        headers={"Content-Type": "application/octet-stream"},  # not a form: moto reads the body
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server, with the environment pointing boto3 at it.

    Sets AWS_ENDPOINT_URL, fake credentials and a region, hides the developer's AWS config
    files and instance metadata (so no real credentials can be picked up), and restores the
    environment at the end of the session.
    """
    werkzeug = logging.getLogger("werkzeug")
    old_level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # one line per request otherwise
    server, url = start_moto()
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as mp:
        for name in _CLEARED_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", url)
        mp.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
        mp.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", str(Path(nowhere, "config")))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(Path(nowhere, "credentials")))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        try:
            yield url
        finally:
            server.stop()
            werkzeug.setLevel(old_level)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket (unique name) on the test endpoint."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin_client(s3_endpoint).create_bucket(Bucket=name)
    return name
