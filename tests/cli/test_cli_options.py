"""The settings flags come from the settings models: same flags, defaults and help everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_origin

import annotated_types
import pytest
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from nst_video.nst_cli import options
from nst_video.nst_cli.main import app, main
from nst_video.nst_core.settings import StyleSettings, VideoSettings

COMMANDS = {
    "image": (StyleSettings, options.IMAGE_SETTINGS),
    "video": (VideoSettings, options.VIDEO_SETTINGS),
    "batch": (VideoSettings, options.VIDEO_SETTINGS),
}
# The settings flags of each command (README's "Flags" table): adding or dropping one is a
# visible change of the CLI.
IMAGE_FLAGS = {
    "--size", "--iterations", "--optimizer", "--learning-rate", "--content-weight",
    "--style-weight", "--tv-weight", "--style-blend-weights", "--style-scale", "--init",
    "--original-colors", "--pooling", "--precision", "--scales", "--seed", "--content-layers",
    "--style-layers", "--style-layer-weights", "--tolerance",
}  # fmt: skip
VIDEO_FLAGS = IMAGE_FLAGS - {"--optimizer", "--scales", "--seed"} | {
    "--first-iterations", "--scene-threshold", "--temporal-weight",
}  # fmt: skip
CHUNKING_FLAGS = {  # the flow parameters both flows share (chunking_options)
    "--chunk-frames", "--overlap", "--max-frames", "--crf", "--work-dir",
    "--motion-fidelity-samples",
}  # fmt: skip


def _options(command: str) -> dict[str, TyperOption]:
    group = typer.main.get_command(app)
    params = group.commands[command].params
    return {flag: p for p in params if isinstance(p, TyperOption) for flag in p.opts}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_flag_has_the_models_default_and_help(command):
    model, fields = COMMANDS[command]
    found = _options(command)
    for name in fields:
        field, option = model.model_fields[name], found[options.flag(name)]
        assert field.description and option.help.startswith(field.description), name
        if isinstance(field.default, tuple) or field.default is None:  # lists: text, or unset
            assert option.default is None
            assert option.show_default == (",".join(field.default) if field.default else False)
        else:
            assert option.default == field.default, name


def test_commands_offer_the_same_flags_as_before():
    assert {options.flag(name) for name in options.IMAGE_SETTINGS} == IMAGE_FLAGS
    assert {options.flag(name) for name in options.VIDEO_SETTINGS} == VIDEO_FLAGS
    for command, flags in (("image", IMAGE_FLAGS), ("video", VIDEO_FLAGS), ("batch", VIDEO_FLAGS)):
        assert flags <= set(_options(command)), command
    for command in ("video", "batch"):
        assert set(_options(command)) >= CHUNKING_FLAGS
    assert {"--start", "--duration", "--workers"} & set(_options("batch")) == set()


def test_defaults_that_differ_by_command_come_from_the_models():
    assert (StyleSettings().size, StyleSettings().iterations) == (512, 500)
    assert (VideoSettings().size, VideoSettings().iterations) == (256, 40)
    assert _options("image")["--init"].default == "content"
    assert _options("video")["--init"].default == "prev"
    assert _options("demo")["--size"].default == 128  # the demo's own, smaller run


def test_readme_flags_table_lists_every_flag_and_the_size_defaults():
    readme = Path(__file__).resolve().parents[2] / "README.md"
    table = readme.read_text().split("### Flags")[1].split("\n\n")[1]
    listed = set(re.findall(r"`(--[a-z0-9-]+)`", table))
    assert listed >= IMAGE_FLAGS | VIDEO_FLAGS | CHUNKING_FLAGS
    size_row = next(line for line in table.splitlines() if line.startswith("| `--size`"))
    assert f"{StyleSettings().size} (image), {VideoSettings().size} (video)" in size_row


def _settings_of(model, fields, args: list[str]):
    """Parse `args` with a one-command app made by settings_options; -> (settings, init image)."""
    probe, seen = typer.Typer(), {}

    @probe.command()
    @options.settings_options(model, fields)
    def run(settings: object, init_image: Path | None) -> None:
        seen.update(settings=settings, init_image=init_image)

    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 0, result.output
    return seen["settings"], seen["init_image"]


def test_no_flags_give_the_models_defaults():
    assert _settings_of(StyleSettings, options.IMAGE_SETTINGS, []) == (StyleSettings(), None)
    assert _settings_of(VideoSettings, options.VIDEO_SETTINGS, [])[0] == VideoSettings()


def test_flags_become_the_settings():
    args = ["--init", "prev+delta", "--style-layers", "block1_conv1, block2_conv1"]
    args += ["--style-blend-weights", "1,3", "--original-colors", "--size", "64"]
    settings, _ = _settings_of(VideoSettings, options.VIDEO_SETTINGS, args)
    assert settings.frame_init == "prev+delta" and settings.init == "content"
    assert settings.style_layers == ("block1_conv1", "block2_conv1")
    assert settings.style_blend_weights == (1.0, 3.0)
    assert settings.original_colors and settings.size == 64
    settings, init_image = _settings_of(StyleSettings, options.IMAGE_SETTINGS, ["--init", "a.png"])
    assert settings.init == "image" and init_image == Path("a.png")


def _bad_values(model, fields):
    """(flag, value) pairs just outside each field's bounds or choices."""
    for name in fields:
        field = model.model_fields[name]
        for bound in field.metadata:
            if isinstance(bound, annotated_types.Ge | annotated_types.Gt):
                yield options.flag(name), str(bound.ge - 1 if hasattr(bound, "ge") else bound.gt)
            if isinstance(bound, annotated_types.Le):
                yield options.flag(name), str(bound.le + 1)
        if get_origin(field.annotation) is Literal and name != "init":  # image --init: a path
            yield options.flag(name), "bogus"


BAD = [
    (command, flag, value)
    for command, (model, fields) in COMMANDS.items()
    for flag, value in _bad_values(model, fields)
]


@pytest.mark.parametrize(("command", "flag", "value"), BAD)
def test_a_bad_value_names_its_flag_on_one_line(command, flag, value, tmp_path, capsys):
    out = tmp_path / ("out.jpg" if command == "image" else "out")
    code = main(
        [command, str(tmp_path / "in"), str(tmp_path / "s.jpg"), "-o", str(out), flag, value]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"({flag})" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_batch_names_concurrency_not_workers(tmp_path, capsys):
    args = ["batch", str(tmp_path), str(tmp_path / "s.jpg"), "-o", str(tmp_path / "o")]
    assert main([*args, "--concurrency", "0"]) == 2
    err = capsys.readouterr().err
    assert "--concurrency" in err and "--workers" not in err


@pytest.mark.parametrize(("flag", "value"), [("--chunk-frames", "0"), ("--overlap", "-1")])
def test_bad_chunking_names_its_flag(flag, value, tmp_path, capsys):
    args = ["video", str(tmp_path / "in.mp4"), str(tmp_path / "s.jpg"), "-o", str(tmp_path / "o")]
    assert main([*args, flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and err.count("\n") == 1


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from nst_video.nst_cli.main import main\n"
        "for args in (['--help'], ['image', '--help'], ['video', '--help'], ['batch', '--help']):\n"
        "    assert main(args) == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_video_takes_a_pool_or_a_dask_cluster_for_its_chunks_not_both(
    basic, assets, tmp_path, capsys
):
    style = str(assets / "styles" / "starry_night.jpg")
    args = ["video", str(basic), style, "-o", str(tmp_path / "o.mp4"), "--fan-out", "pool"]
    assert main([*args, "--dask-workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "nst: error: give --fan-out pool or a Dask cluster for the chunks, not both\n"
