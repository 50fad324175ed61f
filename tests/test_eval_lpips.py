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
    from spade_tf.evaluation.alexnet import AlexNetFeatures, default_alexnet_weights

    missing = tmp_path / "nope.npz"
    monkeypatch.setenv("SPADE_ALEXNET_WEIGHTS", str(missing))
    assert default_alexnet_weights() == missing
    with pytest.raises(SpadeError, match="SPADE_ALEXNET_WEIGHTS"):
        AlexNetFeatures()
    with pytest.raises(SpadeError, match="nope.npz"):
        AlexNetFeatures(tmp_path / "nope.npz")


def test_default_weights_path_is_repo_parent_shared(monkeypatch):
    from spade_tf.evaluation.alexnet import default_alexnet_weights

    monkeypatch.delenv("SPADE_ALEXNET_WEIGHTS", raising=False)
    assert default_alexnet_weights().resolve() == WEIGHTS.resolve()


@needs_weights
def test_alexnet_features_shapes_and_frozen():
    import keras

    from spade_tf.evaluation.alexnet import AlexNetFeatures

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
