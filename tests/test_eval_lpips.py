"""AlexNet features and LPIPS-alex v0.1 against the `lpips` package's reference distances."""

from pathlib import Path

import numpy as np
import pytest

from spade_tf.errors import SpadeError

SHARED = Path(__file__).parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "lpips_alex_v0.1.npz"
REFERENCE = SHARED / "fixtures" / "lpips" / "reference.npz"

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"LPIPS weights missing: {WEIGHTS}")
needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason=f"LPIPS fixture missing: {REFERENCE}")


@pytest.fixture(scope="module")
def metric():
    from spade_tf.evaluation.lpips import LPIPS

    return LPIPS(WEIGHTS)


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE) as f:
        return {k: f[k] for k in f.files}


def test_missing_weights_raise_spade_error_naming_the_env_var(tmp_path, monkeypatch):
    from spade_tf.backbones.alexnet import AlexNetFeatures

    missing = tmp_path / "nope.npz"
    monkeypatch.setenv("SPADE_ALEXNET_WEIGHTS", str(missing))
    with pytest.raises(SpadeError, match="SPADE_ALEXNET_WEIGHTS") as e:
        AlexNetFeatures()
    assert "nope.npz" in str(e.value)
    with pytest.raises(SpadeError, match="nope.npz"):
        AlexNetFeatures(tmp_path / "nope.npz")


def test_default_weights_never_come_from_a_shared_folder(monkeypatch):
    """No path, no variable, empty cache, downloading off: an error naming the published files."""
    from spade_tf.backbones.alexnet import AlexNetFeatures

    monkeypatch.delenv("SPADE_ALEXNET_WEIGHTS", raising=False)
    with pytest.raises(SpadeError) as e:
        AlexNetFeatures()
    msg = str(e.value)
    assert "download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg
    assert "PerceptualSimilarity" in msg and "lpips/weights/v0.1/alex.pth" in msg
    assert "shared" not in msg


def _xla_gradient(fn, x):
    """d fn(x) / dx under XLA (training's default), where sqrt(0)'s infinite derivative gives NaN."""
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, x)

    y, g = grad(tf.constant(x))
    return y.numpy(), g.numpy()


def test_lpips_distance_is_finite_with_finite_gradient_at_zero_features():
    import tensorflow as tf

    from spade_tf.evaluation.lpips import lpips_from_features, unit_normalize

    zero = np.zeros((1, 2, 2, 4), np.float32)
    other = np.random.RandomState(0).uniform(0, 1, (1, 2, 2, 4)).astype("float32")
    heads = [np.ones(4, np.float32)]
    d, grad = _xla_gradient(lambda f: lpips_from_features([f], [tf.constant(other)], heads), zero)
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(grad))
    # the value is LPIPS's own: n(0) = 0, so the distance is mean_hw sum_c n(other)^2 = 1
    np.testing.assert_allclose(d, [1.0], rtol=1e-6)
    # elsewhere the same numbers as LPIPS's formula
    np.testing.assert_allclose(unit_normalize(other).numpy(),
                               other / (np.sqrt((other * other).sum(-1, keepdims=True)) + 1e-10), rtol=1e-6)

    def plain(f):  # lpips.normalize_tensor as written: NaN gradient at 0 (what this guards against)
        n = f / (tf.sqrt(tf.reduce_sum(f * f, -1, keepdims=True)) + 1e-10)
        return tf.reduce_sum(tf.square(n - unit_normalize(other)))

    assert np.isnan(_xla_gradient(plain, zero)[1]).any()


def test_alexnet_perceptual_loss_gradient_is_finite_where_features_are_zero():
    """The perceptual loss's own path (relu maps that are all zero at some pixels), under XLA."""
    from keras import ops

    from spade_tf.training.perceptual import PerceptualLoss

    loss = PerceptualLoss(lambda x: [ops.relu(x), ops.relu(-x)], "alexnet",
                          [np.ones(3, np.float32), np.full(3, 0.5, np.float32)], lambda_vgg=10.0)
    fake = np.random.RandomState(1).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    fake[:, :4] = -1.0  # relu(x) is all zero there
    fake[:, 4:6] = 1.0  # relu(-x) is all zero there
    real = np.random.RandomState(2).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    value, grad = _xla_gradient(lambda f: loss(f, real), fake)
    assert np.isfinite(value) and value > 0 and np.all(np.isfinite(grad))


@needs_weights
def test_alexnet_features_shapes_and_frozen():
    import keras

    from spade_tf.backbones.alexnet import AlexNetFeatures

    net = AlexNetFeatures(WEIGHTS)
    assert not net.trainable and net.trainable_weights == []
    x = np.random.RandomState(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    feats = net(x)
    # torchvision AlexNet on 64x64: conv1 s4 p2 -> 15, pool -> 7, conv2 -> 7, pool -> 3, conv3-5 -> 3.
    assert [tuple(f.shape) for f in feats] == [(2, 15, 15, 64), (2, 7, 7, 192), (2, 3, 3, 384),
                                               (2, 3, 3, 256), (2, 3, 3, 256)]
    assert all(float(keras.ops.min(f)) >= 0 for f in feats)
    assert [tuple(s) for s in net.feature_shapes((2, 64, 64, 3))] == [tuple(f.shape) for f in feats]
    # Registered and serialisable.
    clone = AlexNetFeatures.from_config(net.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)[4]), keras.ops.convert_to_numpy(feats[4]),
                               atol=1e-6)


@needs_weights
@needs_reference
@pytest.mark.parametrize("size", ["64", "256"])
def test_lpips_matches_reference_distances_and_layer_terms(metric, ref, size):
    from spade_tf.evaluation.lpips import uint8_to_unit_range

    x0, x1 = uint8_to_unit_range(ref[f"p0_{size}"]), uint8_to_unit_range(ref[f"p1_{size}"])
    dist = np.asarray(metric([x0, x1]))
    per_layer = np.asarray(metric.per_layer(x0, x1))
    np.testing.assert_allclose(dist, ref[f"dist_alex_{size}"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(per_layer, ref[f"per_layer_alex_{size}"], atol=1e-4, rtol=0)


@needs_weights
@needs_reference
def test_lpips_reproduces_repository_example(metric, ref):
    from spade_tf.evaluation.lpips import lpips_distance, uint8_to_unit_range

    ex = {k: uint8_to_unit_range(ref[k])[None] for k in ("ex_ref", "ex_p0", "ex_p1")}
    d = lpips_distance(np.concatenate([ex["ex_ref"]] * 2), np.concatenate([ex["ex_p0"], ex["ex_p1"]]), metric)
    np.testing.assert_allclose(d, ref["dist_alex_ex"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(d, ref["published_ex_distances"].astype(float), atol=1e-3)


@needs_weights
@needs_reference
def test_lpips_diversity_is_mean_pairwise_distance(metric, ref):
    from spade_tf.evaluation.lpips import lpips_diversity, uint8_to_unit_range

    p0, p1 = uint8_to_unit_range(ref["p0_64"][:6]), uint8_to_unit_range(ref["p1_64"][:6])
    d = ref["dist_alex_64"][:6].astype(np.float64)
    # K = 2: one pair per label map.
    assert lpips_diversity(np.stack([p0, p1], axis=1), metric) == pytest.approx(d.mean(), abs=1e-4)
    # K = 3 with samples (a, b, a): pairs give d, 0, d -> 2d/3 per map.
    div3 = lpips_diversity(np.stack([p0, p1, p0], axis=1), metric)
    assert div3 == pytest.approx((2 * d / 3).mean(), abs=1e-4)
    # One label map given as [K, H, W, 3].
    assert lpips_diversity(np.stack([p0[0], p1[0]]), metric) == pytest.approx(d[0], abs=1e-4)
    with pytest.raises(SpadeError):
        lpips_diversity(p0[:1], metric)
