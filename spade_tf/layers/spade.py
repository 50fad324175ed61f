"""SPADE: spatially-adaptive denormalization (paper Fig. 2)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from spade_tf.layers.conv import conv2d
from spade_tf.layers.lookup import cond, conv_via_lookups, is_exactly_onehot
from spade_tf.layers.normalization import param_free_norm


def nearest_resize(x, height: int, width: int):
    """Nearest resize as PyTorch `F.interpolate(mode='nearest')`: source index floor(dst * in / out).

    (TF's nearest resize samples pixel centres instead, which picks different pixels.)
    x: [B, H, W, C] with static H, W → [B, height, width, C].
    """
    in_h, in_w = x.shape[1], x.shape[2]
    if (in_h, in_w) == (height, width):
        return x
    if in_h % height == 0 and in_w % width == 0:  # integer factor: a strided slice
        return x[:, :: in_h // height, :: in_w // width, :]

    def index(n_in, n_out):
        scale = np.float32(n_in / n_out)
        idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype("int32")
        return np.minimum(idx, n_in - 1)

    x = ops.take(x, index(in_h, height), axis=1)
    return ops.take(x, index(in_w, width), axis=2)


@keras.saving.register_keras_serializable(package="spade_tf")
class SPADE(keras.layers.Layer):
    """`param_free_norm(x) * (1 + gamma) + beta`, gamma and beta predicted from the segmap.

    gamma, beta = conv_k(relu(conv_k(segmap resized nearest to x's size))), `nhidden` wide.

    onehot_channels: when set (the generator sets it to the number of label channels), the first
    conv is computed as k*k table look-ups whenever the first `onehot_channels` channels of the
    segmap are EXACTLY one-hot (checked at run time on every call; otherwise the plain conv runs):
    conv(one_hot(ids)) = sum over taps of kernel[tap, ids], about nhidden adds per pixel and tap
    instead of label_nc multiply-adds. Any further channels (instance edges) go through a conv.

    assume_onehot: the label channels are one-hot (or all zero) by construction, so the look-ups
    run without the run-time check, whose `cond` TFLite and ONNX cannot take (export graphs, which
    build the one-hot themselves from int label maps; see `SPADEGenerator.folded`). An all-zero
    pixel gives what the conv gives. Default False: checked on every call.
    forward_conv_gradients: the convs' `forward_gradients` (see `layers.conv.Conv2D`).

    Inputs: x [B, H, W, norm_nc], segmap [B, H', W', label_nc] (H', W' multiples of H, W as in
    the generator, or any size); with assume_onehot, optionally label_ids int32 [B, H', W'] (the
    one-hot's ids, onehot_channels where a pixel has none: export graphs pass what they built the
    one-hot from, see `lookup.conv_via_lookups`). Output: [B, H, W, norm_nc].
    """

    def __init__(self, norm_nc, norm_type="syncbatch", kernel_size=3, nhidden=128,
                 synchronized=False, init_type="xavier", init_variance=0.02, onehot_channels=None,
                 assume_onehot=False, forward_conv_gradients=None, **kwargs):
        super().__init__(**kwargs)
        self.norm_nc = norm_nc
        self.onehot_channels = onehot_channels
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.nhidden = nhidden
        self.synchronized = synchronized
        self.init_type = init_type
        self.init_variance = init_variance
        self.assume_onehot = assume_onehot
        self.forward_conv_gradients = forward_conv_gradients
        init = {"init_type": init_type, "gain": init_variance, "forward_gradients": forward_conv_gradients}
        self.param_free_norm = param_free_norm(norm_type, synchronized, name="param_free_norm")
        self.mlp_shared = conv2d(nhidden, kernel_size, name="mlp_shared", **init)
        self.mlp_gamma = conv2d(norm_nc, kernel_size, name="mlp_gamma", **init)
        self.mlp_beta = conv2d(norm_nc, kernel_size, name="mlp_beta", **init)

    def build(self, x_shape, segmap_shape):
        self.param_free_norm.build(x_shape)
        hidden_shape = (*x_shape[:3], self.nhidden)
        self.mlp_shared.build((*x_shape[:3], segmap_shape[-1]))
        self.mlp_gamma.build(hidden_shape)
        self.mlp_beta.build(hidden_shape)

    def call(self, x, segmap, training=False, label_ids=None):
        normalized = self.param_free_norm(x, training=training)
        segmap = nearest_resize(segmap, x.shape[1], x.shape[2])
        if label_ids is not None:
            label_ids = nearest_resize(label_ids[..., None], x.shape[1], x.shape[2])[..., 0]
        actv = ops.relu(self._shared(segmap, label_ids))
        gamma, beta = self._gamma_beta(actv)
        return normalized * (1 + gamma) + beta

    def _gamma_beta(self, actv):
        """(mlp_gamma(actv), mlp_beta(actv)) as ONE conv with both kernels side by side: the two
        read the same input, and one wider conv (and its gradient) is cheaper than two."""
        dtype = self.mlp_gamma.compute_dtype
        kernel = ops.concatenate([self.mlp_gamma.kernel, self.mlp_beta.kernel], axis=-1)
        bias = ops.concatenate([self.mlp_gamma.bias, self.mlp_beta.bias], axis=-1)
        both = self.mlp_gamma.convolution_op(actv, ops.cast(kernel, dtype)) + ops.cast(bias, dtype)
        gamma, beta = ops.split(both, 2, axis=-1)  # (a split's gradient is a concat, a slice's is not)
        return gamma, beta

    def _shared(self, segmap, label_ids=None):
        """mlp_shared(segmap): look-ups when the label part is exactly one-hot, else the conv."""
        n, k = self.onehot_channels, self.kernel_size
        if n is None or k % 2 == 0 or n > segmap.shape[-1]:
            return self.mlp_shared(segmap)
        if self.assume_onehot:  # the caller built the one-hot itself (export graphs): no check
            return self._shared_lookup(segmap, n, label_ids)
        return cond(is_exactly_onehot(segmap[..., :n]), lambda: self._shared_lookup(segmap, n),
                        lambda: self.mlp_shared(segmap))

    def _shared_lookup(self, segmap, n, label_ids=None):
        """conv_same(segmap) for a segmap whose first n channels are one-hot (odd kernel, stride 1)."""
        return conv_via_lookups(self.mlp_shared, segmap, n, self.kernel_size // 2, ids=label_ids)

    def compute_output_shape(self, x_shape, segmap_shape):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "norm_nc": self.norm_nc, "norm_type": self.norm_type, "kernel_size": self.kernel_size,
            "nhidden": self.nhidden, "synchronized": self.synchronized, "init_type": self.init_type,
            "init_variance": self.init_variance, "onehot_channels": self.onehot_channels,
            "assume_onehot": self.assume_onehot, "forward_conv_gradients": self.forward_conv_gradients})
        return config
