"""SPADE's one-hot look-up path: same values and gradients as the conv, plain conv otherwise."""

import keras
import numpy as np
import tensorflow as tf

from spade_tf.config import get_preset
from spade_tf.layers import SPADE
from spade_tf.models import SPADEGenerator, make_semantics


def _pair(n_channels, onehot_channels, **fast_options):
    """Two SPADE layers with the same weights, one with the look-up path enabled."""
    fast = SPADE(4, norm_type="instance", nhidden=8, onehot_channels=onehot_channels, **fast_options)
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


def test_lookup_conv_equals_a_strided_padded_conv():
    """`lookup_conv` at the discriminator's geometry (4x4, stride 2, padding 2) and SPADE's."""
    from spade_tf.layers.lookup import lookup_conv

    rng = np.random.default_rng(6)
    ids = rng.integers(0, 7, (2, 11, 10)).astype("int32")
    for k, stride, pad in ((4, 2, 2), (3, 1, 1), (4, 1, 2)):
        kernel = rng.normal(size=(k, k, 7, 5)).astype("float32")
        padded = np.pad(np.eye(7, dtype="float32")[ids], ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        expected = tf.nn.conv2d(padded, kernel, stride, "VALID").numpy()
        got = lookup_conv(tf.constant(ids), tf.constant(kernel), stride, pad).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_discriminator_first_conv_lookup_matches_the_conv():
    """Full-resolution D with look-ups on: same features and same gradients (weights and image)
    as with them off; a non-one-hot input takes the conv; the coarser scales never look up."""
    from spade_tf.models import MultiscaleDiscriminator
    from spade_tf.models.discriminator import NLayerDiscriminator

    config = get_preset("tiny")
    n = config.num_label_channels
    fast, plain = MultiscaleDiscriminator(config), MultiscaleDiscriminator(config)
    assert [d.onehot_channels for d in fast.discriminators] == [n] + [None] * (config.num_D - 1)
    for d in plain.discriminators:
        d.onehot_channels = None
    rng = np.random.default_rng(7)
    labels = np.eye(n, dtype="float32")[rng.integers(0, n, (2, 32, 32))]
    image = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32"))
    shape = (2, 32, 32, config.semantic_nc + 3)
    fast.build(shape)
    plain.build(shape)
    plain.set_weights(fast.get_weights())
    calls = []
    original = NLayerDiscriminator._first_lookup
    NLayerDiscriminator._first_lookup = lambda self, *a: calls.append(1) or original(self, *a)
    try:
        _compare_discriminators(fast, plain, labels, image)
    finally:
        NLayerDiscriminator._first_lookup = original
    assert calls, "the look-up path did not run on an exactly one-hot input"


def _compare_discriminators(fast, plain, labels, image):
    for seg in (labels, 0.5 * labels):
        results = []
        for d in (fast, plain):
            with tf.GradientTape() as tape:
                tape.watch(image)
                outputs = d(tf.concat([seg, image], -1), training=True)
                loss = sum(tf.reduce_sum(t * t) for scale in outputs for t in scale)
            grads = tape.gradient(loss, [image] + d.trainable_weights)
            results.append([t.numpy() for scale in outputs for t in scale] + [g.numpy() for g in grads])
        for a, b in zip(*results, strict=True):  # float32 summation order, relative to the scale
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


def test_assumed_onehot_treats_all_zero_pixels_as_the_conv_does():
    """Export graphs skip the check (`assume_onehot`); a pixel with no label (all zero, e.g. an
    invalid id in a TFLite/ONNX input) must still give what the conv gives."""
    rng = np.random.default_rng(8)
    fast, plain = _pair(5, onehot_channels=5, assume_onehot=True)
    seg = np.eye(5, dtype="float32")[rng.integers(0, 5, (2, 12, 12))]
    seg[0, :4, :6] = 0.0  # no label in a block (even coordinates survive the 2x resize)
    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    calls = []
    original = SPADE._shared_lookup
    SPADE._shared_lookup = lambda self, *a: calls.append(1) or original(self, *a)
    try:
        graph = tf.function(lambda s: fast(x, s)).get_concrete_function(tf.TensorSpec(seg.shape)).graph
        got = fast(x, seg).numpy()
    finally:
        SPADE._shared_lookup = original
    assert calls and not any(op.type in ("If", "StatelessIf") for op in graph.get_operations())
    np.testing.assert_allclose(got, plain(x, seg).numpy(), rtol=1e-5, atol=1e-5)


def test_given_label_ids_are_the_onehot_ids():
    """Export graphs hand SPADE the int ids they built the one-hot from (`label_ids`, n = none): the
    result is the conv's, and the ids are used as given (not recomputed from the one-hot)."""
    rng = np.random.default_rng(9)
    fast, plain = _pair(5, onehot_channels=5, assume_onehot=True)
    ids = rng.integers(0, 6, (2, 12, 12)).astype("int32")  # 5: no label, the zero row
    seg = np.eye(6, dtype="float32")[ids][..., :5]
    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    want = plain(x, seg).numpy()
    np.testing.assert_allclose(fast(x, seg, label_ids=ids).numpy(), want, rtol=1e-5, atol=1e-5)
    shifted = fast(x, seg, label_ids=(ids + 1) % 6).numpy()
    assert np.abs(shifted - want).max() > 1e-2  # the given ids, not the one-hot's, were looked up
