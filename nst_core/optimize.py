"""The stepper factory: the Adam step of the active Keras backend, batched if asked.

The contract every stepper keeps (and the loss curve, early stop and Adam settings) lives
in nst_core.stepper; the steps themselves in nst_core.tf_step (TensorFlow) and
nst_core.jax_step (JAX), imported here only when picked.
"""

from __future__ import annotations

import keras

from nst_video.nst_core.batching import BatchingStepper
from nst_video.nst_core.losses import LossWeights
from nst_video.nst_core.stepper import AdamConfig, Stepper


def make_stepper(
    model: keras.Model, n_content: int, weights: LossWeights, config: AdamConfig, batch: int = 1
) -> Stepper:
    """Adam on the images of `model`'s losses: tf.function on TensorFlow, jit on JAX.

    `model` (already in its compute precision) outputs the content layers first, then the
    style layers. With `batch` > 1 the step is wrapped in a BatchingStepper that gathers
    the calls of chains in threads into batches of up to `batch` images (JAX only).
    """
    stepper: Stepper
    if keras.backend.backend() == "jax":
        from nst_video.nst_core.jax_step import JaxAdamStepper

        stepper = JaxAdamStepper(model, n_content, weights, config)
    else:
        from nst_video.nst_core.tf_step import AdamStepper

        stepper = AdamStepper(model, n_content, weights, config)
    if batch > 1:
        return BatchingStepper(stepper, max_batch=batch)
    return stepper
