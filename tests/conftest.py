"""Shared fixtures: small real images and the real (offline-provisioned) VGG19 weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import prefect  # noqa: F401  (configures Prefect's log handlers before any test captures stderr)
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["tests.media", "tests.s3", "tests.prefect_server"]

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def vgg_weights():
    """The real VGG19 weights, resolved once (provisioned by `make test` before pytest)."""
    from nst_video.nst_core.weights import resolve_weights

    return resolve_weights()


def _small(path: Path, longest: int) -> np.ndarray:
    from nst_video.nst_core.images import load_image, resize
    from nst_video.nst_core.size import Size

    image = load_image(path)
    return resize(image, Size.of(image).scale_to(longest))


@pytest.fixture(scope="session")
def content_64() -> np.ndarray:
    return _small(ASSETS / "content" / "bottles.jpg", 64)


@pytest.fixture(scope="session")
def starry_64() -> np.ndarray:
    return _small(ASSETS / "styles" / "starry_night.jpg", 64)


@pytest.fixture(scope="session")
def scream_64() -> np.ndarray:
    return _small(ASSETS / "styles" / "the_scream.jpg", 64)
