"""CLI options, named like neural-style's flags: those of the settings come from the settings
models' fields (default, help, checks), so each setting is declared once, in nst_core."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from inspect import Parameter
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from nst_video.flows.batch_options import FanOut as FanOutChoice
from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.files import check_writable
from nst_video.nst_core.settings import VideoSettings

Output = Annotated[Path, typer.Option("--output", "-o", help="Output file.")]
VggWeights = Annotated[
    Path | None,
    typer.Option(envvar="NST_VGG19_WEIGHTS", help="VGG19 weights file (.npz, .h5 or .bin)."),
]
Start = Annotated[float, typer.Option(help="Start time, seconds.")]
Duration = Annotated[float | None, typer.Option(help="Length to stylize, seconds.")]
Workers = Annotated[int, typer.Option(min=1, help="Chunks stylized at once in this process.")]
BatchChunks = Annotated[
    bool,
    typer.Option(
        "--batch-chunks",
        help="Stylize the --workers chunks' frames as one batch (KERAS_BACKEND=jax; GPUs).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object with the results.")]
Mode = Annotated[
    str,
    typer.Option(
        help="optimize: Gatys optimization per frame (quality); fast: a trained network, one "
        "pass per frame."
    ),
]
Model = Annotated[
    str | None,
    typer.Option(help="--mode fast: the trained .keras model (a path or s3:// URI)."),
]


# --- options derived from the settings models -------------------------------------------------
# The settings each command offers, in --help order; their flag, default and help come from the
# model's fields (nst_core/settings.py). Other fields (beta1, patience, ...) are library-only.
IMAGE_SETTINGS = (
    "size", "iterations", "optimizer", "learning_rate", "content_weight", "style_weight",
    "tv_weight", "style_blend_weights", "style_scale", "init", "original_colors", "pooling",
    "precision", "scales", "seed", "content_layers", "style_layers", "style_layer_weights",
    "tolerance",
)  # fmt: skip
VIDEO_SETTINGS = (
    "size", "first_iterations", "iterations", "frame_init", "scene_threshold",
    "temporal_weight", "learning_rate", "content_weight", "style_weight", "tv_weight",
    "style_blend_weights", "style_scale", "original_colors", "pooling", "precision",
    "content_layers", "style_layers", "style_layer_weights", "tolerance",
)  # fmt: skip
FLAG_NAMES = {"frame_init": "--init"}  # neural-style's name for the video's warm start


def flag(field: str) -> str:
    """The CLI flag of a settings field: --style-weight for style_weight."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def _list_item(field: FieldInfo) -> type | None:
    """float or str for a tuple field (given comma-separated on the CLI), else None."""
    for kind in (field.annotation, *get_args(field.annotation)):
        if get_origin(kind) is tuple:
            return get_args(kind)[0]
    return None


def setting_parameter(model: type[BaseModel], name: str, default: Any = None) -> Parameter:
    """The typer parameter of one settings field: flag, default (unless `default` is given),
    and help from the model; the model checks the value when the command runs."""
    field = model.model_fields[name]
    value, shown, kind = field.default if default is None else default, True, field.annotation
    help_text = field.description
    if _list_item(field):  # a comma-separated string, None meaning the model's default
        value, kind, help_text = None, str | None, f"{help_text} Comma-separated."
        shown = ",".join(field.default) if field.default else False
    elif get_origin(kind) is Literal:  # a plain string: the model's error names the choices
        kind = str
    option = typer.Option(flag(name), help=help_text, show_default=shown)
    return Parameter(
        name, Parameter.KEYWORD_ONLY, default=value, annotation=Annotated[kind, option]
    )


def settings_options(model: type[BaseModel], fields: tuple[str, ...], **defaults: Any):
    """Decorator: a command gets one option per settings field and receives `settings` (the
    model built from them) and, if it has that parameter, `init_image` (--init PATH).

    `defaults` replace the model's defaults for this command (e.g. `nst demo`'s small size).
    """
    added = [setting_parameter(model, name, defaults.get(name)) for name in fields]

    def fill(values: dict) -> dict:
        settings, init_image = build_settings(model, values)
        return {"settings": settings, "init_image": init_image}

    return lambda command: _with_parameters(command, added, fill, ("settings", "init_image"))


def build_settings(model: type[BaseModel], values: dict) -> tuple[Any, Path | None]:
    """The model from CLI values (lists as text, --init maybe a path); -> (settings, init image).

    Bad values raise InvalidSettingsError naming the field and its flag.
    """
    from nst_video.nst_core.settings import settings_error

    values, init_image = dict(values), None
    if values.get("init") not in (None, "content", "noise"):
        init_image, values["init"] = Path(values["init"]), "image"
    for name, text in values.items():
        if item := _list_item(model.model_fields[name]):
            values[name] = parse_list(flag(name), text, item)
    try:
        settings = model(**{name: v for name, v in values.items() if v is not None})
    except ValidationError as error:
        raise settings_error(error, {name: flag(name) for name in values}) from None
    return settings, init_image


def parse_list(name: str, text: str | None, kind: type = str) -> tuple | None:
    """'a,b,c' -> ('a', 'b', 'c') converted by `kind`; None stays None."""
    if text is None:
        return None
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidSettingsError(f"invalid {name}: {text!r} is not a list of numbers") from None


# --- options shared by `nst video` and `nst batch` ---------------------------------------------
def _option(name: str, kind: Any, default: Any, **option: Any) -> Parameter:
    return Parameter(
        name,
        Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[kind, typer.Option(**option)],
    )


def _flow_option(name: str, alias: Any, default: Any) -> Parameter:
    """The flag of a flow parameter declared in tasks/plan.py: its type, bounds and help."""
    kind, field = get_args(alias)
    bounds = {
        option: getattr(rule, bound)
        for rule in field.metadata
        for option, bound in (("min", "ge"), ("max", "le"))
        if hasattr(rule, bound)
    }
    extra = {"envvar": "NST_WORK_DIR"} if name == "work_dir" else {}
    return _option(name, kind, default, help=field.description, **bounds, **extra)


def _chunking() -> list[Parameter]:
    from nst_video.tasks.plan import CHUNKING
    from nst_video.tasks.quality import QUALITY

    shared = {**CHUNKING, **QUALITY}
    return [_flow_option(name, alias, default) for name, (alias, default) in shared.items()]


def chunking_options(command: Callable) -> Callable:
    """Decorator: adds --chunk-frames, --overlap, --max-frames, --crf, --work-dir and
    --motion-fidelity-samples; the command receives them as `chunking`, the keyword arguments
    of both flows."""
    return _with_parameters(command, _chunking(), lambda given: {"chunking": given}, ("chunking",))


def _with_parameters(
    command: Callable, added: list[Parameter], fill: Callable, made: tuple[str, ...]
) -> Callable:
    """`command` with the `added` options in its signature (after its required parameters)
    in place of the parameters `fill` makes from their values."""
    own = inspect.signature(command, eval_str=True)
    names = [p.name for p in added]
    kept = [
        p.replace(kind=Parameter.KEYWORD_ONLY)
        for p in own.parameters.values()
        if p.name not in made
    ]
    required = [p for p in kept if p.default is Parameter.empty]
    optional = [p for p in kept if p.default is not Parameter.empty]
    signature = own.replace(parameters=[*required, *added, *optional])

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        bound = signature.bind(**values)  # a plain call gets the same defaults as the CLI
        bound.apply_defaults()
        given = bound.arguments
        made_values = fill({name: given.pop(name) for name in names})
        return command(**given, **{k: v for k, v in made_values.items() if k in own.parameters})

    run.__signature__ = signature
    run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return run


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
    """Local destinations: fail before any work when the file cannot be written there."""
    if not uri.startswith("s3://"):
        check_writable(Path(uri))


def check_local_inputs(
    source: str, styles: list[str], start: float, duration: float | None, max_frames: int | None
) -> None:
    """Probe local inputs before Prefect starts: bad files fail in a second, on one line."""
    from nst_video.nst_core.images import load_image
    from nst_video.tasks.plan import frame_range
    from nst_video.tasks.video import probe

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
FanOut = Annotated[
    FanOutChoice,
    typer.Option(
        help="threads: every video in this process; pool: each video a run of --deployment on "
        "its work pool's workers (needs PREFECT_API_URL).",
    ),
]
Deployment = Annotated[
    str, typer.Option(help="--fan-out pool: the video deployment each video is a run of.")
]
ChunkFanOut = Annotated[
    FanOutChoice,
    typer.Option(
        "--fan-out",
        help="threads: every chunk in this process; pool: each chunk a run of "
        "--chunk-deployment on its work pool's workers (needs PREFECT_API_URL and staging "
        "on S3: an s3:// --work-dir or output).",
    ),
]
ChunkDeployment = Annotated[
    str, typer.Option(help="--fan-out pool: the chunk deployment each chunk is a run of.")
]
ChunkConcurrency = Annotated[
    int, typer.Option(min=1, max=64, help="--fan-out pool: chunks stylized at once.")
]
DaskAddress = Annotated[
    str | None, typer.Option(help="Run chunks on the Dask scheduler at this address (tcp://...).")
]
DaskWorkers = Annotated[
    int | None, typer.Option(min=1, help="Run chunks on a local Dask cluster of N processes.")
]


def check_pool_server() -> None:
    """A run on a work pool needs the pool's server: refuse (one line) without PREFECT_API_URL
    rather than start a temporary server that no worker polls."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise InvalidSettingsError(
            "--fan-out pool and nst follow need PREFECT_API_URL: the server of the work pool's "
            "workers (docs/deployment.md)"
        )


def dask_runner(address: str | None, workers: int | None, fan_out: str = "threads"):
    """The Dask task runner asked for by --dask-address / --dask-workers, or None."""
    if address and workers:
        raise InvalidSettingsError("give --dask-address or --dask-workers, not both")
    if fan_out == "pool" and (address or workers):
        raise InvalidSettingsError("give --fan-out pool or a Dask cluster for the chunks, not both")
    if not (address or workers):
        return None
    from nst_video.flows.dask_runner import dask_task_runner

    return dask_task_runner(address=address, workers=workers)


# --- fast mode ----------------------------------------------------------------------------------
# The settings fast mode honours: the processing size, colour preservation after inference and
# the network's precision. Every other settings flag, --overlap, --batch-chunks and
# --motion-fidelity-samples (its reference is the optimization's cold start) belong to the
# optimization and are refused in fast mode rather than silently ignored.
FAST_SETTINGS = frozenset({"size", "original_colors", "precision"})
OPTIMIZATION_ONLY = frozenset(VideoSettings.model_fields) - FAST_SETTINGS | {
    "overlap",
    "batch_chunks",
    "motion_fidelity_samples",
}
MODES = ("optimize", "fast")


def given_flags(context: typer.Context | None, names: frozenset[str]) -> list[str]:
    """The flags among the parameters `names` given on this command line, in --help order.

    "Given" means typed on the command line (the parameter's source), whatever the value:
    `--iterations 40` asks for iterations even though 40 is the default. Without a command
    line (`context` None: a Python call of a command) nothing counts as given.
    """
    if context is None:
        return []
    return [
        param.opts[0]
        for param in context.command.params
        if param.name in names
        and getattr(context.get_parameter_source(param.name), "name", "") == "COMMANDLINE"
    ]


def check_mode(mode: str, model: str | None, context: typer.Context | None) -> bool:
    """Whether the command runs in fast mode; refuses (exit 2, one line) an unknown mode, a
    --model without --mode fast, and the first optimization-only flag given with it."""
    if mode not in MODES:
        raise InvalidSettingsError(f"invalid --mode {mode!r}: choose from {', '.join(MODES)}")
    if mode != "fast":
        if model is not None:
            raise InvalidSettingsError("--model is only used with --mode fast")
        return False
    if refused := given_flags(context, OPTIMIZATION_ONLY):
        raise InvalidSettingsError(
            f"{refused[0]} is an optimization setting: --mode fast runs a trained network and "
            f"cannot honour it (fast mode takes --size, --original-colors and --precision)"
        )
    return True
