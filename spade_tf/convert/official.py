"""Official SPADE checkpoints → our Keras networks.

Every PyTorch tensor name is mapped to one of our variables by walking our networks in the
official module structure: conv weights OIHW → HWIO, linear (out, in) → (in, out), spectral-norm
`weight_orig`/`weight_u`/`weight_v` → kernel/u/v, SPADE batch-norm running statistics → moving
statistics. Missing, unexpected or mis-shaped tensors are an error naming them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from spade_tf.config import SPADEConfig
from spade_tf.errors import SpadeError
from spade_tf.layers.normalization import BatchNorm
from spade_tf.layers.spectral_norm import SpectralNormalization
from spade_tf.pth import load_state_dict

# tensors the official code stores that carry no information for us
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def _conv_entries(prefix, layer):
    """{torch name: (variable, layout)} for one Conv2d / Linear, with or without spectral norm."""
    inner = layer.layer if isinstance(layer, SpectralNormalization) else layer
    layout = "oihw" if len(inner.kernel.shape) == 4 else "linear"
    if isinstance(layer, SpectralNormalization):
        entries = {f"{prefix}.weight_orig": (inner.kernel, layout),
                   f"{prefix}.weight_u": (layer.u, "vector"),
                   f"{prefix}.weight_v": (layer.v, "vector")}
    else:
        entries = {f"{prefix}.weight": (inner.kernel, layout)}
    if inner.use_bias:
        entries[f"{prefix}.bias"] = (inner.bias, "vector")
    return entries


def _norm_entries(prefix, norm):
    if isinstance(norm, BatchNorm):
        return {f"{prefix}.running_mean": (norm.moving_mean, "vector"),
                f"{prefix}.running_var": (norm.moving_variance, "vector")}
    return {}


def generator_entries(generator):
    entries = _conv_entries("fc", generator.fc)
    for name, block, _ in generator._blocks():
        convs = ["conv_0", "conv_1"] + (["conv_s"] if block.learned_shortcut else [])
        norms = ["norm_0", "norm_1"] + (["norm_s"] if block.learned_shortcut else [])
        for conv in convs:
            entries.update(_conv_entries(f"{name}.{conv}", getattr(block, conv)))
        for norm in norms:
            spade = getattr(block, norm)
            entries.update(_conv_entries(f"{name}.{norm}.mlp_shared.0", spade.mlp_shared))
            entries.update(_conv_entries(f"{name}.{norm}.mlp_gamma", spade.mlp_gamma))
            entries.update(_conv_entries(f"{name}.{norm}.mlp_beta", spade.mlp_beta))
            entries.update(_norm_entries(f"{name}.{norm}.param_free_norm", spade.param_free_norm))
    entries.update(_conv_entries("conv_img", generator.conv_img))
    return entries


def discriminator_entries(discriminator):
    entries = {}
    for i, d in enumerate(discriminator.discriminators):
        for n, (conv, norm) in enumerate(zip(d.convs, d.norms, strict=True)):
            prefix = f"discriminator_{i}.model{n}.0"
            if norm is not None and d.norm_type != "none":  # Sequential(conv, norm) inside
                entries.update(_conv_entries(f"{prefix}.0", conv))
                entries.update(_norm_entries(f"{prefix}.1", norm))
            else:
                entries.update(_conv_entries(prefix, conv))
    return entries


def encoder_entries(encoder):
    entries = {}
    for k, (conv, norm) in enumerate(zip(encoder.convs, encoder.norms, strict=True), start=1):
        if encoder.config.norm_E_type != "none":
            entries.update(_conv_entries(f"layer{k}.0", conv))
            entries.update(_norm_entries(f"layer{k}.1", norm))
        else:
            entries.update(_conv_entries(f"layer{k}", conv))
    entries.update(_conv_entries("fc_mu", encoder.fc_mu))
    entries.update(_conv_entries("fc_var", encoder.fc_var))
    return entries


def _to_keras_layout(array, layout):
    if layout == "oihw":
        return array.transpose(2, 3, 1, 0)
    if layout == "linear":
        return array.T
    return array


def load_state_dict_into(model, entries, state_dict, source):
    """Assign every tensor of `state_dict` to its variable; refuse anything that does not fit."""
    state = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
    missing = sorted(set(entries) - set(state))
    unexpected = sorted(set(state) - set(entries))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    converted = {}
    for key, (variable, layout) in entries.items():
        if key not in state:
            continue
        value = _to_keras_layout(np.asarray(state[key], dtype="float32"), layout)
        if tuple(value.shape) != tuple(variable.shape):
            problems.append(f"'{key}' has shape {tuple(state[key].shape)}, the network built from "
                            f"the options expects {_torch_shape(variable.shape, layout)}")
        converted[key] = value
    if problems:
        raise SpadeError(f"{source}: does not match the {type(model).__name__} built from the "
                         f"options: " + "; ".join(problems) + ". Check that opt.txt belongs to this "
                         "checkpoint.")
    for key, (variable, _) in entries.items():
        variable.assign(converted[key])


def _torch_shape(shape, layout):
    shape = tuple(shape)
    if layout == "oihw":
        return (shape[3], shape[2], shape[0], shape[1])
    if layout == "linear":
        return shape[::-1]
    return shape


def _find(ckpt_dir: Path, which_epoch: str, net: str) -> Path | None:
    for ext in (".pth", ".npz"):
        path = ckpt_dir / f"{which_epoch}_net_{net}{ext}"
        if path.exists():
            return path
    return None


def config_from_checkpoint_dir(ckpt_dir: str | os.PathLike) -> SPADEConfig:
    from spade_tf.convert.opt import config_from_opt, parse_opt_txt

    opt_path = Path(ckpt_dir) / "opt.txt"
    if not opt_path.exists():
        raise SpadeError(f"{opt_path}: not found. An official checkpoint folder holds opt.txt "
                         "(written by the official train.py) beside latest_net_G.pth.")
    return config_from_opt(parse_opt_txt(opt_path), source=str(opt_path))


def load_official(ckpt_dir: str | os.PathLike, which_epoch: str = "latest"):
    """Build and load (config, G, D or None, E or None) from an official checkpoint folder."""
    from spade_tf.models import build_networks

    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise SpadeError(f"{ckpt_dir}: not a folder. Pass the official checkpoint folder "
                         "(checkpoints/<name>/ with opt.txt and latest_net_G.pth).")
    config = config_from_checkpoint_dir(ckpt_dir)
    g_path = _find(ckpt_dir, which_epoch, "G")
    if g_path is None:
        raise SpadeError(f"{ckpt_dir}: no {which_epoch}_net_G.pth (or .npz) found")
    g, d, e = build_networks(config)
    load_state_dict_into(g, generator_entries(g), load_state_dict(g_path), str(g_path))
    d_path = _find(ckpt_dir, which_epoch, "D")
    if d_path is not None:
        load_state_dict_into(d, discriminator_entries(d), load_state_dict(d_path), str(d_path))
    else:
        d = None
    if config.use_vae:
        e_path = _find(ckpt_dir, which_epoch, "E")
        if e_path is None:
            e = None  # official releases may hold the generator only; G still works with random z
        else:
            load_state_dict_into(e, encoder_entries(e), load_state_dict(e_path), str(e_path))
    return config, g, d, e


def convert_checkpoint(ckpt_dir, out_dir, which_epoch: str = "latest") -> dict[str, str]:
    """Write OUT_DIR/generator.keras (+ encoder.keras, discriminator.keras) and config.json."""
    config, g, d, e = load_official(ckpt_dir, which_epoch)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"generator": str(out / "generator.keras")}
    g.save(written["generator"])
    if e is not None:
        written["encoder"] = str(out / "encoder.keras")
        e.save(written["encoder"])
    if d is not None:
        written["discriminator"] = str(out / "discriminator.keras")
        d.save(written["discriminator"])
    written["config"] = str(out / "config.json")
    with open(written["config"], "w", encoding="utf-8") as f:
        json.dump({"config": config.to_dict(), "source": str(Path(ckpt_dir).resolve()),
                   "which_epoch": which_epoch}, f, indent=2)
    return written
