"""The ffmpeg binaries, their command lines, and the processes that run them.

Every process is started from an argument list (never a shell string); a long-running one has
its stderr drained in a thread so that no pipe can fill up and block, and it is killed and
reaped when the caller stops early or fails: no zombies, no stray ffmpeg. Command lines with
an output are built with ffmpeg-python (`command`): one keyword per option, in the order
ffmpeg needs (input options before their -i, global options together).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import IO, Any

import ffmpeg as ffmpeg_python

from nst_video.nst_core.errors import InvalidInputError, NSTError

MIN_FFMPEG_VERSION = (6, 0)  # -fps_mode, -display_rotation, showinfo checksum=0
SCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int"
QUIET = ("-hide_banner", "-nostdin", "-v", "error")  # global options of most commands
_TAIL_LINES = 20  # stderr lines kept for error messages


class FFmpegError(NSTError):
    """ffmpeg failed on an input we had accepted; the message quotes its last stderr lines."""


# --------------------------------------------------------------------------- binaries


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: PATH first (if >= MIN_FFMPEG_VERSION), else imageio-ffmpeg's.

    An old system ffmpeg (Debian 11 ships 4.3) lacks options used here, hence the check.
    """
    return _pick_ffmpeg()


def ffprobe_exe() -> str | None:
    """Path of ffprobe on PATH, or None: it is optional (imageio-ffmpeg does not ship one)."""
    return shutil.which("ffprobe")


@cache
def _pick_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found and ffmpeg_version(found) >= MIN_FFMPEG_VERSION:
        return found
    import imageio_ffmpeg  # lazy: only needed without a recent system ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@cache
def ffmpeg_version(exe: str | None = None) -> tuple[int, int]:
    """(major, minor) of an ffmpeg binary; git snapshots ("N-12345-g...") count as newest."""
    out = run([exe or ffmpeg_exe(), "-hide_banner", "-version"]).stdout
    match = re.search(r"version n?(\d+)\.(\d+)", out)
    if match:
        return int(match.group(1)), int(match.group(2))
    return (99, 0) if re.search(r"version N-", out) else (0, 0)


def ffinput(path: Path | str, **options: Any) -> Any:
    """An ffmpeg-python input node; `options` are input options (they precede its -i)."""
    return ffmpeg_python.input(str(path), **options)


def command(
    *streams: Any, out: Path | str, global_args: Sequence[str] = QUIET, **options: Any
) -> list[str]:
    """The argument list writing `streams` (ffmpeg-python nodes; each selected stream gets a
    -map) to `out` with output `options` (keys as ffmpeg spells them: "c:v", "frames:v")."""
    node = ffmpeg_python.output(*streams, str(out), **options).global_args(*global_args)
    return node.compile(cmd=ffmpeg_exe())


# --------------------------------------------------------------------------- processes


def run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion, capturing both streams (no deadlock: run drains)."""
    return subprocess.run(
        list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


class StderrTail(threading.Thread):
    """Drain a process's stderr so it never blocks; keep the last lines for error messages.

    ``on_line`` (optional) sees every line first; lines it returns True for are consumed and
    not kept (the timing pass parses one showinfo line per frame this way).
    """

    def __init__(self, stream: IO[bytes], on_line: Callable[[str], bool] | None = None) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._on_line = on_line
        self.lines: deque[str] = deque(maxlen=_TAIL_LINES)

    def run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if self._on_line is None or not self._on_line(line):
                self.lines.append(line)


@contextmanager
def started(
    args: Sequence[str],
    *,
    stdin: bool = False,
    stdout: bool = False,
    on_stderr: Callable[[str], bool] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], StderrTail]]:
    """Start ffmpeg with the pipes asked for; on exit kill it if still running, then reap it."""
    proc = subprocess.Popen(
        list(args),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tail = StderrTail(proc.stderr, on_stderr)  # type: ignore[arg-type]
    tail.start()
    try:
        yield proc, tail
    finally:
        _reap(proc, tail)


def finish(proc: subprocess.Popen[bytes], tail: StderrTail) -> int:
    """Wait for the exit status and for the drain thread to have read the last lines."""
    rc = proc.wait()
    tail.join(timeout=10)
    return rc


def _reap(proc: subprocess.Popen[bytes], tail: StderrTail) -> None:
    """Kill (if needed) and wait for the process, close its pipes, join the drain thread."""
    if proc.poll() is None:
        proc.kill()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with suppress(OSError):  # BrokenPipeError flushing stdin of a dead process
                pipe.close()
    proc.wait()
    tail.join(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()


# --------------------------------------------------------------------------- errors


def clean(line: str) -> str:
    """Drop ffmpeg's "[component @ 0x...]" prefix from a log line."""
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip()


def failure(path: Path, rc: int, lines: Iterable[str]) -> FFmpegError:
    """An FFmpegError quoting the last meaningful stderr lines on one line."""
    kept = [clean(x) for x in lines if clean(x)]
    quoted = " | ".join(kept[-3:]) or "no error output"
    return FFmpegError(f"{path}: ffmpeg failed (exit {rc}): {quoted}")


def run_checked(path: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """`run`, raising an FFmpegError about `path` on a non-zero exit."""
    proc = run(args)
    if proc.returncode != 0:
        raise failure(path, proc.returncode, proc.stderr.splitlines())
    return proc


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """The path as a Path if it is a readable, non-empty regular file; else InvalidInputError."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file")
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a folder, not a video file")
    if p.stat().st_size == 0:
        raise InvalidInputError(f"{p}: file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InvalidInputError(f"{p}: not readable (permission denied)")
    return p
