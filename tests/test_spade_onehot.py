"""SPADE's one-hot look-up path: same values and gradients as the conv, plain conv otherwise."""

import keras
import numpy as np
import tensorflow as tf

from spade_tf.config import get_preset
from spade_tf.layers import SPADE
from spade_tf.models import SPADEGenerator, make_semantics


def _pair(n_channels, onehot_channels):
    """Two SPADE layers with the same weights, one with the look-up path enabled."""
    fast = SPADE(4, norm_type="instance", nhidden=8, onehot_channels=onehot_channels)
    plain = SPADE(4, norm_type="instance", nhidden=8)
    x_shape, seg_shape = (2, 6, 6, 4), (2, 12, 12, n_channels)
    fast.build(x_shape, seg_shape)
    plain.build(x_shape, seg_shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype("float32") for w in fast.get_weights()]
    fast.set_weights(weights)
    plain.set_weights(weights)
    return fast, plain


def _onehot_with_edges(rng, n_labels):
    ids = rng.integers(0, n_labels, (2, 12, 12))
    edges = (rng.uniform(size=(2, 12, 12, 1)) < 0.3).astype("float32")
    return np.concatenate([np.eye(n_labels, dtype="float32")[ids], edges], axis=-1)


def test_lookup_matches_conv_values_and_gradients():
    rng = np.random.default_rng(1)
    fast, plain = _pair(6, onehot_channels=5)
    seg = tf.constant(_onehot_with_edges(rng, 5))
    x = tf.constant(rng.normal(size=(2, 6, 6, 4)).astype("float32"))
    calls = []
    original = SPADE._shared_lookup

    def counted(self, *args):
        calls.append(1)
        return original(self, *args)

    SPADE._shared_lookup = counted
    try:
        results = []
        for layer in (fast, plain):
            with tf.GradientTape() as tape:
                out = layer(x, seg)
                loss = tf.reduce_sum(out * out)
            results.append((out.numpy(), [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)]))
    finally:
        SPADE._shared_lookup = original
    assert calls, "the look-up path did not run on an exactly one-hot segmap"
    (out_f, grads_f), (out_p, grads_p) = results
    np.testing.assert_allclose(out_f, out_p, rtol=1e-5, atol=1e-5)
    for gf, gp in zip(grads_f, grads_p, strict=True):
        np.testing.assert_allclose(gf, gp, rtol=1e-4, atol=1e-4)


def test_soft_segmap_falls_back_to_the_conv():
    rng = np.random.default_rng(2)
    fast, plain = _pair(5, onehot_channels=5)
    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    onehot = np.eye(5, dtype="float32")[rng.integers(0, 5, (2, 12, 12))]
    two_labels = onehot.copy()
    two_labels[0, 2, 4] = 1.0  # one pixel with two labels (even coordinates: kept by the 2x resize)
    halves = onehot.copy()
    halves[1, 0, 0] = [0.5, 0.5, 0.0, 0.0, 0.0]  # sums to 1 but is not one-hot
    for seg in (0.5 * onehot, two_labels, halves):
        np.testing.assert_allclose(fast(x, seg).numpy(), plain(x, seg).numpy(), rtol=1e-6, atol=1e-6)


def test_generator_enables_lookups_for_the_label_channels():
    config = get_preset("tiny").replace(no_instance=False)  # label channels + an instance-edge channel
    g = SPADEGenerator(config)
    norms = [layer for layer in g._flatten_layers() if isinstance(layer, SPADE)]
    assert norms and {n.onehot_channels for n in norms} == {config.num_label_channels}
    h, w = config.image_size
    g.build((1, h, w, config.semantic_nc))
    ids = np.random.default_rng(3).integers(0, config.num_label_channels, (1, h, w))
    seg = make_semantics(ids, config, np.zeros((1, h, w, 1), "float32"))
    out = g(seg)
    assert out.shape == (1, h, w, 3) and np.isfinite(keras.ops.convert_to_numpy(out)).all()
