"""TFDS builder: turn a facades or custom folder into TFRecords that `build_dataset` reads.

Configs: `facades` (photos + labels), `custom` (the same layout, any data), `custom_instances`
(+ instance maps). The folder is the TFDS *manual dir*, in the layouts.py folder layout:
`<dir>/{train,val}/{images,labels[,instances]}` (or `images/ labels/` directly for train only).

    spade data build-tfds --config facades --manual-dir ../shared/data/facades \
        --data-dir ~/tensorflow_datasets
    # or, with the TFDS CLI (needs apache-beam installed, which tfds 4.9's CLI imports):
    tfds build spade_folders --imports spade_tf.data.tfds_builder --config facades \
        --manual_dir ../shared/data/facades

Then train from `<data_dir>/spade_folders/facades/1.0.0` (`--data` that folder). Labels are stored
raw (16-bit PNG, as in the files); value checks against label_nc happen when training reads them,
since the builder does not know the training config. Unreadable files and size mismatches stop
the build with the file's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from spade_tf.data import decode, layouts
from spade_tf.errors import SpadeError


class _FolderLayout:
    """Stands in for a config in layouts.find_pairs: only the layout fields are read."""

    def __init__(self, instances: bool):
        self.dataset_mode = "custom"
        self.use_instance_edges = instances


class SpadeFolders(tfds.core.GeneratorBasedBuilder):
    """Paired photo / label-map folders for SPADE training."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="facades", description="CMP facades (images/ + labels/)"),
        tfds.core.BuilderConfig(name="custom", description="any images/ + labels/ folders"),
        tfds.core.BuilderConfig(name="custom_instances",
                                description="images/ + labels/ + instances/ folders"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put the data in the manual dir as <dir>/train/images/*.jpg, <dir>/train/labels/*.png
    (+ <dir>/train/instances/*.png for custom_instances; + val/ likewise). Files are paired by stem.
    """

    @property
    def _with_instances(self) -> bool:
        return self.builder_config.name == "custom_instances"

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16),
            "file_name": tfds.features.Text(),
        }
        if self._with_instances:
            features["instance"] = tfds.features.Image(shape=(None, None, 1), dtype=np.uint16)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            description="Photo / class-id map pairs (spade-tf).",
        )

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        layout = _FolderLayout(self._with_instances)
        splits = {}
        for split in ("train", "val"):
            try:
                pairs, problems = layouts.find_pairs(layout, root, split)
            except SpadeError:
                if split == "train":
                    raise
                continue
            if problems:
                listing = "\n  ".join(str(p) for p in problems[:20])
                raise SpadeError(f"{root}: {len(problems)} unusable file(s):\n  {listing}")
            splits[split] = self._generate_examples(pairs)
        return splits

    def _generate_examples(self, pairs):
        for pair in pairs:
            photo = decode.read_photo(pair.image)
            label = decode.read_label_ids(pair.label)
            if label.shape != photo.shape[:2]:
                raise decode.BadPair("size_mismatch", pair.label, f"label is {label.shape[::-1]} but "
                                     f"photo {pair.image} is {photo.shape[1::-1]} (WxH)")
            if label.max(initial=0) > 65535:
                raise decode.BadPair("label_value", pair.label, "label ids above 65535")
            example = {"image": photo, "label": label.astype(np.uint16)[..., None],
                       "file_name": Path(pair.label).name}
            if self._with_instances:
                inst = decode.read_instance(pair.instance)
                if inst.shape != label.shape:
                    raise decode.BadPair("size_mismatch", pair.instance, "instance map size differs "
                                         "from its label")
                # edges only need distinct ids: renumber to fit 16 bits
                _, inst = np.unique(inst, return_inverse=True)
                example["instance"] = inst.reshape(label.shape).astype(np.uint16)[..., None]
            yield pair.key, example


def build(config: str, manual_dir, data_dir) -> Path:
    """Build `spade_folders/<config>` into data_dir; returns the version folder to train from."""
    builder = SpadeFolders(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return Path(builder.data_dir)
