"""The generator wrapper for inference: `SpadeModel` (label maps → images, z from seeds or a style
image), `load_generator` (a .keras file or a model folder, spectral norm folded), `z_from_seed`
(shared with the exports, so a seed gives the same image in Python and in a SavedModel)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from spade_tf.config import SPADEConfig, load_config
from spade_tf.data import labels as label_rule
from spade_tf.data.images import to_uint8
from spade_tf.data.preprocess import instance_edges
from spade_tf.errors import SpadeError


# ---- shared with the exports ------------------------------------------------------------------
def z_from_seed(seeds, z_dim: int):
    """seeds int [B] → z float32 [B, z_dim], N(0, 1), the same on every machine (Philox)."""
    seeds = tf.cast(tf.reshape(seeds, [-1]), tf.int64)

    def one(seed):
        return tf.random.stateless_normal([z_dim], seed=tf.stack([seed, tf.constant(0, tf.int64)]),
                                          alg="philox")

    return tf.map_fn(one, seeds, fn_output_signature=tf.TensorSpec([z_dim], tf.float32))


# ---- model ------------------------------------------------------------------------------------
@dataclasses.dataclass
class SpadeModel:
    """A generator ready for inference: spectral norm folded, config, optional style encoder."""

    generator: object  # SPADEGenerator (folded copy)
    config: SPADEConfig
    encoder: object | None = None  # ConvEncoder, VAE models only
    source: str = ""
    # XLA: 0.51x the official generator time against 0.72x without (ADE20K size, 2-core CPU,
    # docs/benchmarks.md), after a compile of a few seconds per batch shape
    jit_compile: bool = False

    def __post_init__(self):
        self._call = None

    # z ---------------------------------------------------------------------------------------
    def latent(self, batch: int, z=None, seed=None, style_image=None) -> np.ndarray | None:
        """z float32 [batch, z_dim] for VAE models (None otherwise).

        Priority: explicit z; else the style image's encoding (mu, or mu + std * eps(seed) when a
        seed is given, as the official reparameterisation); else N(0, 1) from the seed (seed
        None → 0). `seed` is one int for every row or a sequence of `batch` ints.
        """
        cfg = self.config
        if not cfg.use_vae:
            if z is not None or style_image is not None:
                raise SpadeError("this model is not a VAE model (use_vae=False): it takes no z or style")
            return None
        if z is not None:
            z = np.asarray(z, np.float32)
            if z.shape != (batch, cfg.z_dim):
                raise SpadeError(f"z must have shape ({batch}, {cfg.z_dim}), got {z.shape}")
            return z
        seeds = None if seed is None else np.broadcast_to(np.asarray(seed, np.int64), (batch,))
        if style_image is not None:
            if self.encoder is None:
                raise SpadeError(f"{self.source}: style-guided synthesis needs the encoder "
                                 "(encoder.keras next to generator.keras)")
            style = np.asarray(style_image, np.float32)
            if style.ndim == 3:
                style = np.broadcast_to(style, (batch, *style.shape))
            mu, logvar = self.encoder(tf.constant(style), training=False)
            if seeds is None:
                return np.asarray(mu, np.float32)
            eps = z_from_seed(seeds, cfg.z_dim)
            return np.asarray(mu + tf.exp(0.5 * logvar) * eps, np.float32)
        if seeds is None:
            seeds = np.zeros((batch,), np.int64)
        return z_from_seed(seeds, cfg.z_dim).numpy()

    # synthesis -------------------------------------------------------------------------------
    def semantics(self, label_maps, instance_maps=None):
        """ids int [B, H, W] (+ instance ids [B, H, W]) → one-hot float32 [B, H, W, semantic_nc].

        Models with instance edges use edges of `instance_maps`, or all-zero edges when None.
        """
        from spade_tf.models import make_semantics

        labels = np.asarray(label_maps)
        if labels.ndim == 2:
            labels = labels[None]
        labels = label_rule.check_ids(labels, self.config, "label_maps").astype(np.int32)
        if labels.shape[1:] != self.config.image_size:
            raise SpadeError(f"label maps must be {self.config.image_size} (H, W) for this model, got "
                             f"{labels.shape[1:]}; read_label_map resizes files")
        edges = None
        if self.config.use_instance_edges:
            if instance_maps is None:
                edges = tf.zeros((*labels.shape, 1), tf.float32)
            else:
                inst = np.asarray(instance_maps)
                edges = instance_edges(inst[None] if inst.ndim == 2 else inst)
        return make_semantics(tf.constant(labels), self.config, edges)

    def synthesize_float(self, label_maps, z=None, seed=None, style_image=None, instance_maps=None):
        """Like `synthesize` but returns the generator's float32 [B, H, W, 3] in [-1, 1]."""
        semantics = self.semantics(label_maps, instance_maps)
        z = self.latent(int(semantics.shape[0]), z=z, seed=seed, style_image=style_image)
        import keras

        if keras.backend.backend() != "tensorflow":  # JAX: jax.jit, PyTorch: eager (spade_tf.models)
            if self._call is None:
                self._call = self.generator.inference_function(jit_compile=self.jit_compile)
            return np.asarray(keras.ops.convert_to_numpy(self._call(np.asarray(semantics), z)), np.float32)
        if self._call is None:
            generator = self.generator
            self._call = tf.function(lambda s, z: generator(s, z=z, training=False), reduce_retracing=True,
                                     jit_compile=self.jit_compile)
        out = self._call(semantics, None if z is None else tf.constant(z))
        return out.numpy()

    def synthesize(self, label_maps, z=None, seed=None, style_image=None, instance_maps=None) -> np.ndarray:
        """Label maps int [B, H, W] (or [H, W]) → uint8 [B, H, W, 3].

        VAE models: z explicit, or from `style_image` (float [H, W, 3] or [B, H, W, 3] in [-1, 1]),
        or N(0, 1) drawn from `seed`. Other models ignore `seed`.
        """
        if not self.config.use_vae:
            seed = None
        image = self.synthesize_float(label_maps, z=z, seed=seed, style_image=style_image,
                                      instance_maps=instance_maps)
        return np.asarray(to_uint8(image))


def _load_keras(path: Path):
    import keras

    import spade_tf.models  # noqa: F401 - registers the spade_tf layers for deserialisation

    try:
        return keras.saving.load_model(str(path), compile=False)
    except (OSError, ValueError, TypeError) as e:
        raise SpadeError(f"{path}: cannot load this Keras model ({e})") from None


def load_generator(path: str | os.PathLike) -> SpadeModel:
    """Load MODEL: a `generator.keras` file, or a folder holding `generator.keras` (+ `config.json`,
    `encoder.keras`) as written by `spade convert` and `spade train`.

    Returns a SpadeModel with the spectral norm folded into plain kernels.
    """
    path = Path(path)
    if path.is_dir():
        folder, g_path = path, path / "generator.keras"
        if not g_path.exists():
            raise SpadeError(f"{path}: no generator.keras in this folder; pass a generator .keras file or "
                             "the output folder of `spade convert` / `spade train`")
    elif path.exists():
        if path.suffix != ".keras":
            raise SpadeError(f"{path}: expected a .keras generator file or a model folder")
        folder, g_path = path.parent, path
    else:
        raise SpadeError(f"{path}: model not found")
    generator = _load_keras(g_path)
    config = getattr(generator, "config", None)
    if not isinstance(config, SPADEConfig):
        raise SpadeError(f"{g_path}: not a spade_tf SPADEGenerator")
    config_path = folder / "config.json"
    if config_path.exists() and g_path.name == "generator.keras":
        saved = load_config(str(config_path))
        # a folded generator (spectral norm divided into the kernels) is saved with norm_G minus
        # "spectral": the same weight shapes, so that prefix does not count
        plain = config.replace(norm_G=config.norm_G.removeprefix("spectral"))
        saved = saved.replace(norm_G=saved.norm_G.removeprefix("spectral"))
        for key, there, here in saved.differences(plain, SPADEConfig.ARCHITECTURE_KEYS)[:1]:
            raise SpadeError(f"{config_path}: {key}={there!r} but {g_path.name} was built "
                             f"with {key}={here!r}; the files do not belong together")
    encoder = None
    e_path = folder / "encoder.keras"
    if config.use_vae and e_path.exists() and g_path.name == "generator.keras":
        encoder = _load_keras(e_path)
    return SpadeModel(generator=generator.folded(), config=config, encoder=encoder, source=str(path))


def from_networks(generator, config: SPADEConfig, encoder=None) -> SpadeModel:
    """A SpadeModel from in-memory networks (e.g. right after training), spectral norm folded."""
    return SpadeModel(generator=generator.folded(), config=config, encoder=encoder, source="<memory>")
