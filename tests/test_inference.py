"""Inference: label-map reading and validation, model loading, z/style handling, `spade synthesize`."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from spade_tf.benchmarks.random_model import blocky_label_maps, calibrated_generator
from spade_tf.cli import main
from spade_tf.config import get_preset
from spade_tf.errors import SpadeError
from spade_tf.inference import (
    instance_edges,
    load_generator,
    read_label_map,
    read_style_image,
    synthesize_files,
)

SMALL = ["crop_size=32", "ngf=4", "spade_nhidden=8"]  # 32x32, latent 1x1: fast


def _config(*extra):
    return get_preset("tiny").with_overrides(SMALL + list(extra))


def _save_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode=mode).save(path)
    return path


def _official_get_edges(t):
    """The official `Pix2PixModel.get_edges`, transcribed to numpy ([B, H, W] ids → [B, H, W] 0/1)."""
    edge = np.zeros(t.shape, bool)
    edge[:, :, 1:] |= t[:, :, 1:] != t[:, :, :-1]
    edge[:, :, :-1] |= t[:, :, 1:] != t[:, :, :-1]
    edge[:, 1:, :] |= t[:, 1:, :] != t[:, :-1, :]
    edge[:, :-1, :] |= t[:, 1:, :] != t[:, :-1, :]
    return edge.astype(np.float32)


def test_instance_edges_match_official_definition():
    rng = np.random.default_rng(0)
    t = np.repeat(rng.integers(0, 4, (2, 5, 7)), 3, axis=1).astype(np.int32)
    edges = np.asarray(instance_edges(t))
    assert edges.shape == (2, 15, 7, 1)
    np.testing.assert_array_equal(edges[..., 0], _official_get_edges(t))
    assert 0 < edges.mean() < 1


def test_read_label_map_validates_and_maps_dont_care(tmp_path):
    cfg = _config()  # label_nc 8, no don't care
    ids = np.arange(32 * 32).reshape(32, 32) % 8
    np.testing.assert_array_equal(read_label_map(_save_png(tmp_path / "ok.png", ids.astype(np.uint8)), cfg),
                                  ids)
    bad = ids.astype(np.uint8).copy()
    bad[0, 0] = 9
    with pytest.raises(SpadeError, match=r"bad\.png.*\[9\]"):
        read_label_map(_save_png(tmp_path / "bad.png", bad), cfg)
    bad[0, 0] = 255
    with pytest.raises(SpadeError, match="contain_dontcare_label=False"):
        read_label_map(_save_png(tmp_path / "dc.png", bad), cfg)
    dc = read_label_map(tmp_path / "dc.png", _config("contain_dontcare_label=true"))
    assert dc[0, 0] == 8 and dc.dtype == np.int32  # 255 → label_nc
    bad[0, 0] = 8  # = label_nc: the don't-care channel's own id, valid with don't care only
    eight = read_label_map(_save_png(tmp_path / "eight.png", bad), _config("contain_dontcare_label=true"))
    assert eight[0, 0] == 8
    with pytest.raises(SpadeError, match=r"eight\.png: label ids \[8\] are not ids of this model"):
        read_label_map(tmp_path / "eight.png", cfg)
    # the same reader as training: a grey map saved as RGB holds ids, a colour-coded map does not
    np.testing.assert_array_equal(
        read_label_map(_save_png(tmp_path / "grey.png", np.repeat(ids[..., None], 3, -1).astype(np.uint8)),
                       cfg), ids)
    with pytest.raises(SpadeError, match=r"rgb\.png.*colour \(RGB\)"):
        colour = np.zeros((32, 32, 3), np.uint8)
        colour[..., 0] = 1
        read_label_map(_save_png(tmp_path / "rgb.png", colour), cfg)
    with pytest.raises(SpadeError, match="not found"):
        read_label_map(tmp_path / "missing.png", cfg)


def test_read_label_map_resizes_nearest(tmp_path):
    cfg = _config()
    ids = np.kron(np.array([[1, 2], [3, 4]]), np.ones((5, 8), int)).astype(np.uint8)  # 10 x 16
    seen = []
    out = read_label_map(_save_png(tmp_path / "small.png", ids), cfg, on_resize=lambda *a: seen.append(a))
    assert out.shape == (32, 32) and seen == [(str(tmp_path / "small.png"), (10, 16), (32, 32))]
    assert set(np.unique(out)) == {1, 2, 3, 4}  # nearest: no new (interpolated) ids
    assert out[0, 0] == 1 and out[-1, -1] == 4 and out[0, -1] == 2 and out[-1, 0] == 3


def blocky_labels(cfg, batch, seed):
    """Random label maps of 8x8 blocks (closer to real maps than per-pixel noise)."""
    return blocky_label_maps(cfg, batch, seed)


def realistic_networks(cfg, seed=0):
    """A random (G, E or None) whose output neither saturates nor ignores the labels: batch-norm
    running statistics calibrated on 16 label maps, final conv scaled to a pre-tanh std of about
    0.6 (`spade_tf.benchmarks.random_model`)."""
    from spade_tf.models import ConvEncoder

    g = calibrated_generator(cfg, seed)
    e = None
    if cfg.use_vae:
        h, w = cfg.image_size
        e = ConvEncoder(cfg, name="encoder")
        e.build((None, h, w, 3))
    return g, e


def _random_model(folder, *extra):
    cfg = _config(*extra)
    g, e = realistic_networks(cfg)
    folder.mkdir(parents=True)
    g.save(folder / "generator.keras")
    if e is not None:
        e.save(folder / "encoder.keras")
    (folder / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    return folder, g, e, cfg


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    """(folder, G, None, config): don't-care label and instance edges, no VAE."""
    return _random_model(tmp_path_factory.mktemp("seg") / "model", "contain_dontcare_label=true",
                         "no_instance=false")


@pytest.fixture(scope="module")
def vae_model(tmp_path_factory):
    """(folder, G, E, config): VAE with encoder."""
    return _random_model(tmp_path_factory.mktemp("vae") / "model", "use_vae=true")


def test_load_generator_folder_and_file_match_keras(seg_model):
    from spade_tf.models import make_semantics

    folder, g, _, cfg = seg_model
    labels = blocky_labels(cfg, 2, 1)
    labels[:, :4] = 8  # don't care (already mapped)
    inst = np.repeat(np.arange(4), 8)[None, :, None] * np.ones((2, 1, 32), int)
    want = np.asarray(g(make_semantics(labels, cfg, instance_edges(inst)), training=False))
    for source in (folder, folder / "generator.keras"):
        model = load_generator(source)
        got = model.synthesize_float(labels, instance_maps=inst)
        np.testing.assert_allclose(got, want, atol=1e-4)  # folded vs live spectral norm
        image = model.synthesize(labels, instance_maps=inst)
        assert image.dtype == np.uint8 and image.shape == (2, 32, 32, 3)
        assert np.abs(image.astype(int) - np.round((want + 1) * 127.5)).max() <= 1
    # XLA (`spade synthesize`'s default) gives the same images
    xla = dataclasses.replace(model, jit_compile=True)
    np.testing.assert_allclose(xla.synthesize_float(labels, instance_maps=inst), want, atol=1e-4)
    # instance maps matter (edges), and no instance map means all-zero edges
    no_edges = np.asarray(g(make_semantics(labels, cfg, np.zeros((2, 32, 32, 1), np.float32))))
    np.testing.assert_allclose(model.synthesize_float(labels), no_edges, atol=1e-4)
    assert np.abs(no_edges - want).max() > 1e-5  # deterministic: any difference comes from the edges
    # not saturated, so the checks above mean something
    assert 0.2 < want.std() and (np.abs(want) > 0.99).mean() < 0.25
    with pytest.raises(SpadeError, match=r"label ids \[9\] are not ids of this model"):
        model.synthesize(np.full((1, 32, 32), 9))


def test_load_generator_errors(tmp_path, seg_model):
    import shutil

    with pytest.raises(SpadeError, match="model not found"):
        load_generator(tmp_path / "nope")
    with pytest.raises(SpadeError, match="no generator.keras"):
        load_generator(tmp_path)
    folder = tmp_path / "model"
    shutil.copytree(seg_model[0], folder)
    (folder / "config.json").write_text(json.dumps({"config": _config("label_nc=5").to_dict()}))
    with pytest.raises(SpadeError, match="label_nc"):
        load_generator(folder)


def test_vae_seed_z_and_style(tmp_path, vae_model):
    folder, g, e, cfg = vae_model
    model = load_generator(folder)
    assert model.encoder is not None
    labels = blocky_labels(cfg, 2, 2)
    a, b = model.synthesize_float(labels, seed=5), model.synthesize_float(labels, seed=5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - model.synthesize_float(labels, seed=6)).max() > 1e-4
    # same seed for both rows → same z; per-row seeds
    z = model.latent(2, seed=[5, 6])
    np.testing.assert_array_equal(z[0], model.latent(1, seed=5)[0])
    np.testing.assert_allclose(model.synthesize_float(labels, z=z)[0], a[0], atol=1e-6)
    # style: z = encoder mean
    style_path = _save_png(tmp_path / "style.png", np.random.default_rng(3).integers(0, 255, (40, 50, 3))
                           .astype(np.uint8))
    style = read_style_image(style_path, cfg)
    mu, _ = e(style[None], training=False)
    np.testing.assert_allclose(model.synthesize_float(labels[:1], style_image=style),
                               model.synthesize_float(labels[:1], z=np.asarray(mu)), atol=1e-5)
    with pytest.raises(SpadeError, match=r"z must have shape \(2, 256\)"):
        model.synthesize(labels, z=np.zeros((1, 256)))


def test_non_vae_rejects_style_and_samples(tmp_path, seg_model):
    model = load_generator(seg_model[0])
    labels_dir = tmp_path / "labels"
    _save_png(labels_dir / "a.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(SpadeError, match="not a VAE model"):
        synthesize_files(model, labels_dir, tmp_path / "out", num_samples=2)
    with pytest.raises(SpadeError, match="not a VAE model"):
        model.synthesize(np.zeros((1, 32, 32)), z=np.zeros((1, 256)))


def test_synthesize_cli_folder(tmp_path, capsys, vae_model):
    folder = vae_model[0]
    labels_dir = tmp_path / "labels"
    rng = np.random.default_rng(4)
    for name in ("a.png", "b.png", "sub/c.png"):
        _save_png(labels_dir / name, rng.integers(0, 8, (32, 32)).astype(np.uint8))
    _save_png(labels_dir / "small.png", rng.integers(0, 8, (16, 20)).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["synthesize", "--model", str(folder), "--labels", str(labels_dir), "--out", str(out),
                 "--num-samples", "2", "--batch-size", "3", "--seed", "7"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a_0.png", "a_1.png", "b_0.png", "b_1.png", "small_0.png", "small_1.png",
                       "sub/c_0.png", "sub/c_1.png"]
    a0, a1 = (np.asarray(Image.open(out / f"a_{k}.png")) for k in (0, 1))
    assert a0.shape == (32, 32, 3) and np.abs(a0.astype(int) - a1).max() > 0  # different z per sample
    assert "1 label maps resized" in capsys.readouterr().out
    # the same seed through the API gives the same file
    model = load_generator(folder)
    label_a = read_label_map(labels_dir / "a.png", model.config)
    assert np.abs(model.synthesize(label_a, seed=8)[0].astype(int) - a1).max() <= 1
    # a bad file: stop (exit 2, the file named) or skip it, report it and write the others (exit 1)
    mixed = tmp_path / "mixed"
    _save_png(mixed / "bad.png", np.full((32, 32), 50, np.uint8))
    _save_png(mixed / "good.png", np.zeros((32, 32), np.uint8))
    assert main(["synthesize", "--model", str(folder), "--labels", str(mixed), "--out", str(out)]) == 2
    assert "bad.png" in capsys.readouterr().err
    report = synthesize_files(model, mixed, out / "m", skip_bad=True)
    assert report["written"] == 1 and [p for p, _ in report["bad"]] == [str(mixed / "bad.png")]
    assert (out / "m" / "good.png").exists() and not (out / "m" / "bad.png").exists()
