"""GauGAN training model: the official step order, losses on/off, D_steps_per_G, EMA, fit."""

import numpy as np
import pytest

from spade_tf.config import get_preset

# the tiny preset, smaller still: a 1x1 latent grid, one D scale, 8 classes
SMALL = ["crop_size=32", "load_size=32", "batchSize=2", "lambda_vgg=0", "ngf=4", "ndf=4", "spade_nhidden=8",
         "num_D=1", "n_layers_D=2"]


def small_config(*extra):
    return get_preset("tiny").with_overrides(SMALL + list(extra))


def batch(config, n=2, seed=0):
    rng = np.random.default_rng(seed)
    h, w = config.image_size
    return {"label_map": rng.integers(0, config.num_label_channels, (n, h, w)).astype(np.int32),
            "image": rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32)}


def make_model(config, **kwargs):
    from spade_tf.models import build_networks
    from spade_tf.training.gaugan import GauGAN

    g, d, e = build_networks(config)
    model = GauGAN(config, g, d, e, kwargs.pop("perceptual", None), **kwargs)
    model.compile(run_eagerly=True)
    return model


def weights(net):
    return [np.array(v) for v in net.weights]


def max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def test_default_optimizers_are_official():
    from spade_tf.training.gaugan import default_optimizers

    g, d = default_optimizers(get_preset("tiny"))
    assert (float(g.learning_rate), float(d.learning_rate)) == pytest.approx((1e-4, 4e-4))
    assert (g.beta_1, g.beta_2, d.beta_1, d.beta_2) == (0.0, 0.9, 0.0, 0.9)
    g, d = default_optimizers(get_preset("tiny").with_overrides(["no_TTUR=true", "beta1=0.5", "beta2=0.999"]))
    assert (float(g.learning_rate), float(d.learning_rate)) == pytest.approx((2e-4, 2e-4))
    assert (g.beta_1, g.beta_2) == (0.5, 0.999)


def _manual_step(config, g, d, data, fresh_fake=True):
    """The official iteration written out: G step on GAN + feature matching, then D on a new fake."""
    import tensorflow as tf

    from spade_tf.models import make_semantics
    from spade_tf.training import losses
    from spade_tf.training.gaugan import default_optimizers

    opt_g, opt_d = default_optimizers(config)
    sem = make_semantics(data["label_map"], config)
    real = tf.constant(data["image"])

    def disc(fake):
        out = d(tf.concat([tf.concat([sem, fake], -1), tf.concat([sem, real], -1)], 0), training=True)
        return [[t[:2] for t in s] for s in out], [[t[2:] for t in s] for s in out]

    with tf.GradientTape() as tape:
        fake = g(sem, training=True)
        pf, pr = disc(fake)
        loss = losses.generator_gan_loss(pf) + losses.feature_matching_loss(pf, pr, config.lambda_feat)
    opt_g.apply_gradients(zip(tape.gradient(loss, g.trainable_variables), g.trainable_variables, strict=True))
    fake = tf.stop_gradient(g(sem, training=True) if fresh_fake else fake)
    with tf.GradientTape() as tape:
        pf, pr = disc(fake)
        d_fake, d_real = losses.discriminator_losses(pf, pr)
        loss = d_fake + d_real
    opt_d.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables, strict=True))


def test_train_step_is_the_official_iteration():
    from spade_tf.models import build_networks

    config = small_config()
    model = make_model(config)
    data = batch(config)
    copies = {}
    for fresh in (True, False):
        g, d, _ = build_networks(config)
        g.set_weights(model.generator.get_weights())
        d.set_weights(model.discriminator.get_weights())
        _manual_step(config, g, d, data, fresh_fake=fresh)
        copies[fresh] = (weights(g), weights(d))
    logs = model.train_step(data)
    assert {"G_GAN", "G_GAN_Feat", "D_Fake", "D_real", "G_loss", "D_loss"} <= set(logs)
    assert "G_VGG" not in logs and "G_KLD" not in logs  # switched off / no VAE
    g_now, d_now = weights(model.generator), weights(model.discriminator)
    assert max_diff(g_now, copies[True][0]) < 1e-5
    assert max_diff(d_now, copies[True][1]) < 1e-5
    # the D step sees a fake made AFTER the G update (not the G step's fake): that changes D
    assert max_diff(d_now, copies[False][1]) > 1e-4
    assert int(model.step_counter.numpy()) == 1


def test_d_steps_per_g_skips_generator_steps():
    config = small_config("D_steps_per_G=2")
    model = make_model(config)
    data = batch(config)
    g0, d0 = weights(model.generator), weights(model.discriminator)
    model.train_step(data)  # step 0: G and D
    g1, d1 = weights(model.generator), weights(model.discriminator)
    model.train_step(data)  # step 1: D only
    g2, d2 = weights(model.generator), weights(model.discriminator)
    trainable_g = [i for i, v in enumerate(model.generator.weights) if v.trainable]
    assert max_diff([g1[i] for i in trainable_g], [g0[i] for i in trainable_g]) > 0
    assert max_diff([g2[i] for i in trainable_g], [g1[i] for i in trainable_g]) == 0
    assert max_diff(d1, d0) > 0 and max_diff(d2, d1) > 0
    assert int(model.g_optimizer.iterations.numpy()) == 1
    assert int(model.d_optimizer.iterations.numpy()) == 2


def test_vae_kld_and_perceptual_terms_are_trained_and_tracked():
    from spade_tf.training.perceptual import PerceptualLoss

    class MeanAbs:  # a stand-in backbone: one "feature map", the image itself
        def __call__(self, x):
            return [x]

    config = small_config("use_vae=true", "lambda_vgg=2", "crop_size=256", "load_size=256", "batchSize=1",
                          "num_upsampling_layers=most", "ngf=2")
    perceptual = PerceptualLoss(MeanAbs(), "vgg19", [1.0], config.lambda_vgg)
    model = make_model(config, perceptual=perceptual)
    e0 = weights(model.encoder)
    logs = model.train_step(batch(config, n=1))
    assert {"G_KLD", "G_VGG"} <= set(logs)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert max_diff(weights(model.encoder), e0) > 0  # the encoder trains with G
    g_sum = sum(float(logs[k]) for k in ("G_GAN", "G_GAN_Feat", "G_VGG", "G_KLD"))
    assert float(logs["G_loss"]) == pytest.approx(g_sum, rel=1e-5)


def test_test_step_changes_nothing():
    config = small_config()
    model = make_model(config)
    before = weights(model.generator) + weights(model.discriminator)
    logs = model.test_step(batch(config))
    assert set(logs) >= {"G_GAN", "D_Fake"}
    assert max_diff(weights(model.generator) + weights(model.discriminator), before) == 0


def test_ema_generator_averages():
    config = small_config("use_ema=true", "ema_decay=0.5")
    model = make_model(config)
    start = [np.array(v) for v in model.generator.trainable_variables]
    model.train_step(batch(config))
    model.update_ema()
    after = [np.array(v) for v in model.generator.trainable_variables]
    ema = [np.array(v) for v in model.ema_generator.trainable_variables]
    for s, a, e in zip(start, after, ema, strict=True):
        np.testing.assert_allclose(e, 0.5 * s + 0.5 * a, rtol=1e-6, atol=1e-7)
    assert model.sampling_generator is model.ema_generator


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_step(policy):
    import keras

    keras.mixed_precision.set_global_policy(policy)
    try:
        config = small_config()
        model = make_model(config)
        scaled = isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        assert scaled == (policy == "mixed_float16")
        logs = model.train_step(batch(config))
        assert all(np.isfinite(float(v)) for v in logs.values())
        assert model.generator.trainable_variables[0].dtype == "float32"  # master weights stay fp32
        fake = model(batch(config))
        assert keras.backend.standardize_dtype(fake.dtype) == "float32"
        assert np.all(np.abs(np.asarray(fake)) <= 1)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_fit_runs_the_compiled_step_with_progress_bar(capsys):
    """Plain `model.fit` in graph mode (tf.function): losses finite, weights trained."""
    import tensorflow as tf

    config = small_config()
    model = make_model(config)
    model.compile(run_eagerly=False)
    data = batch(config, n=4)
    g0 = weights(model.generator)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(2), epochs=1, verbose=1)
    assert len(history.history["G_loss"]) == 1 and np.isfinite(history.history["D_loss"][0])
    assert max_diff(weights(model.generator), g0) > 0
    assert int(model.step_counter.numpy()) == 2
    assert "2/2" in capsys.readouterr().out


def test_finetune_from_official_checkpoint_with_fresh_discriminator():
    """`--init-generator` on an official checkpoint folder: G starts as the official G (its output on
    the fixture batch is the official output), D is fresh, and training steps run."""
    from pathlib import Path

    from spade_tf.models import build_networks
    from spade_tf.training.gaugan import GauGAN
    from spade_tf.training.runner import _copy_weights, _load_init_networks

    folder = Path(__file__).parents[2] / "shared" / "fixtures" / "official_spade" / "tiny_seg"
    if not folder.exists():
        pytest.skip(f"official fixtures not found at {folder}")
    from spade_tf.convert.official import config_from_checkpoint_dir

    config = config_from_checkpoint_dir(folder).replace(lambda_vgg=0.0)
    g_official, _, _ = _load_init_networks(folder, config)
    g, d, _ = build_networks(config)
    assert _copy_weights(g, g_official, "generator")
    model = GauGAN(config, g, d)
    model.compile(run_eagerly=True)
    io = np.load(folder / "io.npz")
    semantics = io["input_semantics_nchw"].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(g(semantics, training=False)),
                               io["output_nchw"].transpose(0, 2, 3, 1), atol=1e-4)
    label_map = io["input_semantics_nchw"][:, :-1].argmax(1).astype(np.int32)
    data = {"label_map": label_map, "image": io["real_image_nchw"].transpose(0, 2, 3, 1),
            "instance_edges": io["instance_edge_map"].transpose(0, 2, 3, 1)}
    before = weights(g)
    logs = model.train_step(data)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert max_diff(weights(g), before) > 0
