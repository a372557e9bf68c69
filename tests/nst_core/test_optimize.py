import numpy as np
import tensorflow as tf

from nst_core.optimize import AdamConfig, EarlyStop
from nst_core.tf_step import AdamStepper, run_lbfgs


def _quadratic(image, targets, _grams, _anchor=None):
    """A toy loss with a known optimum: the image equal to targets[0]."""
    diff = tf.reduce_mean(tf.square(image - targets[0]))
    zero = tf.constant(0.0)
    return diff, diff, zero, zero, zero


def test_early_stop_triggers_on_plateau_not_on_steady_progress():
    stop = EarlyStop(tolerance=1e-3, patience=5)
    assert not any(stop.update(100.0 * 0.9**i) for i in range(50))
    plateau = EarlyStop(tolerance=1e-3, patience=5)
    hits = [plateau.update(1.0) for _ in range(10)]
    assert hits.index(True) == 5


def test_early_stop_disabled_with_zero_tolerance():
    stop = EarlyStop(tolerance=0.0, patience=2)
    assert not any(stop.update(1.0) for _ in range(20))


def test_adam_reaches_the_optimum_and_stays_in_range():
    target = np.full((1, 4, 4, 3), 0.7, "float32")
    stepper = AdamStepper(_quadratic, AdamConfig(learning_rate=0.05, beta1=0.9, epsilon=1e-8))
    image, curve, state = stepper.run(np.zeros_like(target), 300, [tf.constant(target)], [])
    assert np.abs(image - 0.7).max() < 0.02
    assert curve.total[-1] < curve.total[0] * 1e-3
    assert float(state.t.numpy()) == 300


def test_adam_state_carries_over_between_runs():
    target = np.full((1, 2, 2, 3), 0.5, "float32")
    stepper = AdamStepper(_quadratic, AdamConfig())
    _, _, state = stepper.run(np.zeros_like(target), 10, [tf.constant(target)], [])
    _, _, again = stepper.run(np.zeros_like(target), 5, [tf.constant(target)], [], state=state)
    assert float(again.t.numpy()) == 15 and float(state.t.numpy()) == 10


def test_lbfgs_reaches_the_optimum_within_bounds():
    target = np.full((1, 4, 4, 3), 0.3, "float32")
    image, curve = run_lbfgs(_quadratic, np.ones_like(target), 50, [tf.constant(target)], [])
    assert np.abs(image - 0.3).max() < 1e-3
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert curve.total[-1] < curve.total[0]


def test_a_fresh_adam_state_reuses_the_compiled_step():
    """Cold starts (first frames, scene cuts, chunks) must not retrace: ~0.3 s each."""
    target = tf.constant(np.full((1, 4, 4, 3), 0.7, "float32"))
    stepper = AdamStepper(_quadratic, AdamConfig())
    for _ in range(3):
        stepper.run(np.zeros((1, 4, 4, 3), "float32"), 2, [target], [])
    assert stepper._step.experimental_get_tracing_count() == 1
