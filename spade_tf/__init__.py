"""spade-tf: SPADE / GauGAN semantic image synthesis in TensorFlow 2 and Keras 3."""

__version__ = "0.1.0"

from spade_tf.config import PRESETS, SPADEConfig, get_preset  # noqa: E402
from spade_tf.errors import SpadeError  # noqa: E402

__all__ = ["PRESETS", "SPADEConfig", "SpadeError", "get_preset", "__version__"]
