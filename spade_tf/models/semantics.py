"""Label map (+ instance edges) → the generator's one-hot input."""

from __future__ import annotations

from keras import ops


def make_semantics(label_map, config, instance_edges=None):
    """One-hot the label ids and append the instance-edge channel, as `preprocess_input`.

    label_map: int [B, H, W] with ids in [0, num_label_channels) (don't-care already mapped to
    `label_nc`). instance_edges: float [B, H, W, 1], required when the config uses them.
    Returns float32 [B, H, W, semantic_nc].
    """
    onehot = ops.one_hot(ops.cast(label_map, "int32"), config.num_label_channels, dtype="float32")
    if config.use_instance_edges:
        if instance_edges is None:
            raise ValueError("this config uses instance edges (no_instance=False): pass instance_edges")
        onehot = ops.concatenate([onehot, ops.cast(instance_edges, "float32")], axis=-1)
    return onehot
