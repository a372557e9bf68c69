"""The feed-forward image transformation network of fast mode (Johnson et al. 2016 layout).

One forward pass stylizes a frame with a style learned in training (nst_core.fast_train),
instead of hundreds of optimization steps per frame. Layout, with width w:

    reflect-pad to a multiple of 4
    9x9 conv w -> 3x3 conv stride 2, 2w -> 3x3 conv stride 2, 4w     (each + IN + ReLU)
    residual blocks at 4w: 3x3 conv, IN, ReLU, 3x3 conv, IN, + input
    nearest x2 upsample + 3x3 conv 2w -> nearest x2 upsample + 3x3 conv w (each + IN + ReLU)
    9x9 conv 3 -> sigmoid, crop back to the input size

Choices:
- every convolution reflect-pads its own input and convolves "valid": zero padding makes
  dark borders that the style loss then decorates;
- upsampling is nearest-neighbour + conv, not a transposed conv, whose uneven kernel overlap
  at stride 2 prints a checkerboard (Odena et al. 2016);
- instance normalization (Ulyanov et al. 2016) is Keras's GroupNormalization with one group
  per channel: per image statistics, so a batch of crops and a single frame behave alike;
- sigmoid output: (tanh(x) + 1) / 2 is the same function at twice the slope, so the two
  differ only in the scale of the last conv; sigmoid reads directly as [0, 1] and, unlike a
  clip, never zeroes the gradient of out-of-range pixels.

Pure Keras 3 layers and keras.ops: the same model (and its ``.keras`` file) runs on
TensorFlow and JAX. Custom layers are registered under the package "nst_video" so
``keras.saving.load_model(path, safe_mode=True)`` rebuilds them without Python lambdas.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import keras
from keras import ops

PACKAGE = "nst_video"
# Two stride-2 convs: sizes that are multiples of 4 come back unchanged.
MULTIPLE = 4
# Smallest side the network takes: the 9x9 conv reflect-pads by 4 and the quarter-resolution
# 3x3 convs by 1, and a reflection pad must be smaller than the side it mirrors.
MIN_SIDE = 8


@dataclass(frozen=True)
class FastNetConfig:
    """The architecture of a network: recorded on a saved model's card, rebuilt from it.

    `width` is the channel count of the full-resolution convs (Johnson et al.: 32);
    `residual_blocks` the number of blocks at quarter resolution (Johnson et al.: 5).
    """

    width: int = 32
    residual_blocks: int = 5

    def __post_init__(self) -> None:
        if self.width < 1 or self.residual_blocks < 0:
            raise ValueError(f"invalid FastNetConfig {self}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, int]) -> FastNetConfig:
        return cls(**values)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReflectionPad2D(keras.layers.Layer):
    """Mirror `pad` pixels on every side of a (B, H, W, C) batch (edge pixel not repeated)."""

    def __init__(self, pad: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        p = self.pad
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = 2 * self.pad
        return (b, None if h is None else h + grow, None if w is None else w + grow, c)

    def get_config(self) -> dict:
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Reflect-pad the bottom and right of a batch up to the next multiple of `multiple`."""

    def __init__(self, multiple: int = MULTIPLE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        shape = ops.shape(x)
        grow_h = (-shape[1]) % self.multiple
        grow_w = (-shape[2]) % self.multiple
        return ops.pad(x, [[0, 0], [0, grow_h], [0, grow_w], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        m = self.multiple
        return (b, None if h is None else -(-h // m) * m, None if w is None else -(-w // m) * m, c)

    def get_config(self) -> dict:
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropLike(keras.layers.Layer):
    """Crop `x` to the height and width of `reference` (undoes PadToMultiple)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


class _Seeds:
    """Distinct, reproducible initializer seeds: one per conv, derived from the net's seed."""

    def __init__(self, seed: int) -> None:
        self._next = seed * 1000

    def __call__(self) -> int:
        self._next += 1
        return self._next


def _conv(x, filters: int, kernel: int, stride: int, name: str, seeds: _Seeds):
    """Reflection pad + valid conv (stride 1 keeps the size, stride 2 halves a multiple of 2)."""
    x = ReflectionPad2D(kernel // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="valid",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()),
        name=name,
    )(x)


def _instance_norm(x, name: str):
    """Instance normalization with a learned per-channel scale and shift."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=f"{name}_norm")(x)


def _conv_norm_relu(x, filters: int, kernel: int, stride: int, name: str, seeds: _Seeds):
    x = _instance_norm(_conv(x, filters, kernel, stride, name, seeds), name)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, filters: int, name: str, seeds: _Seeds):
    y = _conv_norm_relu(x, filters, 3, 1, f"{name}_conv1", seeds)
    y = _instance_norm(_conv(y, filters, 3, 1, f"{name}_conv2", seeds), f"{name}_conv2")
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _upsample(x, filters: int, name: str, seeds: _Seeds):
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_nearest")(x)
    return _conv_norm_relu(x, filters, 3, 1, name, seeds)


def build_fastnet(config: FastNetConfig | None = None, seed: int = 0) -> keras.Model:
    """A fresh network for (B, H, W, 3) images in [0, 1], any H, W >= MIN_SIDE.

    The output has the input's shape, values in (0, 1). The same `config` and `seed` give
    the same initial weights on a given backend (TensorFlow and JAX draw different ones).
    """
    config = config or FastNetConfig()
    w, seeds = config.width, _Seeds(seed)
    image = keras.Input((None, None, 3), name="image")
    x = PadToMultiple(name="pad_to_multiple")(image)
    x = _conv_norm_relu(x, w, 9, 1, "conv_in", seeds)
    x = _conv_norm_relu(x, 2 * w, 3, 2, "down1", seeds)
    x = _conv_norm_relu(x, 4 * w, 3, 2, "down2", seeds)
    for i in range(config.residual_blocks):
        x = _residual_block(x, 4 * w, f"res{i + 1}", seeds)
    x = _upsample(x, 2 * w, "up1", seeds)
    x = _upsample(x, w, "up2", seeds)
    x = _conv(x, 3, 9, 1, "conv_out", seeds)
    x = keras.layers.Activation("sigmoid", name="to_unit_range")(x)
    return keras.Model(image, CropLike(name="crop")([x, image]), name="fastnet")


def config_of(model: keras.Model) -> FastNetConfig:
    """The FastNetConfig a model (built or loaded) was built with, read from its layers."""
    blocks = sum(1 for layer in model.layers if layer.name.endswith("_add"))
    return FastNetConfig(width=model.get_layer("conv_in").filters, residual_blocks=blocks)


def load_fastnet(path: str | os.PathLike[str]) -> keras.Model:
    """Load a network saved with ``model.save("....keras")``, in safe mode (no lambdas).

    Plain ``keras.saving.load_model`` works too once this module is imported: importing it
    registers the custom layers.
    """
    return keras.saving.load_model(path, safe_mode=True)
