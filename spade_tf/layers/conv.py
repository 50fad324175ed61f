"""Convolution helpers shared by the networks: official initialisation, optional spectral norm."""

from __future__ import annotations

import functools

import keras
from keras import ops

from spade_tf.layers.spectral_norm import SpectralNormalization


@functools.cache
def _tensorflow_cpu_only() -> bool:
    return keras.backend.backend() == "tensorflow" and not keras.distribution.list_devices("gpu")


def forward_conv_gradients(forced: bool | None = None) -> bool:
    """Whether stride-1 'same' convolutions take their gradients as forward convolutions.

    forced: a layer's `forward_gradients` setting: None decides by device as below; True / False
    force it on TensorFlow. Other backends always keep their native convolution gradients.

    On TensorFlow's CPU kernels `Conv2DBackpropInput` / `Conv2DBackpropFilter` are 2-3x slower
    than a forward convolution of the same size; the same gradients written as forward
    convolutions make a SPADE training step about 30% faster there (docs/benchmarks.md).
    cuDNN and XLA gradients are fast already, so GPUs keep them, and so do the other backends
    (JAX's and PyTorch's CPU convolution gradients have no such penalty, and a custom gradient
    there would only stand in the way of their compilers): the switch applies on TensorFlow only.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    if forced is not None:
        return forced
    return _tensorflow_cpu_only()


def same_conv(x, kernel):
    """`ops.conv(x, kernel, 1, "same")` (odd kernel) whose gradients are forward convolutions.

    x: [B, H, W, C_in], kernel: [kh, kw, C_in, C_out] → [B, H, W, C_out].
    d/dx = conv_same(dy, kernel flipped in space, in/out swapped);
    d/dkernel = conv_valid(pad(x) as [C_in, H+kh-1, W+kw-1, B], dy as [H, W, B, C_out]) — the
    batch plays the channel role — giving [C_in, kh, kw, C_out].
    """
    # a tensor, not the variable: a custom gradient must not read variables itself
    return _same_conv(x, ops.copy(kernel))


@ops.custom_gradient
def _same_conv(x, kernel):
    y = ops.conv(x, kernel, 1, "same")

    def grad(*args, upstream=None):
        dy = args[0] if upstream is None else upstream
        kh, kw = kernel.shape[0], kernel.shape[1]
        dx = ops.conv(dy, ops.transpose(ops.flip(kernel, (0, 1)), (0, 1, 3, 2)), 1, "same")
        x_pad = ops.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
        dkernel = ops.conv(ops.transpose(x_pad, (3, 1, 2, 0)), ops.transpose(dy, (1, 2, 0, 3)), 1, "valid")
        return dx, ops.transpose(dkernel, (1, 2, 0, 3))

    return y, grad


@keras.saving.register_keras_serializable(package="spade_tf")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose stride-1 'same' convolutions (odd kernel) use `same_conv`'s
    gradients where `forward_conv_gradients()` says they are faster. Same weights, same outputs.

    forward_gradients: None (default) decides by device; True / False force the choice on
    TensorFlow. Inference-only copies (export graphs, `SPADEGenerator.folded(...)`) pass False:
    no custom gradient in a graph that is never differentiated.
    """

    def __init__(self, *args, forward_gradients: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.forward_gradients = forward_gradients

    def _plain_same(self) -> bool:
        return (tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.padding == "same" and self.data_format == "channels_last" and self.groups == 1
                and all(k % 2 == 1 for k in self.kernel_size))

    def convolution_op(self, inputs, kernel):
        if self._plain_same() and forward_conv_gradients(self.forward_gradients):
            return same_conv(inputs, kernel)
        return super().convolution_op(inputs, kernel)

    def get_config(self):
        return {**super().get_config(), "forward_gradients": self.forward_gradients}


def kernel_initializer(init_type: str = "xavier", gain: float = 0.02, seed=None):
    """The official `BaseNetwork.init_weights` choices for conv and linear weights."""
    if init_type == "xavier":  # xavier_normal_(gain): std = gain * sqrt(2 / (fan_in + fan_out))
        return keras.initializers.VarianceScaling(gain**2, "fan_avg", "untruncated_normal", seed=seed)
    if init_type == "xavier_uniform":
        return keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform", seed=seed)
    if init_type == "normal":
        return keras.initializers.RandomNormal(0.0, gain, seed=seed)
    if init_type == "kaiming":  # kaiming_normal_(a=0, mode='fan_in')
        return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=seed)
    if init_type == "orthogonal":
        return keras.initializers.Orthogonal(gain, seed=seed)
    if init_type == "none":  # PyTorch's default conv init
        return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed=seed)
    raise ValueError(f"unknown init_type '{init_type}'")


def conv2d(filters, kernel_size, strides=1, padding="same", use_bias=True, spectral=False,
           init_type="xavier", gain=0.02, name=None, forward_gradients=None):
    """A Conv2D (channels-last), wrapped in spectral norm when asked (`forward_gradients`: see `Conv2D`).

    `padding` is a Keras padding string; explicit PyTorch-style paddings are added by the caller
    with `ZeroPadding2D` (`'same'` equals PyTorch's symmetric padding only at stride 1, odd kernel).
    """
    conv = Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=kernel_initializer(init_type, gain), bias_initializer="zeros",
        name=name if not spectral else None, forward_gradients=forward_gradients)
    return SpectralNormalization(conv, name=name) if spectral else conv


def dense(units, use_bias=True, spectral=False, init_type="xavier", gain=0.02, name=None):
    layer = keras.layers.Dense(units, use_bias=use_bias,
                               kernel_initializer=kernel_initializer(init_type, gain),
                               name=name if not spectral else None)
    return SpectralNormalization(layer, name=name) if spectral else layer
