"""Shared CLI options, named like neural-style's flags, and their translation to settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nst_core.errors import InvalidInputError, InvalidSettingsError

Output = Annotated[Path, typer.Option("--output", "-o", help="Output file.")]
Size = Annotated[int, typer.Option(help="Longest side of the output, px.")]
Iterations = Annotated[int, typer.Option(help="Optimizer iterations (per pyramid level).")]
Optimizer = Annotated[str, typer.Option(help="adam or lbfgs.")]
LearningRate = Annotated[float | None, typer.Option(help="Adam step size (image in 0..1).")]
ContentWeight = Annotated[float | None, typer.Option(help="Weight of the content loss.")]
StyleWeight = Annotated[float | None, typer.Option(help="Weight of the style loss.")]
TvWeight = Annotated[float | None, typer.Option(help="Weight of total variation.")]
StyleBlendWeights = Annotated[
    str | None, typer.Option(help="Comma-separated weights, one per style image.")
]
StyleScale = Annotated[float | None, typer.Option(help="Style image size relative to output.")]
Init = Annotated[str, typer.Option(help="content, noise, or the path of an init image.")]
OriginalColors = Annotated[
    bool, typer.Option("--original-colors", help="Keep the content's colours.")
]
Pooling = Annotated[str, typer.Option(help="max or avg.")]
Precision = Annotated[
    str,
    typer.Option(
        help="float32, or bfloat16: VGG19 in bf16, same quality, ~1.6x faster on CPUs with "
        "AVX512-BF16/AMX and on GPUs (much slower on CPUs without them)."
    ),
]
Scales = Annotated[int, typer.Option(help="Coarse-to-fine pyramid levels.")]
Seed = Annotated[int, typer.Option(help="Seed for noise init.")]
ContentLayers = Annotated[str | None, typer.Option(help="Comma-separated VGG19 layers.")]
StyleLayers = Annotated[str | None, typer.Option(help="Comma-separated VGG19 layers.")]
StyleLayerWeights = Annotated[
    str | None, typer.Option(help="Comma-separated weights, one per style layer.")
]
Tolerance = Annotated[
    float | None, typer.Option(help="Early stop below this relative improvement; 0 disables.")
]
VggWeights = Annotated[
    Path | None,
    typer.Option(envvar="NST_VGG19_WEIGHTS", help="VGG19 weights file (.npz, .h5 or .bin)."),
]
FirstIterations = Annotated[
    int | None, typer.Option(help="Iterations of a cold start (first frame, scene cuts).")
]
FrameInit = Annotated[
    str, typer.Option("--init", help="Warm start: prev, prev+delta, or content (independent).")
]
SceneThreshold = Annotated[
    float | None, typer.Option(help="ffmpeg scene score that starts a new shot; 0 disables.")
]
TemporalWeight = Annotated[
    float | None, typer.Option(help="Pull of unchanged pixels to their earlier output.")
]
Start = Annotated[float, typer.Option(help="Start time, seconds.")]
Duration = Annotated[float | None, typer.Option(help="Length to stylize, seconds.")]
MaxFrames = Annotated[int | None, typer.Option(help="Stylize at most this many frames.")]
Crf = Annotated[int, typer.Option(min=0, max=51, help="H.264 quality (lower is better).")]
ChunkFrames = Annotated[int, typer.Option(help="Frames per chunk (unit of parallel work).")]
Overlap = Annotated[int, typer.Option(help="Warm-up frames stylized before a chunk.")]
Workers = Annotated[int, typer.Option(help="Chunks stylized at once in this process.")]
BatchChunks = Annotated[
    bool,
    typer.Option(
        "--batch-chunks",
        help="Stylize the --workers chunks' frames as one batch (KERAS_BACKEND=jax; GPUs).",
    ),
]
WorkDir = Annotated[
    Path | None, typer.Option(envvar="NST_WORK_DIR", help="Staging folder for resumable jobs.")
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object with the results.")]


def parse_list(name: str, text: str | None, kind: type = str) -> tuple | None:
    """'a,b,c' -> ('a', 'b', 'c') converted by `kind`; None stays None."""
    if text is None:
        return None
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidSettingsError(f"invalid {name}: {text!r} is not a list of numbers") from None


def build_settings(*, init: str, model: type | None = None, **values):
    """Settings (StyleSettings or `model`) from CLI values; returns (settings, init image)."""
    from nst_core.settings import StyleSettings, make_settings

    init_image = None
    if init not in ("content", "noise"):
        init_image, init = Path(init), "image"
    settings = make_settings(
        model or StyleSettings,
        init=init,
        style_blend_weights=parse_list(
            "style_blend_weights", values.pop("style_blend_weights"), float
        ),
        style_layer_weights=parse_list(
            "style_layer_weights", values.pop("style_layer_weights"), float
        ),
        content_layers=parse_list("content_layers", values.pop("content_layers")),
        style_layers=parse_list("style_layers", values.pop("style_layers")),
        **values,
    )
    return settings, init_image


def check_output(path: Path) -> None:
    """Fail before any work when the output's folder does not exist."""
    folder = path.parent
    if not folder.exists():
        raise InvalidInputError(f"{path}: output folder {folder} does not exist")
    if not folder.is_dir():
        raise InvalidInputError(f"{path}: output folder {folder} is not a folder")


def check_chunking(chunk_frames: int, overlap: int, workers: int) -> None:
    if chunk_frames < 1 or overlap < 0 or workers < 1:
        raise InvalidSettingsError("--chunk-frames and --workers must be >= 1 and --overlap >= 0")


def check_batching(batch_chunks: bool, workers: int, backend: str) -> None:
    if not batch_chunks:
        return
    if backend != "jax":
        raise InvalidSettingsError(
            f"--batch-chunks needs KERAS_BACKEND=jax (this run uses {backend}): the "
            "TensorFlow step's losses average over a batch"
        )
    if workers < 2:
        raise InvalidSettingsError("--batch-chunks needs --workers 2 or more (the batch size)")


def check_destination(uri: str) -> None:
    """Local destinations: fail before any work when the folder is missing."""
    if not uri.startswith("s3://"):
        check_output(Path(uri))


def check_local_inputs(
    source: str, styles: list[str], start: float, duration: float | None, max_frames: int | None
) -> None:
    """Probe local inputs before Prefect starts: bad files fail in a second, on one line."""
    from nst_core.images import load_image
    from tasks.plan import frame_range
    from tasks.video import probe

    if not source.startswith("s3://"):
        frame_range(probe(source), start, duration, max_frames)
    for style in styles:
        if not style.startswith("s3://"):
            load_image(style)


# --- batch and scale-out (appended) -----------------------------------------------------------
Glob = Annotated[
    str | None,
    typer.Option(help="Only files whose name matches this pattern (default: video extensions)."),
]
Concurrency = Annotated[int, typer.Option(min=1, max=64, help="Videos stylized at once.")]
DaskAddress = Annotated[
    str | None, typer.Option(help="Run chunks on the Dask scheduler at this address (tcp://...).")
]
DaskWorkers = Annotated[
    int | None, typer.Option(min=1, help="Run chunks on a local Dask cluster of N processes.")
]


def dask_runner(address: str | None, workers: int | None):
    """The Dask task runner asked for by --dask-address / --dask-workers, or None."""
    if address and workers:
        raise InvalidSettingsError("give --dask-address or --dask-workers, not both")
    if not (address or workers):
        return None
    from flows.dask_runner import dask_task_runner

    return dask_task_runner(address=address, workers=workers)
