"""One real (temporary, local) Prefect server for every flow and CLI test of the session.

A pytest plugin (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_api_url():
    """Start Prefect's test server once; yields its API URL (for subprocesses too)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()
