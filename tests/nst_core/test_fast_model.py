"""nst_core.fast_model: one .keras file with our card; every bad file is one clear line."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.fast_model import (
    ModelCard,
    file_sha256,
    load_fast_model,
    read_card,
    save_fast_model,
)
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet

TINY = FastNetConfig(width=4, residual_blocks=1)
STYLES = ("a" * 64,)


def _card(network: FastNetConfig = TINY, styles: tuple[str, ...] = STYLES) -> ModelCard:
    return ModelCard(network, styles, {"style_weight": 5.0}, "h" * 64, {"steps": 3})


@pytest.fixture(scope="module")
def net():
    return build_fastnet(TINY, seed=1)


@pytest.fixture(scope="module")
def saved(net, tmp_path_factory) -> Path:
    return save_fast_model(net, _card(), tmp_path_factory.mktemp("m") / "model.keras")


def test_round_trip_gives_the_same_network_and_card(net, saved: Path) -> None:
    loaded, card = load_fast_model(saved, style_sha256=STYLES)
    frame = np.random.default_rng(0).uniform(size=(1, 20, 28, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(frame)), np.asarray(net(frame)))
    assert card == _card()
    assert [p.name for p in saved.parent.iterdir()] == ["model.keras"]  # nothing else left


def test_other_styles_are_refused_naming_both(saved: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"trained for other styles \(sha256 aaaa.*bbbb"):
        load_fast_model(saved, style_sha256=("b" * 64,))


def test_card_that_lies_about_the_network_is_refused(net, tmp_path: Path) -> None:
    path = save_fast_model(
        net, _card(FastNetConfig(width=8, residual_blocks=1)), tmp_path / "m.keras"
    )
    with pytest.raises(InvalidInputError, match="does not match its card"):
        load_fast_model(path)


def test_plain_keras_file_is_not_ours(net, tmp_path: Path) -> None:
    path = tmp_path / "plain.keras"
    net.save(path)
    with pytest.raises(InvalidInputError, match=r"plain.keras: not a model of nst-video"):
        load_fast_model(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such model file"), (b"", "empty"), (b"PK\x03\x04 broken", "not a readable")],
)
def test_missing_empty_and_corrupt_files(tmp_path: Path, content, reason: str) -> None:
    path = tmp_path / "m.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=reason) as info:
        load_fast_model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_future_format_is_refused(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "future.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(copy, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "nst_card.json":
                data = data.replace(b'"format_version": 1', b'"format_version": 99')
            dst.writestr(item, data)
    with pytest.raises(InvalidInputError, match="version 99"):
        read_card(copy)


def test_save_needs_the_keras_suffix_and_leaves_nothing(net, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"must end in \.keras"):
        save_fast_model(net, _card(), tmp_path / "model.h5")
    assert list(tmp_path.iterdir()) == []


def test_file_sha256_is_the_identity_of_the_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"x" * 3)
    b.write_bytes(b"x" * 3)
    assert file_sha256(a) == file_sha256(b) != file_sha256(__file__)


def test_the_bundled_model_paints_the_bundled_style(assets: Path, content_64) -> None:
    style = assets / "styles" / "starry_night.jpg"
    net, card = load_fast_model(
        assets / "models" / "starry_night_fast.keras", style_sha256=(file_sha256(style),)
    )
    painted = np.asarray(net(content_64[None]))[0]
    assert painted.shape == content_64.shape and card.training["steps"] > 0
    assert np.abs(painted - content_64).mean() > 0.1  # a painting, not the photo
