"""Parameter-free normalizations with PyTorch semantics (affine=False).

PyTorch's defaults differ from Keras's: epsilon 1e-5, momentum 0.1 on the *new* value (Keras's
0.9 on the old), and the running variance is updated with the unbiased batch variance.
"""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.replicas import sum_over_replicas


@keras.saving.register_keras_serializable(package="spade_tf")
class BatchNorm(keras.layers.Layer):
    """Batch norm without scale/shift: `(x - mean) / sqrt(var + eps)` over N, H, W.

    `synchronized=True` averages the batch statistics over all replicas of a
    TensorFlow distribution strategy (SynchronizedBatchNorm2d in the official code). The running
    variance's unbiased factor n / (n - 1) then needs the GLOBAL element count: the layer adds up
    the replicas' element counts itself (`spade_tf.replicas.sum_over_replicas`, an all-reduce like
    the one that sums the moments), so it needs no replica number from outside and uneven local
    batches count right.
    On JAX and PyTorch `synchronized` changes nothing: there a step sees the whole global batch
    as one array (a `keras.distribution.DataParallel` batch is sharded by XLA, which computes the
    mean over all of it), so the plain statistics are already the synchronized ones.

    Input: [B, H, W, C]. Output: same shape. State: moving_mean, moving_variance [C].
    """

    def __init__(self, momentum=0.1, epsilon=1e-5, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.synchronized = synchronized

    def build(self, input_shape):
        channels = input_shape[-1]
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(channels,), initializer="zeros", trainable=False,
            autocast=False)
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(channels,), initializer="ones", trainable=False,
            autocast=False)

    def call(self, x, training=False):
        x32 = ops.cast(x, "float32")  # statistics in float32 under mixed precision
        if training:
            sync = self.synchronized and keras.backend.backend() == "tensorflow"
            mean, var = ops.moments(x32, axes=(0, 1, 2), synchronized=sync)
            n = ops.cast(ops.prod(ops.shape(x32)[:3]), "float32")
            if sync:
                n = sum_over_replicas(n)  # the global element count
            unbiased = var * n / ops.maximum(n - 1.0, 1.0)
            m = self.momentum
            self.moving_mean.assign((1 - m) * self.moving_mean + m * mean)
            self.moving_variance.assign((1 - m) * self.moving_variance + m * unbiased)
        else:
            mean, var = self.moving_mean, self.moving_variance
        y = (x32 - mean) * ops.rsqrt(var + self.epsilon)
        return ops.cast(y, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "epsilon": self.epsilon,
                       "synchronized": self.synchronized})
        return config


@keras.saving.register_keras_serializable(package="spade_tf")
class InstanceNorm(keras.layers.Layer):
    """Instance norm without scale/shift or running statistics (same in training and inference).

    Input: [B, H, W, C]. Output: same shape.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x, training=False):
        x32 = ops.cast(x, "float32")
        mean, var = ops.moments(x32, axes=(1, 2), keepdims=True)
        return ops.cast((x32 - mean) * ops.rsqrt(var + self.epsilon), x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


def param_free_norm(kind: str, synchronized: bool = False, name: str | None = None):
    """'syncbatch' | 'batch' | 'instance' → the matching layer (`none` → identity)."""
    if kind == "syncbatch":
        return BatchNorm(synchronized=synchronized, name=name)
    if kind == "batch":
        return BatchNorm(name=name)
    if kind == "instance":
        return InstanceNorm(name=name)
    if kind == "none":
        return keras.layers.Identity(name=name)
    raise ValueError(f"unknown normalization '{kind}'")
