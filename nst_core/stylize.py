"""Stylize one image: targets from the content and style images, then optimize the pixels.

`StyleTransfer` holds what is shared by every image of a job (the VGG19 features, the style
Gram targets, the compiled step) so a video reuses them frame after frame; `stylize_image`
is the one-image entry point with the coarse-to-fine pyramid and colour preservation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
from keras import ops

from nst_video.nst_core.errors import InvalidInputError, InvalidSettingsError
from nst_video.nst_core.images import resize
from nst_video.nst_core.losses import LossWeights, gram_matrix, make_loss_fn
from nst_video.nst_core.model import feature_model, preprocess
from nst_video.nst_core.optimize import make_stepper
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import StyleSettings
from nst_video.nst_core.size import Size, min_side
from nst_video.nst_core.stepper import (
    AdamConfig,
    EarlyStop,
    LossCurve,
    LossTerms,
    Progress,
    RunRequest,
    Stop,
    Targets,
    TemporalAnchor,
)
from nst_video.nst_core.weights import WeightsInfo


@dataclass
class StylizeStats:
    """What one stylization did: losses before/after, per-term final losses, the curve."""

    initial_loss: float
    final_loss: float
    content_loss: float
    style_loss: float
    tv_loss: float
    iterations: int
    seconds: float
    loss_curve: list[float] = field(default_factory=list)

    def as_dict(self, with_curve: bool = False) -> dict:
        data = asdict(self)
        if not with_curve:
            data.pop("loss_curve")
        return data


class StyleTransfer:
    """The Gatys et al. problem for a fixed set of styles and settings.

    `batch` > 1 gathers the Adam runs of chains in threads into batches (JAX only; see
    nst_core.batching).
    """

    def __init__(
        self,
        styles: Sequence[np.ndarray],
        settings: StyleSettings,
        weights: WeightsInfo | None = None,
        *,
        batch: int = 1,
    ) -> None:
        if not styles:
            raise InvalidSettingsError("at least one style image is required")
        self.settings = settings
        self.styles = [np.asarray(s, dtype="float32") for s in styles]
        self.blend = settings.blend_weights(len(self.styles))
        layers = (*settings.content_layers, *settings.style_layers)
        self.precision = resolve_precision(settings.precision)  # "auto" decided here
        self.model = feature_model(layers, settings.pooling, weights, self.precision)
        self.n_content = len(settings.content_layers)
        self.loss_weights = LossWeights(
            settings.content_weight,
            settings.style_weight,
            settings.tv_weight,
            settings.layer_weights(),
        )
        self.loss_fn = make_loss_fn(self.model, self.n_content, self.loss_weights)
        if settings.optimizer == "lbfgs" and keras.backend.backend() != "tensorflow":
            raise InvalidSettingsError("optimizer lbfgs needs KERAS_BACKEND=tensorflow")
        self.stepper = make_stepper(
            self.model,
            self.n_content,
            self.loss_weights,
            AdamConfig(settings.learning_rate, settings.beta1, epsilon=settings.epsilon),
            batch=batch,
        )
        self._grams: dict[int, list] = {}
        self._grams_lock = threading.Lock()  # chunk threads share a transfer (and its targets)
        self.min_side = min_side(layers)

    def features(self, image: np.ndarray) -> list:
        """float32 activations of the model's layers for an image (H, W, 3) or a batch."""
        batch = ops.convert_to_tensor(image[None] if image.ndim == 3 else image)
        return [ops.cast(f, "float32") for f in self.model(preprocess(batch))]

    def style_grams(self, height: int, width: int) -> list:
        """Blended Gram targets, with style images sized `style_scale` x the output size."""
        longest = max(1, round(self.settings.style_scale * max(height, width)))
        with self._grams_lock:
            return self._style_grams_at(longest)

    def _style_grams_at(self, longest: int) -> list:
        if longest not in self._grams:
            per_style = [
                [weight * gram_matrix(f) for f in self._style_features(style, longest)]
                for weight, style in zip(self.blend, self.styles, strict=True)
            ]
            self._grams[longest] = [
                sum(layer_grams) for layer_grams in zip(*per_style, strict=True)
            ]
        return self._grams[longest]

    def _style_features(self, style: np.ndarray, longest: int) -> list:
        size = Size.of(style).scale_to(longest)
        if size.shortest < self.min_side:
            raise InvalidSettingsError(
                f"style image too small at style_scale {self.settings.style_scale}: "
                f"{size} px, the layers need at least {self.min_side} px"
            )
        return self.features(resize(style, size))[self.n_content :]

    def targets(self, content: np.ndarray) -> Targets:
        """The targets of `content`'s stylization at `content`'s size."""
        return Targets(
            self.features(content)[: self.n_content], self.style_grams(*content.shape[:2])
        )

    def check_size(self, size: Size) -> None:
        if size.shortest < self.min_side:
            raise InvalidSettingsError(
                f"image too small: {size} px, the chosen layers need at least "
                f"{self.min_side} px on the shorter side"
            )

    def loss(self, image: np.ndarray, content: np.ndarray) -> LossTerms[float]:
        """The loss terms (temporal = 0) of `image` (H, W, 3) against `content`."""
        terms = self.loss_fn(ops.convert_to_tensor(image[None]), self.targets(content))
        return LossTerms.of(ops.convert_to_numpy(t) for t in terms.values())

    def optimize(
        self,
        init: np.ndarray,
        content: np.ndarray,
        iterations: int,
        *,
        anchor: TemporalAnchor | None = None,
        state: object | None = None,
        stop: Stop | None = None,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, LossCurve, object]:
        """Adam from `init` (H, W, 3) towards `content`'s stylization: images and frames.

        Returns (image, curve, Adam state to carry on). `stop` defaults to the settings'
        early stop; `anchor` adds the temporal term (nst_core.temporal).
        """
        self.check_size(Size.of(content))
        s = self.settings
        image, curve, state = self.stepper.run(
            RunRequest(
                init[None],
                iterations,
                self.targets(content),
                anchor=anchor,
                state=state,
                stop=EarlyStop(s.tolerance, s.patience) if stop is None else stop,
                progress=progress,
            )
        )
        return image[0], curve, state

    def optimize_lbfgs(
        self,
        init: np.ndarray,
        content: np.ndarray,
        iterations: int,
        *,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, LossCurve]:
        """L-BFGS from `init` (optimizer "lbfgs": still images on TensorFlow only)."""
        from nst_video.nst_core.tf_step import run_lbfgs  # TensorFlow only: checked in __init__

        self.check_size(Size.of(content))
        image, curve = run_lbfgs(
            self.loss_fn, init[None], iterations, self.targets(content), progress=progress
        )
        return image[0], curve


def initial_image(
    content: np.ndarray, settings: StyleSettings, init_image: np.ndarray | None = None
) -> np.ndarray:
    """The starting pixels: the content, seeded uniform noise, or a given image."""
    if settings.init == "noise":
        rng = np.random.default_rng(settings.seed)
        return rng.uniform(0.0, 1.0, size=content.shape).astype("float32")
    if settings.init == "image":
        if init_image is None:
            raise InvalidSettingsError("init 'image' needs an init image")
        return resize(init_image, Size.of(content))
    return content.copy()


def preserve_colors(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Keep the stylized luminance and the content's chroma (BT.601 YUV)."""
    to_yuv = np.array(
        [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]],
        dtype="float32",
    )
    luma = stylized @ to_yuv[0]
    chroma = content @ to_yuv[1:].T
    yuv = np.concatenate([luma[..., None], chroma], axis=-1)
    return np.clip(yuv @ np.linalg.inv(to_yuv).T, 0.0, 1.0).astype("float32")


def pyramid_sizes(full: Size, settings: StyleSettings) -> list[Size]:
    """Output sizes from coarse to fine; the finest has its longest side at settings.size."""
    return [full.scale_to(round(settings.size / 2**k)) for k in reversed(range(settings.scales))]


def stylize_image(
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    settings: StyleSettings,
    *,
    init_image: np.ndarray | None = None,
    weights: WeightsInfo | None = None,
    progress: Progress | None = None,
    transfer: StyleTransfer | None = None,
) -> tuple[np.ndarray, StylizeStats]:
    """Stylize `content` (float RGB in [0, 1]) with `styles`; returns (image, stats).

    With settings.scales > 1 the result of each pyramid level, upsampled, initializes the
    next, so large outputs get their coarse structure cheaply.
    """
    if content.ndim != 3 or content.shape[-1] != 3:
        raise InvalidInputError(f"content must be an RGB image, got shape {content.shape}")
    started = time.perf_counter()
    transfer = transfer or StyleTransfer(styles, settings, weights)
    sizes = pyramid_sizes(Size.of(content), settings)
    transfer.check_size(sizes[0])
    full = resize(content, sizes[-1])
    image = initial_image(resize(content, sizes[0]), settings, init_image)
    initial_loss = transfer.loss(initial_image(full, settings, init_image), full).total
    curve: list[float] = []
    for level, size in enumerate(sizes):
        level_content = resize(content, size)
        if level:
            image = resize(image, size)

        def report(i: int, loss: float, done: int = len(curve)) -> None:
            if progress:
                progress(done + i, loss)

        if settings.optimizer == "lbfgs":
            image, level_curve = transfer.optimize_lbfgs(
                image, level_content, settings.iterations, progress=report
            )
        else:
            image, level_curve, _ = transfer.optimize(
                image, level_content, settings.iterations, progress=report
            )
        curve += level_curve.total
    if settings.original_colors:
        image = preserve_colors(image, full)
    final = transfer.loss(image, full)
    stats = StylizeStats(
        initial_loss=initial_loss,
        final_loss=final.total,
        content_loss=final.content,
        style_loss=final.style,
        tv_loss=final.tv,
        iterations=len(curve),
        seconds=time.perf_counter() - started,
        loss_curve=curve,
    )
    return image, stats


__all__ = ["StyleTransfer", "StylizeStats", "stylize_image"]
