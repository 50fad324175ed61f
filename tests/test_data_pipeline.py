"""build_dataset on the shared real data, on generated folders in every official layout, and on
every kind of bad data (each error must name the file)."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from spade_tf.config import get_preset  # noqa: E402
from spade_tf.data import build_dataset, layouts, reraise_data_errors  # noqa: E402
from spade_tf.errors import SpadeError  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACADES = SHARED / "data" / "facades"
COCO = SHARED / "data" / "coco_stuff_sample"


def need(path):
    if not path.is_dir():
        pytest.skip(f"{path} not found (../shared is absent)")
    return path


def write_pair(root, key, label, photo=None, image_dir="images", label_dir="labels", ext=".jpg"):
    label = np.asarray(label)
    h, w = label.shape
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / label_dir).mkdir(parents=True, exist_ok=True)
    if photo is None:
        photo = np.random.default_rng(len(key)).integers(0, 255, (h, w, 3)).astype(np.uint8)
    Image.fromarray(photo).save(root / image_dir / f"{key}{ext}")
    Image.fromarray(label.astype(np.uint8)).save(root / label_dir / f"{key}.png")


def small_folder(root, n=4, value=3, size=(40, 50)):
    for i in range(n):
        write_pair(root, f"p{i}", np.full(size, value, np.uint8))
    return root


def facades_cfg(**kw):
    return get_preset("facades").with_overrides({"load_size": 36, "crop_size": 32, **kw})


def drain(ds):
    with reraise_data_errors():
        return [b for b in ds]


# ---- real data ------------------------------------------------------------------------------

def test_facades_counts_shapes_and_label_range():
    root = need(FACADES)
    pairs, problems = layouts.find_pairs(get_preset("facades"), root)
    assert len(pairs) == 378 and problems == []
    assert all(Path(p.image).stem == Path(p.label).stem for p in pairs)
    ds = build_dataset(get_preset("facades"), root, batch_size=4, shuffle=False)
    batch = next(iter(ds))
    assert batch["label_map"].dtype == tf.int32 and batch["label_map"].shape == (4, 256, 256)
    assert batch["image"].dtype == tf.float32 and batch["image"].shape == (4, 256, 256, 3)
    assert "instance_edges" not in batch
    img, lab = batch["image"].numpy(), batch["label_map"].numpy()
    assert -1.0 <= img.min() < -0.5 and 0.5 < img.max() <= 1.0
    assert lab.min() >= 1 and lab.max() <= 12  # ids used as stored, 0 never occurs


def test_coco_sample_counts_dontcare_and_edges():
    root = need(COCO)
    config = get_preset("cocostuff")
    train, _ = layouts.find_pairs(config, root, "train")
    val, _ = layouts.find_pairs(config, root, "val")
    assert (len(train), len(val)) == (13, 8)
    assert all(p.instance for p in train)
    ds = build_dataset(config.with_overrides({"load_size": 72, "crop_size": 64}), root, split="val",
                       batch_size=8, shuffle=False)
    batch = next(iter(ds))
    lab = batch["label_map"].numpy()
    assert lab.shape == (8, 64, 64) and lab.max() <= 182 and lab.min() >= 0
    assert (lab == 182).any()  # 255 (unlabeled) arrived as the don't-care id
    edges = batch["instance_edges"].numpy()
    assert edges.shape == (8, 64, 64, 1) and set(np.unique(edges)) <= {0.0, 1.0} and 0 < edges.mean() < 0.5


# ---- embedded synthetic dataset ---------------------------------------------------------------

def test_synthetic_default_dataset_contract():
    config = get_preset("tiny")
    ds = build_dataset(config, batch_size=8, seed=1)
    batch = next(iter(ds))
    assert set(batch) == {"label_map", "image"}
    assert batch["label_map"].shape == (8, 64, 64) and batch["label_map"].dtype == tf.int32
    assert batch["image"].shape == (8, 64, 64, 3) and batch["image"].dtype == tf.float32
    assert batch["label_map"].numpy().max() < config.label_nc
    assert -1 <= batch["image"].numpy().min() and batch["image"].numpy().max() <= 1
    again = next(iter(build_dataset(config, batch_size=8, seed=1)))
    np.testing.assert_array_equal(batch["image"].numpy(), again["image"].numpy())  # deterministic
    other = next(iter(build_dataset(config, batch_size=8, seed=2)))
    assert not np.array_equal(batch["label_map"].numpy(), other["label_map"].numpy())
    count = sum(int(b["image"].shape[0]) for b in build_dataset(config, batch_size=64))
    assert count == 512


def test_synthetic_with_instance_edges_and_too_few_classes():
    config = get_preset("tiny").with_overrides({"no_instance": False})
    batch = next(iter(build_dataset(config, batch_size=2)))
    assert batch["instance_edges"].shape == (2, 64, 64, 1)
    with pytest.raises(SpadeError, match="label_nc=5"):
        build_dataset(get_preset("tiny").with_overrides({"label_nc": 5}))


# ---- official layouts, generated ----------------------------------------------------------------

def test_ade20k_layout_keeps_ids_as_the_official_loader(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    label = np.zeros((30, 40), np.uint8)
    label[:, 20:] = 150  # id 0 "other" and id 150 "flag"
    for key, split in [("ADE_train_00000001", "training"), ("ADE_train_00000002", "training"),
                       ("ADE_val_00000001", "validation")]:
        write_pair(root, key, label, image_dir=f"images/{split}", label_dir=f"annotations/{split}")
    config = get_preset("ade20k").with_overrides({"load_size": 32, "crop_size": 32})
    assert len(layouts.find_pairs(config, root, "train")[0]) == 2
    assert len(layouts.find_pairs(config, root, "val")[0]) == 1
    lab = next(iter(build_dataset(config, root, batch_size=2, augment=False)))["label_map"].numpy()
    assert set(np.unique(lab)) == {0, 150}


def test_cityscapes_layout_and_16bit_instances(tmp_path):
    config = get_preset("cityscapes").with_overrides({"crop_size": 64, "load_size": 64, "batchSize": 1,
                                                      "num_upsampling_layers": "normal"})
    for frame in ("000000_000019", "000001_000019"):
        stem = f"aachen_{frame}"
        (tmp_path / "leftImg8bit/train/aachen").mkdir(parents=True, exist_ok=True)
        (tmp_path / "gtFine/train/aachen").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(
            tmp_path / f"leftImg8bit/train/aachen/{stem}_leftImg8bit.png")
        label = np.full((32, 64), 7, np.uint8)
        Image.fromarray(label).save(tmp_path / f"gtFine/train/aachen/{stem}_gtFine_labelIds.png")
        inst = np.full((32, 64), 26000, np.int32)
        inst[:, 32:] = 26001  # two cars: ids above 255 need the 16-bit file
        inst_path = tmp_path / f"gtFine/train/aachen/{stem}_gtFine_instanceIds.png"
        Image.fromarray(inst.astype(np.uint16)).save(inst_path)
    pairs, problems = layouts.find_pairs(config, tmp_path)
    assert len(pairs) == 2 and not problems
    batch = next(iter(build_dataset(config, tmp_path, augment=False)))
    assert batch["image"].shape == (1, 32, 64, 3)  # fixed mode, aspect ratio 2
    edges = batch["instance_edges"].numpy()[0, :, :, 0]
    assert edges[:, 31:33].all() and edges[:, :31].sum() == 0 and edges[:, 33:].sum() == 0


def test_custom_folder_with_instances_and_official_names(tmp_path):
    config = get_preset("custom").with_overrides({"label_nc": 4, "no_instance": False,
                                                  "load_size": 32, "crop_size": 32})
    for i in range(3):
        write_pair(tmp_path, f"x{i}", np.full((20, 20), 2), image_dir="train_img", label_dir="train_label")
        inst = np.zeros((20, 20), np.uint8)
        inst[10:] = 5
        (tmp_path / "train_inst").mkdir(exist_ok=True)
        Image.fromarray(inst).save(tmp_path / "train_inst" / f"x{i}.png")
    batch = next(iter(build_dataset(config, tmp_path, batch_size=3, augment=False)))
    assert batch["instance_edges"].shape == (3, 32, 32, 1)
    edges = batch["instance_edges"].numpy()
    assert edges[:, 15:17].all() and edges[:, :15].sum() == 0


# ---- bad data: every error names the file ------------------------------------------------------

def test_missing_partner_named_at_build_time(tmp_path):
    small_folder(tmp_path)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "images" / "lonely.jpg")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "labels" / "orphan.png")
    with pytest.raises(SpadeError) as err:
        build_dataset(facades_cfg(), tmp_path)
    assert "lonely.jpg" in str(err.value) and "orphan.png" in str(err.value)


def test_missing_instance_map_named(tmp_path):
    config = get_preset("custom").with_overrides({"label_nc": 4, "no_instance": False})
    small_folder(tmp_path, n=2)
    (tmp_path / "instances").mkdir()
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "instances" / "p0.png")
    with pytest.raises(SpadeError, match="p1.png.*no instance map"):
        build_dataset(config, tmp_path)


def test_jpeg_label_refused(tmp_path):
    small_folder(tmp_path, n=1)
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "labels" / "p9.jpg")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "images" / "p9.png")
    with pytest.raises(SpadeError, match=r"p9\.jpg.*JPEG"):
        build_dataset(facades_cfg(), tmp_path)


@pytest.mark.parametrize("case", ["corrupt", "truncated", "size", "label_value", "dontcare_off",
                                  "colour_label"])
def test_bad_pair_fails_in_the_pipeline_naming_the_file(tmp_path, case):
    small_folder(tmp_path, n=3)
    bad = tmp_path / "images" / "p1.jpg"
    if case == "corrupt":
        bad.write_bytes(b"this is not a jpeg")
    elif case == "truncated":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "size":
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(bad)
        bad = tmp_path / "labels" / "p1.png"
    else:
        bad = tmp_path / "labels" / "p1.png"
        label = np.full((40, 50), 3, np.uint8)
        label[5, 5] = {"label_value": 13, "dontcare_off": 255, "colour_label": 0}[case]
        if case == "colour_label":
            label = np.stack([label, label + 1, label], -1)
        Image.fromarray(label).save(bad)
    with pytest.raises(SpadeError) as err:
        drain(build_dataset(facades_cfg(), tmp_path, batch_size=1))
    assert str(bad) in str(err.value)
    expected = {"corrupt": "cannot read", "truncated": "cannot read", "size": "must match",
                "label_value": "label ids [13] are not ids of this model",
                "dontcare_off": "label ids [255] are not ids of this model",
                "colour_label": "colour"}[case]
    assert expected in str(err.value)


def test_dontcare_255_maps_to_label_nc(tmp_path):
    label = np.full((40, 50), 3, np.uint8)
    label[:20] = 255
    write_pair(tmp_path, "a", label)
    config = facades_cfg(contain_dontcare_label=True)
    lab = next(iter(build_dataset(config, tmp_path, batch_size=1, augment=False)))["label_map"].numpy()
    assert set(np.unique(lab)) == {3, config.label_nc}


def test_skip_bad_drops_and_counts(tmp_path, caplog):
    small_folder(tmp_path, n=5)
    (tmp_path / "images" / "p1.jpg").write_bytes(b"garbage")
    label = np.full((40, 50), 40, np.uint8)
    Image.fromarray(label).save(tmp_path / "labels" / "p3.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "images" / "lonely.jpg")
    with caplog.at_level(logging.WARNING, logger="spade_tf.data"):
        batches = drain(build_dataset(facades_cfg(), tmp_path, batch_size=1, skip_bad=True, shuffle=False))
    assert len(batches) == 3
    text = caplog.text
    assert "dropped 1 unpaired file" in text and "lonely.jpg" in text
    assert "p1.jpg" in text and "p3.png" in text and "2 bad pair(s) skipped so far" in text


def test_cache_and_repeat(tmp_path):
    small_folder(tmp_path, n=3)
    ds = build_dataset(facades_cfg(), tmp_path, batch_size=2, cache=True, repeat=True)
    it = iter(ds)
    shapes = [next(it)["image"].shape for _ in range(5)]  # past one epoch
    assert all(s == (2, 32, 32, 3) for s in shapes)


def test_explicit_folders_like_official_custom_mode(tmp_path):
    for i in range(2):
        write_pair(tmp_path, f"k{i}", np.full((20, 20), 1), image_dir="photos", label_dir="maps")
    config = get_preset("custom").with_overrides({"label_nc": 2, "load_size": 32, "crop_size": 32})
    dirs = {"image_dir": str(tmp_path / "photos"), "label_dir": str(tmp_path / "maps")}
    batches = drain(build_dataset(config, dirs, batch_size=1))
    assert len(batches) == 2 and batches[0]["label_map"].shape == (1, 32, 32)
    with pytest.raises(SpadeError, match="instance_dir"):
        build_dataset(config.with_overrides({"no_instance": False}), dirs)


def test_skip_bad_logs_each_file_once_and_stops_when_all_are_bad(tmp_path, caplog):
    small_folder(tmp_path, n=3)
    (tmp_path / "images" / "p0.jpg").write_bytes(b"garbage")
    ds = build_dataset(facades_cfg(), tmp_path, batch_size=1, skip_bad=True, repeat=True)
    it = iter(ds)
    with caplog.at_level(logging.WARNING, logger="spade_tf.data"):
        for _ in range(8):  # four epochs
            next(it)
    assert caplog.text.count("skip_bad: dropped") == 1 and "p0.jpg" in caplog.text
    for i in (1, 2):
        (tmp_path / "images" / f"p{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(SpadeError, match="all 3 pairs are bad"):
        drain(build_dataset(facades_cfg(), tmp_path, batch_size=1, skip_bad=True, repeat=True))


def test_pipeline_keeps_photo_and_label_aligned_through_crop_and_flip(tmp_path):
    """Lossless photos whose red channel is label * 20: after the random crops and flips of a
    whole epoch the relation must still hold pixel for pixel."""
    rng = np.random.default_rng(5)
    for i in range(6):
        label = np.repeat(np.repeat(rng.integers(0, 12, (12, 16)), 4, 0), 4, 1).astype(np.uint8)  # 48x64
        photo = np.stack([label * 20, rng.integers(0, 255, label.shape), np.full(label.shape, 9)], -1)
        write_pair(tmp_path, f"q{i}", label, photo.astype(np.uint8), ext=".png")
    config = get_preset("facades").with_overrides({"preprocess_mode": "scale_width_and_crop",
                                                   "load_size": 64, "crop_size": 32})
    for batch in drain(build_dataset(config, tmp_path, batch_size=3, seed=4)):
        red = np.round((batch["image"].numpy()[..., 0] + 1) * 127.5)
        np.testing.assert_array_equal(red, batch["label_map"].numpy() * 20)
