"""LPIPS (Zhang et al. 2018), net='alex', version 0.1, exactly as the `lpips` package computes it.

Per layer l: unit-normalise the relu maps over channels, square the difference of the two
images' maps, weight channels by the 1x1 head `lin{l}` (no bias), average over H and W. The
distance is the sum of the five terms. Also `lpips_diversity`, the multimodal diversity score
(mean pairwise LPIPS over K samples of one label map).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

from spade_tf.backbones.alexnet import RELU_CHANNELS, AlexNetFeatures, load_alexnet_npz
from spade_tf.data.images import from_uint8
from spade_tf.errors import SpadeError


def unit_normalize(f, eps: float = 1e-10):
    """lpips.normalize_tensor over the channel (last) axis: f / (sqrt(sum_c f^2) + eps).

    The same values as LPIPS everywhere, but with a finite gradient where a feature vector is all
    zero (relu maps often are): there the square root's derivative is infinite and the plain form
    gives 0 * inf = NaN. The double `where` keeps the square root away from 0 (its value there is
    replaced by the exact 0, and no gradient flows through the replaced branch).
    """
    f = ops.cast(f, "float32")
    sq = ops.sum(f * f, axis=-1, keepdims=True)
    positive = sq > 0
    norm = ops.where(positive, ops.sqrt(ops.where(positive, sq, ops.ones_like(sq))), ops.zeros_like(sq))
    return f / (norm + eps)


def lpips_from_features(feats0, feats1, heads, stop_gradient_1: bool = False):
    """Per-sample LPIPS [B] from the two images' five relu maps (NHWC) and the heads ([C_l] each).

    stop_gradient_1: feats1 are a target (the perceptual loss's real image): no gradient flows to them.
    """
    total = 0.0
    for a, b, w in zip(feats0, feats1, heads, strict=True):
        nb = unit_normalize(b)
        if stop_gradient_1:
            nb = ops.stop_gradient(nb)
        d = ops.square(unit_normalize(a) - nb)
        total = total + ops.mean(ops.sum(d * ops.cast(w, "float32"), axis=-1), axis=(1, 2))
    return total


@keras.saving.register_keras_serializable(package="spade_tf")
class LPIPS(keras.layers.Layer):
    """LPIPS-alex v0.1. Frozen.

    `call([x0, x1])`: x0, x1 [B, H, W, 3] in [-1, 1] -> distances [B].
    `per_layer(x0, x1)` -> [B, 5], the five terms (their sum is the distance).
    """

    def __init__(self, weights_path=None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.weights_path = str(weights_path) if weights_path else None
        self.features = AlexNetFeatures(weights_path, trainable=False)
        arrays = load_alexnet_npz(weights_path)
        self.heads = []
        for i, c in enumerate(RELU_CHANNELS):
            key = f"lin{i}.weight"
            if arrays.get(key, np.zeros(0)).shape != (1, c, 1, 1):
                raise SpadeError(f"LPIPS weights: missing or malformed '{key}' (expected [1, {c}, 1, 1])")
            self.heads.append(self.add_weight(name=f"lin{i}", shape=(c,), trainable=False,
                                              initializer=keras.initializers.Constant(arrays[key].reshape(c))))

    def per_layer(self, x0, x1):
        f0 = self.features(x0)
        f1 = self.features(x1)
        terms = [lpips_from_features([a], [b], [w]) for a, b, w in zip(f0, f1, self.heads, strict=True)]
        return ops.stack(terms, axis=-1)

    def call(self, inputs):
        x0, x1 = inputs
        return ops.sum(self.per_layer(x0, x1), axis=-1)

    def get_config(self):
        return {**super().get_config(), "weights_path": self.weights_path}


def uint8_to_unit_range(images) -> np.ndarray:
    """uint8 [.., H, W, 3] -> float32 in [-1, 1] (`from_uint8`), as the LPIPS fixtures feed images."""
    return from_uint8(np.asarray(images, np.float32))


def lpips_distance(x0, x1, metric: LPIPS | None = None, batch_size: int = 32) -> np.ndarray:
    """LPIPS between paired images x0[i], x1[i] ([N, H, W, 3] in [-1, 1]) -> float32 [N]."""
    metric = metric or LPIPS()
    x0, x1 = np.asarray(x0, np.float32), np.asarray(x1, np.float32)
    if x0.shape != x1.shape or x0.ndim != 4 or x0.shape[-1] != 3:
        raise SpadeError(f"LPIPS needs two [N, H, W, 3] arrays of equal shape, got {x0.shape} and {x1.shape}")
    out = [ops.convert_to_numpy(metric([x0[i:i + batch_size], x1[i:i + batch_size]]))
           for i in range(0, len(x0), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def lpips_diversity(images_k, metric: LPIPS | None = None, batch_size: int = 32) -> float:
    """Multimodal diversity: mean LPIPS over all unordered pairs of the K samples of each label map.

    images_k: [K, H, W, 3] (K samples of one label map) or [N, K, H, W, 3] (N label maps), in [-1, 1].
    Returns the mean over label maps of each map's mean pairwise distance (K >= 2).
    """
    images_k = np.asarray(images_k, np.float32)
    if images_k.ndim == 4:
        images_k = images_k[None]
    if images_k.ndim != 5 or images_k.shape[1] < 2:
        raise SpadeError(f"lpips_diversity needs [K, H, W, 3] or [N, K, H, W, 3] with K >= 2, "
                         f"got shape {images_k.shape}")
    n, k = images_k.shape[:2]
    pairs = list(itertools.combinations(range(k), 2))
    i0 = [i for i, _ in pairs]
    i1 = [j for _, j in pairs]
    x0 = images_k[:, i0].reshape(-1, *images_k.shape[2:])
    x1 = images_k[:, i1].reshape(-1, *images_k.shape[2:])
    d = lpips_distance(x0, x1, metric, batch_size).reshape(n, len(pairs))
    return float(d.mean(axis=1).mean())
