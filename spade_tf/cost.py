"""Cost of a network: multiply-accumulates (MACs) per image and parameters.

MACs are counted from the network's layers, as the official counting (forward hooks on
nn.Conv2d and nn.Linear, batch 1): a convolution costs out.numel() * kh * kw * cin / groups, a
dense layer out.numel() * in_features. Biases, normalizations, activations, up-sampling and
additions are not counted. The shapes are the ones each layer was built with, so a network only
needs to be built (no forward pass, no data): the full-size generator is counted in seconds.

SPADE's first conv runs as one-hot table look-ups in our graphs (`layers/lookup.py`), which cost
no multiplications; it is still counted as the convolution it computes, as the official code runs
it, so the figures compare like with like. `spade_mlp` is the part inside SPADE layers
(mlp_shared, mlp_gamma, mlp_beta), as the official breakdown.

Parameters: `params` counts trainable weights (the official definition: `requires_grad`
parameters), `params_all` adds state (spectral-norm u/v, batch-norm statistics).
"""

from __future__ import annotations

import math

import keras


def _spatial_out(layer, input_shape) -> tuple[int, ...]:
    out = layer.compute_output_shape(tuple(input_shape))
    return tuple(int(d) for d in out[1:])


def _input_shape(layer):
    shapes = getattr(layer, "_build_shapes_dict", None)
    if not shapes:
        return None
    return next(iter(shapes.values()))


def layer_macs(layer) -> int | None:
    """MACs per image of one Conv/Depthwise/Separable/Dense layer (batch 1), None for other layers."""
    shape = _input_shape(layer)
    if shape is None:
        return None
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        cin = shape[-1]
        out = _spatial_out(layer, shape)
        depthwise = math.prod(out[:-1]) * cin * layer.depth_multiplier * kh * kw
        return depthwise + math.prod(out) * cin * layer.depth_multiplier
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return math.prod(_spatial_out(layer, shape)) * kh * kw  # each output reads kh*kw inputs
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        kernel = tuple(layer.kernel_size)
        cin = shape[-1]
        return math.prod(_spatial_out(layer, shape)) * math.prod(kernel) * cin // layer.groups
    if isinstance(layer, keras.layers.Dense):
        out = _spatial_out(layer, shape)
        return math.prod(out) * shape[-1]
    return None


def _walk(layer, inside_spade: bool, rows: list, path: str):
    from spade_tf.layers.spade import SPADE

    for sub in layer._layers:
        name = f"{path}/{sub.name}" if path else sub.name
        macs = layer_macs(sub)
        if macs is not None:
            rows.append({"layer": name, "type": type(sub).__name__, "macs": int(macs),
                         "spade_mlp": inside_spade})
            continue
        _walk(sub, inside_spade or isinstance(sub, SPADE), rows, name)


def count_cost(model) -> dict:
    """{"macs", "conv", "linear", "spade_mlp", "params", "params_all", "layers": [...]} for a built
    Keras model or layer. MACs are per image (batch 1)."""
    if not model.built:
        raise ValueError("build the model first (e.g. generator.build((1, H, W, semantic_nc)))")
    rows: list[dict] = []
    _walk(model, False, rows, "")
    dense = sum(r["macs"] for r in rows if r["type"] == "Dense")
    spade = sum(r["macs"] for r in rows if r["spade_mlp"])
    total = sum(r["macs"] for r in rows)
    params = sum(math.prod(w.shape) for w in model.trainable_weights)
    return {"macs": int(total), "conv": int(total - dense - spade), "linear": int(dense),
            "spade_mlp": int(spade),
            "params": int(params), "params_all": int(model.count_params()), "layers": rows}


def generator_cost(config) -> dict:
    """Cost of the generator a config describes (built with random weights, not called)."""
    from spade_tf.models import make_generator

    g = make_generator(config)
    h, w = config.image_size
    g.build((1, h, w, config.semantic_nc))
    cost = count_cost(g)
    cost.update({"image_size": [h, w], "semantic_nc": config.semantic_nc, "netG": config.netG,
                 "width": config.width, "separable": config.separable})
    return cost


def summary(cost: dict) -> dict:
    """The cost without the per-layer rows, MACs also in G (1e9)."""
    out = {k: v for k, v in cost.items() if k != "layers"}
    out["gmacs"] = round(cost["macs"] / 1e9, 3)
    out["mparams"] = round(cost["params"] / 1e6, 3)
    return out
