"""The `nst` command line: weights, image, video, demo, batch, report, jobs.

User errors print one line on stderr and exit 2 (usage) or 1 (runtime); no traceback.
Heavy imports (TensorFlow) happen inside commands so `nst --help` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from click.core import ParameterSource

# Before anything imports TensorFlow: keep its C++ start-up chatter off the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# A temporary Prefect server would otherwise try to send telemetry and log its failure.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from nst_video.flows.batch_options import CHUNK_DEPLOYMENT, VIDEO_DEPLOYMENT  # noqa: E402
from nst_video.nst_cli import options, train  # noqa: E402
from nst_video.nst_cli.progress import progress_bar  # noqa: E402
from nst_video.nst_core.settings import StyleSettings, VideoSettings  # noqa: E402  (pydantic only)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Neural style transfer (Gatys et al., VGG19) for images and videos.",
)

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def keras_backend() -> str:
    """The Keras backend this process will use, without importing Keras (env KERAS_BACKEND)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr muted: its C++ start-up logs ignore TF_CPP_MIN_LOG_LEVEL.

    Python exceptions still propagate; only the native library's banner is dropped.
    """
    if "tensorflow" in sys.modules:
        return
    if keras_backend() != "tensorflow":  # e.g. KERAS_BACKEND=jax: TensorFlow may be absent
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _prepare_run(vgg_weights: Path | None) -> None:
    """Hand the weights choice to the tasks (they resolve it again) and load TensorFlow."""
    if vgg_weights:
        os.environ["NST_VGG19_WEIGHTS"] = str(vgg_weights)
    import_tensorflow_quietly()


@app.command()
def weights(
    vgg_weights: options.VggWeights = None,
    verify: Annotated[bool, typer.Option(help="Re-hash the weights file and check it.")] = False,
    refetch: Annotated[bool, typer.Option(help="Drop the cache and fetch again.")] = False,
) -> None:
    """Find (or fetch) the VGG19 weights and say where they came from."""
    from nst_video.nst_core.weights import clear_cache, describe, resolve_weights

    if refetch:
        clear_cache()
    info = resolve_weights(vgg_weights, verify=verify)
    typer.echo(describe(info))


@app.command()
@options.settings_options(StyleSettings, options.IMAGE_SETTINGS)
def image(
    ctx: typer.Context,
    content: Annotated[Path, typer.Argument(help="Content image.")],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.")],
    output: options.Output,
    settings: StyleSettings,
    init_image: Path | None,
    vgg_weights: options.VggWeights = None,
    as_json: options.Json = False,
    mode: options.Mode = "optimize",
    model: options.Model = None,
) -> None:
    """Stylize one image."""
    if options.check_mode(mode, model, ctx):
        return _image_fast(content, styles, output, settings, model, as_json)
    import_tensorflow_quietly()
    from nst_video.nst_core import load_image, save_image
    from nst_video.nst_core.size import Size
    from nst_video.nst_core.weights import resolve_weights
    from nst_video.tasks.memory_guard import plan_image_size, stylize_image_within_memory

    options.check_destination(str(output))
    content_pixels = load_image(content)
    style_pixels = [load_image(path) for path in styles]
    init_pixels = load_image(init_image) if init_image else None
    weights_info = resolve_weights(vgg_weights)
    plan = plan_image_size(Size.of(content_pixels), settings)
    if plan.reduced:  # the memory guard: stylize smaller, upscale to the requested size
        typer.echo(f"nst: WARNING: memory guard: {content}: {plan.reason}", err=True)
    total = settings.iterations * settings.scales
    with progress_bar("stylizing", total, enabled=not as_json) as bar:
        result, stats, plan = stylize_image_within_memory(
            content_pixels,
            style_pixels,
            settings,
            plan=plan,
            warn=False,
            init_image=init_pixels,
            weights=weights_info,
            progress=bar.update,
        )
    save_image(result, output)
    report = {
        **stats.as_dict(),
        "output": str(output),
        "settings_hash": settings.stable_hash(),
        "precision": plan.precision,  # "auto" resolved, as the memory guard estimated it
        "weights": weights_info.origin,
        "memory": plan.as_dict(),
    }
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(
            f"wrote {output} ({stats.iterations} iterations, {stats.seconds:.1f} s, "
            f"loss {stats.initial_loss:.4g} -> {stats.final_loss:.4g})"
        )


def _image_fast(
    content: Path,
    styles: list[Path],
    output: Path,
    settings: StyleSettings,
    model: str | None,
    as_json: bool,
) -> None:
    """`nst image --mode fast`: one pass of the trained network at --size."""
    from nst_video.nst_core import load_image
    from nst_video.nst_core.errors import InvalidSettingsError

    if model is None or model.startswith("s3://"):
        raise InvalidSettingsError("nst image --mode fast needs --model, a local .keras file")

    options.check_destination(str(output))
    content_pixels = load_image(content)
    import_tensorflow_quietly()
    from nst_video.tasks.fast import stylize_image_fast

    report = stylize_image_fast(content_pixels, model, [str(s) for s in styles], settings, output)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"wrote {output} (fast mode, {report['seconds']:.2f} s)")


def _check_fast_video(model: str | None, styles: list[str], precision: str) -> None:
    """Fast mode's model, checked against local styles before Prefect starts (exit 1)."""
    if model is None or model.startswith("s3://") or any(s.startswith("s3://") for s in styles):
        return  # training on the fly, or checked by the flow once fetched
    from nst_video.tasks.fast import model_record

    model_record(model, styles, precision)


@app.command()
@options.settings_options(VideoSettings, options.VIDEO_SETTINGS)
@options.chunking_options
def video(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Input video: a path or s3://bucket/key.")],
    styles: Annotated[list[str], typer.Argument(help="Style images: paths or s3:// URIs.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output video: a path or s3://bucket/key.")
    ],
    settings: VideoSettings,
    chunking: dict[str, Any],
    start: options.Start = 0.0,
    duration: options.Duration = None,
    workers: options.Workers = 1,
    batch_chunks: options.BatchChunks = False,
    vgg_weights: options.VggWeights = None,
    as_json: options.Json = False,
    dask_address: options.DaskAddress = None,
    dask_workers: options.DaskWorkers = None,
    mode: options.Mode = "optimize",
    model: options.Model = None,
    fan_out: options.ChunkFanOut = "threads",
    chunk_deployment: options.ChunkDeployment = CHUNK_DEPLOYMENT,
    concurrency: options.ChunkConcurrency = 2,
) -> None:
    """Stylize a video through the Prefect flow: chunks, warm-started chains, same audio.

    --mode fast runs a trained network (--model) on every frame instead. --fan-out pool
    runs each chunk on the work pool's workers; with it or a Dask cluster the bar shows the
    run's progress as the server has it (chunks done).
    """
    is_fast = options.check_mode(mode, model, ctx)
    options.check_batching(batch_chunks, workers, keras_backend())
    options.check_destination(output)
    options.check_local_inputs(source, styles, start, duration, chunking["max_frames"])
    task_runner = options.dask_runner(dask_address, dask_workers, fan_out)
    pool = fan_out == "pool"
    if pool:
        options.check_pool_server()
    _prepare_run(vgg_weights)
    if is_fast:
        _check_fast_video(model, styles, settings.precision)
        chunking = {**chunking, "mode": mode, "model": model}
    from nst_video.flows.stylize_video import run_stylize_video

    # chunks in other processes (a pool's workers, a Dask cluster) report to the server only
    elsewhere = pool or task_runner is not None
    with (
        _followed("stylize-video", enabled=elsewhere and not as_json),
        progress_bar("stylizing", 0, enabled=not (as_json or elsewhere), unit="frames") as bar,
    ):
        manifest = run_stylize_video(
            source,
            styles,
            output,
            settings,
            **chunking,
            start=start,
            duration=duration,
            workers=workers,
            batch_chunks=workers if batch_chunks else 1,
            listener=bar,
            task_runner=task_runner,
            fan_out=fan_out,
            chunk_deployment=chunk_deployment,
            concurrency=concurrency,
        )
    if as_json:
        typer.echo(json.dumps(_video_report(manifest)))
    else:
        totals = manifest["totals"]
        work = "fast mode" if is_fast else f"{totals['iterations']} iterations"
        typer.echo(
            f"wrote {output} ({totals['frames']} frames, {work}, "
            f"{totals['wall_seconds']:.1f} s{', already done' if manifest.get('skipped') else ''})"
        )


def _video_report(manifest: dict) -> dict:
    """The --json object: the headline figures of the manifest."""
    totals = manifest["totals"]
    return {
        "output": manifest["output"],
        "manifest": manifest["output"] + ".json",
        "frames": totals["frames"],
        "iterations": totals["iterations"],
        "seconds": totals["wall_seconds"],
        "stylize_seconds": totals["stylize_seconds"],
        "chunks": len(manifest["chunks"]),
        "resumed_chunks": totals["resumed_chunks"],
        "skipped": bool(manifest.get("skipped")),
        "job_id": manifest["job_id"],
        "settings_hash": manifest["settings_hash"],
        "mode": manifest.get("mode", "optimize"),
        "precision": manifest.get("precision"),
        **({"model_sha256": manifest["model"]["sha256"]} if "model" in manifest else {}),
    }


def _bundled_model() -> Path:
    """The Starry Night model shipped for `nst demo --mode fast`; one line when it is not."""
    from nst_video.nst_core.errors import InvalidInputError

    path = ASSETS / "models" / "starry_night_fast.keras"
    if not path.is_file():
        raise InvalidInputError(f"{path}: the bundled fast-mode model is not shipped; pass --model")
    return path


# `nst demo`'s settings: smaller and shorter than a real run's, about three minutes on a CPU.
# 128 px is the float32 size; where the precision resolves to bfloat16 (about 1.7x faster per
# pixel here, 2.6x with AMX) the demo runs at BF16_DEMO_SIZE in about the same time.
DEMO_SETTINGS = {"size": 128, "first_iterations": 300, "iterations": 30}
BF16_DEMO_SIZE = 192
FAST_DEMO_SIZE = 256  # the bundled clip's own size: fast mode affords it


def _demo_size(precision: str) -> int:
    """The demo's frame size for this precision, "auto" resolved on this machine."""
    from nst_video.nst_core.precision import resolve_precision

    resolved = resolve_precision(precision)
    return BF16_DEMO_SIZE if resolved == "bfloat16" else DEMO_SETTINGS["size"]


@app.command()
@options.settings_options(VideoSettings, tuple(DEMO_SETTINGS), **DEMO_SETTINGS)
def demo(
    ctx: typer.Context,
    settings: VideoSettings,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("output"),
    mode: options.Mode = "optimize",
    model: Annotated[
        str | None,
        typer.Option(help="--mode fast: the model (default: the bundled Starry Night model)."),
    ] = None,
) -> None:
    """Stylize the bundled 3 s clip with Starry Night through the Prefect flow.

    Writes output/bottles_starry_night.mp4 (with the clip's audio), its manifest, and
    output/bottles_starry_night_frames.jpg (input frames above stylized frames).
    """
    is_fast = options.check_mode(mode, model, ctx)
    if is_fast:
        model = model or str(_bundled_model())
    output.mkdir(parents=True, exist_ok=True)
    clip = ASSETS / "videos" / "bottles_with_tone.mp4"
    result = output / "bottles_starry_night.mp4"
    chosen = settings.model_dump(include=set(DEMO_SETTINGS))
    size_given = ctx.get_parameter_source("size") == ParameterSource.COMMANDLINE
    if not size_given and not is_fast:
        chosen["size"] = _demo_size(settings.precision)
    if is_fast:  # no iteration budgets; the clip's own 256 px unless --size says otherwise
        chosen = {"size": settings.size if size_given else FAST_DEMO_SIZE}
    video(
        ctx=ctx,
        source=str(clip),
        styles=[str(ASSETS / "styles" / "starry_night.jpg")],
        output=str(result),
        **chosen,
        **({"mode": mode, "model": model} if is_fast else {}),
    )
    from nst_video.tasks.report import contact_sheet

    sheet = contact_sheet(str(clip), str(result), str(output / "bottles_starry_night_frames.jpg"))
    typer.echo(f"wrote {sheet}")


@app.command()
@options.settings_options(VideoSettings, options.VIDEO_SETTINGS)
@options.chunking_options
def batch(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Folder or s3://bucket/prefix of videos.")],
    styles: Annotated[list[str], typer.Argument(help="Style images: paths or s3:// URIs.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Destination folder or s3://bucket/prefix.")
    ],
    settings: VideoSettings,
    chunking: dict[str, Any],
    glob: options.Glob = None,
    concurrency: options.Concurrency = 2,
    vgg_weights: options.VggWeights = None,
    as_json: options.Json = False,
    mode: options.Mode = "optimize",
    model: options.Model = None,
    fan_out: options.FanOut = "threads",
    deployment: options.Deployment = VIDEO_DEPLOYMENT,
) -> None:
    """Stylize every video under a folder or S3 prefix (skips those already done).

    Exit status 1 when any video failed; the others are still written. --mode fast runs
    a trained network (--model) on every frame of every video instead. --fan-out pool runs
    each video on the work pool's workers and shows the batch's progress from the server.
    """
    is_fast = options.check_mode(mode, model, ctx)
    if fan_out == "pool":
        options.check_pool_server()
    _prepare_run(vgg_weights)
    if is_fast:
        _check_fast_video(model, styles, settings.precision)
        chunking = {**chunking, "mode": mode, "model": model}
    from nst_video.flows.stylize_batch import run_stylize_batch

    with _followed("stylize-batch", enabled=fan_out == "pool" and not as_json):
        summary = run_stylize_batch(
            source,
            styles,
            output,
            settings,
            glob=glob,
            concurrency=concurrency,
            fan_out=fan_out,
            deployment=deployment,
            **chunking,
        )
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_batch(summary)
    if summary["counts"]["failed"]:
        raise typer.Exit(1)


@contextmanager
def _followed(flow_name: str, *, enabled: bool) -> Iterator[None]:
    """A live bar of the `flow_name` run started in the body, read from the Prefect API."""
    if not enabled:
        yield
        return
    from nst_video.nst_cli.follow import following, run_bar

    with run_bar(flow_name) as show, following(flow_name, show):
        yield


@app.command()
def follow(
    run_id: Annotated[str, typer.Argument(help="Flow run id, e.g. from prefect deployment run.")],
    as_json: options.Json = False,
) -> None:
    """Follow a flow run on the Prefect server (PREFECT_API_URL) until it ends: its state and
    its progress artifact (a video's chunks, a batch's videos). Exit 1 unless it Completed."""
    from uuid import UUID

    from prefect.exceptions import ObjectNotFound

    from nst_video.nst_cli.follow import follow_run, run_bar
    from nst_video.nst_core.errors import InvalidInputError

    options.check_pool_server()
    try:
        run_uuid = UUID(run_id)
    except ValueError:
        raise InvalidInputError(f"{run_id!r}: not a flow run id") from None
    with run_bar(f"run {run_id[:8]}", enabled=not as_json) as show:
        try:
            run, percent = follow_run(run_uuid, show)
        except ObjectNotFound:
            raise InvalidInputError(f"{run_id}: no such flow run on the Prefect server") from None
    state = run.state
    report = {"id": run_id, "name": run.name, "state": state.name, "progress": percent}
    if as_json:
        typer.echo(json.dumps(report))
    else:
        reason = "" if state.is_completed() else f": {state.message}"
        typer.echo(f"{run.name}: {state.name} ({percent:.0f}%){reason}")
    if not state.is_completed():
        raise typer.Exit(1)


def _print_batch(summary: dict) -> None:
    """One line per video, then the counts (failures also on stderr)."""
    for row in summary["videos"]:
        detail = row["error"] if row["status"] == "failed" else row["output"]
        typer.echo(f"{row['status']:8} {row['video']} -> {detail}")
    for item in summary["ignored"]:
        typer.echo(f"ignored  {item['file']} ({item['reason']})")
    c = summary["counts"]
    if not c["videos"]:
        typer.echo(f"nothing to do: no videos under {summary['source']}")
    typer.echo(
        f"{c['videos']} videos: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed "
        f"({summary['wall_seconds']:.1f} s)"
    )
    if c["failed"]:
        typer.echo(f"nst: error: {summary['error']}", err=True)


@app.command()
def report(
    source: Annotated[Path, typer.Argument(help="The input video.")],
    output: Annotated[Path, typer.Argument(help="The stylized video.")],
    as_json: options.Json = False,
) -> None:
    """Quality of a stylized video against its input: seam jump and still drift, still
    churn, warp error (with opencv).

    The manifest OUTPUT.json beside OUTPUT, when there is one, gives the input's frame range,
    the chunks and the scene cuts; without it both videos must have the same frame count and
    no seams are known.
    """
    from nst_video.tasks.quality import report_files

    manifest = _manifest_beside(output)
    quality = report_files(str(source), str(output), manifest)
    if as_json:
        typer.echo(json.dumps({"input": str(source), "output": str(output), **quality}))
    else:
        _print_quality(source, output, quality, has_manifest=manifest is not None)


def _manifest_beside(output: Path) -> dict | None:
    """The manifest stylize-video writes beside its output (OUTPUT + ".json"), if any."""
    from nst_video.nst_core.errors import InvalidInputError, one_line

    path = Path(f"{output}.json")
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(
            f"{path}: not a readable JSON manifest ({one_line(error)})"
        ) from None


def _print_quality(source: Path, output: Path, quality: dict, *, has_manifest: bool) -> None:
    """A header line, then one row per figure: name, value, how to read it."""
    from nst_video.tasks.quality import count_of, quality_rows

    width, height = quality["size"]
    seams = count_of(len(quality["seam_frames"]), "seam")
    known = f"{seams}, from its manifest" if has_manifest else "no manifest: no seams known"
    typer.echo(
        f"{output} against {source}: {quality['frames']} frames at {width}x{height} ({known})"
    )
    for name, value, reading in quality_rows(quality):
        typer.echo(f"  {name:<18} {value:>10}  {reading}")


@app.command()
def jobs(
    work_dir: Annotated[
        str | None,
        typer.Argument(
            help="A work dir or s3:// staging prefix (default: NST_WORK_DIR, else the local one).",
            show_default=False,
        ),
    ] = None,
    remove: Annotated[
        str | None, typer.Option(help="Remove this job's staging (and this machine's cache).")
    ] = None,
    as_json: options.Json = False,
) -> None:
    """Jobs staged under WORK_DIR and not finished (killed, failed or running): id, age,
    size, chunks done. A finished job removes its own staging."""
    from nst_video.nst_core.errors import InvalidInputError
    from nst_video.tasks import staging, storage

    root = storage.parse_uri(work_dir).uri if work_dir else str(staging.default_work_dir())
    found = staging.list_jobs(root)
    if remove:
        job = staging.job_staging(root, remove)
        if all(entry.job != remove for entry in found):
            raise InvalidInputError(f"job {remove}: nothing staged under {root}")
        staging.remove(job)
        typer.echo(f"removed {job.root}")
    elif as_json:
        rows = [vars(e) | {"modified": e.modified.isoformat()} for e in found]
        typer.echo(json.dumps({"work_dir": root, "jobs": rows}))
    else:
        typer.echo(f"{len(found)} unfinished job(s) under {root}")
        for entry in found:
            typer.echo(
                f"  {entry.job}  {entry.age_hours():7.1f} h  {entry.size / 2**20:8.1f} MiB"
                f"  {entry.chunks_done} chunk(s) done"
            )


@app.command()
def serve(
    limit: Annotated[int, typer.Option(min=1, help="Flow runs at once in this process.")] = 1,
) -> None:
    """Serve the batch and single-video deployments from this process (no work pool).

    Needs a Prefect server: set PREFECT_API_URL (see docs/deployment.md). Ctrl-C stops.
    """
    import_tensorflow_quietly()
    from nst_video.deployments.serve import main as serve_main

    serve_main(limit=limit)


train.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn user errors into one line and an exit code."""
    from nst_video.nst_core.errors import NSTError

    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args or ["--help"], standalone_mode=False)
    except typer.Abort:
        typer.echo("nst: aborted", err=True)
        return 130
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as error:  # usage errors (exit 2) and other click errors
        typer.echo(f"nst: error: {error.format_message()}", err=True)
        return getattr(error, "exit_code", 2)
    except NSTError as error:
        typer.echo(f"nst: error: {error}", err=True)
        return error.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
