"""Runs tests/nst_core/test_jax_step.py under KERAS_BACKEND=jax, in a child process.

Keras fixes its backend at import, and this suite's process runs TensorFlow; the child gets
JAX, with this Python as the TensorFlow reference (NST_TF_PYTHON). Every JAX test must run:
a skip there (no JAX, no weights) fails here unless JAX is missing from this venv.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_the_jax_step_passes_its_tests_under_the_jax_backend(vgg_weights):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "NST_TF_PYTHON": sys.executable,
        "NST_VGG19_WEIGHTS": str(vgg_weights.path),
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--noconftest",
            "-rs",
            str(ROOT / "tests" / "nst_core" / "test_jax_step.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 5, summary
    assert "skipped" not in summary, done.stdout[-2000:]
