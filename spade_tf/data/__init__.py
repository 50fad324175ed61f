"""Data: official dataset layouts, custom folders, TFDS, the embedded synthetic default.

`build_dataset(config, data_dir=None, ...)` is the entry point (see pipeline.py for the element
contract); `classes.class_table` / `classes.colorize` name and draw label ids.
Importing this package does not import TensorFlow.
"""

from spade_tf.data.classes import class_table, colorize
from spade_tf.data.pipeline import build_dataset, list_pairs, output_size, reraise_data_errors

__all__ = ["build_dataset", "class_table", "colorize", "list_pairs", "output_size", "reraise_data_errors"]
