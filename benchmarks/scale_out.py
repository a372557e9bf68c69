"""A batch fanned out over a work pool: 1 worker against 2, and what orchestration costs.

Real parts as in production, on one machine: `prefect server start`, moto's S3 server on
127.0.0.1 (inputs, style, outputs and staging in a bucket), the on-demand deployment of
deployments/prefect.yaml, process workers (`prefect worker start --pool gpu --limit 1`),
each in its own HOME and folder and pinned to its own core (`taskset`, one TensorFlow
thread): a worker stands for a GPU. `nst batch s3://... --fan-out pool --concurrency 4`
stylizes N clips (24 frames of the bundled clip from a different offset each, 2 chunks,
64 px) once with worker W1 alone and once with W1 and W2.

Figures, from the API (run and task-run times, the worker that ran each) and the manifests:
- throughput ratio: 1-worker batch wall over 2-worker batch wall (target >= 1.8);
- per-video overhead: worker time not spent stylizing, per video, i.e.
  (workers x batch wall - stylization seconds) / N (target <= 3 s); stylization is the
  chunks' and keyframes' own seconds. Split into the gap a worker is idle between two runs
  (poll, process start, imports) and the run's own non-stylizing time, by task;
- per-chunk overhead: a stylize-chunk task run's wall time minus the chunk's own seconds
  (target <= 0.5 s).
A warm-up batch of one clip runs first and is not counted (first imports, disk cache).
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from benchmarks.common import REPO_ROOT, Report, markdown_table

CLIPS, QUICK_CLIPS = 8, 4
FRAMES, CHUNK_FRAMES, OFFSET_FRAMES = 24, 12, 8
SETTINGS = ("--size", "64", "--first-iterations", "20", "--iterations", "5", "--tolerance", "0")
CONCURRENCY = 4
TARGETS = {"throughput_ratio": 1.8, "overhead_per_video_s": 3.0, "overhead_per_chunk_s": 0.5}
SOURCE = REPO_ROOT / "assets" / "videos" / "bottles_with_tone.mp4"
STYLE = REPO_ROOT / "assets" / "styles" / "starry_night.jpg"
BIN = Path(sys.executable).parent
BUCKET = "bench"
QUERY_SECONDS = "2"  # how often a worker asks for runs: the Dockerfile's (Prefect's: 10)
START_SECONDS = 120.0  # for a worker to register with the server: a condition
# Each worker's environment beyond the server's: one core, one TensorFlow thread.
ONE_CORE = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def make_clips(folder: Path, count: int) -> list[Path]:
    """`count` clips of FRAMES frames (with audio), from a different offset of SOURCE each."""
    from nst_video.tasks.video import ffmpeg_exe, probe

    fps = float(probe(SOURCE).avg_fps)
    clips = []
    for i in range(count):
        out = folder / f"clip_{i:02d}.mp4"
        offset = (i * OFFSET_FRAMES) % (90 - FRAMES) / fps
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", "-ss", f"{offset:.3f}", "-i", str(SOURCE),
             "-frames:v", str(FRAMES), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
             "-shortest", str(out)],
            check=True,
        )  # fmt: skip
        clips.append(out)
    return clips


def start_s3() -> tuple[object, dict]:
    """moto's S3 server on 127.0.0.1 in this process; -> (server, env pointing boto3 at it)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return server, env


def s3_client(env: dict):
    import boto3

    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])


def prefect(env: dict, *args: str) -> None:
    subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args], env=env, cwd=REPO_ROOT, check=True,
        capture_output=True,
    )  # fmt: skip


def start_worker(name: str, core: int, env: dict, root: Path) -> subprocess.Popen:
    """A process worker of pool `gpu` on CPU `core`, in its own home and working folder."""
    home = root / name
    (home / "prefect").mkdir(parents=True)
    own = {**env, **ONE_CORE, "HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    with open(root / f"{name}.log", "w") as log:
        return subprocess.Popen(
            ["taskset", "-c", str(core), str(BIN / "prefect"), "worker", "start", "--pool", "gpu",
             "--limit", "1", "--name", name],
            env=own, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_registered(client, names: list[str]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        online = {w.name for w in client.read_workers_for_work_pool("gpu")}
        if set(names) <= online:
            return
        time.sleep(0.5)
    raise RuntimeError(f"workers {names} did not register in {START_SECONDS} s")


def run_batch(env: dict, prefix: str, output: str, cwd: Path) -> tuple[dict, float]:
    """`nst batch` of s3://BUCKET/<prefix> over the pool; -> (JSON summary, wall seconds)."""
    command = [
        str(BIN / "nst"), "batch", f"s3://{BUCKET}/{prefix}", f"s3://{BUCKET}/styles/style.jpg",
        "-o", f"s3://{BUCKET}/{output}", "--fan-out", "pool", "--concurrency", str(CONCURRENCY),
        "--chunk-frames", str(CHUNK_FRAMES), "--overlap", "0", *SETTINGS, "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"nst batch failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout), wall


def batch_runs(client, since: float) -> tuple[object, list, list]:
    """The stylize-batch run started after `since` (epoch s), its video runs, their tasks."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    named = FlowFilter(name=FlowFilterName(any_=["stylize-batch"]))
    batches = client.read_flow_runs(flow_filter=named)
    (batch,) = [r for r in batches if r.start_time and r.start_time.timestamp() >= since]
    parent = FlowRunFilterParentFlowRunId(any_=[batch.id])
    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[c.id for c in children]))
    )
    return batch, children, tasks


def manifests(s3, output: str) -> dict[str, dict]:
    """Manifest of each video under s3://BUCKET/<output>/, by video file name."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{output}/").get("Contents", [])
    found = {}
    for item in listed:
        if item["Key"].endswith(".mp4.json"):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[Path(item["Key"]).name.removesuffix(".json")] = json.loads(body)
    return found


def stylize_seconds(manifest: dict) -> float:
    return sum(c["seconds"] for c in manifest["chunks"]) + sum(
        k["seconds"] for k in manifest["keyframes"]
    )


def _wall(run) -> float:
    return (run.end_time - run.start_time).total_seconds()


def idle_gaps(children: list) -> list[float]:
    """Per worker, the seconds between one run's end and the next run's start."""
    by_worker = defaultdict(list)
    for run in children:
        by_worker[run.labels.get("prefect.worker.name")].append(run)
    gaps = []
    for runs in by_worker.values():
        runs.sort(key=lambda r: r.start_time)
        gaps += [
            (b.start_time - a.end_time).total_seconds()
            for a, b in zip(runs, runs[1:], strict=False)
        ]
    return gaps


def task_seconds(tasks: list) -> dict[str, float]:
    """Total wall seconds of the top-level task runs of the videos, by task name."""
    totals: dict[str, float] = defaultdict(float)
    for run in tasks:
        if run.start_time and run.end_time and not run.task_inputs.get("__parents__"):
            totals[_task_name(run.name)] += _wall(run)
    return dict(totals)


def _task_name(run_name: str) -> str:
    """ "stylize chunk_001 (frames 12+12)" -> "stylize chunk"; "fetch-0f7" -> "fetch"."""
    if run_name.startswith("stylize "):
        return " ".join(run_name.split()[:2]).split("_")[0]
    return re.sub(r"-[0-9a-f]{1,3}$", "", run_name)


def run_phases(client, children: list, tasks: list) -> dict[str, float]:
    """Median seconds per video of the phases around its tasks: from Pending (a worker took
    it) to Running (its process started and imported the flow), from Running to its first
    task, and from its last task to its end."""
    starts, ends = defaultdict(list), defaultdict(list)
    for task_run in tasks:
        if task_run.start_time and task_run.end_time:
            starts[task_run.flow_run_id].append(task_run.start_time)
            ends[task_run.flow_run_id].append(task_run.end_time)
    phases = defaultdict(list)
    for run in children:
        states = {s.type.value: s.timestamp for s in client.read_flow_run_states(run.id)}
        if "PENDING" in states and "RUNNING" in states:
            phases["pending_to_running_s"].append(
                (states["RUNNING"] - states["PENDING"]).total_seconds()
            )
        phases["before_first_task_s"].append((min(starts[run.id]) - run.start_time).total_seconds())
        phases["after_last_task_s"].append((run.end_time - max(ends[run.id])).total_seconds())
    return {k: round(statistics.median(v), 2) for k, v in phases.items()}


def chunk_overheads(tasks: list, found: dict[str, dict], children: list) -> list[float]:
    """Each stylize-chunk task run's wall seconds minus its chunk's own seconds."""
    source_of = {run.id: Path(run.parameters["destination"]).name for run in children}
    overheads = []
    for run in tasks:
        if run.name.startswith("stylize chunk_") and run.end_time:
            index = int(run.name.split()[1].removeprefix("chunk_"))
            chunks = found[source_of[run.flow_run_id]]["chunks"]
            (chunk,) = [c for c in chunks if c["index"] == index]
            overheads.append(_wall(run) - chunk["seconds"])
    return overheads


class RequestCounter(logging.Handler):
    """Counts the S3 requests moto's server logs (werkzeug: one record per request) by method,
    instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if match := re.search(r'"([A-Z]+) ', record.getMessage()):
            self.counts[match.group(1)] += 1


def count_artifacts(client, children: list) -> int:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    ids = ArtifactFilterFlowRunId(any_=[c.id for c in children])
    return len(client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ids)))


def measure(
    client, s3, env: dict, workers: int, count: int, root: Path, requests: RequestCounter
) -> dict:
    output = f"out-{workers}"
    since = time.time()
    requests.counts.clear()
    summary, wall = run_batch(env, "in", output, root)
    s3_requests = dict(requests.counts)
    batch, children, tasks = batch_runs(client, since)
    found = manifests(s3, output)
    assert len(found) == count and all(r["status"] == "done" for r in summary["videos"]), summary
    used = {run.labels.get("prefect.worker.name") for run in children}
    assert len(used) == workers, used  # every worker took videos
    stylizing = sum(stylize_seconds(m) for m in found.values())
    runs_wall = sum(_wall(run) for run in children)
    gaps = idle_gaps(children)
    chunk_extra = chunk_overheads(tasks, found, children)
    by_task = task_seconds(tasks)
    # inside the stylize tasks but not in a chunk's or keyframe's own seconds: model set-up
    setup = by_task.get("stylize chunk", 0) + by_task.get("stylize keyframe", 0) - stylizing
    return {
        "workers": workers,
        "videos": count,
        "batch_wall_s": round(wall, 1),
        "batch_run_s": round(_wall(batch), 1),
        "stylize_s": round(stylizing, 1),
        "video_runs_s": round(runs_wall, 1),
        "overhead_per_video_s": round((workers * wall - stylizing) / count, 2),
        "in_run_overhead_per_video_s": round((runs_wall - stylizing) / count, 2),
        "stylize_tasks_setup_per_video_s": round(setup / count, 2),
        "idle_gap_median_s": round(statistics.median(gaps), 2) if gaps else None,
        "overhead_per_chunk_s": round(statistics.median(chunk_extra), 3),
        "overhead_per_chunk_max_s": round(max(chunk_extra), 3),
        "chunks": len(chunk_extra),
        "phases_per_video": run_phases(client, children, tasks),
        "task_seconds_per_video": {k: round(v / count, 2) for k, v in sorted(by_task.items())},
        "task_runs_per_video": round(len(tasks) / count, 1),
        "artifacts_per_video": round(count_artifacts(client, children) / count, 1),
        "s3_requests_per_video": {k: round(v / count, 1) for k, v in sorted(s3_requests.items())},
        "videos_by_worker": {
            name: sum(r.labels.get("prefect.worker.name") == name for r in children)
            for name in sorted(used)
        },
    }


def staging_left(s3) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return [item["Key"] for item in listed if "/.nst-staging/" in f"/{item['Key']}"]


def run_all(count: int, root: Path) -> tuple[list[dict], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nst_video.deployments.local_server import start_server, stop
    from nst_video.nst_core.weights import resolve_weights

    werkzeug = logging.getLogger("werkzeug")
    requests = RequestCounter()
    werkzeug.addHandler(requests)
    werkzeug.propagate = False  # counted, not printed
    werkzeug.setLevel(logging.INFO)
    server, aws = start_s3()
    (root / "server").mkdir()
    proc, _, prefect_env = start_server(root / "server")
    env = {k: v for k, v in prefect_env.items() if not k.startswith(("AWS_", "NST_WORK_DIR"))}
    env |= aws | {
        "AWS_CONFIG_FILE": str(root / "absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "absent"),
        "NST_REPO": str(REPO_ROOT),
        "NST_VGG19_WEIGHTS": str(resolve_weights().path),
        "PREFECT_WORKER_QUERY_SECONDS": QUERY_SECONDS,
    }
    workers: list[subprocess.Popen] = []
    try:
        s3 = s3_client(aws)
        s3.create_bucket(Bucket=BUCKET)
        (root / "clips").mkdir()
        clips = make_clips(root / "clips", count)
        for clip in clips:
            s3.upload_file(str(clip), BUCKET, f"in/{clip.name}")
        s3.upload_file(str(clips[0]), BUCKET, f"warm/{clips[0].name}")
        s3.upload_file(str(STYLE), BUCKET, "styles/style.jpg")
        prefect(env, "work-pool", "create", "gpu", "--type", "process")
        prefect(env, "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "on-demand")
        rows = []
        with (
            temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
            get_client(sync_client=True) as client,
        ):
            for count_workers in (1, 2):
                names = [f"W{i + 1}-of-{count_workers}" for i in range(count_workers)]
                workers = [start_worker(n, i, env, root) for i, n in enumerate(names)]
                wait_registered(client, names)
                if count_workers == 1:
                    run_batch(env, "warm", "warm-out", root)
                rows.append(measure(client, s3, env, count_workers, count, root, requests))
                print(rows[-1], flush=True)
                for worker in workers:
                    stop(worker)
                workers = []
        return rows, staging_left(s3)
    finally:
        for worker in workers:
            stop(worker)
        stop(proc)
        server.stop()
        werkzeug.removeHandler(requests)


def _plot(rows: list[dict]):
    """Batch wall time; a worker's time per video, stacked; per-chunk overhead."""

    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        labels = [f"{r['workers']} worker{'s' * (r['workers'] > 1)}" for r in rows]
        axes[0].bar(labels, [r["batch_wall_s"] for r in rows], color=["C0", "C2"])
        axes[0].set_title(f"batch of {rows[0]['videos']} videos: wall s")
        parts = {
            "stylizing": [r["stylize_s"] / r["videos"] for r in rows],
            "in the run, not stylizing": [r["in_run_overhead_per_video_s"] for r in rows],
            "outside runs (process, imports, polls)": [
                r["overhead_per_video_s"] - r["in_run_overhead_per_video_s"] for r in rows
            ],
        }
        bottom = [0.0] * len(rows)
        for label, values in parts.items():
            axes[1].bar(labels, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        # the target bounds the overhead, so it sits on top of each bar's stylizing seconds
        within = [s + TARGETS["overhead_per_video_s"] for s in parts["stylizing"]]
        left, right = [i - 0.4 for i in range(len(rows))], [i + 0.4 for i in range(len(rows))]
        axes[1].hlines(within, left, right, colors="k", linestyles="--", linewidth=1)
        axes[1].set_ylim(0, max(bottom) * 1.45)
        axes[1].set_title("worker seconds per video (dashed: within target)")
        axes[1].legend(fontsize=7, loc="upper left")
        axes[2].bar(labels, [r["overhead_per_chunk_s"] for r in rows], color=["C0", "C2"])
        axes[2].axhline(TARGETS["overhead_per_chunk_s"], color="k", linestyle="--", linewidth=1)
        axes[2].set_title("overhead per chunk, s (dashed: target)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return draw


def run(quick: bool) -> Report:
    count = QUICK_CLIPS if quick else CLIPS
    with tempfile.TemporaryDirectory(prefix="nst-scale-out-") as tmp:
        rows, left = run_all(count, Path(tmp))
    one, two = rows
    ratio = round(one["batch_wall_s"] / two["batch_wall_s"], 2)
    keys = ("workers", "batch_wall_s", "stylize_s", "overhead_per_video_s",
            "in_run_overhead_per_video_s", "idle_gap_median_s", "overhead_per_chunk_s")  # fmt: skip
    table = markdown_table(keys, [[r[k] for k in keys] for r in rows])
    table += f"\n\nthroughput 2 workers / 1 worker: {ratio}x; targets: {TARGETS}"
    table += f"\nstaging objects left in the bucket: {len(left)}"
    config = {
        "clips": count, "frames": FRAMES, "chunk_frames": CHUNK_FRAMES, "settings": SETTINGS,
        "concurrency": CONCURRENCY, "source": SOURCE.name, "style": STYLE.name,
        "worker": "process worker, --limit 1, pinned to one core, one TensorFlow thread",
    }  # fmt: skip
    extra = {"throughput_ratio": ratio, "targets": TARGETS, "staging_left": left}
    return Report(results=rows, table=table, config=config, extra=extra, plot=_plot(rows))
