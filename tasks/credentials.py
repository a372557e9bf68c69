"""S3 credentials from a Prefect block instead of boto3's default credential chain.

When ``NST_AWS_CREDENTIALS_BLOCK`` names a prefect-aws ``AwsCredentials`` block, every S3
client (``tasks.storage.s3_client``) is built from that block: its keys, session token or
profile, region, and its client parameters (endpoint URL, TLS verification, botocore config
on top of ours). Unset or empty: boto3's default chain, as before. An environment variable
rather than a flow parameter, so that it reaches every process that touches storage (chunk
tasks, Dask workers, batch subflows) and can be set per deployment through
``job_variables.env``. prefect-aws is the optional ``aws`` extra, imported only when a block
is named. The secret is read by boto3 only: nothing here logs the block or puts it in an
error message.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

from nst_video.nst_core.errors import InvalidSettingsError

BLOCK_ENV = "NST_AWS_CREDENTIALS_BLOCK"


def block_name() -> str | None:
    """The AwsCredentials block named by ``NST_AWS_CREDENTIALS_BLOCK``, None when unset."""
    return os.environ.get(BLOCK_ENV, "").strip() or None


def s3_session(config: Config) -> tuple[boto3.session.Session, dict[str, Any]]:
    """A boto3 session and the keyword arguments of its S3 client (``config`` included).

    From the named block when there is one (its client config merged over ``config``),
    else a fresh session on the default chain.
    """
    name = block_name()
    if name is None:
        return boto3.session.Session(), {"config": config}
    block = load_block(name)
    params = block.aws_client_parameters.get_params_override()
    block_config = params.pop("config", None)
    params["config"] = config.merge(block_config) if block_config else config
    return block.get_boto3_session(), params


def load_block(name: str) -> Any:
    """The saved ``AwsCredentials`` block ``name``; InvalidSettingsError in one line if not."""
    try:
        from prefect_aws import AwsCredentials
    except ImportError:
        raise InvalidSettingsError(
            f"{BLOCK_ENV}={name!r} needs prefect-aws: pip install 'nst-video[aws]'"
        ) from None
    try:
        return AwsCredentials.load(name, _sync=True)
    except ValueError:  # Prefect's "Unable to find block document named ..."
        raise InvalidSettingsError(
            f"{BLOCK_ENV}: no AwsCredentials block named {name!r} on the Prefect server"
        ) from None
    except Exception as error:  # unreachable server, bad schema: the text may hold the data
        raise InvalidSettingsError(
            f"{BLOCK_ENV}: cannot load AwsCredentials block {name!r} ({type(error).__name__})"
        ) from None
