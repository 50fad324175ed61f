"""Label faithfulness: segment generated images and compare with the input label maps.

* `SegmentationMetrics`: confusion-matrix mIoU, pixel accuracy and mean class accuracy, with an
  ignore label (SPADE maps don't-care to id `label_nc`, so that is the usual ignore id).
* `Segmenter`: any segmentation network the user has (a Keras model, a `.keras` file or a
  SavedModel directory) mapping images [B, H, W, 3] to logits [B, H', W', C] or ids [B, H', W'].
  The paper used DRN-D-105 (Cityscapes), UperNet101 (ADE20K) and DeepLabV2 (COCO-Stuff).
* `build_small_segmenter` / `train_small_segmenter` / `cached_small_segmenter`: a small U-Net
  trained on a dataset's real pairs, for datasets with no published segmenter at hand. Its mIoU
  is only comparable with itself (same data, seed and budget), never with the paper's numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from spade_tf.errors import SpadeError

INPUT_RANGES = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0), "0,255": (0.0, 255.0)}


# ---- metrics ------------------------------------------------------------------------------------
def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """[C, C] int64 counts, rows = target class, columns = predicted class.

    Pixels whose target equals `ignore_index` are left out. Any other target or prediction
    outside [0, num_classes) is an error (a label/segmenter class-count mismatch).
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise SpadeError(f"prediction and label map differ in size: {np.shape(pred)} vs {np.shape(target)}")
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for what, ids in (("label map", target), ("segmenter output", pred)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise SpadeError(f"{what} has class ids outside [0, {num_classes}) "
                             f"(found {ids.min()}..{ids.max()}); check num_classes and the ignore label")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def scores_from_confusion(cm: np.ndarray) -> dict:
    """mIoU (mean over classes that occur in the labels or predictions), pixel accuracy, mean class
    accuracy (over classes that occur in the labels), per-class IoU (NaN where the class never occurs)."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    gt, predicted = cm.sum(1), cm.sum(0)
    union = gt + predicted - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        class_acc = np.where(gt > 0, tp / gt, np.nan)
    total = cm.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "mean_class_accuracy": float(np.nanmean(class_acc)) if np.any(gt > 0) else float("nan"),
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        "n_pixels": int(total),
    }


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches; `result()` gives the scores."""

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.cm = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred, target) -> None:
        self.cm += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def result(self) -> dict:
        return scores_from_confusion(self.cm)


# ---- pluggable segmenter ------------------------------------------------------------------------
class Segmenter:
    """Wraps a segmentation network: images in [-1, 1] -> class ids at the label map's size.

    model: a Keras model/callable, a `.keras` file or a SavedModel directory (served through
    `keras.layers.TFSMLayer`, endpoint `serving_default`). input_range: what the network expects
    ("-1,1", "0,1" or "0,255"); images are mapped from [-1, 1] to it. Logit outputs are resized
    bilinearly to the label size before the argmax; id outputs by nearest neighbour.
    """

    def __init__(self, model, input_range: str = "-1,1", endpoint: str = "serving_default"):
        if input_range not in INPUT_RANGES:
            raise SpadeError(f"segmenter input range '{input_range}' not one of {sorted(INPUT_RANGES)}")
        self.input_range = input_range
        if isinstance(model, (str, os.PathLike)):
            model = load_segmentation_model(model, endpoint)
        self.model = model

    def predict_ids(self, images, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """images [B, H, W, 3] in [-1, 1] -> int32 ids [B, h, w] (h, w = out_size or H, W)."""
        images = np.asarray(images, np.float32)
        lo, hi = INPUT_RANGES[self.input_range]
        x = (images + 1.0) / 2.0 * (hi - lo) + lo
        out = self.model(x)
        if isinstance(out, dict):
            if len(out) != 1:
                raise SpadeError(f"segmenter returns several outputs {sorted(out)}; export one output")
            out = next(iter(out.values()))
        out = ops.convert_to_tensor(out)
        size = tuple(out_size) if out_size else images.shape[1:3]
        if len(out.shape) == 4:
            if tuple(out.shape[1:3]) != size:
                out = ops.image.resize(ops.cast(out, "float32"), size, interpolation="bilinear")
            return np.asarray(ops.convert_to_numpy(ops.argmax(out, axis=-1)), np.int32)
        if len(out.shape) == 3:
            if tuple(out.shape[1:3]) != size:
                out = ops.image.resize(ops.cast(out[..., None], "float32"), size, interpolation="nearest")
                out = out[..., 0]
            return np.asarray(ops.convert_to_numpy(out), np.int32)
        raise SpadeError(f"segmenter output has shape {tuple(out.shape)}; expected [B, H, W, C] logits "
                         "or [B, H, W] class ids")


def load_segmentation_model(path, endpoint: str = "serving_default"):
    """A `.keras` file or a SavedModel directory -> a callable model."""
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
    if path.is_file() and path.suffix == ".keras":
        return keras.models.load_model(path, compile=False)
    raise SpadeError(f"segmenter '{path}' is neither a .keras file nor a SavedModel directory "
                     "(a folder with saved_model.pb)")


def evaluate_segmentation(segmenter: Segmenter, pairs: Iterable[tuple[np.ndarray, np.ndarray]],
                          num_classes: int, ignore_index: int | None = None) -> dict:
    """Scores of `segmenter` on (images [B, H, W, 3] in [-1, 1], label maps [B, H, W]) batches."""
    metrics = SegmentationMetrics(num_classes, ignore_index)
    for images, labels in pairs:
        labels = np.asarray(labels)
        metrics.update(segmenter.predict_ids(images, labels.shape[1:3]), labels)
    return metrics.result()


# ---- the small built-in segmenter ---------------------------------------------------------------
def _conv_block(x, width, name):
    for i in range(2):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)  # short runs: fast averages
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def build_small_segmenter(num_classes: int, width: int = 32, depth: int = 2, seed: int = 0) -> keras.Model:
    """A small U-Net: images [B, H, W, 3] in [-1, 1] -> logits [B, H, W, num_classes].

    H and W must be divisible by 2**depth. `depth` stride-2 stages, widths doubling, skip concatenations.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3), name="image")
    x, skips = inputs, []
    for d in range(depth):
        x = _conv_block(x, width * 2 ** d, f"down{d}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{d}")(x)
    x = _conv_block(x, width * 2 ** depth, "bottom")
    for d in reversed(range(depth)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{d}")(x)
        x = layers.Concatenate(name=f"skip{d}")([x, skips[d]])
        x = _conv_block(x, width * 2 ** d, f"dec{d}")
    logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, logits, name="small_segmenter")


def train_small_segmenter(pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int, steps: int,
                          ignore_index: int | None = None, width: int = 32, depth: int = 2, seed: int = 0,
                          learning_rate: float = 2e-3, progress: bool = False) -> keras.Model:
    """Train a small segmenter for `steps` batches of (images in [-1, 1], label maps) pairs.

    `pairs` is iterated (cycled if it runs out). Pixels labelled `ignore_index` do not count.
    """
    from tqdm import tqdm

    model = build_small_segmenter(num_classes, width, depth, seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_index)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    cached = []
    it = iter(pairs)
    for _ in tqdm(range(steps), desc="training segmenter", disable=not progress, leave=False):
        try:
            images, labels = next(it)
            cached.append((images, labels))
        except StopIteration:
            if not cached:
                raise SpadeError("no training pairs for the segmenter") from None
            it = iter(cached)  # cycle over what the source gave
            images, labels = next(it)
        model.train_on_batch(np.asarray(images, np.float32), np.asarray(labels, np.int32))
    return model


def dataset_hash(data_dir) -> str:
    """SHA-256 over every file's relative path and bytes under `data_dir`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SpadeError(f"dataset folder not found: {root}")
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def default_segmenter_cache() -> Path:
    return Path(os.path.expanduser("~/.cache/spade_tf/segmenters"))


def cached_small_segmenter(dataset_key: str, pairs_fn: Callable[[], Iterable], num_classes: int, steps: int,
                           ignore_index: int | None = None, seed: int = 0, width: int = 32, depth: int = 2,
                           learning_rate: float = 2e-3, cache_dir=None,
                           progress: bool = False) -> tuple[keras.Model, Path, bool]:
    """The small segmenter for this dataset (by `dataset_key`, e.g. `dataset_hash`), seed and
    settings: loaded from the cache, else trained on `pairs_fn()` and saved.
    Returns (model, cache file, whether it was loaded)."""
    settings = {"dataset": dataset_key, "num_classes": num_classes, "steps": steps, "ignore": ignore_index,
                "seed": seed, "width": width, "depth": depth, "learning_rate": learning_rate, "version": 1}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir or default_segmenter_cache()) / f"small_segmenter-{key}-seed{seed}.keras"
    if path.is_file():
        return keras.models.load_model(path, compile=False), path, True
    model = train_small_segmenter(pairs_fn(), num_classes, steps, ignore_index, width, depth, seed,
                                  learning_rate, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    (path.with_suffix(".json")).write_text(json.dumps(settings, indent=1))
    return model, path, False
