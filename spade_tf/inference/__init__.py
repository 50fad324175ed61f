"""Inference: load a trained or converted generator, read label maps, synthesize images.

`model.py`: `SpadeModel`, `load_generator`, `z_from_seed`; `files.py`: `synthesize_files` (folders).
The readers, `to_uint8` and `instance_edges` live in `spade_tf.data` and are re-exported here.

Conventions
- A label map is a single-channel PNG of class ids 0 .. num_label_channels-1; 255 means "don't
  care" and is accepted only when the model has `contain_dontcare_label` (it becomes id
  `label_nc`). The rule lives in `spade_tf.data.labels`; files are read by `spade_tf.data.decode`
  (`read_label_map`, `read_instance_map`, `read_style_image`, re-exported here).
- Label and instance maps of another size are resized to the model size with nearest-neighbour
  (PIL NEAREST, as the official data loader resizes labels); style images with bicubic.
- Images come out as uint8 `round((x + 1) * 127.5)` of the generator's [-1, 1] output (the
  official `tensor2im` truncates instead; the two differ by at most one step).
"""

from spade_tf.data.decode import read_instance_map, read_label_map, read_style_image
from spade_tf.data.images import to_uint8
from spade_tf.data.preprocess import instance_edges
from spade_tf.inference.files import label_files, synthesize_files
from spade_tf.inference.model import SpadeModel, from_networks, load_generator, z_from_seed

__all__ = ["SpadeModel", "from_networks", "instance_edges", "label_files", "load_generator",
           "read_instance_map", "read_label_map", "read_style_image", "synthesize_files", "to_uint8",
           "z_from_seed"]
