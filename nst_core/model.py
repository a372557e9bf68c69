"""VGG19 feature extractor: the network whose activations define content and style.

Built from ``keras.applications.VGG19`` (no top, no bundled weights), truncated at the deepest
layer in use, with max or average pooling, loaded from the weights resolved by
``nst_video.nst_core.weights``. Written against Keras 3 (keras.ops) so only the gradient step is
backend-specific.
"""

from __future__ import annotations

from functools import lru_cache

import keras
import numpy as np
from keras import ops

from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.weights import WeightsInfo, load_weights, resolve_weights

# Caffe preprocessing: BGR channel order, ImageNet mean subtracted, 0..255 range.
BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype="float32")


def preprocess(rgb01):
    """Map an RGB image batch in [0, 1] to VGG19's caffe input (BGR, mean-subtracted, 0..255)."""
    bgr = ops.flip(rgb01, axis=-1) * 255.0
    return bgr - ops.convert_to_tensor(BGR_MEAN)


def _with_pooling(base: keras.Model, pooling: str) -> keras.Model:
    """Swap max pooling for average pooling (Gatys et al. report smoother results with it)."""
    if pooling == "max":
        return base

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.MaxPooling2D):
            return keras.layers.AveragePooling2D(pool_size=2, strides=2, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(base, clone_function=clone)


def with_dtype_policy(model: keras.Model, policy: str) -> keras.Model:
    """A copy of `model` whose layers compute under `policy` (e.g. "mixed_bfloat16").

    Weights stay float32; each layer casts its input. Cloning leaves `model` untouched.
    """

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


@lru_cache(maxsize=8)
def feature_model(
    layers: tuple[str, ...],
    pooling: str = "max",
    weights: WeightsInfo | None = None,
    precision: str = "float32",
) -> keras.Model:
    """A model mapping a preprocessed batch to the activations of `layers`, in that order.

    `precision` "bfloat16" computes the convolutions in bf16 (outputs are bf16: the losses
    cast them back); "auto" is resolved (nst_core.precision). Cached per arguments: building
    and loading VGG19 costs about a second.
    """
    if resolve_precision(precision) == "bfloat16":
        return with_dtype_policy(feature_model(layers, pooling, weights), "mixed_bfloat16")
    info = weights or resolve_weights()
    base = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    base = _with_pooling(base, pooling)
    for name, (kernel, bias) in load_weights(info).items():
        base.get_layer(name).set_weights([kernel, bias])
    # A functional model keeps only the layers its outputs need: truncated at the deepest one.
    outputs = [base.get_layer(name).output for name in layers]
    model = keras.Model(base.input, outputs, name="vgg19_features")
    model.trainable = False
    return model
