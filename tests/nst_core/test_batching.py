"""nst_core.batching in the TensorFlow process; its JAX runs are in test_jax_step.py."""

import pytest

from nst_core.batching import BatchingStepper
from nst_core.errors import InvalidSettingsError
from nst_core.settings import make_settings
from nst_core.stylize import StyleTransfer


def test_the_tensorflow_step_is_refused(starry_64, vgg_weights):
    """Its losses average over a batch, so stacked chains would pull on each other."""
    transfer = StyleTransfer([starry_64], make_settings(size=64), vgg_weights)
    with pytest.raises(InvalidSettingsError, match="KERAS_BACKEND=jax"):
        BatchingStepper(transfer.adam, max_batch=2)
