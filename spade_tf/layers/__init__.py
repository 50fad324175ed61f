"""Keras layers: SPADE (Fig. 2), spectral normalization, SPADE residual block (Fig. 4 left)."""

from spade_tf.layers.normalization import BatchNorm, InstanceNorm
from spade_tf.layers.resblock import SPADEResBlock
from spade_tf.layers.spade import SPADE, nearest_resize
from spade_tf.layers.spectral_norm import SpectralNormalization

__all__ = ["SPADE", "BatchNorm", "InstanceNorm", "SPADEResBlock", "SpectralNormalization", "nearest_resize"]
