"""SPADE-Lite: the SPADE generator with scaled widths and optional depthwise-separable convolutions.

For phones (`spade distill`, docs/mobile.md). Same interface as `SPADEGenerator` (it is one: a
subclass), with `config.netG == "spade_lite"`:

- channel widths: ngf' = round(ngf * width), SPADE hidden width round(spade_nhidden * width);
- `separable`: every 3x3 conv of the residual branch (conv_0, conv_1) and of SPADE (mlp_shared,
  mlp_gamma, mlp_beta) becomes a depthwise 3x3 conv followed by a 1x1 conv, the mobile blocks of
  GAN Compression (Li et al., CVPR 2020). Spectral norm, when on, wraps the 1x1 convs (the
  depthwise kernels stay plain). The first conv (fc), the learned shortcut and conv_img stay plain.

Without `separable` the network is exactly a `SPADEGenerator` of the scaled widths (the same
blocks, SPADE's one-hot look-ups included); `width=1, separable=False` is the official network.
"""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.config import SPADEConfig
from spade_tf.layers.conv import conv2d, dense, kernel_initializer
from spade_tf.layers.resblock import SPADEResBlock
from spade_tf.layers.spade import SPADE, nearest_resize
from spade_tf.models.generator import SPADEGenerator, _upsample2x


def lite_widths(config: SPADEConfig) -> tuple[int, int]:
    """(ngf, spade_nhidden) of the network a config builds: scaled by `width` for spade_lite."""
    if config.netG != "spade_lite":
        return config.ngf, config.spade_nhidden
    return max(1, round(config.ngf * config.width)), max(1, round(config.spade_nhidden * config.width))


@keras.saving.register_keras_serializable(package="spade_tf")
class SeparableConv(keras.layers.Layer):
    """Depthwise k x k conv (no bias) then a 1x1 conv to `filters` (bias; spectral norm when asked).

    Input [B, H, W, C] → [B, H, W, filters] ('same' padding, stride 1).
    """

    def __init__(self, filters, kernel_size=3, spectral=False, init_type="xavier", gain=0.02,
                 forward_gradients=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.spectral = filters, kernel_size, spectral
        self.init_type, self.gain, self.forward_gradients = init_type, gain, forward_gradients
        self.depthwise = keras.layers.DepthwiseConv2D(
            kernel_size, padding="same", use_bias=False,
            depthwise_initializer=kernel_initializer(init_type, gain), name="depthwise")
        self.pointwise = conv2d(filters, 1, spectral=spectral, init_type=init_type, gain=gain,
                                name="pointwise", forward_gradients=forward_gradients)

    def build(self, input_shape):
        self.depthwise.build(input_shape)
        self.pointwise.build(input_shape)

    def call(self, x, training=False):
        return self.pointwise(self.depthwise(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size, "spectral": self.spectral,
                       "init_type": self.init_type, "gain": self.gain,
                       "forward_gradients": self.forward_gradients})
        return config


@keras.saving.register_keras_serializable(package="spade_tf")
class SeparableSPADE(SPADE):
    """`SPADE` whose three convs are `SeparableConv`s (the look-up path does not apply, so
    `onehot_channels` and `assume_onehot` are kept for the config only)."""

    def __init__(self, norm_nc, norm_type="syncbatch", kernel_size=3, nhidden=128, synchronized=False,
                 init_type="xavier", init_variance=0.02, onehot_channels=None, assume_onehot=False,
                 forward_conv_gradients=None, **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)  # SPADE's own convs are replaced, not built
        self.norm_nc, self.onehot_channels, self.norm_type = norm_nc, onehot_channels, norm_type
        self.kernel_size, self.nhidden, self.synchronized = kernel_size, nhidden, synchronized
        self.init_type, self.init_variance = init_type, init_variance
        self.assume_onehot, self.forward_conv_gradients = assume_onehot, forward_conv_gradients
        from spade_tf.layers.normalization import param_free_norm

        sep = {"kernel_size": kernel_size, "init_type": init_type, "gain": init_variance,
               "forward_gradients": forward_conv_gradients}
        self.param_free_norm = param_free_norm(norm_type, synchronized, name="param_free_norm")
        self.mlp_shared = SeparableConv(nhidden, name="mlp_shared", **sep)
        self.mlp_gamma = SeparableConv(norm_nc, name="mlp_gamma", **sep)
        self.mlp_beta = SeparableConv(norm_nc, name="mlp_beta", **sep)

    def _shared(self, segmap, label_ids=None):
        return self.mlp_shared(segmap)

    def _gamma_beta(self, actv):
        return self.mlp_gamma(actv), self.mlp_beta(actv)


@keras.saving.register_keras_serializable(package="spade_tf")
class SeparableSPADEResBlock(SPADEResBlock):
    """`SPADEResBlock` with separable conv_0 / conv_1 and `SeparableSPADE` norms (conv_s stays 1x1)."""

    def __init__(self, fin, fout, norm_type="syncbatch", kernel_size=3, nhidden=128, spectral=True,
                 synchronized=False, init_type="xavier", init_variance=0.02, onehot_channels=None,
                 assume_onehot=False, forward_conv_gradients=None, **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)
        init, spade = self._set_options(fin, fout, norm_type, kernel_size, nhidden, spectral, synchronized,
                                        init_type, init_variance, onehot_channels, assume_onehot,
                                        forward_conv_gradients)
        fmiddle = min(fin, fout)
        self.conv_0 = SeparableConv(fmiddle, 3, spectral=spectral, name="conv_0", **init)
        self.conv_1 = SeparableConv(fout, 3, spectral=spectral, name="conv_1", **init)
        self.norm_0 = SeparableSPADE(fin, name="norm_0", **spade)
        self.norm_1 = SeparableSPADE(fmiddle, name="norm_1", **spade)
        if self.learned_shortcut:
            self.conv_s = conv2d(fout, 1, use_bias=False, spectral=spectral, name="conv_s", **init)
            self.norm_s = SeparableSPADE(fin, name="norm_s", **spade)


@keras.saving.register_keras_serializable(package="spade_tf")
class LiteSPADEGenerator(SPADEGenerator):
    """SPADE-Lite (see the module docstring). Call, outputs, `folded()` and serialisation as
    `SPADEGenerator`; `config` is the full configuration (netG='spade_lite', width, separable)."""

    def __init__(self, config: SPADEConfig | dict, synchronized_bn: bool = False, seed=None,
                 assume_onehot: bool = False, forward_conv_gradients: bool | None = None, **kwargs):
        keras.Model.__init__(self, **kwargs)
        self.config = config if isinstance(config, SPADEConfig) else SPADEConfig.from_dict(config)
        self.synchronized_bn = synchronized_bn
        self.assume_onehot, self.forward_conv_gradients = assume_onehot, forward_conv_gradients
        cfg = self.config
        nf, nhidden = lite_widths(cfg)
        self.nf = nf
        self.sh, self.sw = cfg.latent_size
        self.seed_generator = keras.random.SeedGenerator(seed)
        init = {"init_type": cfg.init_type, "gain": cfg.init_variance}
        conv_init = {**init, "forward_gradients": forward_conv_gradients}
        if cfg.use_vae:
            self.fc = dense(16 * nf * self.sh * self.sw, name="fc", **init)
        else:
            self.fc = conv2d(16 * nf, 3, name="fc", **conv_init)
        block_class = SeparableSPADEResBlock if cfg.separable else SPADEResBlock

        options = self._block_options(nhidden, lookups=not cfg.separable)  # separable: no look-ups

        def block(fin, fout, name):
            return block_class(fin, fout, name=name, **options)

        self.head_0 = block(16 * nf, 16 * nf, "head_0")
        self.G_middle_0 = block(16 * nf, 16 * nf, "G_middle_0")
        self.G_middle_1 = block(16 * nf, 16 * nf, "G_middle_1")
        self.up_0 = block(16 * nf, 8 * nf, "up_0")
        self.up_1 = block(8 * nf, 4 * nf, "up_1")
        self.up_2 = block(4 * nf, 2 * nf, "up_2")
        self.up_3 = block(2 * nf, 1 * nf, "up_3")
        final_nc = nf
        if cfg.num_upsampling_layers == "most":
            self.up_4 = block(nf, max(1, nf // 2), "up_4")
            final_nc = max(1, nf // 2)
        self.final_nc = final_nc
        self.conv_img = conv2d(3, 3, name="conv_img", **conv_init)

    def call(self, segmap, z=None, training=False, return_intermediates=False, label_ids=None):
        cfg = self.config
        intermediates = {}
        if cfg.use_vae:
            if z is None:
                z = keras.random.normal((ops.shape(segmap)[0], cfg.z_dim), seed=self.seed_generator)
            x = self.fc(z)
            x = ops.transpose(ops.reshape(x, (-1, 16 * self.nf, self.sh, self.sw)), (0, 2, 3, 1))
        else:
            x = self.fc(nearest_resize(segmap, self.sh, self.sw))
        intermediates["fc"] = x
        for name, layer, upsample_before in self._blocks():
            if upsample_before:
                x = _upsample2x(x)
            x = layer(x, segmap, training=training, label_ids=label_ids)
            intermediates[name] = x
        x = self.conv_img(ops.leaky_relu(x, 0.2))
        intermediates["conv_img"] = x
        x = ops.tanh(ops.cast(x, "float32"))
        return (x, intermediates) if return_intermediates else x


def make_generator(config: SPADEConfig, synchronized_bn: bool = False, seed=None, name: str = "generator"):
    """The generator `config.netG` names (unbuilt): SPADEGenerator or LiteSPADEGenerator."""
    cls = LiteSPADEGenerator if config.netG == "spade_lite" else SPADEGenerator
    return cls(config, synchronized_bn=synchronized_bn, seed=seed, name=name)
