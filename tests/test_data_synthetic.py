"""The embedded synthetic landscapes and the class tables."""

import numpy as np
import pytest

from spade_tf.config import get_preset
from spade_tf.data import class_table, colorize, synthetic


@pytest.fixture(scope="module")
def scenes():
    return synthetic.generate(256, 48, 48, 7)


def test_deterministic_and_seeded(scenes):
    photos, labels, instances = scenes
    assert photos.shape == (256, 48, 48, 3) and photos.dtype == np.uint8
    assert labels.shape == (256, 48, 48) and instances.shape == (256, 48, 48)
    again = synthetic.generate.__wrapped__(256, 48, 48, 7)  # bypass the cache: really regenerate
    np.testing.assert_array_equal(photos, again[0])
    np.testing.assert_array_equal(labels, again[1])
    other = synthetic.generate.__wrapped__(32, 48, 48, 8)
    assert not np.array_equal(labels[:32], other[1])
    # scene i does not depend on how many scenes were asked for
    np.testing.assert_array_equal(synthetic.generate.__wrapped__(40, 48, 48, 7)[1], labels[:40])


def test_all_classes_present_with_plausible_layout(scenes):
    _, labels, _ = scenes
    counts = np.bincount(labels.ravel(), minlength=8)
    assert (counts > 0).all() and counts.sum() == labels.size
    rows = np.arange(48)[None, :, None]
    mean_row = [float((rows * (labels == c)).sum() / max((labels == c).sum(), 1)) for c in range(8)]
    s = synthetic
    assert mean_row[s.SKY] < mean_row[s.MOUNTAIN] < mean_row[s.WATER] < mean_row[s.GRASS]
    assert mean_row[s.SNOW] < mean_row[s.MOUNTAIN]
    assert (labels[:, 0] == s.SKY).mean() > 0.9  # top row is sky
    assert (labels[:, -1] == s.SKY).mean() == 0  # bottom row never is


def test_classes_have_distinct_colour_and_texture_statistics(scenes):
    photos, labels, _ = scenes
    px = photos.reshape(-1, 3).astype(np.float32)
    lab = labels.ravel()
    means = np.stack([px[lab == c].mean(0) for c in range(8)])
    stds = np.stack([px[lab == c].std(0).mean() for c in range(8)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(8, dtype=bool)].min() > 15  # every pair of classes differs in colour
    assert (stds > 3).all()  # and each has texture, not a flat fill
    # a nearest-class-mean pixel classifier already gets most pixels right: learnable mapping
    pred = np.argmin(((px[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == lab).mean() > 0.7


def test_class_tables():
    sizes = {"ade20k": 151, "cocostuff": 183, "cityscapes": 35, "facades": 13, "tiny": 8, "custom": 182}
    for preset, n in sizes.items():
        table = class_table(preset)
        assert [i for i, _, _ in table] == list(range(n)), preset
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for _, _, c in table)
    assert class_table("tiny")[0][1] == "sky" and class_table("facades")[2] == (2, "facade", (0, 0, 255))
    assert class_table("cocostuff")[0][1] == "person" and class_table("cocostuff")[181][1] == "wood"
    assert class_table("cocostuff")[182][1] == "don't care"
    assert class_table("cityscapes")[26] == (26, "car", (0, 0, 142))
    assert class_table("ade20k")[1] == (1, "wall", (120, 120, 120))


def test_colorize():
    config = get_preset("facades")
    ids = np.array([[[1, 2], [11, 12]]])
    rgb = colorize(ids, config)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 2, 3)
    assert tuple(rgb[0, 0, 1]) == (0, 0, 255) and tuple(rgb[0, 1, 1]) == (170, 0, 0)
