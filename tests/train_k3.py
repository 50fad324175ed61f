"""Replay of the official training iterations in `<fixture>/train_k3.npz` (see the fixtures' README).

Backend-neutral (numpy + keras.ops), so the TensorFlow test (`test_train_parity.py`) and the JAX
script (`jax_train_check.py`, run by `test_jax_train.py`) share it.

The replay builds our networks from the official checkpoint folder with the converter, runs
`GauGAN.train_step` on the recorded batches with the recorded VAE noise (`noise_fn`), and collects
the first iteration's gradients through `gradient_hook`. Official tensor names map to our variables
through the converter's `*_entries` tables.
"""

from __future__ import annotations

import numpy as np

# official loss name in train_k3.npz -> our tracker name
LOSS_NAMES = {"GAN": "G_GAN", "GAN_Feat": "G_GAN_Feat", "KLD": "G_KLD", "D_Fake": "D_Fake",
              "D_real": "D_real"}
# a tensor whose official gradient is below this fraction of its network's gradient norm is
# "vanishing" (e.g. a bias right before a parameter-free batch norm: exactly 0 in exact arithmetic,
# rounding noise in practice); its error is measured against the network's gradient norm
VANISHING = 1e-4


def instance_edges(instance_map):
    """Official `get_edges` in numpy: int [B, H, W] -> float32 [B, H, W, 1]."""
    t = np.asarray(instance_map)
    edge = np.zeros(t.shape, bool)
    dx = t[:, :, 1:] != t[:, :, :-1]
    dy = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    return edge.astype("float32")[..., None]


def batches(k3, config, n=3):
    """The recorded batches as GauGAN batch dicts (NHWC, instance edges from the instance maps)."""
    out = []
    for i in range(n):
        data = {"label_map": k3[f"batch{i}_label_map"].astype("int32"),
                "image": k3[f"batch{i}_image_nchw"].transpose(0, 2, 3, 1)}
        if config.use_instance_edges:
            data["instance_edges"] = instance_edges(k3[f"batch{i}_instance_map"])
        out.append(data)
    return out


def recorded_noise(k3):
    """noise_fn replaying the recorded draws: eps{2 step} for the G step, eps{2 step + 1} for the D
    step's fresh fake (the official order). Traceable (keras.ops.take on the step tensor)."""
    from keras import ops

    names = sorted((k for k in k3.files if k.startswith("eps")), key=lambda k: int(k[3:]))
    if not names:
        return None
    eps = np.stack([k3[k] for k in names])

    def noise_fn(shape, kind, step):
        index = 2 * ops.cast(step, "int32") + (1 if kind == "discriminator" else 0)
        return ops.take(eps, index, axis=0)

    return noise_fn


def to_keras_layout(array, layout):
    """Official tensor (OIHW conv / (out, in) linear) -> our variable's layout."""
    if layout == "oihw":
        return array.transpose(2, 3, 1, 0)
    if layout == "linear":
        return array.T
    return array


def entries(g, d, e):
    """{"G"|"D"|"E": {official name: (variable, layout)}} from the converter's tables."""
    from spade_tf.convert.official import discriminator_entries, encoder_entries, generator_entries

    out = {"G": generator_entries(g), "D": discriminator_entries(d)}
    if e is not None:
        out["E"] = encoder_entries(e)
    return out


class GradientRecorder:
    """A `gradient_hook` keeping the gradients of the first G step and the first D step."""

    def __init__(self):
        self.grads = {}

    def __call__(self, group, grads, variables):
        ids = [id(v) for v in variables]

        def record(*values):
            if group not in self.grads:
                self.grads[group] = {i: np.asarray(x) for i, x in zip(ids, values, strict=True)}

        try:
            import jax

            if any(isinstance(g, jax.core.Tracer) for g in grads):  # inside a jitted JAX step
                jax.debug.callback(record, *grads)
                return
        except ImportError:
            pass
        record(*grads)


def gradient_errors(k3, table, recorded):
    """{official name: (error, official norm, vanishing)} for every grad0/ tensor.

    error = ||ours - official|| / ||official||, or for a vanishing tensor (||official|| below
    VANISHING * ||official gradient of its network||) ||ours - official|| / ||network gradient||.
    """
    refs = {}
    for key in k3.files:
        if key.startswith("grad0/"):
            _, net, name = key.split("/", 2)
            variable, layout = table[net][name]
            refs[key] = (net, variable, to_keras_layout(k3[key], layout))
    net_norm = {}
    for net, _, ref in refs.values():
        net_norm[net] = net_norm.get(net, 0.0) + float(np.sum(np.square(ref.astype("float64"))))
    out = {}
    for key, (net, variable, ref) in refs.items():
        ours = recorded.grads["D" if net == "D" else "G"][id(variable)]
        norm = float(np.linalg.norm(ref))
        total = float(np.sqrt(net_norm[net]))
        vanishing = norm < VANISHING * total
        out[key] = (float(np.linalg.norm(ours - ref)) / (total if vanishing else norm), norm, vanishing)
    return out


def loss_errors(k3, logs_per_iteration):
    """{"loss{i}_{name}": (ours, official)} for every recorded loss."""
    out = {}
    for i, logs in enumerate(logs_per_iteration):
        for official, ours in LOSS_NAMES.items():
            key = f"loss{i}_{official}"
            if key in k3.files:
                out[key] = (float(logs[ours]), float(k3[key]))
    return out


STATE_SUFFIXES = ("weight_u", "weight_v", "running_mean", "running_var")


def after_errors(k3, table, before):
    """Per network: (||dW_ours - dW_official|| / ||dW_official|| over the trainable weights (dW: the
    change over the three iterations), ||S_ours - S_official|| / ||S_official|| over the state
    tensors (spectral-norm u/v, batch-norm running statistics), max |W_ours - W_official|)."""
    out = {}
    for net, names in table.items():
        d_ours, d_ref, s_ours, s_ref = [], [], [], []
        for name, (variable, layout) in names.items():
            ref = to_keras_layout(k3[f"after/{net}/{name}"], layout).astype("float64").ravel()
            ours = np.asarray(variable).astype("float64").ravel()
            if name.endswith(STATE_SUFFIXES):
                s_ours.append(ours)
                s_ref.append(ref)
            else:
                start = before[net][name].astype("float64").ravel()
                d_ours.append(ours - start)
                d_ref.append(ref - start)
        d_ours, d_ref = np.concatenate(d_ours), np.concatenate(d_ref)
        weights = float(np.linalg.norm(d_ours - d_ref) / np.linalg.norm(d_ref))
        state = None
        if s_ours:
            s_ours, s_ref = np.concatenate(s_ours), np.concatenate(s_ref)
            state = float(np.linalg.norm(s_ours - s_ref) / np.linalg.norm(s_ref))
        out[net] = (weights, state, float(np.max(np.abs(d_ours - d_ref))))
    return out


def replay(folder, iterations=3, run_eagerly=True):
    """Build from the official checkpoint, run `iterations` official iterations; return a dict with
    the model, the k3 arrays, the converter table, the recorder, the logs and the starting weights."""
    import keras

    from spade_tf.convert.official import load_official
    from spade_tf.training.gaugan import GauGAN

    k3 = np.load(folder / "train_k3.npz")
    config, g, d, e = load_official(folder)
    recorder = GradientRecorder()
    model = GauGAN(config, g, d, e, noise_fn=recorded_noise(k3), gradient_hook=recorder)
    model.compile(run_eagerly=run_eagerly)
    table = entries(g, d, e)
    before = {net: {k: np.array(v) for k, (v, _) in names.items()} for net, names in table.items()}
    logs = []
    for data in batches(k3, config, iterations):
        if keras.backend.backend() == "jax":  # the stateless step, through Keras's JAX trainer
            step_logs = model.train_on_batch(data, return_dict=True)
        else:
            model.reset_metrics()  # trackers then hold this iteration's values
            step_logs = model.train_step(data)
        logs.append({k: float(v) for k, v in step_logs.items()})
    return {"model": model, "k3": k3, "table": table, "recorder": recorder, "logs": logs,
            "before": before, "config": config}
