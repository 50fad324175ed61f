"""spade-tf: SPADE / GauGAN semantic image synthesis in TensorFlow 2 and Keras 3.

`import spade_tf` registers every Keras class of the package (layers, networks, the GauGAN model,
the metric networks), so `keras.saving.load_model("generator.keras")` works right after it.

Run as the `spade` command (or `python -m spade_tf`), the package imports nothing heavy here: `spade
--help` stays fast, and TensorFlow's log level is set (quiet unless `--verbose` / SPADE_VERBOSE=1)
before TensorFlow is first imported; each command imports the classes it uses.
"""

import importlib as _importlib
import os as _os
import sys as _sys

__version__ = "0.1.0"

from spade_tf.config import PRESETS, SPADEConfig, get_preset  # noqa: E402
from spade_tf.errors import SpadeError  # noqa: E402

__all__ = ["PRESETS", "SPADEConfig", "SpadeError", "get_preset", "__version__"]

# Modules whose import registers Keras classes (register_keras_serializable, package "spade_tf").
KERAS_MODULES = ("spade_tf.layers", "spade_tf.models", "spade_tf.training.gaugan",
                 "spade_tf.backbones.alexnet", "spade_tf.evaluation.lpips", "spade_tf.backbones.inception",
                 "spade_tf.training.distill")


def _launched_as_cli() -> bool:
    argv0 = _sys.argv[0] if _sys.argv else ""
    return _os.path.basename(argv0) in ("spade", "spade.exe") or argv0 == "-m"  # "-m": python -m spade_tf


def register_keras_classes() -> None:
    """Import every module that registers Keras classes (done by `import spade_tf` outside the CLI)."""
    for name in KERAS_MODULES:
        try:
            _importlib.import_module(name)
        except ModuleNotFoundError as e:  # an optional part not in this build
            if e.name != name:
                raise


if _launched_as_cli():
    from spade_tf.cli import configure_logging as _configure_logging

    _configure_logging(_sys.argv[1:])
else:
    register_keras_classes()
