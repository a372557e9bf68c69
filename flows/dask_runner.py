"""Chunks of one video on a Dask cluster: prefect-dask's DaskTaskRunner, API URL handled.

Every process that runs a Prefect task must reach a Prefect API. Without PREFECT_API_URL a
Dask worker starts its own temporary server (ephemeral mode: seconds per worker, and its
runs never show on the flow's server). So:
- a LocalCluster (`workers=N`) gets the flow's API URL in its workers' environment (Nanny
  `env`): PREFECT_API_URL if set, else the URL of this process's temporary server;
- a cluster given by `address` runs workers we did not start: they must have
  PREFECT_API_URL themselves, and reach the job's staging (tasks/staging.py): an s3://
  work dir, or an s3:// output (the job stages beside it), with S3 credentials on the
  workers, needs no shared filesystem (tests/deployments/test_dask_shared_nothing.py); a
  local work dir must be on a filesystem they share. We warn when this process has no
  real server to point them at.
"""

from __future__ import annotations

import logging

from prefect.settings import PREFECT_API_URL
from prefect_dask import DaskTaskRunner

log = logging.getLogger(__name__)


def prefect_api_url() -> str:
    """The API this process talks to: PREFECT_API_URL, or the temporary server it started."""
    from prefect.client.orchestration import get_client

    if url := PREFECT_API_URL.value():
        return url
    with get_client(sync_client=True) as client:  # starts (or reuses) the ephemeral server
        return str(client.api_url)


class ApiUrlDaskTaskRunner(DaskTaskRunner):
    """DaskTaskRunner whose LocalCluster workers report to this flow's Prefect API."""

    def __enter__(self):
        if not self.address and not self.cluster_class:
            env = dict(self.cluster_kwargs.get("env") or {})
            env.setdefault("PREFECT_API_URL", prefect_api_url())
            self.cluster_kwargs = {**self.cluster_kwargs, "env": env}
        return super().__enter__()


def dask_task_runner(address: str | None = None, workers: int | None = None) -> DaskTaskRunner:
    """A task runner on the Dask scheduler at `address`, or on a new LocalCluster of
    `workers` single-threaded processes (one chain per process)."""
    if address:
        if not PREFECT_API_URL.value():  # the environment, a profile or temporary_settings
            log.warning(
                "PREFECT_API_URL is not set: the Dask workers at %s need it to report "
                "their task runs (else each starts its own temporary Prefect server)",
                address,
            )
        return ApiUrlDaskTaskRunner(address=address)
    kwargs = {"n_workers": workers or 2, "threads_per_worker": 1, "processes": True}
    return ApiUrlDaskTaskRunner(cluster_kwargs={**kwargs, "dashboard_address": None})
