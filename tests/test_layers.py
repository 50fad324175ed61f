"""Layer tests: serialization, shapes, spectral norm against numpy, PyTorch norm semantics."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from spade_tf.layers import (
    SPADE,
    BatchNorm,
    InstanceNorm,
    SPADEResBlock,
    SpectralNormalization,
    nearest_resize,
)


def roundtrip(layer, *inputs):
    out = layer(*inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    return out, clone(*inputs)


def test_spade_shapes_and_roundtrip():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 6)).astype("float32")
    seg = rng.normal(size=(2, 32, 32, 5)).astype("float32")
    layer = SPADE(6, norm_type="instance", kernel_size=3, nhidden=16)
    out, again = roundtrip(layer, x, seg)
    assert out.shape == (2, 8, 8, 6)
    np.testing.assert_allclose(out, again, atol=1e-6)
    assert layer.get_config()["nhidden"] == 16


def test_spade_formula():
    """out = norm(x) * (1 + gamma) + beta with gamma, beta from the nearest-resized segmap."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 4, 3)).astype("float32")
    seg = rng.normal(size=(1, 8, 8, 2)).astype("float32")
    layer = SPADE(3, norm_type="instance", nhidden=4)
    out = layer(x, seg).numpy()
    small = seg[:, ::2, ::2]
    actv = np.maximum(layer.mlp_shared(small).numpy(), 0)
    gamma, beta = layer.mlp_gamma(actv).numpy(), layer.mlp_beta(actv).numpy()
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * (1 + gamma) + beta
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_nearest_resize_picks_floor_index_like_pytorch():
    x = np.arange(2 * 10 * 7, dtype="float32").reshape(1, 10, 7, 2)
    out = nearest_resize(x, 4, 3).numpy()
    rows, cols = np.floor(np.arange(4) * 10 / 4).astype(int), np.floor(np.arange(3) * 7 / 3).astype(int)
    np.testing.assert_array_equal(out, x[:, rows][:, :, cols])
    # integer factor: the top-left pixel of each block (not the centre, as TF's resize picks)
    small = ops.convert_to_numpy(nearest_resize(x[:, :8, :6], 2, 3))
    np.testing.assert_array_equal(small, x[:, 0:8:4, 0:6:2])


def _numpy_power_iteration(w_mat, u, eps=1e-12):
    v = w_mat.T @ u
    v = v / max(np.linalg.norm(v), eps)
    u = w_mat @ v
    u = u / max(np.linalg.norm(u), eps)
    return u, v, u @ w_mat @ v


def test_spectral_norm_matches_numpy_power_iteration():
    rng = np.random.default_rng(2)
    layer = SpectralNormalization(keras.layers.Conv2D(4, 3, padding="same"))
    x = rng.normal(size=(1, 5, 5, 3)).astype("float32")
    layer.build(x.shape)
    kernel = layer.layer.kernel.numpy()
    w_mat = kernel.transpose(3, 2, 0, 1).reshape(4, -1)  # PyTorch's weight.reshape(out, -1)
    u0 = layer.u.numpy()
    y = layer(x, training=True).numpy()
    u, v, sigma = _numpy_power_iteration(w_mat, u0)
    np.testing.assert_allclose(layer.u.numpy(), u, rtol=1e-5)
    np.testing.assert_allclose(layer.v.numpy(), v, rtol=1e-5)
    expected = tf.nn.conv2d(x, kernel / sigma, 1, "SAME").numpy() + layer.layer.bias.numpy()
    np.testing.assert_allclose(y, expected, atol=1e-5)
    # the kernel variable itself is untouched (no in-place overwrite, unlike keras' own layer)
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), kernel)
    # inference uses the stored u, v and does not iterate
    u_before = layer.u.numpy().copy()
    y_eval = layer(x, training=False).numpy()
    np.testing.assert_array_equal(layer.u.numpy(), u_before)
    np.testing.assert_allclose(y_eval, y, atol=1e-5)
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias"]
    assert {w.name for w in layer.non_trainable_weights} == {"u", "v"}


def test_spectral_norm_converges_to_largest_singular_value():
    layer = SpectralNormalization(keras.layers.Dense(6))
    x = np.ones((1, 5), "float32")
    layer.build(x.shape)
    for _ in range(100):
        layer(x, training=True)
    w_sn = layer.normalized_kernel(training=False).numpy()
    assert np.linalg.svd(w_sn, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-4)


def test_spectral_norm_gradient_flows_through_sigma():
    """d loss / d W equals finite differences of loss(W / sigma(W)) with u, v held fixed."""
    rng = np.random.default_rng(3)
    layer = SpectralNormalization(keras.layers.Dense(3, use_bias=False))
    x = rng.normal(size=(4, 2)).astype("float64")
    layer.build(x.shape)
    kernel = layer.layer.kernel
    u, v = layer.u.numpy().astype("float64"), layer.v.numpy().astype("float64")
    target = rng.normal(size=(4, 3))

    def loss_np(w):  # w: [in, out]; W_mat = w.T
        sigma = u @ w.T @ v
        return np.sum((x @ (w / sigma) - target) ** 2)

    with tf.GradientTape() as tape:
        y = layer(x.astype("float32"), training=False)
        loss = tf.reduce_sum((tf.cast(y, tf.float64) - target) ** 2)
    grad = tape.gradient(loss, kernel.value).numpy()
    w0 = kernel.numpy().astype("float64")
    numeric = np.zeros_like(w0)
    h = 1e-6
    for idx in np.ndindex(w0.shape):
        wp, wm = w0.copy(), w0.copy()
        wp[idx] += h
        wm[idx] -= h
        numeric[idx] = (loss_np(wp) - loss_np(wm)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-3)
    # without the sigma term the gradient would differ: make sure the test can tell
    naive = 2 * x.T @ (x @ (w0 / (u @ w0.T @ v)) - target) / (u @ w0.T @ v)
    assert np.abs(naive - numeric).max() > 10 * np.abs(grad - numeric).max()


def test_batchnorm_has_pytorch_semantics():
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 3.0, size=(4, 3, 3, 2)).astype("float32")
    bn = BatchNorm()
    y = bn(x, training=True).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    n = 4 * 3 * 3
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    y_eval = bn(x, training=False).numpy()
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    np.testing.assert_allclose(y_eval, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    assert not bn.trainable_weights


def test_instance_norm():
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 3)).astype("float32")
    y = InstanceNorm()(x).numpy()
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)


@pytest.mark.parametrize("fin,fout", [(8, 8), (8, 4)])
def test_resblock_shapes_roundtrip_and_shortcut(fin, fout):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 4, 4, fin)).astype("float32")
    seg = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    block = SPADEResBlock(fin, fout, norm_type="batch", nhidden=8)
    out, again = roundtrip(block, x, seg)
    assert out.shape == (2, 4, 4, fout)
    np.testing.assert_allclose(out, again, atol=1e-5)
    assert hasattr(block, "conv_s") == (fin != fout)
    if fin != fout:
        assert block.conv_s.layer.use_bias is False
        # learned 1x1 shortcut is spectral-normalised
        assert isinstance(block.conv_s, SpectralNormalization)


# Modules of layers/ and models/ that may import TensorFlow, each with the reason. Nothing else may.
TENSORFLOW_MODULES = {
    "spade_tf.training.gaugan": "the TensorFlow training model (train_step with tf.GradientTape, "
                              "tf.distribute); its backend-neutral parts are being split out (issue 18.3)",
}

_IMPORT_CHECK = r"""
import importlib, json, os, sys

class NoTensorFlow:
    # raise on any import of tensorflow, whatever name or mechanism asks for it
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras"):
            raise ImportError("TENSORFLOW IMPORT: " + name)
        return None

sys.meta_path.insert(0, NoTensorFlow())
failures = {}
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
    except Exception as e:  # report every module, not just the first
        failures[module] = f"{type(e).__name__}: {e}"
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
import keras
print(json.dumps({"failures": failures, "leaked": leaked, "backend": keras.backend.backend()}))
"""


def test_layers_and_models_import_no_tensorflow():
    """Every module of layers/ and models/ (except TENSORFLOW_MODULES) imports under
    KERAS_BACKEND=jax with TensorFlow made unimportable: a meta-path finder raises on any import of
    `tensorflow` (plain, `from tensorflow import ...`, importlib, or through another module)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("jax", reason="the import check runs under KERAS_BACKEND=jax (pip install jax)")
    root = Path(__file__).resolve().parents[1]
    modules = []
    for folder in ("layers", "models"):
        for path in sorted((root / "spade_tf" / folder).glob("*.py")):
            name = f"spade_tf.{folder}.{path.stem}".replace(".__init__", "")
            if name not in TENSORFLOW_MODULES:
                modules.append(name)
    for name in TENSORFLOW_MODULES:  # an exception for a module that is gone is stale
        assert (root / (name.replace(".", "/") + ".py")).exists(), f"{name} no longer exists"
    modules.append("spade_tf.convert.official")  # the converter runs on every backend too
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_CHECK, json.dumps(modules)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["failures"] == {}, report["failures"]
    assert report["leaked"] == []
    assert len(modules) >= 10


def test_ops_backend_smoke():
    assert ops.convert_to_numpy(nearest_resize(np.zeros((1, 4, 4, 1), "float32"), 2, 2)).shape == (1, 2, 2, 1)


@pytest.mark.parametrize("kernel_size,batch", [(3, 2), (1, 1), (5, 1)])
def test_same_conv_gradients_equal_the_native_ones(kernel_size, batch):
    """`same_conv` takes its gradients as forward convs; they must be the convolution's own."""
    from spade_tf.layers.conv import same_conv

    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(batch, 7, 9, 3)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(batch, 7, 9, 5)).astype("float32"))
    grads = []
    for conv in (same_conv, lambda a, b: tf.nn.conv2d(a, b, 1, "SAME")):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
        grads.append([y] + tape.gradient(y, [x, kernel], output_gradients=upstream))
    for ours, native in zip(grads[0], grads[1], strict=True):
        np.testing.assert_allclose(ours.numpy(), native.numpy(), rtol=1e-5, atol=1e-4)


def test_conv2d_forward_gradients_switch():
    """The Conv2D subclass: same outputs and weight gradients with the switch on or off; on by
    default on a CPU-only TensorFlow; strided convs always take the native path."""
    from spade_tf.layers import conv as conv_module

    assert conv_module.forward_conv_gradients() == (not tf.config.list_physical_devices("GPU"))
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(2, 6, 6, 4)).astype("float32"))
    weights = None
    results = []
    for flag in (True, False):
        layer = conv_module.conv2d(3, 3, spectral=True, forward_gradients=flag)
        layer.build(x.shape)
        weights = weights or layer.get_weights()
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            y = layer(x, training=False)
            loss = tf.reduce_sum(y * y)
        results.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, layer.trainable_variables)])
        graph = tf.function(lambda layer=layer: layer(x)).get_concrete_function().graph
        has_custom = any(op.type == "IdentityN" for op in graph.get_operations())
        assert has_custom == flag
    for on, off in zip(*results, strict=True):  # float32 sums, another order (1.2e-5 seen)
        np.testing.assert_allclose(on, off, rtol=1e-4, atol=1e-5)
    strided = conv_module.Conv2D(2, 3, strides=2, padding="same")
    strided.build(x.shape)
    assert not strided._plain_same()
    clone = conv_module.Conv2D.from_config(strided.get_config())
    assert isinstance(clone, conv_module.Conv2D) and clone.strides == (2, 2)
