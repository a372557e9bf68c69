"""Tiny fast-mode model files for tests: a width-4, one-block network, untrained (its random
weights still change every pixel), saved with our card naming the test's style images."""

from __future__ import annotations

from pathlib import Path

from nst_video.nst_core.fast_model import ModelCard, file_sha256, save_fast_model
from nst_video.nst_core.fastnet import FastNetConfig, build_fastnet

TINY = FastNetConfig(width=4, residual_blocks=1)


def tiny_model(
    path: Path,
    styles: list[str],
    *,
    network: FastNetConfig = TINY,
    card_network: FastNetConfig | None = None,
    seed: int = 1,
) -> Path:
    """Save a fresh `network` at `path` whose card names `styles` (and `card_network`, if
    given, instead of the real one: a card that lies)."""
    card = ModelCard(
        network=card_network or network,
        style_sha256=tuple(file_sha256(style) for style in styles),
        settings={"style_weight": 5.0},
        settings_hash="0" * 64,
        training={"steps": 0},
    )
    return save_fast_model(build_fastnet(network, seed=seed), card, path)
