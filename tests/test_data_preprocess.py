"""Preprocessing parity: Pillow (what the official loader uses) for resizing, the official fixture
for instance edges, and crop/flip identical for photo, labels and instances."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from spade_tf.config import get_preset  # noqa: E402
from spade_tf.data import preprocess  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACADES = SHARED / "data" / "facades" / "train"
FIXTURE = SHARED / "fixtures" / "official_spade" / "tiny_seg" / "io.npz"


def numpy_edges(t):
    """Reference: the official get_edges, written with numpy slicing."""
    edge = np.zeros(t.shape, bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.astype(np.float32)


@pytest.mark.parametrize("size", [(64, 64), (2, 37, 53)])
def test_edges_match_numpy_reference(size):
    rng = np.random.default_rng(0)
    # blocky instance ids so that edges are sparse, plus single-pixel islands
    t = rng.integers(0, 4, size).astype(np.int32)
    t = np.repeat(np.repeat(t, 3, -1), 3, -2)[..., : size[-2], : size[-1]]
    t[..., 5, 7] = 99
    got = preprocess.instance_edges(t).numpy()
    assert got.shape == (*t.shape, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got[..., 0], numpy_edges(t))
    assert 0 < got.mean() < 1


def test_edges_match_official_fixture():
    if not FIXTURE.is_file():
        pytest.skip(f"official fixture not found at {FIXTURE} (../shared is absent)")
    io = np.load(FIXTURE)
    got = preprocess.instance_edges(io["instance_map"].astype(np.int32)).numpy()  # [2, 64, 64, 1]
    np.testing.assert_array_equal(got[..., 0], io["instance_edge_map"][:, 0])


@pytest.mark.parametrize("src,dst", [((512, 341), (286, 286)), ((100, 130), (72, 72)),
                                     ((37, 53), (286, 286)), ((1024, 2048), (256, 512)),
                                     ((427, 640), (286, 429))])
def test_nearest_resize_is_pixel_exact_with_pillow(src, dst):
    h, w = src
    ids = np.arange(h * w, dtype=np.int32).reshape(h, w)  # every pixel unique: any miss shows
    want = np.asarray(Image.fromarray(ids).resize(dst[::-1], Image.NEAREST))
    got = preprocess.resize_nearest(ids, *dst).numpy()
    np.testing.assert_array_equal(got, want)
    small = (ids % 251).astype(np.uint8)  # 8-bit label maps take the same path in Pillow
    want8 = np.asarray(Image.fromarray(small).resize(dst[::-1], Image.NEAREST))
    np.testing.assert_array_equal(preprocess.resize_nearest(small, *dst).numpy(), want8)


def test_bicubic_photo_resize_close_to_pillow():
    if not FACADES.is_dir():
        pytest.skip(f"facades data not found at {FACADES} (../shared is absent)")
    photo = np.asarray(Image.open(FACADES / "images" / "cmp_b0001.jpg").convert("RGB"))
    for size in [(286, 286), (700, 600)]:
        want = np.asarray(Image.fromarray(photo).resize(size[::-1], Image.BICUBIC)).astype(np.float32)
        got = preprocess.resize_photo(tf.constant(photo, tf.float32), *size).numpy()
        diff = np.abs(got - want)
        assert diff.mean() < 0.5 and diff.max() <= 4, (size, diff.mean(), diff.max())


def _official_size(mode, w, h, load, crop, aspect):
    """Output (H, W) of the official transforms (base_dataset.py), scale_shortside as intended."""
    if mode == "resize_and_crop":
        w2, h2 = load, load
    elif "scale_width" in mode:
        w2, h2 = (w, h) if w == load else (load, int(load * h / w))
    elif "scale_shortside" in mode:
        ss, ls = min(w, h), max(w, h)
        if ss == load:
            w2, h2 = w, h
        else:
            ls = int(load * ls / ss)
            w2, h2 = (load, ls) if w == ss else (ls, load)
    elif mode == "fixed":
        w2, h2 = crop, round(crop / aspect)
    elif mode == "none":
        w2, h2 = max(32, int(round(w / 32) * 32)), max(32, int(round(h / 32) * 32))
    else:
        w2, h2 = w, h
    if "crop" in mode:
        w2, h2 = crop, crop
    return h2, w2


@pytest.mark.parametrize("mode", ["resize_and_crop", "scale_width_and_crop", "scale_shortside_and_crop",
                                  "crop", "scale_width", "scale_shortside", "fixed", "none"])
def test_output_sizes_follow_official_modes(mode):
    config = get_preset("custom").with_overrides({"preprocess_mode": mode, "load_size": 72,
                                                  "crop_size": 64, "aspect_ratio": 2.0})
    for w, h in [(100, 60), (50, 90), (72, 40), (48, 80)]:
        image = tf.zeros((h, w, 3), tf.uint8)
        label = tf.zeros((h, w), tf.int32)
        photo, lab, inst = preprocess.transform_example(image, label, label, tf.constant([1, 2], tf.int64),
                                                        config, augment=True)
        want = _official_size(mode, w, h, 72, 64, 2.0)
        assert tuple(lab.shape) == want and tuple(photo.shape) == (*want, 3) and tuple(inst.shape) == want


def test_crop_and_flip_identical_for_photo_labels_and_instances():
    """Photo channels encode (label, x, y): the transformed photo tells where each pixel came
    from, and the label / instance maps must have come from the same place."""
    rng = np.random.default_rng(3)
    h, w = 90, 120
    label = rng.integers(0, 10, (h, w)).astype(np.int32)
    instance = rng.integers(0, 1000, (h, w)).astype(np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.stack([label * 25, xx, yy], -1).astype(np.uint8)
    # resize to the photo's own size (identity), then a 64x64 random crop and random flip
    config = get_preset("custom").with_overrides({"preprocess_mode": "scale_width_and_crop",
                                                  "load_size": w, "crop_size": 64})
    flips, offsets = set(), set()
    for s in range(12):
        img, lab, inst = preprocess.transform_example(photo, label, instance, tf.constant([s, 7], tf.int64),
                                                      config, augment=True)
        pix = np.round((img.numpy() + 1) * 127.5).astype(int)
        lab, inst = lab.numpy(), inst.numpy()
        np.testing.assert_array_equal(pix[..., 0], lab * 25)  # label is still the photo's function
        x0, y0 = pix[0, 0, 1], pix[0, 0, 2]
        flipped = pix[0, 1, 1] < pix[0, 0, 1]
        cols = np.arange(x0, x0 - 64, -1) if flipped else np.arange(x0, x0 + 64)
        rows = np.arange(y0, y0 + 64)
        np.testing.assert_array_equal(pix[..., 1], np.broadcast_to(cols, (64, 64)))
        np.testing.assert_array_equal(lab, label[rows][:, cols])
        np.testing.assert_array_equal(inst, instance[rows][:, cols])
        flips.add(bool(flipped))
        offsets.add((int(x0), int(y0)))
    assert flips == {True, False}  # both happen
    assert len(offsets) > 3  # crops move


def test_no_augment_is_centred_and_unflipped():
    h, w = 80, 100
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.stack([xx, yy, xx], -1).astype(np.uint8)
    config = get_preset("custom").with_overrides({"preprocess_mode": "crop", "crop_size": 64})
    img, _, _ = preprocess.transform_example(photo, yy.astype(np.int32), None, tf.constant([0, 0], tf.int64),
                                             config, augment=False)
    pix = np.round((img.numpy() + 1) * 127.5).astype(int)
    assert (pix[0, 0, 0], pix[0, 0, 1]) == ((w - 64) // 2, (h - 64) // 2)
    assert pix[0, 1, 0] == pix[0, 0, 0] + 1


def test_crop_past_the_border_pads_with_zeros_like_pillow():
    photo = np.full((40, 30, 3), 200, np.uint8)
    config = get_preset("custom").with_overrides({"preprocess_mode": "crop", "crop_size": 64})
    img, lab, _ = preprocess.transform_example(photo, np.full((40, 30), 3, np.int32), None,
                                               tf.constant([0, 0], tf.int64), config, augment=False)
    assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
    assert float(img[0, 0, 0]) == pytest.approx(200 / 127.5 - 1) and float(img[-1, -1, 0]) == -1.0
    assert int(lab[0, 0]) == 3 and int(lab[-1, -1]) == 0


def _official_pil(photo, label, mode, load, crop, aspect, pos):
    """The official get_transform chain on Pillow images, crop position given (x, y)."""
    def resize(img, method):
        w, h = img.size
        if mode == "resize_and_crop":
            return img.resize((load, load), method)
        if "scale_width" in mode:
            return img if w == load else img.resize((load, int(load * h / w)), method)
        if mode == "fixed":
            return img.resize((crop, round(crop / aspect)), method)
        if mode == "none":
            size = (int(round(w / 32) * 32), int(round(h / 32) * 32))
            return img if size == (w, h) else img.resize(size, method)
        return img

    out = []
    for img, method in ((photo, Image.BICUBIC), (label, Image.NEAREST)):
        img = resize(img, method)
        if "crop" in mode:
            img = img.crop((pos[0], pos[1], pos[0] + crop, pos[1] + crop))
        out.append(np.asarray(img))
    return out


@pytest.mark.parametrize("mode", ["resize_and_crop", "scale_width_and_crop", "fixed", "none"])
def test_whole_transform_matches_official_pillow_chain_on_real_pair(mode):
    if not FACADES.is_dir():
        pytest.skip(f"facades data not found at {FACADES} (../shared is absent)")
    photo = Image.open(FACADES / "images" / "cmp_b0007.jpg").convert("RGB")
    label = Image.open(FACADES / "labels" / "cmp_b0007.png")
    load, crop = 286, 256
    config = get_preset("facades").with_overrides({"preprocess_mode": mode, "load_size": load,
                                                   "crop_size": crop, "aspect_ratio": 1.6})
    img, lab, _ = preprocess.transform_example(np.asarray(photo), np.asarray(label).astype(np.int32), None,
                                               tf.constant([0, 0], tf.int64), config, augment=False)
    # augment=False crops in the centre of the resized image
    w, h = photo.size
    new_w, new_h = {"resize_and_crop": (load, load), "scale_width_and_crop": (load, load * h // w)}.get(
        mode, (0, 0))
    pos = (max(0, new_w - crop) // 2, max(0, new_h - crop) // 2)
    want_photo, want_label = _official_pil(photo, label, mode, load, crop, 1.6, pos)
    np.testing.assert_array_equal(lab.numpy(), want_label)
    got = (img.numpy() + 1) * 127.5
    assert got.shape == want_photo.shape
    assert np.abs(got - want_photo).mean() < 0.5


def test_to_uint8_hand_computed():
    """round((x + 1) * 127.5), half to even, clipped: -1 → 0, 0 → 127.5 → 128, 0.5 → 191.25 → 191."""
    from spade_tf.data.images import quantize, to_uint8

    x = np.array([-1.0, 0.0, 0.5, 1.0, -3.0, 2.0], np.float32)
    assert np.asarray(to_uint8(x)).tolist() == [0, 128, 191, 255, 0, 255]
    u8, back = quantize(x)
    assert u8.dtype == np.uint8 and np.allclose(back, u8.astype(np.float32) / 127.5 - 1.0)
