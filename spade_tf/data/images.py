"""The two conversions between 8-bit pixels and the networks' [-1, 1] range: `from_uint8` (photos in)
and `to_uint8` (generator output to what saving a PNG keeps)."""

from __future__ import annotations

import numpy as np


def from_uint8(images):
    """8-bit pixel values (0..255) → float in [-1, 1]: `x / 127.5 - 1` (photos and style images in).

    Plain arithmetic, so the one rule serves NumPy arrays, TensorFlow tensors (tf.data stays
    TensorFlow ops) and Keras tensors alike, and keeps the input's float type. A NumPy array of
    integers (uint8) is cast to float32 here; a tensor must be float already (the caller casts:
    TensorFlow does not divide an integer tensor by 127.5).
    """
    if isinstance(images, np.ndarray) and images.dtype.kind != "f":
        images = images.astype(np.float32)
    return images / 127.5 - 1.0


def to_uint8(images):
    """Generator output in [-1, 1] → uint8 `round((x + 1) * 127.5)` (half to even), clipped to [0, 255].

    Any shape, any array the Keras backend takes (NumPy in, a backend tensor out: `np.asarray` it);
    traceable, so the exported graphs use it too. NaN has no defined result: callers that may see a
    diverged network (training sample grids) replace it first.
    """
    from keras import ops  # here, not at import: `spade` picks the Keras backend after parsing

    scaled = (ops.cast(images, "float32") + 1.0) * 127.5
    return ops.cast(ops.round(ops.clip(scaled, 0.0, 255.0)), "uint8")


def quantize(images_float) -> tuple[np.ndarray, np.ndarray]:
    """As if saved to PNG and read back: (uint8 images, the same back in [-1, 1] float32), NumPy."""
    u8 = np.asarray(to_uint8(images_float))
    return u8, from_uint8(u8.astype(np.float32))
