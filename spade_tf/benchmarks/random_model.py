"""Random-weight generators whose activations look like a trained one's: for benchmarks and tests
of exports at sizes where no trained weights are at hand.

A freshly initialised SPADE generator is a poor stand-in: with untouched batch-norm statistics
(mean 0, variance 1) nothing renormalises its activations at inference, they grow about 100x per
block, and the image is tanh(+-1e16). That hides export errors (every output is +-1) and makes
int8 quantization meaningless (activation scales of 1e20; LiteRT then runs the int8 adds in its
slow reference kernels because XNNPACK refuses such scales). `calibrated_generator` fixes both:
batch-norm running statistics from a few label maps, final conv scaled to a pre-tanh std of 0.6.
"""

from __future__ import annotations

import numpy as np

# gamma / beta std the benchmarks give their random generators (`scale_modulation`): an assumption
# standing in for a trained generator's, which we do not have at the official sizes.
BENCHMARK_MODULATION_STD = 0.3


def blocky_label_maps(config, batch: int, seed: int) -> np.ndarray:
    """int32 [batch, H, W] random ids in [0, label_nc) in 8x8 blocks (`data.synthetic.blocky_ids`)."""
    from spade_tf.data.synthetic import blocky_ids

    return blocky_ids(batch, *config.image_size, config.label_nc, seed)


def scale_modulation(generator, modulation_std: float) -> None:
    """Rescale every SPADE's convs so gamma and beta have std about `modulation_std`.

    At initialisation (xavier, gain 0.02, as the official code) SPADE's look-up output is ~1e-3 and
    gamma / beta ~1e-6: the labels barely modulate anything, unlike a trained generator, and an int8
    graph then quantizes `1 + gamma` to exactly 1. Here mlp_shared gets std 1 / k (its output, a sum
    of k*k one-hot taps, has std ~1) and mlp_gamma / mlp_beta std modulation_std / (0.71 * sqrt(k*k*
    nhidden)) (a ReLU of N(0, 1) has rms 0.71). In place."""
    import keras

    from spade_tf.layers.spade import SPADE

    for layer in generator._flatten_layers():
        if not isinstance(layer, SPADE) or not isinstance(layer.mlp_gamma, keras.layers.Conv2D):
            continue
        k = layer.kernel_size
        targets = {layer.mlp_shared: 1.0 / k,
                   layer.mlp_gamma: modulation_std / (0.71 * np.sqrt(k * k * layer.nhidden)),
                   layer.mlp_beta: modulation_std / (0.71 * np.sqrt(k * k * layer.nhidden))}
        for conv, std in targets.items():
            kernel = np.asarray(conv.kernel)
            conv.kernel.assign(kernel * (std / kernel.std()))


def calibrate(generator, config, label_maps: np.ndarray, z=None, pre_tanh_std: float = 0.6,
              modulation_std: float | None = None) -> None:
    """Set the batch-norm running statistics from `label_maps` (int [N, H, W]) and scale `conv_img`
    so the pre-tanh output has std `pre_tanh_std`; with `modulation_std`, first `scale_modulation`.
    In place."""
    from spade_tf.data.preprocess import instance_edges
    from spade_tf.layers.normalization import BatchNorm
    from spade_tf.models import make_semantics

    if modulation_std is not None:
        scale_modulation(generator, modulation_std)

    edges = instance_edges(label_maps) if config.use_instance_edges else None
    semantics = make_semantics(label_maps, config, edges)
    norms = [layer for layer in generator._flatten_layers() if isinstance(layer, BatchNorm)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        # running statistics := 95% this batch's + 5% the initial (0, 1), as after a short training
        # run (without that floor, near-constant channels get huge 1/std and int8 ranges break)
        layer.momentum = 0.95
    generator(semantics, z=z, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    pre_tanh = np.asarray(generator(semantics, z=z, return_intermediates=True)[1]["conv_img"])
    for v in generator.trainable_variables:
        if "conv_img" in v.path:
            v.assign(v.numpy() * pre_tanh_std / pre_tanh.std())


def calibrated_generator(config, seed: int = 0, label_maps: np.ndarray | None = None, maps: int = 16,
                         modulation_std: float | None = None):
    """A built generator (`config.netG`) with seeded random weights, calibrated (see module
    docstring and `calibrate`) on `label_maps`, or on `maps` blocky random maps (seed + 100)."""
    import keras

    from spade_tf.models import make_generator

    keras.utils.set_random_seed(seed)
    h, w = config.image_size
    generator = make_generator(config, name="generator")
    generator.build((None, h, w, config.semantic_nc))
    if label_maps is None:
        label_maps = blocky_label_maps(config, maps, seed + 100)
    z = None
    if config.use_vae:
        z = np.random.default_rng(seed).normal(size=(len(label_maps), config.z_dim)).astype(np.float32)
    calibrate(generator, config, np.asarray(label_maps, np.int32), z=z, modulation_std=modulation_std)
    return generator
