"""PyTorch (CPU, eager) reference for the stylization step, written for the speed benchmark.

The same problem as `nst_core`'s TensorFlow step, so the two can be timed side by side: VGG19
convolutions from the same weights (``nst_video.nst_core.weights``), caffe preprocessing, the same
content and style layers and pooling, the project's relative losses (Gram / (H*W), mean
absolute TV), Adam on the image with the project's settings, then clipping to [0, 1].
`check_parity` proves that claim on a real image before anything is timed.

PyTorch is a benchmark-only dependency (the ``bench`` extra pins the 2.13.0 CPU build); the
product never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)

from nst_video.nst_core.model import BGR_MEAN
from nst_video.nst_core.settings import StyleSettings
from nst_video.nst_core.stepper import LossCurve, LossTerms, Targets
from nst_video.nst_core.weights import VGG19_CONV_LAYERS, WeightsInfo, load_weights, resolve_weights


@dataclass(frozen=True)
class Conv:
    name: str  # Keras layer name, e.g. "block4_conv2"
    weight: torch.Tensor  # (C_out, C_in, 3, 3)
    bias: torch.Tensor


class TorchFeatures:
    """VGG19 to the deepest requested layer; returns the ReLU outputs of `layers`, in order."""

    def __init__(self, layers: Sequence[str], pooling: str, info: WeightsInfo) -> None:
        arrays = load_weights(info)
        deepest = max(_layer_index(name) for name in layers)
        self.layers = tuple(layers)
        self.pool = F.max_pool2d if pooling == "max" else F.avg_pool2d
        self.convs = [
            Conv(
                name,
                torch.from_numpy(np.ascontiguousarray(arrays[name][0].transpose(3, 2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(arrays[name][1])),
            )
            for name in VGG19_CONV_LAYERS
            if _layer_index(name) <= deepest
        ]

    def __call__(self, bgr: torch.Tensor) -> list[torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        x, block = bgr, 1
        for conv in self.convs:
            conv_block = int(conv.name[5])
            if conv_block != block:  # a pooling layer closes every block
                x, block = self.pool(x, 2, 2), conv_block
            x = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
            if conv.name in self.layers:
                found[conv.name] = x
        return [found[name] for name in self.layers]


def _layer_index(name: str) -> int:
    return VGG19_CONV_LAYERS.index(name)


def preprocess(rgb01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> caffe input: BGR, 0..255, ImageNet mean subtracted."""
    mean = torch.from_numpy(BGR_MEAN).view(1, 3, 1, 1)
    return rgb01.flip(1) * 255.0 - mean


def gram(features: torch.Tensor) -> torch.Tensor:
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((value - target) ** 2) / (torch.mean(target**2) + 1e-12)


def to_nchw(array) -> torch.Tensor:
    """A channels-last array (numpy, or a tensor with .numpy()) as a contiguous NCHW tensor."""
    values = np.asarray(array.numpy() if hasattr(array, "numpy") else array, dtype="float32")
    if values.ndim == 4:
        values = values.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(values))


def nchw_targets(targets: Targets) -> Targets:
    """The project's targets as torch tensors (features NCHW, Grams as they are)."""
    return Targets([to_nchw(t) for t in targets.content], [to_nchw(g) for g in targets.style_grams])


class TorchStepper:
    """Adam on the image, eager PyTorch; `run` mirrors `nst_video.nst_core.tf_step.AdamStepper.run`.

    `settings.precision` "bfloat16" runs VGG19 under CPU autocast (bf16 convolutions) and
    casts its outputs to float32 for the losses, as nst_core does.
    """

    def __init__(self, settings: StyleSettings, info: WeightsInfo | None = None) -> None:
        self.settings = settings
        self.autocast = settings.precision == "bfloat16"
        self.model = TorchFeatures(
            (*settings.content_layers, *settings.style_layers),
            settings.pooling,
            info or resolve_weights(),
        )
        self.n_content = len(settings.content_layers)
        self.layer_weights = settings.layer_weights()

    def loss_terms(self, image, content_targets, style_grams) -> tuple[torch.Tensor, ...]:
        """(total, content, style, tv) of a (B, 3, H, W) image, as nst_core.losses defines."""
        s = self.settings
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            outputs = [f.float() for f in self.model(preprocess(image))]
        content = sum(
            relative_error(f, t)
            for f, t in zip(outputs[: self.n_content], content_targets, strict=True)
        )
        style = sum(
            w * relative_error(gram(f), g)
            for w, f, g in zip(
                self.layer_weights, outputs[self.n_content :], style_grams, strict=True
            )
        )
        tv = torch.mean(torch.abs(image[:, :, 1:] - image[:, :, :-1])) + torch.mean(
            torch.abs(image[:, :, :, 1:] - image[:, :, :, :-1])
        )
        total = s.content_weight * content + s.style_weight * style + s.tv_weight * tv
        return total, content, style, tv

    def run(
        self,
        init,
        iterations: int,
        targets: Targets,
        *,
        state: torch.optim.Adam | None = None,
    ) -> tuple[np.ndarray, LossCurve, torch.optim.Adam]:
        """Optimize from `init` (B, H, W, 3); targets as NCHW tensors, Grams as (B, C, C)."""
        s = self.settings
        image = to_nchw(init).requires_grad_(True)
        if state is None or state.param_groups[0]["params"][0].shape != image.shape:
            state = torch.optim.Adam(
                [image], lr=s.learning_rate, betas=(s.beta1, 0.999), eps=s.epsilon
            )
        else:  # keep the moments, optimize the new image tensor (as a warm video frame does)
            state.param_groups[0]["params"][0].data = image.data
            image = state.param_groups[0]["params"][0]
        curve = LossCurve()
        for _ in range(iterations):
            state.zero_grad(set_to_none=True)
            terms = self.loss_terms(image, targets.content, targets.style_grams)
            terms[0].backward()
            state.step()
            with torch.no_grad():
                image.clamp_(0.0, 1.0)
            curve.append(LossTerms.of([*(t.detach() for t in terms), 0.0]))
        return image.detach().permute(0, 2, 3, 1).numpy(), curve, state


def check_parity(transfer, stepper: TorchStepper, content: np.ndarray) -> dict:
    """Loss terms and gradient of one image under both steps; raises if they disagree.

    `transfer` is the `nst_video.nst_core.stylize.StyleTransfer` being timed; `content` (H, W, 3) is
    both the image and the content target, perturbed so no term is zero.
    """
    import tensorflow as tf

    height, width = content.shape[:2]
    rng = np.random.default_rng(0)
    image = np.clip(content + rng.normal(0, 0.05, content.shape), 0, 1).astype("float32")[None]
    targets = transfer.targets(content)

    tf_image = tf.constant(image)
    with tf.GradientTape() as tape:
        tape.watch(tf_image)
        tf_terms = transfer.loss_fn(tf_image, targets).values()
    tf_grad = tape.gradient(tf_terms[0], tf_image).numpy().transpose(0, 3, 1, 2)

    torch_image = to_nchw(image).requires_grad_(True)
    torch_targets = nchw_targets(targets)
    torch_terms = stepper.loss_terms(torch_image, torch_targets.content, torch_targets.style_grams)
    torch_terms[0].backward()
    torch_grad = torch_image.grad.numpy()

    names = ("total", "content", "style", "tv")
    relative = {
        name: abs(float(a) - float(b.detach())) / max(abs(float(a)), 1e-12)
        for name, a, b in zip(names, tf_terms, torch_terms, strict=False)
    }
    cosine = float(
        np.sum(tf_grad * torch_grad) / (np.linalg.norm(tf_grad) * np.linalg.norm(torch_grad))
    )
    report = {"relative_loss_difference": relative, "gradient_cosine": cosine}
    if max(relative.values()) > 1e-3 or cosine < 0.999:
        raise RuntimeError(f"the PyTorch reference disagrees with the TensorFlow step: {report}")
    return report
