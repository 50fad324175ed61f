"""MAC / parameter counter (`spade_tf.cost`, `spade benchmark cost`): hand counts on a small network,
the official counts for the full-size ADE20K generator."""

import json

import keras
import pytest

from spade_tf.config import get_preset
from spade_tf.cost import count_cost, generator_cost


def test_hand_counts_on_a_small_network():
    from spade_tf.models.lite_generator import SeparableConv

    inputs = keras.Input((16, 12, 5))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)           # 16*12*8 * 3*3*5   = 69120
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid")(x)     # 7*5*6 * 3*3*8     = 15120
    x = keras.layers.Conv2D(6, 1, groups=3)(x)                       # 7*5*6 * 1*1*6/3   = 420
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)           # 7*5*6 * 3*3       = 1890
    x = SeparableConv(4, 3)(x)                                       # 1890 + 7*5*4 * 6  = 2730
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)                              # 10 * 140          = 1400
    cost = count_cost(keras.Model(inputs, outputs))
    assert [r["macs"] for r in cost["layers"]] == [69120, 15120, 420, 1890, 1890, 840, 1400]
    assert cost["macs"] == 69120 + 15120 + 420 + 1890 + 2730 + 1400
    assert cost["linear"] == 1400 and cost["spade_mlp"] == 0
    params = (3 * 3 * 5 * 8 + 8) + (3 * 3 * 8 * 6 + 6) + (6 * 2 + 6) + (9 * 6 + 6) + (9 * 6 + 6 * 4 + 4) \
        + (140 * 10 + 10)
    assert cost["params"] == params


def test_spade_lite_widths_and_separable_counts():
    """A lite generator's counts follow from the official formula at the scaled widths."""
    base = get_preset("tiny")
    plain = generator_cost(base.replace(ngf=8, spade_nhidden=16))
    lite = generator_cost(base.replace(netG="spade_lite", width=0.5))
    assert lite["macs"] == plain["macs"] and lite["params"] == plain["params"]
    sep = generator_cost(base.replace(netG="spade_lite", width=0.5, separable=True))
    assert sep["macs"] < lite["macs"] / 3
    # SPADE's shared conv at full resolution (64x64, up_3: 2*8 -> 8 channels, three SPADEs), separable:
    # depthwise 3x3 over the 8 one-hot channels + pointwise 8 -> 16 hidden, each 64*64 pixels
    rows = {r["layer"]: r["macs"] for r in sep["layers"]}
    assert rows["up_3/norm_0/mlp_shared/depthwise"] == 64 * 64 * 8 * 9
    assert rows["up_3/norm_0/mlp_shared/pointwise"] == 64 * 64 * 16 * 8


@pytest.mark.parametrize("use_vae,key", [(False, "ade20k_G"), (True, "ade20k_G_vae")])
def test_official_counts_full_size_ade20k(official_dir, use_vae, key):
    reference = json.loads((official_dir / "param_counts.json").read_text())
    row = next(r for r in reference["rows"] if r["preset"] == "ade20k" and r["use_vae"] == use_vae)
    macs = reference["macs"][key]
    cost = generator_cost(get_preset("ade20k").replace(use_vae=use_vae))
    assert cost["params"] == row["G"]
    assert cost["macs"] == macs["total"]  # 181.15 G (181.08 G with the VAE's linear fc)
    parts = (cost["conv"], cost["linear"], cost["spade_mlp"])
    assert parts == (macs["conv"], macs["linear"], macs["spade_mlp"])


def test_benchmark_cost_command(capsys):
    from spade_tf.cli import main

    assert main(["benchmark", "cost", "--preset", "tiny", "--width", "0.25", "--separable"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["netG"] for r in rows] == ["spade", "spade_lite"]
    assert rows[1]["separable"] and rows[1]["macs"] < rows[0]["macs"] / 10
    assert rows[1]["macs_ratio"] == pytest.approx(rows[0]["macs"] / rows[1]["macs"], rel=1e-3)
