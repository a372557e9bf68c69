"""Shared pieces of the benchmarks: machine description, statistics, tables, result files."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Report:
    """What a benchmark hands back to the runner, which writes and prints it."""

    results: list[dict]
    table: str
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    plot: Callable[[Path], None] | None = None


def _cpu_model() -> str:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


# Environment variables that change how TensorFlow runs on the CPU.
_ENV_PREFIXES = ("TF_CPP", "TF_ENABLE", "TF_XLA", "TF_NUM", "TF_INTRA", "TF_INTER", "XLA_", "OMP_")


def _source_hash(folder: Path) -> str:
    """sha256 over the working tree's .py files: which code was measured, committed or not."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def load_snapshot(top: int = 5) -> dict:
    """1/5/15-minute load averages and the busiest other processes (name and %CPU)."""
    snapshot: dict = {"loadavg": list(os.getloadavg()), **cpu_counters()}
    try:
        lines = subprocess.run(
            ["ps", "-eo", "pid=,pcpu=,comm=", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return snapshot
    busy = []
    for line in lines:
        pid, pcpu, comm = line.split(None, 2)
        if int(pid) != os.getpid() and float(pcpu) >= 5.0:
            busy.append({"pid": int(pid), "cpu_percent": float(pcpu), "name": comm})
    snapshot["busy_processes"] = busy[:top]
    return snapshot


def cpu_counters() -> dict:
    """Monotonic time, this process's CPU seconds, and system-wide busy/steal CPU seconds."""
    own = os.times()
    counters = {"monotonic_s": time.monotonic(), "own_cpu_s": own.user + own.system}
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return counters
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    counters["system_busy_cpu_s"] = (user + nice + system + irq + softirq) / tick
    counters["steal_cpu_s"] = steal / tick
    return counters


def interference(before: dict, after: dict) -> dict:
    """Share of all CPUs, over a run, busy with other processes or stolen by the hypervisor."""
    wall = after["monotonic_s"] - before["monotonic_s"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if "system_busy_cpu_s" not in before or wall <= 0:
        return {}
    busy = after["system_busy_cpu_s"] - before["system_busy_cpu_s"]
    own = after["own_cpu_s"] - before["own_cpu_s"]
    steal = after["steal_cpu_s"] - before["steal_cpu_s"]
    return {
        "own_cpu_share": round(own / (wall * cpus), 3),
        "others_cpu_share": round(max(0.0, busy - own) / (wall * cpus), 3),
        "steal_share": round(steal / (wall * cpus), 3),
    }


def machine_info() -> dict:
    """CPU, core counts and library versions: what a timing means depends on all of them."""
    import keras
    import numpy as np
    import tensorflow as tf

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return {
        "cpu": _cpu_model(),
        "logical_cpus": cpus,
        "usable_cpus": usable,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "threading_env": {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)},
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_paths": (_git("status", "--porcelain", "--", "nst_core") or "").splitlines(),
        "nst_core_sha256": _source_hash(REPO_ROOT / "nst_core"),
    }


def machine_line(machine: dict) -> str:
    return (
        f"{machine['cpu']}, {machine['usable_cpus']}/{machine['logical_cpus']} CPUs usable, "
        f"GPUs: {len(machine['gpus'])}, TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}, Python {machine['python']}"
    )


def command_line() -> str:
    return " ".join(["python -m benchmarks", *sys.argv[1:]])


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summarize(values: Sequence[float]) -> dict:
    """Median and spread of repeated measurements."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        p25, _, p75 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        p25 = p75 = ordered[0]
    median = statistics.median(ordered)
    return {
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
        "p25": p25,
        "p75": p75,
        "iqr_over_median": (p75 - p25) / median if median else None,
        "n": len(ordered),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    """Write atomically so an interrupted run never leaves a half-written result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
