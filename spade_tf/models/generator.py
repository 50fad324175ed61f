"""SPADE generator (paper Fig. 4 right; official `models/networks/generator.py`)."""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.config import SPADEConfig
from spade_tf.layers.conv import conv2d, dense
from spade_tf.layers.resblock import SPADEResBlock
from spade_tf.layers.spade import nearest_resize
from spade_tf.layers.spectral_norm import SpectralNormalization


@keras.saving.register_keras_serializable(package="spade_tf")
class SPADEGenerator(keras.Model):
    """Segmap (and z) → image.

    Call: `G(segmap, z=None, training=False)`; segmap float [B, H, W, semantic_nc] (one-hot,
    `make_semantics`), z float [B, z_dim] (VAE models; drawn from N(0, 1) when None). Export
    graphs (assume_onehot) may pass label_ids int32 [B, H, W], the ids the one-hot was built
    from (num_label_channels where none), so no SPADE recomputes them from floats (`SPADE`).
    Returns [B, H, W, 3] in [-1, 1], (H, W) = `config.image_size`.

    When the label channels of segmap are exactly one-hot (as `make_semantics` makes them), every
    SPADE computes its first conv as table look-ups (see `SPADE`); any other segmap runs the plain
    convs. The result is the same either way (to float rounding), the look-ups are faster.

    Export flags, chosen when the network is built (`folded(...)` builds inference copies with
    them; the defaults are what training and plain inference use):
    - assume_onehot: every SPADE takes the label channels as one-hot without the run-time check
      (`SPADE`); for graphs that build the one-hot themselves (TFLite / ONNX exports).
    - forward_conv_gradients: every conv's `forward_gradients` (`layers.conv.Conv2D`): None decides
      by device, False keeps the native gradients (inference-only graphs need no custom gradient).
    """

    def __init__(self, config: SPADEConfig | dict, synchronized_bn: bool = False, seed=None,
                 assume_onehot: bool = False, forward_conv_gradients: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, SPADEConfig) else SPADEConfig.from_dict(config)
        self.synchronized_bn = synchronized_bn
        self.assume_onehot, self.forward_conv_gradients = assume_onehot, forward_conv_gradients
        cfg, nf = self.config, self.config.ngf
        self.sh, self.sw = cfg.latent_size
        self.seed_generator = keras.random.SeedGenerator(seed)
        init = {"init_type": cfg.init_type, "gain": cfg.init_variance}
        conv_init = {**init, "forward_gradients": forward_conv_gradients}
        if cfg.use_vae:
            self.fc = dense(16 * nf * self.sh * self.sw, name="fc", **init)
        else:
            self.fc = conv2d(16 * nf, 3, name="fc", **conv_init)

        def block(fin, fout, name):
            return SPADEResBlock(fin, fout, name=name, **self._block_options(cfg.spade_nhidden))

        self.head_0 = block(16 * nf, 16 * nf, "head_0")
        self.G_middle_0 = block(16 * nf, 16 * nf, "G_middle_0")
        self.G_middle_1 = block(16 * nf, 16 * nf, "G_middle_1")
        self.up_0 = block(16 * nf, 8 * nf, "up_0")
        self.up_1 = block(8 * nf, 4 * nf, "up_1")
        self.up_2 = block(4 * nf, 2 * nf, "up_2")
        self.up_3 = block(2 * nf, 1 * nf, "up_3")
        final_nc = nf
        if cfg.num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2, "up_4")
            final_nc = nf // 2
        self.final_nc = final_nc
        self.conv_img = conv2d(3, 3, name="conv_img", **conv_init)

    def _block_options(self, nhidden: int, lookups: bool = True) -> dict:
        """SPADEResBlock keyword arguments (all but fin, fout, name) for this config and flags."""
        cfg = self.config
        return {
            "norm_type": cfg.spade_param_free_norm, "kernel_size": cfg.spade_kernel_size, "nhidden": nhidden,
            "spectral": cfg.spectral_G,
            "synchronized": self.synchronized_bn and cfg.spade_param_free_norm == "syncbatch",
            "init_type": cfg.init_type, "init_variance": cfg.init_variance,
            # make_semantics input: the label channels are one-hot, so SPADE may use look-ups
            "onehot_channels": cfg.num_label_channels if lookups else None,
            "assume_onehot": self.assume_onehot, "forward_conv_gradients": self.forward_conv_gradients}

    def build(self, segmap_shape, z_shape=None):
        cfg = self.config
        b = segmap_shape[0]
        if cfg.use_vae:
            self.fc.build((b, cfg.z_dim))
        else:
            self.fc.build((b, self.sh, self.sw, segmap_shape[-1]))
        h, w = self.sh, self.sw
        for _, layer, upsample_before in self._blocks():
            if upsample_before:
                h, w = 2 * h, 2 * w
            layer.build((b, h, w, layer.fin), segmap_shape)
        self.conv_img.build((b, h, w, self.final_nc))
        self.built = True

    def _blocks(self):
        """(name, block, upsample before it) in forward order, as the official forward."""
        more = self.config.num_upsampling_layers in ("more", "most")
        blocks = [("head_0", self.head_0, False), ("G_middle_0", self.G_middle_0, True),
                  ("G_middle_1", self.G_middle_1, more), ("up_0", self.up_0, True),
                  ("up_1", self.up_1, True), ("up_2", self.up_2, True), ("up_3", self.up_3, True)]
        if self.config.num_upsampling_layers == "most":
            blocks.append(("up_4", self.up_4, True))
        return blocks

    def call(self, segmap, z=None, training=False, return_intermediates=False, label_ids=None):
        cfg = self.config
        intermediates = {}
        if cfg.use_vae:
            if z is None:
                z = keras.random.normal((ops.shape(segmap)[0], cfg.z_dim), seed=self.seed_generator)
            x = self.fc(z)
            # PyTorch's .view(N, 16nf, sh, sw) is channel-major: reshape NCHW, then go channels-last
            x = ops.transpose(ops.reshape(x, (-1, 16 * cfg.ngf, self.sh, self.sw)), (0, 2, 3, 1))
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

    def compute_output_shape(self, segmap_shape, z_shape=None):
        h, w = self.config.image_size
        return (segmap_shape[0], h, w, 3)

    def folded(self, assume_onehot: bool = False,
               forward_conv_gradients: bool | None = None) -> SPADEGenerator:
        """A copy for inference with spectral norm folded into plain kernels (W / sigma).

        The copy has no power-iteration state and no `SpectralNormalization` wrappers, so an
        exported graph is plain convolutions. It is built with the given export flags (see the
        class docstring; the exporters pass `assume_onehot=True` for TFLite / ONNX and
        `forward_conv_gradients=False`), the same class and the same dtype policy as this network.
        """
        cfg = self.config
        old_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.dtype_policy)  # sub-layers take the global policy
        try:
            plain = self.__class__(cfg.replace(norm_G=cfg.norm_G.replace("spectral", "")),
                                   assume_onehot=assume_onehot,
                                   forward_conv_gradients=forward_conv_gradients, name=self.name)
            h, w = cfg.image_size
            plain.build((1, h, w, cfg.semantic_nc))
        finally:
            keras.mixed_precision.set_global_policy(old_policy)
        for dst, src in zip(_leaf_layers(plain), _leaf_layers(self), strict=True):
            if isinstance(src, SpectralNormalization):
                kernel = keras.ops.convert_to_numpy(src.normalized_kernel(training=False))
                bias = [keras.ops.convert_to_numpy(src.layer.bias)] if src.layer.use_bias else []
                values = [kernel] + bias
                dst.set_weights(values)
            else:
                dst.set_weights(src.get_weights())
        return plain

    def inference_function(self, jit_compile: bool = True):
        """`f(segmap, z=None) -> image` for inference on the current Keras backend.

        JAX: `jax.jit` over `stateless_call`, the variables passed as arguments (not baked into
        the compiled program as constants); the one-hot check of every SPADE compiles to a
        `lax.cond`, so the look-ups run whenever the label channels are one-hot. PyTorch: an eager
        call under `torch.no_grad()` (`jit_compile` is ignored). TensorFlow: a plain call
        (`spade_tf.inference` wraps it in `tf.function` with XLA itself). Call it on the
        `folded()` copy for the fastest program (no spectral norm left to compute).
        """
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            def call(trainable, non_trainable, segmap, z):
                out, _ = self.stateless_call(trainable, non_trainable, segmap, z=z, training=False)
                return out

            compiled = jax.jit(call) if jit_compile else call

            def run(segmap, z=None):
                return compiled([v.value for v in self.trainable_variables],
                                [v.value for v in self.non_trainable_variables], segmap, z)

            return run
        if backend == "torch":
            import torch

            def run_torch(segmap, z=None):
                with torch.no_grad():
                    return self(segmap, z=z, training=False)

            return run_torch
        return lambda segmap, z=None: self(segmap, z=z, training=False)

    def get_config(self):
        return {"config": self.config.to_dict(), "synchronized_bn": self.synchronized_bn,
                "assume_onehot": self.assume_onehot, "forward_conv_gradients": self.forward_conv_gradients,
                "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _upsample2x(x):
    # nn.Upsample(scale_factor=2), nearest: plain pixel repetition
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


def _leaf_layers(model):
    """Weight-holding layers in a fixed order (spectral-norm wrappers count as one leaf)."""
    leaves = []

    def visit(layer):
        if isinstance(layer, (SpectralNormalization, keras.layers.Conv2D, keras.layers.Dense)) or (
                layer.weights and not layer._layers):
            leaves.append(layer)
            return
        for sub in layer._layers:
            visit(sub)

    for layer in model._layers:
        visit(layer)
    return leaves
