"""One validated settings object for a stylization, with a stable hash.

The hash keys caches, job ids and run manifests: two runs with equal settings (and equal
inputs) produce the same output, so they may share results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.precision import Precision

MAX_SIZE = 4096
VGG19_LAYERS = tuple(
    f"block{block}_conv{conv}"
    for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for conv in range(1, convs + 1)
)
DEFAULT_STYLE_LAYERS = (
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
)


class LossSettings(BaseModel):
    """The loss of a stylization: weights, styles, VGG19 layers and precision.

    Shared by the optimization (StyleSettings) and fast-mode training (TrainSettings), so both
    score images with the same losses on the same network. Each field's default, bounds and
    description are its one declaration: the CLI builds its flags from them
    (nst_cli/options.py).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_weight: float = Field(1.0, ge=0, description="Weight of the content loss.")
    style_weight: float = Field(5.0, ge=0, description="Weight of the style loss.")
    tv_weight: float = Field(0.1, ge=0, description="Weight of total variation.")
    style_blend_weights: tuple[float, ...] | None = Field(
        None, description="Weights of the style images, one per image; equal if unset."
    )
    style_scale: float = Field(
        1.0, gt=0, le=8, description="Style image size relative to the output."
    )
    pooling: Literal["max", "avg"] = Field("max", description="VGG19 pooling: max or avg.")
    precision: Precision = Field(
        "auto",
        description="auto, float32 or bfloat16 (VGG19 in bf16, Grams and losses in float32: "
        "same quality, 1.6-2.6x faster on GPUs and on CPUs with AMX or AVX512-BF16, much "
        "slower on other CPUs). auto: bfloat16 on a GPU or, on TensorFlow, on such a CPU; "
        "float32 elsewhere.",
    )
    content_layers: tuple[str, ...] = Field(
        ("block4_conv2",), description="VGG19 layers of the content loss."
    )
    style_layers: tuple[str, ...] = Field(
        DEFAULT_STYLE_LAYERS, description="VGG19 layers of the style loss."
    )
    style_layer_weights: tuple[float, ...] | None = Field(
        None, description="Weights of the style layers, one per layer; equal if unset."
    )

    @model_validator(mode="after")
    def _check_layers_and_weights(self) -> Self:
        for name in (*self.content_layers, *self.style_layers):
            if name not in VGG19_LAYERS:
                raise ValueError(f"unknown layer {name!r}; choose from {', '.join(VGG19_LAYERS)}")
        if not self.content_layers or not self.style_layers:
            raise ValueError("content_layers and style_layers must not be empty")
        _check_weights("style_layer_weights", self.style_layer_weights, len(self.style_layers))
        _check_weights("style_blend_weights", self.style_blend_weights, None)
        return self

    def blend_weights(self, n_styles: int) -> tuple[float, ...]:
        """Normalized blend weights for `n_styles` style images (equal by default)."""
        weights = self.style_blend_weights or (1.0,) * n_styles
        if len(weights) != n_styles:
            raise InvalidSettingsError(
                f"style_blend_weights has {len(weights)} values for {n_styles} style image(s)"
            )
        total = sum(weights)
        return tuple(w / total for w in weights)

    def layer_weights(self) -> tuple[float, ...]:
        """Per-style-layer weights, equal by default."""
        return self.style_layer_weights or (1.0,) * len(self.style_layers)

    def stable_hash(self) -> str:
        """sha256 of the canonical JSON form: equal settings give equal hashes across runs."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class StyleSettings(LossSettings):
    """Everything that determines a stylized image besides the input pixels: the loss
    (LossSettings) and the optimization of the pixels."""

    size: int = Field(512, gt=0, le=MAX_SIZE, description="Longest side of the output, px.")
    iterations: int = Field(
        500, ge=0, le=100_000, description="Optimizer iterations (per pyramid level)."
    )
    optimizer: Literal["adam", "lbfgs"] = Field("adam", description="adam or lbfgs.")
    learning_rate: float = Field(0.02, gt=0, le=10, description="Adam step size (image in 0..1).")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam's first-moment decay.")
    epsilon: float = Field(1e-8, gt=0, description="Adam's epsilon.")
    init: Literal["content", "noise", "image"] = Field(
        "content",
        description="Start image: content, noise, or image (an init image; the CLI takes its "
        "path).",
    )
    original_colors: bool = Field(False, description="Keep the content's colours.")
    scales: int = Field(1, ge=1, le=6, description="Coarse-to-fine pyramid levels.")
    seed: int = Field(0, description="Seed for noise init.")
    tolerance: float = Field(
        1e-3,
        ge=0,
        description="Early stop below this relative loss improvement over `patience` steps; "
        "0 disables.",
    )
    patience: int = Field(25, ge=1, description="Steps over which `tolerance` is measured.")


SettingsT = TypeVar("SettingsT", bound=LossSettings)


def _check_weights(name: str, weights: tuple[float, ...] | None, expected: int | None) -> None:
    if weights is None:
        return
    if expected is not None and len(weights) != expected:
        raise ValueError(f"{name} has {len(weights)} values, expected {expected}")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"{name} must be non-negative with a positive sum")


def make_settings(_model: type[SettingsT] = StyleSettings, **values: object) -> SettingsT:
    """Build settings (None means default), turning failures into one-line InvalidSettingsError."""
    try:
        return _model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        raise settings_error(error) from None


def settings_error(
    error: ValidationError, labels: Mapping[str, str] | None = None
) -> InvalidSettingsError:
    """The first failure on one line, the field followed by its label if given (a CLI flag)."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    label = f" ({labels[where]})" if labels and where in labels else ""
    message = first["msg"].removeprefix("Value error, ")
    return InvalidSettingsError(f"invalid setting {where}{label}: {message}")


class VideoSettings(StyleSettings):
    """Settings of a frame chain: the image settings plus warm starting and the temporal term.

    `iterations` is the budget of a warm-started frame; `first_iterations` that of a cold
    start (the first frame and every scene cut).
    """

    size: int = Field(
        256, gt=0, le=MAX_SIZE, description="Longest side of the frames, px (never upscaled)."
    )
    iterations: int = Field(40, ge=0, le=100_000, description="Iterations of a warm-started frame.")
    first_iterations: int = Field(
        400,
        ge=0,
        le=100_000,
        description="Iterations of a cold start (each shot's keyframe: the first frame and "
        "each scene cut).",
    )
    frame_init: Literal["prev", "prev+delta", "masked", "content"] = Field(
        "prev",
        description="Warm start: prev, prev+delta, masked (prev where the input is still, "
        "the content where it changed), or content (independent frames).",
    )
    carry_state: bool = Field(True, description="Keep Adam's moments across warm frames.")
    temporal_weight: float = Field(
        1e4, ge=0, description="Pull of unchanged pixels to their earlier output."
    )
    motion_sigma: float = Field(
        0.05, gt=0, description="Input change (0..1) at which the temporal mask falls to 1/e."
    )
    settle_frames: int = Field(
        8, ge=0, le=1000, description="Frames a changed pixel may converge before it is held."
    )
    scene_threshold: float = Field(
        0.3,
        ge=0,
        le=1,
        description="ffmpeg scene score that starts a new shot (cold start); 0 disables.",
    )


def make_video_settings(**values: object) -> VideoSettings:
    """Video settings with the same one-line errors as make_settings."""
    return make_settings(_model=VideoSettings, **values)


class TrainSettings(LossSettings):
    """Training of a fast-mode network (nst_core.fastnet, nst_core.fast_train): the loss
    (LossSettings, the same as the optimization's) plus the network, the data and the run.

    The hash covers every field, so it keys the model cache and the training's checkpoints:
    a model is reused only for the very settings it was trained with.
    """

    size: int = Field(
        256, ge=16, le=MAX_SIZE, description="Longest side the training frames are scaled to, px."
    )
    width: int = Field(
        16, ge=1, le=128, description="Channels of the network's full-resolution convolutions."
    )
    residual_blocks: int = Field(
        5, ge=0, le=16, description="Residual blocks of the network (quarter resolution)."
    )
    # Sized for the 15-min CPU target at crop 128, batch 4 (5 s a step measured on 2 cores
    # shared with other jobs, load ~7: to re-measure on an idle machine).
    steps: int = Field(500, ge=1, le=1_000_000, description="Training steps at most.")
    batch_size: int = Field(4, ge=1, le=64, description="Crops per training step.")
    crop: int = Field(
        128, ge=16, le=1024, description="Side of the square random crops trained on, px."
    )
    frames_per_video: int = Field(
        64, ge=1, le=10_000, description="Frames sampled evenly from each video, at most."
    )
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Adam step of the network.")
    noise_weight: float = Field(
        10.0, ge=0, description="Weight of the output's change under input noise (stability)."
    )
    noise_sigma: float = Field(
        0.02, ge=0, le=1, description="Standard deviation of that input noise (image in 0..1)."
    )
    frame_weight: float = Field(
        10.0,
        ge=0,
        description="Weight of the output's change between consecutive frames where the "
        "input is still; 0 disables.",
    )
    motion_sigma: float = Field(
        0.05, gt=0, description="Input change (0..1) at which the frame term's mask falls to 1/e."
    )
    seed: int = Field(0, ge=0, description="Seed of the network's weights, crops and noise.")
    tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Stop early when the smoothed loss improved by less than this (relative) "
        "over `patience` steps; 0 disables.",
    )
    patience: int = Field(
        200, ge=1, le=100_000, description="Steps over which `tolerance` is measured."
    )
    checkpoint_every: int = Field(
        100, ge=1, le=100_000, description="Steps between checkpoints (a rerun resumes there)."
    )


def make_train_settings(**values: object) -> TrainSettings:
    """Training settings with the same one-line errors as make_settings."""
    return make_settings(_model=TrainSettings, **values)
