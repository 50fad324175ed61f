"""Segmentation accuracy: hand-computed confusion-matrix scores, pluggable segmenters, tiny built-in one."""

import keras
import numpy as np
import pytest

from spade_tf.errors import SpadeError
from spade_tf.evaluation import segmentation as seg


def test_scores_hand_computed_with_ignore_label():
    target = np.array([[[0, 0, 1], [1, 2, 255]]])
    pred = np.array([[[0, 1, 1], [1, 0, 2]]])  # the 2 at the ignored pixel must not count
    cm = seg.confusion_matrix(pred, target, num_classes=3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    s = seg.scores_from_confusion(cm)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0 / 1 = 0.
    assert s["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s["miou"] == pytest.approx(1 / 3)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)
    assert s["mean_class_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert s["n_pixels"] == 5
    # A class that never occurs (id 3) is left out of the means.
    s4 = seg.scores_from_confusion(seg.confusion_matrix(pred, target, 4, ignore_index=255))
    assert s4["per_class_iou"][3] is None and s4["miou"] == pytest.approx(1 / 3)


def test_metrics_accumulate_over_batches_and_reject_bad_ids():
    rs = np.random.RandomState(0)
    target, pred = rs.randint(0, 5, (4, 6, 6)), rs.randint(0, 5, (4, 6, 6))
    m = seg.SegmentationMetrics(5, ignore_index=4)
    m.update(pred[:2], target[:2])
    m.update(pred[2:], target[2:])
    whole = seg.scores_from_confusion(seg.confusion_matrix(pred, target, 5, 4))
    assert m.result() == whole
    keep = target != 4
    assert whole["pixel_accuracy"] == pytest.approx((pred[keep] == target[keep]).mean())
    with pytest.raises(SpadeError, match="outside"):
        seg.confusion_matrix(pred, target, 4)  # id 4 without ignore_index
    with pytest.raises(SpadeError, match="differ in size"):
        seg.confusion_matrix(pred[:1], target, 5)


class _ArgmaxIds(keras.layers.Layer):
    def call(self, x):
        return keras.ops.argmax(x, axis=-1)


def _channel_argmax_model(downsample=False, ids=False):
    """logits = the RGB channels (identity 1x1 conv), so the class is the brightest channel."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, 1, use_bias=False,
                               kernel_initializer=keras.initializers.Constant(np.eye(3).reshape(1, 1, 3, 3)))
    x = conv(inputs)
    if downsample:
        x = keras.layers.AveragePooling2D(2)(x)
    if ids:
        x = _ArgmaxIds()(x)
    return keras.Model(inputs, x)


def _colour_images():
    labels = np.zeros((2, 8, 8), np.int32)
    labels[:, :, 4:] = 1
    labels[1, 4:, :] = 2
    images = -np.ones((2, 8, 8, 3), np.float32)
    for c in range(3):
        images[labels == c, c] = 1.0
    return images, labels


@pytest.mark.parametrize("downsample,ids", [(False, False), (True, False), (True, True)])
def test_pluggable_keras_segmenter(downsample, ids):
    images, labels = _colour_images()
    s = seg.Segmenter(_channel_argmax_model(downsample, ids), input_range="0,255")
    np.testing.assert_array_equal(s.predict_ids(images, labels.shape[1:]), labels)
    scores = seg.evaluate_segmentation(s, [(images, labels)], num_classes=3)
    assert scores["miou"] == 1.0 and scores["pixel_accuracy"] == 1.0


def test_segmenter_from_keras_file_and_saved_model(tmp_path):
    images, labels = _colour_images()
    model = _channel_argmax_model()
    model.save(tmp_path / "seg.keras")
    model.export(str(tmp_path / "seg_savedmodel"), verbose=False)
    for path in (tmp_path / "seg.keras", tmp_path / "seg_savedmodel"):
        s = seg.Segmenter(path, input_range="-1,1")
        np.testing.assert_array_equal(s.predict_ids(images), labels)
    with pytest.raises(SpadeError, match="SavedModel"):
        seg.Segmenter(tmp_path)
    with pytest.raises(SpadeError, match="input range"):
        seg.Segmenter(model, input_range="0,2")


COLOURS = np.array([[-0.8, -0.8, 0.8], [0.8, -0.8, -0.8], [-0.8, 0.8, -0.8], [0.6, 0.6, 0.6]], np.float32)


def _colour_task(rs, n, size=16, classes=4, ignore=4):
    """Label maps of random 4x4 blocks (some pixels don't-care); image = class colour + noise."""
    blocks = rs.randint(0, classes, (n, size // 4, size // 4))
    labels = np.kron(blocks, np.ones((4, 4), np.int64)).astype(np.int32)
    images = COLOURS[labels] + 0.15 * rs.standard_normal((n, size, size, 3)).astype(np.float32)
    labels[rs.uniform(size=labels.shape) < 0.05] = ignore
    return np.clip(images, -1, 1), labels


def test_tiny_builtin_segmenter_learns_colour_to_class_and_is_cached(tmp_path):
    rs = np.random.RandomState(0)
    train = [_colour_task(rs, 8) for _ in range(6)]
    test_images, test_labels = _colour_task(np.random.RandomState(99), 8)
    settings = dict(num_classes=4, steps=120, ignore_index=4, seed=1, width=8, depth=1, learning_rate=1e-2,
                    cache_dir=tmp_path)
    model, path, loaded = seg.cached_small_segmenter("colour-task", lambda: train, **settings)
    assert not loaded and path.is_file()
    scores = seg.evaluate_segmentation(seg.Segmenter(model), [(test_images, test_labels)], 4, ignore_index=4)
    assert scores["miou"] > 0.95 and scores["pixel_accuracy"] > 0.97
    again, path2, loaded2 = seg.cached_small_segmenter("colour-task", lambda: pytest.fail("retrained"),
                                                       **settings)
    assert loaded2 and path2 == path
    np.testing.assert_array_equal(seg.Segmenter(again).predict_ids(test_images),
                                  seg.Segmenter(model).predict_ids(test_images))
    # Another seed is another cache entry.
    _, path3, _ = seg.cached_small_segmenter("colour-task", lambda: train[:1], **{**settings, "seed": 2,
                                                                                   "steps": 1})
    assert path3 != path


def test_dataset_hash_changes_with_content(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.png").write_bytes(b"1")
    h1 = seg.dataset_hash(tmp_path)
    (tmp_path / "labels" / "a.png").write_bytes(b"2")
    assert seg.dataset_hash(tmp_path) != h1
    with pytest.raises(SpadeError):
        seg.dataset_hash(tmp_path / "missing")
