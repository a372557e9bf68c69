import numpy as np
import tensorflow as tf

from nst_video.nst_core.losses import LossWeights
from nst_video.nst_core.model import preprocess
from nst_video.nst_core.stepper import AdamConfig, EarlyStop, LossTerms, RunRequest, Targets
from nst_video.nst_core.tf_step import AdamStepper, run_lbfgs

# A toy problem with a known optimum: an identity "model" with one content layer and no
# style layers, so the loss is the content term and the optimum is the target image.
IDENTITY = (lambda x: [x], 1, LossWeights(1.0, 0.0, 0.0, ()))


def _stepper(config: AdamConfig) -> AdamStepper:
    return AdamStepper(*IDENTITY, config)


def _targets(target: np.ndarray) -> Targets:
    return Targets([preprocess(tf.constant(target))], [])


def _quadratic(image, targets: Targets, _anchor=None) -> LossTerms:
    """A toy loss with a known optimum: the image equal to targets.content[0]."""
    diff = tf.reduce_mean(tf.square(image - targets.content[0]))
    zero = tf.constant(0.0)
    return LossTerms(diff, diff, zero, zero, zero)


def _total(loss: float) -> LossTerms[float]:
    return LossTerms(loss, loss, 0.0, 0.0, 0.0)


def test_early_stop_triggers_on_plateau_not_on_steady_progress():
    stop = EarlyStop(tolerance=1e-3, patience=5)
    assert not any(stop.update(_total(100.0 * 0.9**i)) for i in range(50))
    plateau = EarlyStop(tolerance=1e-3, patience=5)
    hits = [plateau.update(_total(1.0)) for _ in range(10)]
    assert hits.index(True) == 5


def test_early_stop_disabled_with_zero_tolerance():
    stop = EarlyStop(tolerance=0.0, patience=2)
    assert not any(stop.update(_total(1.0)) for _ in range(20))


def test_adam_reaches_the_optimum_and_stays_in_range():
    target = np.full((1, 4, 4, 3), 0.7, "float32")
    stepper = _stepper(AdamConfig(learning_rate=0.05, beta1=0.9, epsilon=1e-8))
    image, curve, state = stepper.run(RunRequest(np.zeros_like(target), 300, _targets(target)))
    assert np.abs(image - 0.7).max() < 0.02
    assert curve.total[-1] < curve.total[0] * 1e-3
    assert float(state.t.numpy()) == 300


def test_adam_state_carries_over_between_runs():
    target = np.full((1, 2, 2, 3), 0.5, "float32")
    stepper = _stepper(AdamConfig())
    _, _, state = stepper.run(RunRequest(np.zeros_like(target), 10, _targets(target)))
    _, _, again = stepper.run(RunRequest(np.zeros_like(target), 5, _targets(target), state=state))
    assert float(again.t.numpy()) == 15 and float(state.t.numpy()) == 10


def test_lbfgs_reaches_the_optimum_within_bounds():
    target = np.full((1, 4, 4, 3), 0.3, "float32")
    targets = Targets([tf.constant(target)], [])
    image, curve = run_lbfgs(_quadratic, np.ones_like(target), 50, targets)
    assert np.abs(image - 0.3).max() < 1e-3
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert curve.total[-1] < curve.total[0]


def test_a_fresh_adam_state_reuses_the_compiled_step():
    """Cold starts (first frames, scene cuts, chunks) must not retrace: ~0.3 s each."""
    targets = _targets(np.full((1, 4, 4, 3), 0.7, "float32"))
    stepper = _stepper(AdamConfig())
    for _ in range(3):
        stepper.run(RunRequest(np.zeros((1, 4, 4, 3), "float32"), 2, targets))
    assert stepper._step.experimental_get_tracing_count() == 1
