"""`nst train STYLE [STYLE ...] --videos V [V ...] [--images DIR] -o MODEL.keras`: train a
fast-mode network through the train-style flow. Its settings flags come from TrainSettings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from nst_video.nst_cli import options
from nst_video.nst_cli.progress import progress_bar
from nst_video.nst_core.settings import TrainSettings

# The training settings offered as flags, in --help order (motion_sigma is library-only).
TRAIN_SETTINGS = (
    "size", "steps", "batch_size", "crop", "width", "residual_blocks", "learning_rate",
    "content_weight", "style_weight", "tv_weight", "noise_weight", "noise_sigma",
    "frame_weight", "style_blend_weights", "style_scale", "pooling", "precision",
    "content_layers", "style_layers", "style_layer_weights", "frames_per_video", "seed",
    "tolerance", "patience", "checkpoint_every",
)  # fmt: skip
VARIADIC = ("--videos",)


def spread_values(args: list[str], names: tuple[str, ...] = VARIADIC) -> list[str]:
    """`--videos a b -o m` -> `--videos a --videos b -o m`: click options take one value
    each, so the values after a variadic flag are split up before click parses them."""
    spread: list[str] = []
    current = None
    for arg in args:
        if arg.startswith("-"):
            current = arg if arg in names else None
            if current:
                continue
        elif current:
            spread += [current, arg]
            continue
        spread.append(arg)
    return spread


class VariadicCommand(TyperCommand):
    """A command whose VARIADIC flags take several values (`--videos V [V ...]`)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(args))


Videos = Annotated[
    list[str] | None,
    typer.Option(help="Videos to train on (paths or s3:// URIs), one or more after the flag."),
]
Images = Annotated[
    Path | None, typer.Option(help="A folder whose images are trained on too (local).")
]


@options.settings_options(TrainSettings, TRAIN_SETTINGS)
def train(
    styles: Annotated[list[str], typer.Argument(help="Style images: paths or s3:// URIs.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Model file (.keras): a path or s3:// URI.")
    ],
    settings: TrainSettings,
    videos: Videos = None,
    images: Images = None,
    work_dir: Annotated[
        str | None,
        typer.Option(envvar="NST_WORK_DIR", help="Staging and checkpoints (resumable runs)."),
    ] = None,
    vgg_weights: options.VggWeights = None,
    as_json: options.Json = False,
) -> None:
    """Train a fast-mode network for the styles on frames of the videos (and images)."""
    from nst_video.tasks.train import check_model_destination

    videos = videos or []
    check_model_destination(output)
    _check_local_inputs(styles, videos, images)
    _prepare(vgg_weights)
    from nst_video.flows.train_style import run_train_style

    with progress_bar("training", settings.steps, enabled=not as_json, unit="steps") as bar:
        card = run_train_style(
            styles,
            videos,
            output,
            settings,
            images=None if images is None else str(images),
            work_dir=work_dir,
            listener=lambda step, terms: bar.update(step, terms.total),
        )
    report = _report(card, output)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        resumed = report["resumed_from_step"]
        note = f", resumed at step {resumed}" if resumed else ""
        typer.echo(
            f"wrote {output} ({report['steps']} steps, {report['seconds']:.1f} s, "
            f"loss {report['final']['total']:.4g}{note})"
        )


def _check_local_inputs(styles: list[str], videos: list[str], images: Path | None) -> None:
    """Probe local inputs before Prefect starts: bad files fail in a second, on one line."""
    from nst_video.nst_core.images import load_image
    from nst_video.tasks.train_data import check_any_data
    from nst_video.tasks.video import probe

    check_any_data(videos, images)
    for style in styles:
        if not style.startswith("s3://"):
            load_image(style)
    for video in videos:
        if not video.startswith("s3://"):
            probe(video)


def _prepare(vgg_weights: Path | None) -> None:
    """Hand the weights choice to the task and load TensorFlow quietly (as `nst video`)."""
    from nst_video.nst_cli.main import import_tensorflow_quietly

    if vgg_weights:
        os.environ["NST_VGG19_WEIGHTS"] = str(vgg_weights)
    import_tensorflow_quietly()


def _report(card: dict, output: str) -> dict:
    """The --json object: the headline figures of the card."""
    training = card["training"]
    return {
        "output": output,
        "steps": training["steps"],
        "seconds": training["seconds"],
        "resumed_from_step": training["resumed_from_step"],
        "stopped_early": training["stopped_early"],
        "final": training["final"],
        "precision": training.get("precision"),
        "key": training["key"],
        "settings_hash": card["settings_hash"],
        "network": card["network"],
        "backend": card["backend"],
    }


def register(app: typer.Typer) -> None:
    """Add `nst train` to the app."""
    app.command(cls=VariadicCommand)(train)
