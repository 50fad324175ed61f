"""TFDS builder: build a tiny generated folder locally (no download, no remote tfds.load) and train
from it through build_dataset."""

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from spade_tf.config import get_preset  # noqa: E402
from spade_tf.data import build_dataset, reraise_data_errors, tfds_builder  # noqa: E402
from spade_tf.errors import SpadeError  # noqa: E402


def make_split(root, split, n, label_value=5, instances=False):
    for sub in ("images", "labels") + (("instances",) if instances else ()):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.full((24, 32), label_value, np.uint8)
        label[0, 0] = 1
        Image.fromarray(np.full((24, 32, 3), 10 * i, np.uint8)).save(root / split / "images" / f"s{i}.jpg")
        Image.fromarray(label).save(root / split / "labels" / f"s{i}.png")
        if instances:
            inst = np.zeros((24, 32), np.uint16)
            inst[:, 16:] = 4000
            Image.fromarray(inst).save(root / split / "instances" / f"s{i}.png")


def test_build_facades_config_and_train_from_it(tmp_path):
    manual = tmp_path / "manual"
    make_split(manual, "train", 3)
    make_split(manual, "val", 2)
    version_dir = tfds_builder.build("facades", manual, tmp_path / "tfds")
    assert (version_dir / "dataset_info.json").is_file()
    config = get_preset("facades").with_overrides({"load_size": 36, "crop_size": 32})
    batches = list(build_dataset(config, version_dir, batch_size=1))
    assert len(batches) == 3
    assert batches[0]["image"].shape == (1, 32, 32, 3) and batches[0]["label_map"].dtype.name == "int32"
    assert set(np.unique(np.concatenate([b["label_map"].numpy().ravel() for b in batches]))) <= {1, 5}
    assert len(list(build_dataset(config, version_dir, split="val", batch_size=1))) == 2
    assert len(list(build_dataset(config, version_dir.parent, batch_size=1))) == 3  # config folder: newest
    # label values are checked against the training config when read, naming the file
    strict = config.with_overrides({"label_nc": 4})
    with pytest.raises(SpadeError, match=r"s\d\.png"):
        with reraise_data_errors():
            list(build_dataset(strict, version_dir, batch_size=1))
    assert len(list(build_dataset(strict, version_dir, batch_size=1, skip_bad=True))) == 0


def test_build_with_instances(tmp_path):
    manual = tmp_path / "manual"
    make_split(manual, "train", 2, instances=True)
    version_dir = tfds_builder.build("custom_instances", manual, tmp_path / "tfds")
    config = get_preset("custom").with_overrides({"label_nc": 8, "no_instance": False, "load_size": 32,
                                                  "crop_size": 32, "preprocess_mode": "crop"})
    batch = next(iter(build_dataset(config, version_dir, batch_size=2, augment=False)))
    edges = batch["instance_edges"].numpy()[:, :24, :, 0]
    assert edges[:, :, 15:17].all() and edges[:, :, :15].sum() == 0


def test_bad_file_stops_the_build_naming_it(tmp_path):
    manual = tmp_path / "manual"
    make_split(manual, "train", 2)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(manual / "train" / "labels" / "s1.png")
    with pytest.raises(SpadeError, match=r"s1\.png"):
        tfds_builder.build("custom", manual, tmp_path / "tfds")


def test_cli_build_tfds_then_inspect(tmp_path, capsys):
    from spade_tf.cli import main

    manual = tmp_path / "manual"
    make_split(manual, "train", 2)
    assert main(["data", "build-tfds", "--config", "custom", "--manual-dir", str(manual),
                 "--data-dir", str(tmp_path / "tfds")]) == 0
    out_dir = capsys.readouterr().out.strip().splitlines()[-1]
    assert out_dir.endswith("spade_folders/custom/1.0.0")
    assert main(["data", "inspect", "--preset", "custom", "--data", out_dir, "--batches", "1",
                 "--set", "batchSize=1", "--set", "load_size=32", "--set", "crop_size=32"]) == 0
    assert "splits train 2" in capsys.readouterr().out
