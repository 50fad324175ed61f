"""Multiscale PatchGAN discriminator (official `models/networks/discriminator.py`)."""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.config import SPADEConfig
from spade_tf.layers.conv import conv2d
from spade_tf.layers.lookup import cond, conv_via_lookups, is_exactly_onehot
from spade_tf.layers.normalization import param_free_norm


@keras.saving.register_keras_serializable(package="spade_tf")
class NLayerDiscriminator(keras.layers.Layer):
    """PatchGAN: 4x4 convs with padding 2; strides 2, 2, ..., 1, then a 1-channel 4x4 conv.

    Middle convs: spectral norm (no bias) + parameter-free norm; LeakyReLU 0.2 after all but the
    last. Input: [B, H, W, semantic_nc + 3]. Returns the n_layers_D intermediate features and
    the final patch logits [B, H', W', 1], in that order.

    onehot_channels: when set, the first conv is computed as table look-ups
    (`spade_tf.layers.lookup`) whenever the input's first `onehot_channels` channels are exactly
    one-hot (checked at run time; otherwise the plain conv runs). Same result, and the gradient
    into the image channels no longer costs a label_nc-wide input gradient.
    """

    def __init__(self, ndf=64, n_layers_D=4, norm_type="instance", spectral=True,
                 init_type="xavier", init_variance=0.02, onehot_channels=None, **kwargs):
        super().__init__(**kwargs)
        self.ndf, self.n_layers_D, self.norm_type, self.spectral = ndf, n_layers_D, norm_type, spectral
        self.onehot_channels = onehot_channels
        self.init_type, self.init_variance = init_type, init_variance
        init = {"init_type": init_type, "gain": init_variance}
        self.pad = keras.layers.ZeroPadding2D(2)
        self.convs, self.norms = [], []
        nf = ndf
        self.convs.append(conv2d(nf, 4, strides=2, padding="valid", name="model0", **init))
        self.norms.append(None)
        has_norm = norm_type != "none"
        for n in range(1, n_layers_D):
            nf = min(nf * 2, 512)
            stride = 1 if n == n_layers_D - 1 else 2
            # get_nonspade_norm_layer drops the conv bias when a norm follows
            self.convs.append(conv2d(nf, 4, strides=stride, padding="valid", use_bias=not has_norm,
                                     spectral=spectral, name=f"model{n}", **init))
            self.norms.append(param_free_norm(norm_type, name=f"model{n}_norm"))
        self.convs.append(conv2d(1, 4, strides=1, padding="valid", name=f"model{n_layers_D}", **init))
        self.norms.append(None)

    def build(self, input_shape):
        shape = input_shape
        for conv, norm in zip(self.convs, self.norms, strict=True):
            shape = self.pad.compute_output_shape(shape)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if norm is not None:
                norm.build(shape)

    def call(self, x, training=False):
        results = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = self._first_conv(x) if i == 0 else conv(self.pad(x), training=training)
            if norm is not None:
                x = norm(x, training=training)
            if i < len(self.convs) - 1:
                x = _lrelu(x)
            results.append(x)
        return results

    def _first_conv(self, x):
        conv, n = self.convs[0], self.onehot_channels
        if n is None or n > x.shape[-1]:
            return conv(self.pad(x))
        return cond(is_exactly_onehot(x[..., :n]), lambda: self._first_lookup(x, n),
                        lambda: conv(self.pad(x)))

    def _first_lookup(self, x, n):
        """model0(pad(x)) for an x whose first n channels are one-hot: look-ups + a conv of the rest."""
        return conv_via_lookups(self.convs[0], x, n, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"ndf": self.ndf, "n_layers_D": self.n_layers_D, "norm_type": self.norm_type,
                       "spectral": self.spectral, "init_type": self.init_type,
                       "init_variance": self.init_variance, "onehot_channels": self.onehot_channels})
        return config


def downsample(x):
    """avg_pool2d(3, stride 2, padding 1, count_include_pad=False)."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    summed = ops.average_pool(ops.pad(x, pad), 3, 2, padding="valid")
    ones = ops.ones((1, x.shape[1], x.shape[2], 1), dtype=x.dtype)
    count = ops.average_pool(ops.pad(ones, pad), 3, 2, padding="valid")
    return summed / count


@keras.saving.register_keras_serializable(package="spade_tf")
class MultiscaleDiscriminator(keras.Model):
    """`num_D` PatchGANs on the input at full, 1/2, 1/4, ... resolution.

    Call: `D(concat([semantics, image], -1), training)` → list over scales (full first) of lists
    [feature_1 .. feature_{n_layers_D}, logits]; features feed the feature-matching loss.
    """

    def __init__(self, config: SPADEConfig | dict, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, SPADEConfig) else SPADEConfig.from_dict(config)
        cfg = self.config
        self.discriminators = [
            # only the full-resolution input is one-hot: the others are average-pooled
            NLayerDiscriminator(cfg.ndf, cfg.n_layers_D, cfg.norm_D_type, cfg.spectral_D,
                                cfg.init_type, cfg.init_variance,
                                onehot_channels=cfg.num_label_channels if i == 0 else None,
                                name=f"discriminator_{i}")
            for i in range(cfg.num_D)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for d in self.discriminators:
            d.build(shape)
            shape = (shape[0], (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1, shape[3])
        self.built = True

    def call(self, x, training=False):
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = downsample(x)
            outputs.append(d(x, training=training))
        return outputs

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _lrelu(x):
    """LeakyReLU 0.2 as max(x, 0.2 x): the same values. Not `ops.leaky_relu`: TensorFlow's grappler
    fuses conv + bias + LeakyRelu and then cannot rewire LeakyReluGrad ("remapper failed"), and
    drops every remapper fusion of the training graph (docs/benchmarks.md)."""
    return ops.maximum(x, 0.2 * x)
