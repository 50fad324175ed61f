"""Networks: SPADE generator, multiscale discriminator, image encoder."""

from __future__ import annotations

from spade_tf.config import SPADEConfig
from spade_tf.models.discriminator import MultiscaleDiscriminator
from spade_tf.models.encoder import ConvEncoder
from spade_tf.models.generator import SPADEGenerator
from spade_tf.models.lite_generator import LiteSPADEGenerator, make_generator
from spade_tf.models.semantics import make_semantics


def build_networks(config: SPADEConfig, batch_size: int | None = None, synchronized_bn: bool = False):
    """(G, D, E or None), built for the config's image size."""
    h, w = config.image_size
    g = make_generator(config, synchronized_bn=synchronized_bn, name="generator")  # netG: spade | spade_lite
    g.build((batch_size, h, w, config.semantic_nc))
    d = MultiscaleDiscriminator(config, name="discriminator")
    d.build((batch_size, h, w, config.semantic_nc + config.output_nc))
    e = None
    if config.use_vae:
        e = ConvEncoder(config, name="encoder")
        e.build((batch_size, h, w, 3))
    return g, d, e


__all__ = ["ConvEncoder", "LiteSPADEGenerator", "MultiscaleDiscriminator", "SPADEGenerator", "build_networks",
           "make_generator", "make_semantics"]
