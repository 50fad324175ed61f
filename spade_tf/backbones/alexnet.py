"""ImageNet AlexNet `features` as LPIPS uses them (torchvision layout, LPIPS input scaling).

Weights: `lpips_alex_v0.1.npz` (torchvision AlexNet convs, PyTorch OIHW kernels, plus the LPIPS
heads and scaling), found or fetched by `spade_tf.weights` (made from torchvision's
`alexnet-owt-7be5be79.pth` and LPIPS's `weights/v0.1/alex.pth` by `weights.convert_lpips_alex`).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

from spade_tf.errors import SpadeError

WEIGHTS_ENV = "SPADE_ALEXNET_WEIGHTS"
WEIGHTS_FILENAME = "lpips_alex_v0.1.npz"

# (state-dict index, out channels, kernel, stride, padding, maxpool 3/2 before it)
_CONVS = (
    (0, 64, 11, 4, 2, False),
    (3, 192, 5, 1, 2, True),
    (6, 384, 3, 1, 1, True),
    (8, 256, 3, 1, 1, False),
    (10, 256, 3, 1, 1, False),
)
RELU_CHANNELS = tuple(c[1] for c in _CONVS)


def resolve_alexnet_weights(weights_path: str | os.PathLike | None = None,
                            allow_download: bool = True) -> Path:
    """The weights file to use: the path, `$SPADE_ALEXNET_WEIGHTS`, the cache, or the published files
    (torchvision's AlexNet + LPIPS's v0.1 heads, hash-checked, converted once); see `spade_tf.weights`.
    Raises SpadeError (naming the files, their URLs and how to pass one) when none of them works."""
    from spade_tf.weights import LPIPS_ALEX, resolve

    return resolve(LPIPS_ALEX, weights_path, allow_download)


def check_alexnet_arrays(arrays: dict, where: str) -> None:
    """The keys and shapes this module needs, or SpadeError naming `where`."""
    in_ch = 3
    for idx, out_ch, k, _, _, _ in _CONVS:
        expected = {f"features.{idx}.weight": (out_ch, in_ch, k, k), f"features.{idx}.bias": (out_ch,)}
        for key, shape in expected.items():
            if key not in arrays:
                raise SpadeError(f"{where}: missing array '{key}'; is this {WEIGHTS_FILENAME}?")
            if arrays[key].shape != shape:
                raise SpadeError(f"{where}: '{key}' has shape {arrays[key].shape}, expected {shape}")
        in_ch = out_ch
    for i, c in enumerate(RELU_CHANNELS):
        key = f"lin{i}.weight"
        if arrays.get(key, np.zeros(0)).shape != (1, c, 1, 1):
            raise SpadeError(f"{where}: missing or malformed '{key}' (expected [1, {c}, 1, 1])")
    for key in ("scaling.shift", "scaling.scale"):
        if arrays.get(key, np.zeros(0)).shape != (3,):
            raise SpadeError(f"{where}: missing or malformed '{key}' (expected shape [3])")


def load_alexnet_npz(weights_path: str | os.PathLike | None = None,
                     allow_download: bool = True) -> dict[str, np.ndarray]:
    """All arrays of the LPIPS-alex .npz, checked for the keys and shapes this module needs."""
    path = resolve_alexnet_weights(weights_path, allow_download)
    try:
        with np.load(path) as f:
            arrays = {k: np.asarray(f[k], np.float32) for k in f.files}
    except (OSError, ValueError) as e:
        raise SpadeError(f"cannot read AlexNet weights {path}: {e}") from e
    check_alexnet_arrays(arrays, str(path))
    return arrays


@keras.saving.register_keras_serializable(package="spade_tf")
class AlexNetFeatures(keras.layers.Layer):
    """LPIPS input scaling + torchvision AlexNet convs; frozen by default.

    Input: images [B, H, W, 3] in [-1, 1] (H, W >= 63 or so, so that relu5 is non-empty).
    Output: list of the 5 relu maps, NHWC, channels (64, 192, 384, 256, 256):
    relu1 [B, H1, W1, 64] with H1 = floor((H + 4 - 11) / 4) + 1, then each maxpool 3/2 (no padding)
    shrinks to floor((n - 3) / 2) + 1; relu3..relu5 share relu3's size.
    """

    def __init__(self, weights_path=None, trainable=False, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.weights_path = str(weights_path) if weights_path else None
        arrays = load_alexnet_npz(weights_path)
        self.kernels, self.biases = [], []
        for idx, *_ in _CONVS:
            w = arrays[f"features.{idx}.weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
            b = arrays[f"features.{idx}.bias"]
            self.kernels.append(self.add_weight(name=f"conv{len(self.kernels) + 1}_kernel", shape=w.shape,
                                                initializer=keras.initializers.Constant(w)))
            self.biases.append(self.add_weight(name=f"conv{len(self.biases) + 1}_bias", shape=b.shape,
                                               initializer=keras.initializers.Constant(b)))
        # The scaling is part of the metric, never trained.
        self.shift = self.add_weight(name="shift", shape=(3,), trainable=False,
                                     initializer=keras.initializers.Constant(arrays["scaling.shift"]))
        self.scale = self.add_weight(name="scale", shape=(3,), trainable=False,
                                     initializer=keras.initializers.Constant(arrays["scaling.scale"]))

    def call(self, images):
        x = (ops.cast(images, "float32") - self.shift) / self.scale
        feats = []
        for (_, _, _, stride, pad, pool_first), w, b in zip(_CONVS, self.kernels, self.biases, strict=True):
            if pool_first:
                x = ops.max_pool(x, 3, 2, padding="valid")
            # PyTorch pads explicitly and symmetrically; Keras "same" would pad asymmetrically.
            x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            x = ops.relu(ops.conv(x, w, strides=stride, padding="valid") + b)
            feats.append(x)
        return feats

    def compute_output_spec(self, images):
        return [keras.KerasTensor(s, "float32") for s in self.feature_shapes(images.shape)]

    @staticmethod
    def feature_shapes(input_shape):
        b, h, w = input_shape[0], input_shape[1], input_shape[2]

        def conv(n, k, s, p):
            return None if n is None else (n + 2 * p - k) // s + 1

        def pool(n):
            return None if n is None else (n - 3) // 2 + 1

        shapes = []
        for _, c, k, s, p, pool_first in _CONVS:
            if pool_first:
                h, w = pool(h), pool(w)
            h, w = conv(h, k, s, p), conv(w, k, s, p)
            shapes.append((b, h, w, c))
        return shapes

    def get_config(self):
        return {**super().get_config(), "weights_path": self.weights_path}
