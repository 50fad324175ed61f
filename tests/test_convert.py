"""Official checkpoint import: parity with the official PyTorch outputs, and clear errors."""

import json
import shutil

import keras
import numpy as np
import pytest

import spade_tf.models  # noqa: F401  (registers the classes for load_model)
from spade_tf.cli import main
from spade_tf.convert.official import load_official
from spade_tf.errors import SpadeError


def nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


@pytest.mark.parametrize("name", ["tiny_seg", "tiny_vae"])
def test_converted_generator_reproduces_official_output(official_dir, tmp_path, name):
    # 1e-5 max abs everywhere in this file (measured up to 5.4e-6): the figure the README quotes
    io = np.load(official_dir / name / "io.npz")
    out = tmp_path / name
    assert main(["convert", str(official_dir / name), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    g = keras.saving.load_model(out / "generator.keras")
    onehot = nhwc(io["input_semantics_nchw"])
    assert onehot.shape[-1] == g.config.semantic_nc
    z = io["z"] if config["use_vae"] else None
    image = np.asarray(g(onehot, z=z, training=False))
    assert np.abs(image - nhwc(io["output_nchw"])).max() <= 1e-5
    if config["use_vae"]:
        e = keras.saving.load_model(out / "encoder.keras")
        mu, logvar = e(nhwc(io["real_image_nchw"]), training=False)
        assert np.abs(np.asarray(mu) - io["mu"]).max() <= 1e-5
        assert np.abs(np.asarray(logvar) - io["logvar"]).max() <= 1e-5
    else:
        assert not (out / "encoder.keras").exists()


@pytest.mark.parametrize("name", ["tiny_seg", "tiny_vae"])
def test_converted_discriminator_reproduces_official_features(official_dir, name):
    io = np.load(official_dir / name / "io.npz")
    _, _, d, _ = load_official(official_dir / name)
    sem = nhwc(io["input_semantics_nchw"])
    fake = np.concatenate([sem, nhwc(io["output_nchw"])], -1)
    real = np.concatenate([sem, nhwc(io["real_image_nchw"])], -1)
    outputs = d(np.concatenate([fake, real], 0), training=False)
    for i, scale in enumerate(outputs):
        for j, feature in enumerate(scale):
            ref = np.concatenate([nhwc(io[f"d_fake_scale{i}_feat{j}"]), nhwc(io[f"d_real_scale{i}_feat{j}"])])
            assert np.abs(np.asarray(feature) - ref).max() <= 1e-5, (i, j)


def test_intermediate_activations_match(official_dir):
    """Block by block, so a mismatch points at the block that is wrong."""
    io = np.load(official_dir / "tiny_seg" / "io.npz")
    _, g, _, _ = load_official(official_dir / "tiny_seg")
    _, inter = g(nhwc(io["input_semantics_nchw"]), return_intermediates=True)
    for block in ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3", "conv_img"]:
        ref = nhwc(io[f"g_{block}_out"])
        assert np.abs(np.asarray(inter[block]) - ref).max() <= 1e-5, block


def test_mismatched_options_name_the_tensors(official_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(official_dir / "tiny_seg", ckpt)
    opt = (ckpt / "opt.txt").read_text().replace(" ngf: 1  ", " ngf: 2  ")
    (ckpt / "opt.txt").write_text(opt)
    with pytest.raises(SpadeError, match=r"latest_net_G.pth.*'fc.weight' has shape \(16, 7, 3, 3\)"):
        load_official(ckpt)


def test_unexpected_and_missing_tensors_are_listed(official_dir, tmp_path):
    from spade_tf.pth import load_state_dict

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(official_dir / "tiny_seg" / "opt.txt", ckpt / "opt.txt")
    state = load_state_dict(official_dir / "tiny_seg" / "latest_net_G.pth")
    state["extra.weight"] = np.zeros(3, "float32")
    del state["conv_img.bias"]
    np.savez(ckpt / "latest_net_G.npz", **state)
    with pytest.raises(SpadeError) as err:
        load_official(ckpt)
    assert "missing tensors ['conv_img.bias']" in str(err.value)
    assert "unexpected tensors ['extra.weight']" in str(err.value)


def test_cli_reports_missing_checkpoint_without_traceback(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
