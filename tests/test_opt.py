"""Official `opt.txt` parsing and its mapping onto SPADEConfig, on the official fixtures."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest

from spade_tf.convert.opt import config_from_opt, parse_opt_txt, parse_value
from spade_tf.errors import SpadeError

OFFICIAL = Path(__file__).parents[2] / "shared" / "fixtures" / "official_spade"


@pytest.fixture(scope="module")
def official() -> Path:
    if not (OFFICIAL / "tiny_seg" / "opt.txt").is_file():
        pytest.skip(f"official SPADE fixtures not found at {OFFICIAL}")
    return OFFICIAL


class _NamespaceOnly(pickle.Unpickler):
    """opt.pkl is a pickled argparse.Namespace; nothing else may load."""

    def find_class(self, module, name):
        if (module, name) != ("argparse", "Namespace"):
            raise pickle.UnpicklingError(f"{module}.{name}")
        return argparse.Namespace


def official_txt(opt: dict) -> str:
    """An opt.txt in the official save_options format (comments omitted)."""
    return "".join("{:>25}: {:<30}{}\n".format(str(k), str(v), "") for k, v in opt.items())


@pytest.mark.parametrize("folder", ["tiny_seg", "tiny_vae"])
def test_parsed_values_equal_the_official_pickled_namespace(official, folder):
    # opt.pkl holds the very Namespace that opt.txt was written from: every option and typed
    # value must come back, except gpu_ids, a string option whose text '-1' reads as an int.
    parsed = parse_opt_txt(official / folder / "opt.txt")
    with open(official / folder / "opt.pkl", "rb") as f:
        namespace = vars(_NamespaceOnly(f).load())
    assert list(parsed) == sorted(namespace)  # written in sorted order
    assert parsed.pop("gpu_ids") == -1 and namespace.pop("gpu_ids") == "-1"
    for key, value in namespace.items():
        assert parsed[key] == value and type(parsed[key]) is type(value), key


def test_tiny_seg_config(official):
    cfg = config_from_opt(parse_opt_txt(official / "tiny_seg" / "opt.txt"), "tiny_seg/opt.txt")
    assert (cfg.name, cfg.dataset_mode) == ("tiny_seg", "coco")
    assert (cfg.label_nc, cfg.contain_dontcare_label, cfg.no_instance) == (5, True, False)
    assert cfg.semantic_nc == 7  # README: 5 + don't care + instance edge
    assert (cfg.ngf, cfg.ndf, cfg.num_D, cfg.n_layers_D) == (1, 4, 2, 4)
    assert cfg.image_size == (64, 64) and cfg.latent_size == (2, 2)
    assert cfg.norm_G == "spectralspadesyncbatch3x3" and cfg.norm_D == cfg.norm_E == "spectralinstance"
    assert not cfg.use_vae and cfg.batchSize == 2
    assert cfg.lambda_vgg == 0.0  # --no_vgg_loss
    assert cfg.lambda_feat == 10.0 and cfg.lambda_kld == 0.05


def test_tiny_vae_config(official):
    cfg = config_from_opt(parse_opt_txt(official / "tiny_vae" / "opt.txt"), "tiny_vae/opt.txt")
    assert (cfg.name, cfg.dataset_mode) == ("tiny_vae", "cityscapes")
    assert cfg.use_vae and cfg.z_dim == 256
    assert cfg.aspect_ratio == 2.0 and cfg.num_upsampling_layers == "more"
    assert (cfg.ngf, cfg.ndf) == (1, 2)
    assert cfg.image_size == (128, 256) and cfg.latent_size == (2, 4)
    assert cfg.semantic_nc == 4 and cfg.no_instance and not cfg.contain_dontcare_label
    assert cfg.preprocess_mode == "fixed" and cfg.crop_size == 256 and cfg.load_size == 256


def test_printed_block_and_default_comments(tmp_path):
    text = ("----------------- Options ---------------\n"
            "                 label_nc: 35                            \t[default: 182]\n"
            "                     name: 2019                          \n"
            "                  dataroot: /data/my city/               \n"
            "                       lr: 1e-05                         \n"
            "                  isTrain: None                          \n"
            "                  how_many: inf                          \n"
            "----------------- End -------------------\n")
    (tmp_path / "opt.txt").write_text(text)
    opt = parse_opt_txt(tmp_path / "opt.txt")
    assert opt == {"label_nc": 35, "name": 2019, "dataroot": "/data/my city/", "lr": 1e-05,
                   "isTrain": None, "how_many": float("inf")}
    texts = ("True", "False", "-3", "0.5", "spade")
    assert [parse_value(v) for v in texts] == [True, False, -3, 0.5, "spade"]


def _minimal() -> dict:
    return {"label_nc": 3, "contain_dontcare_label": False, "no_instance": True, "output_nc": 3,
            "crop_size": 64, "aspect_ratio": 1.0, "ngf": 8, "num_upsampling_layers": "normal",
            "norm_G": "spectralspadesyncbatch3x3", "use_vae": False, "z_dim": 256, "name": 2019}


def test_loss_switches_and_test_time_options(tmp_path):
    opt = {**_minimal(), "no_ganFeat_loss": True, "no_vgg_loss": False, "lambda_vgg": 5}
    (tmp_path / "opt.txt").write_text(official_txt(opt))
    cfg = config_from_opt(parse_opt_txt(tmp_path / "opt.txt"), "opt.txt")
    assert cfg.lambda_feat == 0.0 and cfg.lambda_vgg == 5.0 and isinstance(cfg.lambda_vgg, float)
    assert cfg.name == "2019"  # a numeric run name stays a name
    assert cfg.ndf == 64 and cfg.num_D == 2  # test-time options have no D options: official defaults


def test_malformed_line_names_the_line(tmp_path):
    path = tmp_path / "opt.txt"
    path.write_text(official_txt({"label_nc": 5}) + "this line has no separator\n")
    with pytest.raises(SpadeError, match=r"opt\.txt, line 2: cannot read 'this line has no separator'"):
        parse_opt_txt(path)
    path.write_text("                 label_nc: 5                   \t[default: 182\n")
    with pytest.raises(SpadeError, match=r"line 1: .*not closed"):
        parse_opt_txt(path)
    path.write_text(official_txt({"ngf": 1}) + official_txt({"ngf": 2}))
    with pytest.raises(SpadeError, match=r"line 2: option 'ngf' appears twice"):
        parse_opt_txt(path)
    with pytest.raises(SpadeError, match=r"missing\.txt: options file not found"):
        parse_opt_txt(tmp_path / "missing.txt")


@pytest.mark.parametrize("change,message", [
    ({"netG": "pix2pixhd"}, r"option 'netG' is 'pix2pixhd'; only 'spade'"),
    ({"netD": "n_layer"}, r"option 'netD' is 'n_layer'; only 'multiscale'"),
    ({"label_nc": "many"}, r"option 'label_nc' is 'many'; expected int"),
    ({"use_vae": 1}, r"option 'use_vae' is 1; expected bool"),
    ({"gan_mode": "wgan"}, r"my/opt\.txt: config key 'gan_mode'"),
    ({"semantic_nc": 9}, r"option 'semantic_nc' is 9"),
])
def test_unrepresentable_options_are_refused(change, message):
    with pytest.raises(SpadeError, match=message):
        config_from_opt({**_minimal(), **change}, "my/opt.txt")


def test_missing_required_option_is_named():
    opt = _minimal()
    del opt["ngf"], opt["z_dim"]
    with pytest.raises(SpadeError, match=r"my/opt\.txt: required option\(s\) \['ngf'\] missing"):
        config_from_opt(opt, "my/opt.txt")
    opt = {**_minimal(), "use_vae": True}
    del opt["z_dim"]  # z_dim sizes the VAE generator's fc layer
    with pytest.raises(SpadeError, match=r"required option\(s\) \['z_dim'\] missing"):
        config_from_opt(opt, "my/opt.txt")
