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


@pytest.mark.parametrize("overrides,nearest", [
    (["crop_size=100"], "nearest valid crop_size for aspect_ratio=1.0: 96 or 128"),
    (["crop_size=200", "num_upsampling_layers=more"], "multiples of 64: nearest valid crop_size for "
     "aspect_ratio=1.0: 192 or 256"),
    (["crop_size=256", "aspect_ratio=1.5"], "192 or 288; or keep crop_size=256 with aspect_ratio 1.6 "
     "(256x160) or 1.33333 (256x192)"),
])
def test_crop_size_the_generator_cannot_make_is_refused(overrides, nearest):
    """The generator makes image_size (latent grid x 2^layers); data is sized from crop_size and
    aspect_ratio: a config where they differ (e.g. 100 vs 96) is refused, naming the valid sizes."""
    with pytest.raises(SpadeError, match=r"^config key 'crop_size': ") as err:
        get_preset("custom").with_overrides(overrides)
    assert nearest in str(err.value)
    if overrides == ["crop_size=100"]:
        assert "asks for 100x100 (WxH) images, but the generator" in str(err.value)
        assert "makes 96x96" in str(err.value)
    # each size it names is accepted, and makes what it asks for
    for crop in (96, 128, 192, 256, 288):
        if f" {crop} " in f" {nearest.replace(';', ' ')} ":
            cfg = get_preset("custom").with_overrides([*overrides[1:], f"crop_size={crop}"])
            assert cfg.image_size == cfg.crop_shape == (round(crop / cfg.aspect_ratio), crop)


def test_presets_make_the_size_they_ask_for():
    for cfg in PRESETS.values():
        assert cfg.image_size == cfg.crop_shape, cfg.name
    wide = get_preset("cityscapes").with_overrides(["aspect_ratio=1.6", "crop_size=512"])
    assert wide.image_size == (320, 512)


def test_key_sets_and_differences():
    """The config owns which keys must agree; `differences` lists (key, here, there) for those only."""
    tiny, facades = get_preset("tiny"), get_preset("facades")
    assert set(SPADEConfig.LABEL_KEYS) <= set(SPADEConfig.ARCHITECTURE_KEYS)
    assert set(SPADEConfig.OUR_ARCHITECTURE_KEYS) <= set(SPADEConfig.ARCHITECTURE_KEYS)
    arch = SPADEConfig.ARCHITECTURE_KEYS
    assert tiny.differences(tiny.replace(lr=0.1), arch) == []
    other = tiny.replace(norm_G="spadeinstance3x3", lr=0.1)
    assert tiny.differences(other, arch) == [("norm_G", tiny.norm_G, "spadeinstance3x3")]
    assert tiny.differences(facades, tiny.LABEL_KEYS) == [("label_nc", tiny.label_nc, facades.label_nc)]
