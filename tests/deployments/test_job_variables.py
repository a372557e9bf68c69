"""deployments/validate.py's job-variable check: what a process worker reads, no secrets."""

from __future__ import annotations

import pytest
import yaml

from nst_video.deployments.validate import (
    PREFECT_YAML,
    DeploymentConfigError,
    check_job_variables,
)


def _pool(**job_variables) -> dict:
    return {"name": "gpu", "job_variables": job_variables}


def test_the_shipped_deployments_use_process_job_variables_only():
    for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]:
        check_job_variables(entry["name"], entry.get("work_pool"))


def test_a_credentials_block_name_in_env_is_accepted():
    variables = check_job_variables("d", _pool(env={"NST_AWS_CREDENTIALS_BLOCK": "s3-prod"}))
    assert variables["env"] == {"NST_AWS_CREDENTIALS_BLOCK": "s3-prod"}


def test_an_unknown_job_variable_names_the_deployment_and_the_known_ones():
    with pytest.raises(DeploymentConfigError, match=r"'d'.*envs.*known: .*env"):
        check_job_variables("d", _pool(envs={"A": "b"}))


def test_a_wrongly_typed_job_variable_is_refused():
    with pytest.raises(DeploymentConfigError, match="'d': bad job variables: env"):
        check_job_variables("d", _pool(env=["NST_AWS_CREDENTIALS_BLOCK=s3-prod"]))


def test_an_aws_secret_in_env_is_refused_without_showing_it():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(DeploymentConfigError) as caught:
        check_job_variables("d", _pool(env={"AWS_SECRET_ACCESS_KEY": secret}))
    assert "AWS_SECRET_ACCESS_KEY" in str(caught.value) and secret not in str(caught.value)
