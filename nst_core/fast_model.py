"""A trained fast-mode network as one file: the Keras `.keras` zip with our card inside.

The card (`nst_card.json` in the zip, beside Keras's own entries) says what the network is
for: its architecture, the styles it learned (sha256 of their image files), the loss
settings and their hash, the training data and run, the backend and the versions. Loading
reads and checks the card before Keras sees the file, then loads with Keras `safe_mode`
(no Python code from the file runs), and checks that the weights match the card's
architecture. A file without our card is refused: it is not a model of this project.

Decision: a model whose styles differ from the styles asked for is refused (the output
would not be the asked-for style); the error names both, so the user can retrain or pass
the model's own styles.
"""

from __future__ import annotations

import hashlib
import json
import platform
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.fastnet import FastNetConfig, config_of
from nst_video.nst_core.files import atomic_path

CARD_ENTRY = "nst_card.json"
FORMAT = "nst-video fast-mode model"
FORMAT_VERSION = 1
SUFFIX = ".keras"


@dataclass(frozen=True)
class ModelCard:
    """What a trained network is for and how it was made (JSON-compatible values only)."""

    network: FastNetConfig
    style_sha256: tuple[str, ...]
    settings: dict[str, Any]  # the loss settings the network was trained with
    settings_hash: str
    training: dict[str, Any] = field(default_factory=dict)  # data, steps, seconds, losses
    backend: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["style_sha256"] = list(self.style_sha256)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        values = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        values["network"] = FastNetConfig.from_dict(values["network"])
        values["style_sha256"] = tuple(values["style_sha256"])
        return cls(**values)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes: the identity of a style image on a card."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def runtime_versions() -> dict[str, str]:
    """The versions a card records: Python, Keras and the backend's framework."""
    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        versions["jax"] = jax.__version__
    return versions


def save_fast_model(net: Any, card: ModelCard, path: str | Path) -> Path:
    """Write `net` and `card` to `path` (a `.keras` file) atomically; returns the path."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise InvalidInputError(f"{path}: a fast-mode model file must end in {SUFFIX}")
    with atomic_path(path) as tmp:
        net.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CARD_ENTRY, json.dumps(card.as_dict(), indent=2, sort_keys=True))
    return path


def read_card(path: str | Path) -> ModelCard:
    """The card of a model file; InvalidInputError (one line) for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such model file")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: model file is empty (0 bytes)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if CARD_ENTRY not in names:
                raise InvalidInputError(
                    f"{path}: not a model of nst-video (a Keras file without our card)"
                    if "config.json" in names
                    else f"{path}: not a model of nst-video (no card)"
                )
            data = json.loads(archive.read(CARD_ENTRY))
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InvalidInputError(f"{path}: not a readable model file ({error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInputError(f"{path}: model card is not valid JSON") from None
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path}: unsupported model format {data.get('format')!r} "
            f"version {data.get('format_version')!r} (this nst-video reads {FORMAT_VERSION})"
        )
    try:
        return ModelCard.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(f"{path}: malformed model card ({error})") from None


def load_fast_model(
    path: str | Path, style_sha256: tuple[str, ...] | None = None
) -> tuple[Any, ModelCard]:
    """The network and card of a model file, checked; refuses other styles when given."""
    import keras

    from nst_video.nst_core import fastnet  # noqa: F401  (registers the custom layers)

    path = Path(path)
    card = read_card(path)
    if style_sha256 is not None and tuple(style_sha256) != card.style_sha256:
        raise InvalidInputError(
            f"{path}: trained for other styles (sha256 {_short(card.style_sha256)}), "
            f"not the ones given ({_short(style_sha256)}); retrain or give the model's styles"
        )
    try:
        net = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a bad file
        message = " ".join(str(error).split())[:200]
        raise InvalidInputError(f"{path}: cannot load the network ({message})") from None
    try:
        found = config_of(net)
    except (ValueError, AttributeError):
        raise InvalidInputError(f"{path}: the file's network is not a fast-mode network") from None
    if found != card.network:
        raise InvalidInputError(
            f"{path}: the network ({found}) does not match its card ({card.network})"
        )
    return net, card


def _short(hashes: tuple[str, ...] | list[str]) -> str:
    return ", ".join(h[:12] for h in hashes) or "none"
