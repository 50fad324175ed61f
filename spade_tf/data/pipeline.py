"""`build_dataset`: tf.data pipelines yielding the dataset element every other module consumes.

Element (a dict, batched):
    "label_map"       int32   [B, H, W]     class ids, don't care already mapped to `label_nc`
    "image"           float32 [B, H, W, 3]  photo in [-1, 1]
    "instance_edges"  float32 [B, H, W, 1]  only when `config.use_instance_edges`

Label ids stay integers all the way; the one-hot map is built in the model (`make_semantics`),
on the accelerator, which is cheaper than moving label_nc-channel float maps through tf.data.

Sources (`data_dir`):
    None                      the embedded synthetic landscapes (synthetic.py)
    a folder                  the layout of `config.dataset_mode` (layouts.py)
    a dict                    explicit folders, as the official custom mode's --image_dir/--label_dir:
                              {"image_dir": ..., "label_dir": ..., "instance_dir": ... (optional)}
    a TFDS-built folder       one holding `dataset_info.json`, made by tfds_builder.py, e.g.
                              <tfds data dir>/spade_folders/facades/1.0.0 (or .../facades: newest)

Throughput: files are listed once, shuffled as paths (cheap, full buffer), decoded and checked in
parallel (`num_parallel_calls=AUTOTUNE`), optionally cached after decoding, transformed in
parallel, batched and prefetched.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path

import numpy as np

from spade_tf.data import decode, layouts, synthetic
from spade_tf.errors import SpadeError

logger = logging.getLogger("spade_tf.data")

SYNTHETIC_SIZE = 512  # scenes in the embedded train split (val: SYNTHETIC_SIZE // 8)
SYNTHETIC_SEED = 20190401
_MARK = "SpadeDataError: "


class SkipLog:
    """The pairs `skip_bad` dropped: each logged once (epochs repeat them), counted."""

    def __init__(self, total: int) -> None:
        self._lock = threading.Lock()
        self.total = total
        self.skipped: dict[str, str] = {}

    def add(self, key: str, message: str) -> None:
        with self._lock:
            new = key not in self.skipped
            self.skipped[key] = message
            count = len(self.skipped)
        if new:
            logger.warning("skip_bad: dropped %s (%d bad pair(s) skipped so far)", message, count)
        if count >= self.total:  # nothing left: a repeated dataset would spin forever
            raise ValueError(f"{_MARK}all {self.total} pairs are bad (see the warnings above); "
                             f"nothing to train on")


def output_size(config) -> tuple[int, int] | None:
    """(H, W) every element has after preprocessing, or None when it varies with the input."""
    mode = config.preprocess_mode
    if mode == "fixed":
        return round(config.crop_size / config.aspect_ratio), config.crop_size
    if "crop" in mode:
        return config.crop_size, config.crop_size
    return None


def build_dataset(config, data_dir=None, split: str = "train", batch_size: int | None = None,
                  shuffle: bool = True, seed: int = 0, skip_bad: bool = False, repeat: bool = False,
                  drop_remainder: bool = True, augment: bool | None = None, cache: bool | str = False,
                  num_examples: int | None = None):
    """A batched, prefetched `tf.data.Dataset` of element dicts (see the module docstring).

    batch_size: default `config.batchSize`. augment: random crop + flip (default: split == "train");
    without it crops are centred and nothing is flipped. seed: shuffling and augmentation (the
    stream is deterministic for a given seed). skip_bad: drop unusable pairs and log how many,
    instead of raising a SpadeError naming the file. cache: True (memory) or a file prefix: keep
    decoded pairs after the first epoch. num_examples: synthetic train scenes (default
    `config.synthetic_size` if that field exists, else 512; val gets an eighth).
    """
    import tensorflow as tf

    batch_size = batch_size or config.batchSize
    augment = (split == "train") if augment is None else augment
    if data_dir is None:
        ds = _synthetic_examples(config, split, num_examples, shuffle, seed)
    elif tfds_version_dir(data_dir) is not None:
        ds = _tfds_examples(config, tfds_version_dir(data_dir), split, shuffle, seed, skip_bad)
    else:
        ds = _file_examples(config, data_dir, split, shuffle, seed, skip_bad, cache)
    if repeat:
        ds = ds.repeat()

    synthetic_source = data_dir is None
    size = tuple(config.image_size) if synthetic_source else output_size(config)

    def transform(example, element_seed):
        seed2 = tf.stack([element_seed, tf.constant(SYNTHETIC_SEED, tf.int64)])
        instance = example.get("instance")
        if synthetic_source:  # generated at the final size: only flip
            image, label = tf.cast(example["image"], tf.float32) / 127.5 - 1.0, example["label"]
            if augment and not config.no_flip:
                flip = tf.random.stateless_uniform([], seed2) > 0.5
                image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
                label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
                if instance is not None:
                    instance = tf.cond(flip, lambda: tf.reverse(instance, [1]), lambda: instance)
        else:
            from spade_tf.data.preprocess import transform_example

            image, label, instance = transform_example(example["image"], example["label"], instance,
                                                       seed2, config, augment)
        out = {"label_map": label, "image": image}
        if config.use_instance_edges:
            from spade_tf.data.preprocess import instance_edges

            out["instance_edges"] = instance_edges(instance)
        if size is not None:
            out["label_map"] = tf.ensure_shape(out["label_map"], size)
            out["image"] = tf.ensure_shape(out["image"], (*size, 3))
            if "instance_edges" in out:
                out["instance_edges"] = tf.ensure_shape(out["instance_edges"], (*size, 1))
        return out

    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed)))
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def tfds_version_dir(data_dir) -> Path | None:
    """The TFDS-built folder `data_dir` names: itself when it holds dataset_info.json, else its
    newest version subfolder (so `.../spade_folders/facades` works too); None for other folders."""
    if data_dir is None or isinstance(data_dir, dict):
        return None
    root = Path(data_dir)
    if (root / "dataset_info.json").is_file():
        return root
    versions = [d for d in root.glob("*.*.*") if (d / "dataset_info.json").is_file()] if root.is_dir() else []
    if not versions:
        return None
    return max(versions, key=lambda d: tuple(int(x) if x.isdigit() else 0 for x in d.name.split(".")))


# ---- sources: each yields unbatched {"image": uint8 [H,W,3], "label": int32 [H,W], ["instance"]}

def _synthetic_examples(config, split, num_examples, shuffle, seed):
    import tensorflow as tf

    if config.label_nc < synthetic.NUM_CLASSES:
        raise SpadeError(f"the embedded synthetic dataset has {synthetic.NUM_CLASSES} classes but "
                         f"label_nc={config.label_nc}; use the 'tiny' preset or give --data")
    train = split == "train"
    size = num_examples or getattr(config, "synthetic_size", None) or SYNTHETIC_SIZE  # optional config field
    n = size if train else max(size // 8, 1)
    height, width = config.image_size
    photos, labels, instances = synthetic.generate(n, height, width, SYNTHETIC_SEED + (0 if train else 1))
    example = {"image": photos, "label": labels.astype(np.int32)}
    if config.use_instance_edges:
        example["instance"] = instances
    ds = tf.data.Dataset.from_tensor_slices(example)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds


def list_pairs(config, data_dir, split="train", skip_bad=False) -> list[layouts.Pair]:
    """Pairs of a folder dataset; a SpadeError for missing partners etc. unless skip_bad."""
    if isinstance(data_dir, dict):
        unknown = set(data_dir) - {"image_dir", "label_dir", "instance_dir"}
        if unknown or not {"image_dir", "label_dir"} <= set(data_dir):
            raise SpadeError(f"data_dir dict needs image_dir and label_dir (+ instance_dir), "
                             f"got {sorted(data_dir)}")
        if config.use_instance_edges and not data_dir.get("instance_dir"):
            raise SpadeError("config uses instance edges (no_instance=false) but no instance_dir was given; "
                             "add it or set no_instance=true")
        inst = data_dir.get("instance_dir") if config.use_instance_edges else None
        pairs, problems = layouts.folder_pairs(data_dir["image_dir"], data_dir["label_dir"], inst)
    else:
        pairs, problems = layouts.find_pairs(config, data_dir, split)
    if problems:
        listing = "\n  ".join(str(p) for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        if not skip_bad:
            raise SpadeError(f"{data_dir}: {len(problems)} file(s) cannot be paired:\n  {listing}{more}\n"
                             f"Fix them, or pass skip_bad / --skip-bad to drop them; "
                             f"`spade data validate` lists every problem")
        logger.warning("skip_bad: dropped %d unpaired file(s) in %s:\n  %s%s", len(problems), data_dir,
                       listing, more)
    if not pairs:
        raise SpadeError(f"{data_dir}: no usable {split} pairs found")
    return pairs


def _file_examples(config, data_dir, split, shuffle, seed, skip_bad, cache):
    import tensorflow as tf

    pairs = list_pairs(config, data_dir, split, skip_bad)
    skips = SkipLog(len(pairs))
    want_inst = config.use_instance_edges

    # labels leave Python as uint8 when every id fits (less to copy under the GIL)
    label_dtype = np.uint8 if config.num_label_channels <= 255 else np.int32

    def load(image_path, label_path, instance_path):
        paths = [p.decode() for p in (image_path, label_path, instance_path)]
        try:
            photo, label, instance = decode.read_pair(*paths, config)
        except decode.BadPair as e:
            if not skip_bad:
                raise ValueError(f"{_MARK}{e}") from None
            skips.add(paths[1], str(e))
            return (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), label_dtype), np.zeros((1, 1), np.int32),
                    False)
        instance = np.zeros((1, 1), np.int32) if instance is None else instance.astype(np.int32, copy=False)
        return photo, label.astype(label_dtype, copy=False), instance, True

    def load_tf(image_path, label_path, instance_path):
        photo, label, instance, ok = tf.numpy_function(
            load, [image_path, label_path, instance_path],
            [tf.uint8, tf.as_dtype(label_dtype), tf.int32, tf.bool], stateful=False)
        example = {"image": tf.ensure_shape(photo, (None, None, 3)),
                   "label": tf.cast(tf.ensure_shape(label, (None, None)), tf.int32), "ok": ok}
        if want_inst:
            example["instance"] = tf.ensure_shape(instance, (None, None))
        return example

    paths = tf.data.Dataset.from_tensor_slices(
        ([p.image for p in pairs], [p.label for p in pairs], [p.instance for p in pairs]))
    if shuffle and not cache:
        paths = paths.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    ds = paths.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE)
    if skip_bad:
        ds = ds.filter(lambda e: e["ok"])
    ds = ds.map(lambda e: {k: v for k, v in e.items() if k != "ok"})
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
        if shuffle:
            ds = ds.shuffle(min(len(pairs), 1024), seed=seed, reshuffle_each_iteration=True)
    return ds


def _tfds_examples(config, data_dir, split, shuffle, seed, skip_bad):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(data_dir))
    if split not in builder.info.splits:
        raise SpadeError(f"{data_dir}: TFDS dataset has splits {sorted(builder.info.splits)}, not '{split}'")
    features = builder.info.features
    if config.use_instance_edges and "instance" not in features:
        raise SpadeError(f"{data_dir}: config uses instance edges (no_instance=false) but this TFDS dataset "
                         f"has no instance maps; set no_instance=true or build the 'custom_instances' config")
    ds = builder.as_dataset(split=split, shuffle_files=shuffle, read_config=tfds.ReadConfig(
        shuffle_seed=seed))
    n = config.num_label_channels

    def check(example):
        raw = tf.cast(example["label"][..., 0], tf.int32)
        valid = raw < n
        if config.contain_dontcare_label:
            valid |= tf.equal(raw, decode.DONT_CARE_VALUE)
        valid &= raw >= 0
        same_size = tf.reduce_all(tf.equal(tf.shape(raw), tf.shape(example["image"])[:2]))
        return tf.reduce_all(valid) & same_size, raw

    def convert(example):
        ok, raw = check(example)
        if not skip_bad:
            with tf.control_dependencies([tf.debugging.Assert(ok, [
                    f"{_MARK}{data_dir}: bad pair", example["file_name"], "- label value out of range "
                    f"(label_nc={config.label_nc}, don't care={config.contain_dontcare_label}) "
                    "or label/photo size mismatch; max label value:", tf.reduce_max(raw)], summarize=1)]):
                raw = tf.identity(raw)
        if config.contain_dontcare_label:
            raw = tf.where(tf.equal(raw, decode.DONT_CARE_VALUE), config.label_nc, raw)
        out = {"image": example["image"], "label": raw}
        if config.use_instance_edges:
            out["instance"] = tf.cast(example["instance"][..., 0], tf.int32)
        return out

    if skip_bad:
        def keep(example):
            ok, _ = check(example)
            tf.cond(ok, lambda: tf.constant(True), lambda: _tf_warn(example["file_name"]))
            return ok

        ds = ds.filter(keep)
    if shuffle:
        ds = ds.shuffle(1024, seed=seed, reshuffle_each_iteration=True)
    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def _tf_warn(file_name):
    import tensorflow as tf

    tf.print("skip_bad: dropped TFDS example", file_name, "(label value out of range or size mismatch)")
    return tf.constant(False)


@contextlib.contextmanager
def reraise_data_errors():
    """Turn a data error raised inside the tf.data pipeline back into a clean SpadeError.

    tf.data wraps Python exceptions of `numpy_function` (and failed asserts) in tf.errors.OpError;
    use this around the loop that iterates the dataset (or `model.fit`):

        with reraise_data_errors():
            for batch in dataset: ...
    """
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as e:
        text = e.message if hasattr(e, "message") else str(e)
        found = re.search(re.escape(_MARK) + r"(.*)", text)
        if not found:
            raise
        message = found.group(1).strip().replace("] [", " ").rstrip("]").replace("\\'", "'")
        raise SpadeError(message) from None
