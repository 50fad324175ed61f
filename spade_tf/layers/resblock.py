"""SPADE residual block (paper Fig. 4 left)."""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.layers.conv import conv2d
from spade_tf.layers.spade import SPADE


@keras.saving.register_keras_serializable(package="spade_tf")
class SPADEResBlock(keras.layers.Layer):
    """`x_s + conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x, seg))), seg)))`.

    x_s = conv_s(norm_s(x, seg)) (1x1, no bias) when fin != fout, else x. The middle width is
    min(fin, fout); LeakyReLU slope 0.2; spectral norm on conv_0, conv_1, conv_s when `spectral`.

    onehot_channels, assume_onehot, forward_conv_gradients: passed to the SPADE layers (see
    `SPADE`); forward_conv_gradients also to the block's own convs (`layers.conv.Conv2D`).

    Inputs: x [B, H, W, fin], segmap [B, H', W', label_nc]. Output: [B, H, W, fout].
    """

    def __init__(self, fin, fout, norm_type="syncbatch", kernel_size=3, nhidden=128, spectral=True,
                 synchronized=False, init_type="xavier", init_variance=0.02, onehot_channels=None,
                 assume_onehot=False, forward_conv_gradients=None, **kwargs):
        super().__init__(**kwargs)
        init, spade = self._set_options(fin, fout, norm_type, kernel_size, nhidden, spectral, synchronized,
                                        init_type, init_variance, onehot_channels, assume_onehot,
                                        forward_conv_gradients)
        fmiddle = min(fin, fout)
        self.conv_0 = conv2d(fmiddle, 3, spectral=spectral, name="conv_0", **init)
        self.conv_1 = conv2d(fout, 3, spectral=spectral, name="conv_1", **init)
        self.norm_0 = SPADE(fin, name="norm_0", **spade)
        self.norm_1 = SPADE(fmiddle, name="norm_1", **spade)
        if self.learned_shortcut:
            self.conv_s = conv2d(fout, 1, use_bias=False, spectral=spectral, name="conv_s", **init)
            self.norm_s = SPADE(fin, name="norm_s", **spade)

    def _set_options(self, fin, fout, norm_type, kernel_size, nhidden, spectral, synchronized, init_type,
                     init_variance, onehot_channels, assume_onehot, forward_conv_gradients):
        """Store the constructor options; → (conv keyword arguments, SPADE keyword arguments)."""
        self.fin, self.fout = fin, fout
        self.norm_type, self.kernel_size, self.nhidden = norm_type, kernel_size, nhidden
        self.spectral, self.synchronized = spectral, synchronized
        self.init_type, self.init_variance = init_type, init_variance
        self.onehot_channels, self.assume_onehot = onehot_channels, assume_onehot
        self.forward_conv_gradients = forward_conv_gradients
        self.learned_shortcut = fin != fout
        init = {"init_type": init_type, "gain": init_variance, "forward_gradients": forward_conv_gradients}
        spade = {"norm_type": norm_type, "kernel_size": kernel_size, "nhidden": nhidden,
                 "synchronized": synchronized, "init_type": init_type, "init_variance": init_variance,
                 "onehot_channels": onehot_channels, "assume_onehot": assume_onehot,
                 "forward_conv_gradients": forward_conv_gradients}
        return init, spade

    def build(self, x_shape, segmap_shape):
        mid_shape = (*x_shape[:3], min(self.fin, self.fout))
        self.norm_0.build(x_shape, segmap_shape)
        self.conv_0.build(x_shape)
        self.norm_1.build(mid_shape, segmap_shape)
        self.conv_1.build(mid_shape)
        if self.learned_shortcut:
            self.norm_s.build(x_shape, segmap_shape)
            self.conv_s.build(x_shape)

    def call(self, x, segmap, training=False, label_ids=None):
        ids = {"label_ids": label_ids}  # export graphs: the one-hot's int ids (see `SPADE`)
        if self.learned_shortcut:
            x_s = self.conv_s(self.norm_s(x, segmap, training=training, **ids), training=training)
        else:
            x_s = x
        dx = self.conv_0(_lrelu(self.norm_0(x, segmap, training=training, **ids)), training=training)
        dx = self.conv_1(_lrelu(self.norm_1(dx, segmap, training=training, **ids)), training=training)
        return x_s + dx

    def compute_output_shape(self, x_shape, segmap_shape):
        return (*x_shape[:3], self.fout)

    def get_config(self):
        config = super().get_config()
        config.update({
            "fin": self.fin, "fout": self.fout, "norm_type": self.norm_type,
            "kernel_size": self.kernel_size, "nhidden": self.nhidden, "spectral": self.spectral,
            "synchronized": self.synchronized, "init_type": self.init_type,
            "init_variance": self.init_variance, "onehot_channels": self.onehot_channels,
            "assume_onehot": self.assume_onehot, "forward_conv_gradients": self.forward_conv_gradients})
        return config


def _lrelu(x):
    return ops.leaky_relu(x, 0.2)
