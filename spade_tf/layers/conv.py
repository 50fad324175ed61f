"""Convolution helpers shared by the networks: official initialisation, optional spectral norm."""

from __future__ import annotations

import keras

from spade_tf.layers.spectral_norm import SpectralNormalization


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
           init_type="xavier", gain=0.02, name=None):
    """A Conv2D (channels-last), wrapped in spectral norm when asked.

    `padding` is a Keras padding string; explicit PyTorch-style paddings are added by the caller
    with `ZeroPadding2D` (`'same'` equals PyTorch's symmetric padding only at stride 1, odd kernel).
    """
    conv = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=kernel_initializer(init_type, gain), bias_initializer="zeros",
        name=name if not spectral else None)
    return SpectralNormalization(conv, name=name) if spectral else conv


def dense(units, use_bias=True, spectral=False, init_type="xavier", gain=0.02, name=None):
    layer = keras.layers.Dense(units, use_bias=use_bias,
                               kernel_initializer=kernel_initializer(init_type, gain),
                               name=name if not spectral else None)
    return SpectralNormalization(layer, name=name) if spectral else layer
