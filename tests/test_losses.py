"""Losses: hand-computed values, and parity with the official losses on the official D outputs."""

from pathlib import Path

import numpy as np
import pytest

from spade_tf.training import losses

SHARED = Path(__file__).parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "official_spade"


def _np(x):
    return np.asarray(x, dtype=np.float64)


# Two scales; logits [B=2, 1, 2, 1]. Sample means: scale0: s0 -> (0.5+(-2))/2, s1 -> (3+1)/2.
S0 = np.array([[[[0.5], [-2.0]]], [[[3.0], [1.0]]]], np.float32)
S1 = np.array([[[[0.0], [0.0]]], [[[-1.0], [2.0]]]], np.float32)


def test_hinge_discriminator_by_hand():
    # real: relu(1 - x); scale0 mean = (0.5 + 3 + 0 + 0)/4 = 0.875; scale1 = (1 + 1 + 2 + 0)/4 = 1.0
    real = losses.gan_loss([S0, S1], True, True, "hinge")
    assert float(real) == pytest.approx((0.875 + 1.0) / 2, abs=1e-6)
    # fake: relu(1 + x); scale0 = (1.5 + 0 + 4 + 2)/4 = 1.875; scale1 = (1 + 1 + 0 + 3)/4 = 1.25
    fake = losses.gan_loss([S0, S1], False, True, "hinge")
    assert float(fake) == pytest.approx((1.875 + 1.25) / 2, abs=1e-6)


def test_hinge_generator_is_minus_mean_logits():
    g = losses.generator_gan_loss([[np.zeros((2, 3, 3, 4), np.float32), S0], [S1]], "hinge")
    assert float(g) == pytest.approx(-(S0.mean() + S1.mean()) / 2, abs=1e-6)  # features ignored


def test_ls_original_w_by_hand():
    x = np.array([[[[2.0]]], [[[-1.0]]]], np.float32)  # B=2, one logit each
    assert float(losses.gan_loss([x], True, True, "ls")) == pytest.approx(((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)
    assert float(losses.gan_loss([x], False, True, "ls")) == pytest.approx((4 + 1) / 2)
    bce_real = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2
    bce_fake = (np.log1p(np.exp(2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert float(losses.gan_loss([x], True, True, "original")) == pytest.approx(bce_real, rel=1e-6)
    assert float(losses.gan_loss([x], False, True, "original")) == pytest.approx(bce_fake, rel=1e-6)
    # the generator's ls / original losses are the "real" targets
    assert float(losses.generator_gan_loss([x], "original")) == pytest.approx(bce_real, rel=1e-6)
    assert float(losses.gan_loss([x], True, True, "w")) == pytest.approx(-0.5)
    assert float(losses.gan_loss([x], False, True, "w")) == pytest.approx(0.5)


def test_original_is_stable_for_large_logits():
    x = np.array([[[[80.0]]], [[[-80.0]]]], np.float32)
    assert float(losses.gan_loss([x], True, True, "original")) == pytest.approx(40.0, rel=1e-5)


def test_global_batch_size_splits_a_batch_into_summable_parts():
    whole = losses.gan_loss([S0, S1], True, True, "hinge")
    parts = [losses.gan_loss([S0[i:i + 1], S1[i:i + 1]], True, True, "hinge", global_batch_size=2)
             for i in range(2)]
    assert float(parts[0] + parts[1]) == pytest.approx(float(whole), abs=1e-6)


def test_feature_matching_by_hand():
    f0 = np.ones((2, 2, 2, 3), np.float32)
    r0 = np.zeros((2, 2, 2, 3), np.float32)
    f1 = np.full((2, 1, 1, 2), 3.0, np.float32)
    r1 = np.full((2, 1, 1, 2), 1.0, np.float32)
    logits = np.full((2, 1, 1, 1), 100.0, np.float32)  # excluded
    fake = [[f0, logits], [f1, logits]]
    real = [[r0, -logits], [r1, -logits]]
    # (|1-0| + |3-1|) * 10 / num_D(2) = 15
    assert float(losses.feature_matching_loss(fake, real, 10.0)) == pytest.approx(15.0)


def test_kld_is_a_sum_by_hand():
    mu = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    logvar = np.array([[0.0, np.log(2.0)], [0.0, 0.0]], np.float32)
    terms = 1 + logvar - mu ** 2 - np.exp(logvar)
    expected = -0.5 * terms.sum() * 0.05
    assert float(losses.kld_loss(mu, logvar, 0.05)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.kld_loss(np.zeros((3, 4)), np.zeros((3, 4)), 1.0)) == pytest.approx(0.0)


def test_weighted_l1_and_lpips_feature_losses_by_hand():
    a = [np.ones((1, 2, 2, 1), np.float32), np.full((1, 1, 1, 2), 2.0, np.float32)]
    b = [np.zeros((1, 2, 2, 1), np.float32), np.zeros((1, 1, 1, 2), np.float32)]
    assert float(losses.weighted_l1_feature_loss(a, b, [0.5, 1.0])) == pytest.approx(0.5 + 2.0)
    f = [np.array([[[[3.0, 4.0]]]], np.float32)]  # unit: (0.6, 0.8)
    r = [np.array([[[[0.0, 2.0]]]], np.float32)]  # unit: (0, 1)
    w = [np.array([1.0, 2.0], np.float32)]
    assert float(losses.lpips_feature_loss(f, r, w)) == pytest.approx(0.36 + 2 * 0.04, rel=1e-5)


def test_gradients_do_not_flow_into_real_features():
    import tensorflow as tf

    fake = tf.Variable(np.ones((1, 2, 2, 2), np.float32))
    real = tf.Variable(np.zeros((1, 2, 2, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = losses.feature_matching_loss([[fake, fake]], [[real, real]], 1.0)
    g_fake, g_real = tape.gradient(loss, [fake, real])
    assert g_real is None
    assert np.allclose(g_fake.numpy(), 1.0 / 8)


def _official(name):
    path = FIXTURES / name / "io.npz"
    if not path.exists():
        pytest.skip(f"official fixtures not found at {path} (shared/ folder absent)")
    return np.load(path)


def _d_outputs(io, which, num_d=2, n_feats=5):
    return [[io[f"d_{which}_scale{i}_feat{j}"].transpose(0, 2, 3, 1) for j in range(n_feats)]
            for i in range(num_d)]


@pytest.mark.parametrize("name", ["tiny_seg", "tiny_vae"])
def test_losses_match_official_values(name):
    io = _official(name)
    fake, real = _d_outputs(io, "fake"), _d_outputs(io, "real")
    got = {
        "loss_G_GAN": losses.generator_gan_loss(fake, "hinge"),
        "loss_G_GAN_Feat": losses.feature_matching_loss(fake, real, 10.0),
        "loss_D_Fake": losses.discriminator_losses(fake, real, "hinge")[0],
        "loss_D_real": losses.discriminator_losses(fake, real, "hinge")[1],
    }
    if "loss_G_KLD" in io.files:
        got["loss_G_KLD"] = losses.kld_loss(io["mu"], io["logvar"], 0.05)
    for key, value in got.items():
        assert _np(value) == pytest.approx(float(io[key]), rel=1e-5), key
    assert ("loss_G_KLD" in got) == (name == "tiny_vae")


# ---- perceptual loss ------------------------------------------------------------------------------

def test_alexnet_perceptual_loss_is_lpips_times_lambda():
    """The offline backbone's loss equals the lpips package's distances (fixture) times lambda_vgg."""
    ref_path = SHARED / "fixtures" / "lpips" / "reference.npz"
    weights = SHARED / "weights" / "lpips_alex_v0.1.npz"
    if not ref_path.exists() or not weights.exists():
        pytest.skip(f"LPIPS fixtures/weights not found under {SHARED}")
    from spade_tf.config import get_preset
    from spade_tf.training.perceptual import build_perceptual_loss

    ref = np.load(ref_path)
    p0 = ref["p0_64"][:6].astype(np.float32) / 127.5 - 1
    p1 = ref["p1_64"][:6].astype(np.float32) / 127.5 - 1
    loss = build_perceptual_loss(get_preset("tiny").replace(lambda_vgg=2.0), weights)
    assert loss.kind == "alexnet"
    for i in range(6):
        assert float(loss(p0[i:i + 1], p1[i:i + 1])) == pytest.approx(2.0 * ref["dist_alex_64"][i], rel=1e-4)
    # a batch is the mean of its samples
    assert float(loss(p0, p1)) == pytest.approx(2.0 * ref["dist_alex_64"][:6].mean(), rel=1e-4)


def test_vgg19_backbone_from_local_weights_file(tmp_path):
    """`--vgg-weights PATH` loads a Keras VGG19 weights file; features are taken at relu{1..5}_1."""
    import keras

    from spade_tf.backbones.vgg19 import VGG_LAYERS, build_vgg19_features, vgg_preprocess

    keras.utils.set_random_seed(0)
    reference = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    # the file Keras downloads is a legacy (Keras 2) .h5 weights file; write one in that format
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    features = build_vgg19_features(path)
    images = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    got = features(images)
    probe = keras.Model(reference.input, [reference.get_layer(n).output for n in VGG_LAYERS])
    want = probe(vgg_preprocess(images))
    assert [tuple(g.shape) for g in got] == [(1, 32, 32, 64), (1, 16, 16, 128), (1, 8, 8, 256),
                                             (1, 4, 4, 512), (1, 2, 2, 512)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-4)
    assert not features.trainable_weights


def test_vgg_preprocess_is_caffe_bgr_mean_subtracted():
    from spade_tf.backbones.vgg19 import vgg_preprocess

    x = np.array([[[[1.0, -1.0, 0.0]]]], np.float32)  # RGB = (255, 0, 127.5)
    np.testing.assert_allclose(np.asarray(vgg_preprocess(x))[0, 0, 0],
                               [127.5 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)


def test_missing_perceptual_weights_stop_with_instructions(tmp_path):
    from spade_tf.config import get_preset
    from spade_tf.errors import SpadeError
    from spade_tf.training.perceptual import build_perceptual_loss

    cfg = get_preset("tiny").replace(perceptual_backbone="vgg19", lambda_vgg=10.0)
    for kwargs in ({"weights": tmp_path / "missing.h5"}, {"weights": None, "allow_download": False}):
        with pytest.raises(SpadeError) as err:
            build_perceptual_loss(cfg, **kwargs)
        for hint in ("--vgg-weights", "perceptual_backbone=alexnet", "lambda_vgg=0"):
            assert hint in str(err.value)
    with pytest.raises(SpadeError, match="lambda_vgg=0"):
        build_perceptual_loss(get_preset("tiny").replace(lambda_vgg=10.0), tmp_path / "missing.npz")
    assert build_perceptual_loss(cfg.replace(lambda_vgg=0.0), tmp_path / "missing.h5") is None


def test_perceptual_backbone_stays_float32_under_mixed_precision():
    import keras

    from spade_tf.config import get_preset
    from spade_tf.training.perceptual import build_perceptual_loss

    weights = SHARED / "weights" / "lpips_alex_v0.1.npz"
    if not weights.exists():
        pytest.skip(f"LPIPS weights not found: {weights}")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        loss = build_perceptual_loss(get_preset("tiny").replace(lambda_vgg=10.0), weights)
        x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
        value = loss(keras.ops.cast(x, "bfloat16"), x)
        assert np.isfinite(float(value)) and float(value) > 0
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored
    finally:
        keras.mixed_precision.set_global_policy("float32")
