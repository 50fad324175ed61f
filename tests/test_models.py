"""Model tests: official parameter counts, output shapes, inference folding."""

import json

import numpy as np
import pytest

from spade_tf.config import SPADEConfig, get_preset
from spade_tf.models import (
    ConvEncoder,
    MultiscaleDiscriminator,
    SPADEGenerator,
    build_networks,
    make_semantics,
)
from spade_tf.models.discriminator import downsample


def count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


# measured from the official code (shared/fixtures/official_spade/param_counts.json)
OFFICIAL_COUNTS = [
    ("ade20k", False, 96_492_483, 5_836_930, None),
    ("ade20k", True, 111_942_595, 5_836_930, 10_463_424),
    ("cocostuff", False, 97_480_899, 5_904_514, None),
    ("cityscapes", False, 93_048_003, 5_601_410, None),
    ("cityscapes", True, 101_136_579, 5_601_410, 10_463_424),
]


@pytest.mark.parametrize("preset,use_vae,g_count,d_count,e_count", OFFICIAL_COUNTS)
def test_official_parameter_counts(preset, use_vae, g_count, d_count, e_count):
    cfg = get_preset(preset).replace(use_vae=use_vae)
    g, d, e = build_networks(cfg)
    assert count(g) == g_count
    assert count(d) == d_count
    assert (count(e) if e is not None else None) == e_count


def test_parameter_counts_agree_with_shared_json(official_dir):
    rows = json.loads((official_dir / "param_counts.json").read_text())["rows"]
    listed = {(r["preset"], r["use_vae"]): (r["G"], r["D"], r["E"]) for r in rows}
    for preset, use_vae, g_count, d_count, e_count in OFFICIAL_COUNTS:
        assert listed[(preset, use_vae)] == (g_count, d_count, e_count)


def test_spectral_state_is_not_trainable():
    g, _, _ = build_networks(get_preset("tiny"))
    names = {w.path.split("/")[-1] for w in g.non_trainable_weights}
    assert {"u", "v", "moving_mean", "moving_variance"} <= names


@pytest.mark.parametrize("mode,aspect,h,w", [
    ("normal", 1.0, 64, 64), ("more", 1.0, 64, 64), ("most", 1.0, 128, 128), ("normal", 2.0, 32, 64)])
def test_generator_output_shapes(mode, aspect, h, w):
    crop = 128 if mode == "most" else 64
    cfg = SPADEConfig(label_nc=3, no_instance=True, crop_size=crop, aspect_ratio=aspect,
                      num_upsampling_layers=mode, ngf=4, spade_nhidden=8)
    assert cfg.image_size == (h, w)
    g = SPADEGenerator(cfg)
    seg = make_semantics(np.zeros((2, h, w), "int32"), cfg)
    out = np.asarray(g(seg))
    assert out.shape == (2, h, w, 3)
    assert np.all(np.abs(out) <= 1)
    if mode == "most":
        assert hasattr(g, "up_4")


def test_vae_generator_uses_z_and_samples_when_absent():
    cfg = SPADEConfig(label_nc=3, no_instance=True, crop_size=64, use_vae=True, ngf=4, spade_nhidden=8,
                      init_variance=1.0)
    g = SPADEGenerator(cfg)
    seg = make_semantics(np.zeros((1, 64, 64), "int32"), cfg)
    z = np.random.default_rng(0).normal(size=(1, 256)).astype("float32")
    a, b = np.asarray(g(seg, z=z)), np.asarray(g(seg, z=z))
    np.testing.assert_array_equal(a, b)
    r1, r2 = np.asarray(g(seg)), np.asarray(g(seg))
    assert np.abs(r1 - r2).max() > 1e-4  # fresh z each call


def test_discriminator_structure():
    cfg = SPADEConfig(label_nc=3, no_instance=True, crop_size=64, ndf=4, num_D=3, n_layers_D=4)
    d = MultiscaleDiscriminator(cfg)
    out = d(np.zeros((2, 64, 64, 3 + 3), "float32"))
    assert len(out) == 3 and all(len(o) == 5 for o in out)
    assert [tuple(f.shape[1:3]) for f in out[0]] == [(33, 33), (17, 17), (9, 9), (10, 10), (11, 11)]
    assert out[0][-1].shape[-1] == 1


def test_downsample_excludes_padding_from_the_average():
    x = np.ones((1, 5, 5, 1), "float32")
    np.testing.assert_allclose(np.asarray(downsample(x)), np.ones((1, 3, 3, 1)), atol=1e-6)
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    corner = x[0, :2, :2, 0].mean()  # the 3x3 window at (0,0) covers 2x2 real pixels
    assert float(np.asarray(downsample(x))[0, 0, 0, 0]) == pytest.approx(corner)


def test_encoder_resizes_any_input_to_256():
    cfg = SPADEConfig(label_nc=3, no_instance=True, crop_size=256, use_vae=True, ngf=2)
    e = ConvEncoder(cfg)
    mu, logvar = e(np.zeros((2, 128, 256, 3), "float32"))
    assert mu.shape == (2, 256) and logvar.shape == (2, 256)
    assert len(e.convs) == 6


def test_folded_generator_matches_and_has_no_spectral_state():
    cfg = get_preset("tiny").replace(crop_size=32, ngf=4, spade_nhidden=8, init_variance=1.0)
    g, _, _ = build_networks(cfg)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, cfg.label_nc, size=(2, 32, 32))
    seg = make_semantics(labels, cfg)
    g(seg, training=True)  # move u, v and BN statistics away from their initial values
    folded = g.folded()
    np.testing.assert_allclose(np.asarray(folded(seg)), np.asarray(g(seg)), atol=1e-5)
    names = {w.path.split("/")[-1] for w in folded.weights}
    assert "u" not in names and "v" not in names
    assert count(folded) == count(g)


@pytest.mark.parametrize("lite", [False, True])
def test_folded_builds_the_export_flags_into_its_copy(lite):
    """`folded(assume_onehot=True, forward_conv_gradients=False)` (what TFLite/ONNX exports run)
    builds every SPADE and conv with those flags, no module state flipped: same image, a graph with
    neither the one-hot check's `If` nor custom gradients; the source network keeps its defaults.
    A generator config written before the flags existed loads with the defaults."""
    import tensorflow as tf

    from spade_tf.layers import SPADE
    from spade_tf.layers.conv import Conv2D

    cfg = get_preset("tiny").replace(crop_size=32, ngf=4, spade_nhidden=8)
    if lite:
        cfg = cfg.replace(netG="spade_lite", width=0.5, separable=True)
    g, _, _ = build_networks(cfg)
    seg = make_semantics(np.random.default_rng(1).integers(0, cfg.label_nc, (1, 32, 32)), cfg)
    export = g.folded(assume_onehot=True, forward_conv_gradients=False)
    assert type(export) is type(g)

    def layers(net, cls):
        return [layer for layer in net._flatten_layers() if isinstance(layer, cls)]

    assert layers(export, SPADE) and all(n.assume_onehot for n in layers(export, SPADE))
    assert layers(export, Conv2D) and all(c.forward_gradients is False for c in layers(export, Conv2D))
    assert not any(n.assume_onehot for n in layers(g, SPADE))
    assert all(c.forward_gradients is None for c in layers(g, Conv2D))
    np.testing.assert_allclose(np.asarray(export(seg)), np.asarray(g.folded()(seg)), atol=1e-5)
    graph = tf.function(lambda s: export(s)).get_concrete_function(tf.TensorSpec(seg.shape)).graph
    assert not {op.type for op in graph.get_operations()} & {"If", "StatelessIf", "IdentityN"}
    saved = export.get_config()
    assert saved["assume_onehot"] is True and saved["forward_conv_gradients"] is False
    assert type(g).from_config(saved).assume_onehot
    old = {k: v for k, v in saved.items() if k not in ("assume_onehot", "forward_conv_gradients")}
    before = type(g).from_config(old)
    assert not any(n.assume_onehot for n in layers(before, SPADE))
    assert all(c.forward_gradients is None for c in layers(before, Conv2D))
