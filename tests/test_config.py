"""Configuration: presets, derived values, overrides with official option names."""

import dataclasses
import json

import pytest

from spade_tf.config import PRESETS, SPADEConfig, get_preset, load_config
from spade_tf.errors import SpadeError


def test_presets_and_semantic_nc():
    assert set(PRESETS) == {"ade20k", "cocostuff", "cityscapes", "facades", "custom", "tiny"}
    assert get_preset("ade20k").semantic_nc == 151  # 150 + don't care, no instances
    assert get_preset("cocostuff").semantic_nc == 184  # 182 + don't care + edge
    assert get_preset("cityscapes").semantic_nc == 36  # 35 + edge
    assert get_preset("cityscapes").image_size == (256, 512)
    assert get_preset("cityscapes").latent_size == (4, 8)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("tiny").ngf = 3


def test_overrides_parse_by_type_and_use_official_names():
    cfg = get_preset("ade20k").with_overrides(
        ["crop_size=64", "use_vae=true", "lambda_vgg=0", "num_upsampling_layers=more", "no_TTUR=1"])
    assert cfg.crop_size == 64 and cfg.use_vae is True and cfg.lambda_vgg == 0.0
    assert cfg.num_upsampling_layers == "more" and cfg.image_size == (64, 64)
    assert cfg.no_TTUR and cfg.learning_rates == (cfg.lr, cfg.lr)
    assert get_preset("ade20k").learning_rates == (0.0001, 0.0004)  # TTUR: lr/2, 2*lr
    assert get_preset("ade20k").adam_betas == (0.0, 0.9)
    assert get_preset("tiny").with_overrides(["use_instance_edges=true"]).semantic_nc == 9


@pytest.mark.parametrize("override,match", [
    (["crop_sise=64"], "unknown config key"),
    (["crop_size=big"], "expected int"),
    (["use_vae=maybe"], "expected true/false"),
    (["norm_G=spadefoo3x3"], "norm_G"),
    (["crop_size=16"], "latent grid"),
    (["crop_size"], "expected key=value"),
])
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(SpadeError, match=match):
        get_preset("tiny").with_overrides(override)


def test_norm_g_string_is_parsed():
    cfg = SPADEConfig(norm_G="spadeinstance5x5")
    assert (cfg.spade_param_free_norm, cfg.spade_kernel_size, cfg.spectral_G) == ("instance", 5, False)
    assert get_preset("ade20k").spade_param_free_norm == "syncbatch"


def test_json_roundtrip_and_unknown_keys(tmp_path):
    cfg = get_preset("facades").replace(ngf=8)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": cfg.to_dict(), "versions": {}}))
    assert load_config(path) == cfg
    path.write_text(json.dumps({"ngf": 8, "colour": 1}))
    with pytest.raises(SpadeError, match="colour"):
        load_config(path)
    with pytest.raises(SpadeError, match="unknown preset"):
        get_preset("imagenet")
