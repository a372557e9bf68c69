"""Gatys et al. losses in keras.ops: content, Gram-matrix style, total variation.

Conventions (chosen so default weights behave alike at any image size, layer or style):
- images are RGB in [0, 1], batch-first (B, H, W, 3);
- content and style losses are relative errors: the mean squared difference divided by the
  mean square of the target, so 0 is a perfect match and 1 is "as far as the target is from
  zero", whatever the layer's activation scale (raw VGG19 Gram errors span 1e2..1e12);
- a Gram matrix is normalized by the number of positions H*W;
- total variation is the mean absolute difference between neighbouring pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keras import ops

from nst_video.nst_core.model import preprocess
from nst_video.nst_core.stepper import LossTerms, Targets, TemporalAnchor


def gram_matrix(features):
    """Channel correlations of (B, H, W, C) features, normalized by H*W: shape (B, C, C)."""
    shape = ops.shape(features)
    flat = ops.reshape(features, (shape[0], -1, shape[3]))
    positions = ops.cast(ops.shape(flat)[1], features.dtype)
    return _flat_gram(flat) / positions


@ops.custom_gradient
def _flat_gram(flat):
    """F^T F of (B, P, C) features, with a one-product gradient.

    The gradient of F^T F is F (U + U^T) for an upstream U: one matmul where autodiff emits
    two, and a plain matmul where einsum's measured 2.7x slower on CPU (benchmarks/speed).
    """
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)

    def grad(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        return ops.matmul(flat, upstream + ops.transpose(upstream, (0, 2, 1)))

    return gram, grad


def _relative_error(value, target):
    return ops.mean(ops.square(value - target)) / (ops.mean(ops.square(target)) + 1e-12)


def content_loss(features, target):
    """Relative squared difference between two activations of the same layer."""
    return _relative_error(features, target)


def style_loss(features, target_gram):
    """Relative squared difference between the Gram matrix of `features` and a target Gram."""
    return _relative_error(gram_matrix(features), target_gram)


def total_variation(image):
    """Mean absolute difference between horizontally and vertically adjacent pixels."""
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return ops.mean(ops.abs(dy)) + ops.mean(ops.abs(dx))


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float
    style_layers: tuple[float, ...]


LossFn = Callable[..., LossTerms]
"""loss(image, targets: Targets, anchor: TemporalAnchor | None = None) -> LossTerms."""


def temporal_loss(image, anchor: TemporalAnchor):
    """Masked mean squared difference from a reference output, where the input is unchanged.

    Flow-free: the mask comes from the input frames only, so moving regions stay free to
    follow the motion.
    """
    return anchor.weight * ops.mean(anchor.mask * ops.square(image - anchor.reference))


def make_loss_fn(model, n_content: int, weights: LossWeights) -> LossFn:
    """Return loss(image, targets, anchor=None) -> LossTerms of tensors.

    `model` outputs the content layers first, then the style layers; its outputs may be bf16
    (precision "bfloat16"): the losses are computed in float32. Targets are arguments, not
    constants, so one compiled step serves every frame of a video.
    """

    def loss(image, targets: Targets, anchor: TemporalAnchor | None = None) -> LossTerms:
        outputs = [ops.cast(f, "float32") for f in model(preprocess(image))]
        content = sum(
            content_loss(f, t) for f, t in zip(outputs[:n_content], targets.content, strict=True)
        )
        style = sum(
            w * style_loss(f, g)
            for w, f, g in zip(
                weights.style_layers, outputs[n_content:], targets.style_grams, strict=True
            )
        )
        tv = total_variation(image)
        temporal = temporal_loss(image, anchor) if anchor is not None else ops.zeros(())
        total = weights.content * content + weights.style * style + weights.tv * tv + temporal
        return LossTerms(total, content, style, tv, temporal)

    return loss
