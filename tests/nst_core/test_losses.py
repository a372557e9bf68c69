import numpy as np
from keras import ops

from nst_video.nst_core.losses import content_loss, gram_matrix, style_loss, total_variation


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_gram_matrix_matches_numpy():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 5, 7, 4)).astype("float32")
    flat = features.reshape(2, 35, 4)
    expected = np.einsum("bpc,bpd->bcd", flat, flat) / 35
    np.testing.assert_allclose(_np(gram_matrix(features)), expected, rtol=1e-5, atol=1e-5)


def test_gram_matrix_is_size_normalized():
    """The same texture tiled twice has the same Gram matrix: targets work at any size."""
    rng = np.random.default_rng(1)
    tile = rng.normal(size=(1, 4, 4, 3)).astype("float32")
    tiled = np.concatenate([tile, tile], axis=2)
    np.testing.assert_allclose(_np(gram_matrix(tiled)), _np(gram_matrix(tile)), rtol=1e-5)


def test_style_loss_zero_for_own_gram_and_positive_otherwise():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1, 6, 6, 3)).astype("float32")
    b = rng.normal(size=(1, 6, 6, 3)).astype("float32")
    assert float(_np(style_loss(a, gram_matrix(a)))) < 1e-10
    assert float(_np(style_loss(a, gram_matrix(b)))) > 1e-3


def test_content_loss_is_relative_squared_difference():
    a = np.zeros((1, 2, 2, 1), "float32")
    b = np.full((1, 2, 2, 1), 3.0, "float32")
    assert float(_np(content_loss(b, a + 1.0))) == 4.0  # (3-1)^2 / 1^2


def test_total_variation_matches_numpy():
    rng = np.random.default_rng(3)
    image = rng.uniform(size=(1, 8, 9, 3)).astype("float32")
    expected = np.abs(np.diff(image, axis=1)).mean() + np.abs(np.diff(image, axis=2)).mean()
    assert abs(float(_np(total_variation(image))) - expected) < 1e-6
    assert float(_np(total_variation(np.ones((1, 8, 8, 3), "float32")))) == 0.0


def test_gram_gradient_matches_autodiff_of_the_plain_product():
    """The hand-written Gram gradient, F (U + U^T) / P, equals autodiff of einsum's F^T F."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    features = tf.constant(rng.normal(size=(2, 5, 6, 4)).astype("float32"))
    target = tf.constant(rng.normal(size=(2, 4, 4)).astype("float32"))
    weights = tf.constant(rng.normal(size=(2, 4, 4)).astype("float32"))  # makes U asymmetric

    def plain_gram(f):
        flat = tf.reshape(f, (2, 30, 4))
        return tf.einsum("bpc,bpd->bcd", flat, flat) / 30

    grads = []
    for gram in (gram_matrix, plain_gram):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(weights * tf.square(gram(features) - target))
        grads.append(tape.gradient(loss, features).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    assert np.abs(grads[0]).max() > 1e-3
