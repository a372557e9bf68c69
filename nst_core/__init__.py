"""Gatys et al. neural style transfer on VGG19: images and warm-started frame chains.

Pure TensorFlow/Keras + numpy: no Prefect, no ffmpeg, no boto3. Usable as a library::

    from nst_video.nst_core import load_image, make_settings, stylize_image
    image, stats = stylize_image(load_image("photo.jpg"), [load_image("style.jpg")],
                                 make_settings(size=256, iterations=200))

Names are imported lazily so that `import nst_video.nst_core.errors` (or the CLI's --help) does not
pay for importing TensorFlow.
"""

from importlib import import_module

_EXPORTS = {
    "InvalidInputError": "nst_video.nst_core.errors",
    "InvalidSettingsError": "nst_video.nst_core.errors",
    "NSTError": "nst_video.nst_core.errors",
    "WeightsError": "nst_video.nst_core.errors",
    "load_image": "nst_video.nst_core.images",
    "save_image": "nst_video.nst_core.images",
    "StyleSettings": "nst_video.nst_core.settings",
    "VideoSettings": "nst_video.nst_core.settings",
    "make_settings": "nst_video.nst_core.settings",
    "make_video_settings": "nst_video.nst_core.settings",
    "StyleTransfer": "nst_video.nst_core.stylize",
    "StylizeStats": "nst_video.nst_core.stylize",
    "stylize_image": "nst_video.nst_core.stylize",
    "FrameChain": "nst_video.nst_core.temporal",
    "resolve_weights": "nst_video.nst_core.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nst_core' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
