"""Image encoder for the VAE variant (official `models/networks/encoder.py`)."""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.config import SPADEConfig
from spade_tf.layers.conv import conv2d, dense
from spade_tf.layers.normalization import param_free_norm


@keras.saving.register_keras_serializable(package="spade_tf")
class ConvEncoder(keras.Model):
    """Image → (mu, logvar) of the style code.

    The input is always resized to 256x256 (bilinear, no antialias) as official; six 3x3
    stride-2 convs (five when crop_size < 256) with spectral norm + instance norm, LeakyReLU 0.2,
    then two linear heads on the channel-major (NCHW) flattening. Widths follow `ngf` as official
    (`nef` is unused there). Call: `E(image [B, H, W, 3], training)` → ([B, 256], [B, 256]).
    """

    def __init__(self, config: SPADEConfig | dict, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, SPADEConfig) else SPADEConfig.from_dict(config)
        cfg, ndf = self.config, self.config.ngf
        init = {"init_type": cfg.init_type, "gain": cfg.init_variance}
        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8] + ([ndf * 8] if cfg.crop_size >= 256 else [])
        has_norm = cfg.norm_E_type != "none"
        self.pad = keras.layers.ZeroPadding2D(1)
        self.convs = [conv2d(w, 3, strides=2, padding="valid", use_bias=not has_norm,
                             spectral=cfg.spectral_E, name=f"layer{i + 1}", **init)
                      for i, w in enumerate(widths)]
        self.norms = [param_free_norm(cfg.norm_E_type, name=f"layer{i + 1}_norm")
                      for i in range(len(widths))]
        self.fc_mu = dense(256, name="fc_mu", **init)
        self.fc_var = dense(256, name="fc_var", **init)

    def build(self, input_shape):
        shape = (input_shape[0], 256, 256, 3)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            shape = self.pad.compute_output_shape(shape)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        flat = (input_shape[0], shape[1] * shape[2] * shape[3])
        self.fc_mu.build(flat)
        self.fc_var.build(flat)
        self.built = True

    def call(self, image, training=False, return_intermediates=False):
        x = image
        if x.shape[1] != 256 or x.shape[2] != 256:
            x = ops.image.resize(x, (256, 256), interpolation="bilinear", antialias=False)
        intermediates = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            if i > 0:
                x = ops.leaky_relu(x, 0.2)
            x = norm(conv(self.pad(x), training=training), training=training)
            intermediates.append(x)
        x = ops.leaky_relu(x, 0.2)
        x = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (ops.shape(x)[0], -1))  # NCHW flatten
        mu, logvar = self.fc_mu(x), self.fc_var(x)
        return (mu, logvar, intermediates) if return_intermediates else (mu, logvar)

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
