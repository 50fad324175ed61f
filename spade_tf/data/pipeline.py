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

Throughput: files are listed once; the order is a permutation of file indices per epoch
(`example_order`, a function of seed and epoch); files are decoded and checked in parallel
(`num_parallel_calls=AUTOTUNE`), optionally cached after decoding, transformed in parallel, batched
and prefetched.

Resume: `build_dataset(..., start=N)` is the stream from batch N on, equal to what batches N, N+1,
... of `start=0` are; the indices and per-example augmentation seeds before it are never made into
examples, so no skipped file is opened (see `example_order`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path

import numpy as np

from spade_tf.data import decode, labels, layouts, synthetic
from spade_tf.data.images import from_uint8
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
                  num_examples: int | None = None, start: int = 0, skip_bad_cache=None):
    """A batched, prefetched `tf.data.Dataset` of element dicts (see the module docstring).

    batch_size: default `config.batchSize`. augment: random crop + flip (default: split == "train");
    without it crops are centred and nothing is flipped. seed: shuffling and augmentation (the
    stream is deterministic for a given seed). skip_bad: drop unusable pairs and log how many,
    instead of raising a SpadeError naming the file. cache: True (memory) or a file prefix: keep
    decoded pairs after the first epoch. num_examples: synthetic train scenes (default
    `config.synthetic_size` if that field exists, else 512; val gets an eighth).

    start: the stream begins at batch `start` of the stream this call would give with start=0 (what
    a resumed training needs). The stream is a function of (seed, position): epoch e is the
    permutation `example_order` makes from (seed, e), the augmentation of the example at position k
    uses the stateless seed (seed, k). So for the embedded set and for folders nothing before the
    start is read, decoded or transformed (a TFDS folder or `cache` still reads the examples it skips).
    skip_bad_cache: a folder where skip_bad keeps the list of usable pairs it validated (keyed by the
    folder's names, sizes and modification times): later calls read the list instead of decoding
    every pair again. Without it, skip_bad validates the folder on every call.
    """
    import tensorflow as tf

    batch_size = batch_size or config.batchSize
    augment = (split == "train") if augment is None else augment
    first = int(start) * batch_size  # position of the first example of the stream
    if data_dir is None:
        ds = _synthetic_examples(config, split, num_examples, shuffle, seed, repeat, first)
    elif tfds_version_dir(data_dir) is None and not cache:
        ds = _file_examples(config, data_dir, split, shuffle, seed, skip_bad, repeat, first, skip_bad_cache)
    else:  # examples without positions: count them, skip (reading what is skipped)
        if tfds_version_dir(data_dir) is not None:
            ds = _tfds_examples(config, tfds_version_dir(data_dir), split, shuffle, seed, skip_bad)
        else:
            ds = _cached_file_examples(config, data_dir, split, shuffle, seed, skip_bad, cache)
        if repeat:
            ds = ds.repeat()
        ds = ds.enumerate().map(lambda k, example: (example, k))
        if first:
            ds = ds.skip(first)

    synthetic_source = data_dir is None
    size = tuple(config.image_size) if synthetic_source else output_size(config)
    seed_tensor = tf.constant(int(seed), tf.int64)

    def transform(example, position):
        seed2 = tf.stack([seed_tensor, position])  # positions >= 0; example_order uses (seed, -1 - epoch)
        instance = example.get("instance")
        if synthetic_source:  # generated at the final size: only flip
            image, label = from_uint8(tf.cast(example["image"], tf.float32)), example["label"]
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

    ds = ds.map(transform, num_parallel_calls=_parallel())
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if READ_AHEAD:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()  # nor may tf.data's own rewrites read ahead
    options.experimental_optimization.map_parallelization = False
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_and_batch_fusion = False
    return ds.with_options(options)


# False: every file is read when its batch is asked for (no parallel reads ahead, no prefetch), so
# reads can be counted (tests). The stream is the same either way.
READ_AHEAD = True


def _parallel():
    import tensorflow as tf

    return tf.data.AUTOTUNE if READ_AHEAD else None


def example_order(n: int, seed: int, shuffle: bool = True, repeat: bool = True, first: int = 0):
    """`tf.data.Dataset` of (index, position) int64 pairs: the example at stream position k
    (k = first, first + 1, ...) is example `index` of n. Epoch e (positions e*n .. e*n + n-1) is a
    permutation of range(n) made from the stateless seed (seed, -1 - e) alone (identity without
    shuffle), so the stream can begin at any position without producing the ones before it. Only
    indices are made here: nothing is read."""
    import tensorflow as tf

    first_epoch, offset = divmod(int(first), n)
    last_epoch = 2**62 if repeat else 1
    seed_tensor = tf.constant(int(seed), tf.int64)

    def epoch(e):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([seed_tensor, -1 - e]))
        begin = tf.where(tf.equal(e, first_epoch), tf.constant(offset, tf.int64), 0)
        return tf.data.Dataset.from_tensor_slices((order[begin:], e * n + tf.range(begin, n, dtype=tf.int64)))

    ds = tf.data.Dataset.range(first_epoch, max(last_epoch, first_epoch)).flat_map(epoch)
    count = tf.data.INFINITE_CARDINALITY if repeat else max(0, n - int(first))
    return ds.apply(tf.data.experimental.assert_cardinality(count))


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

def _synthetic_examples(config, split, num_examples, shuffle, seed, repeat=False, first=0):
    """(example, position) pairs of the embedded set, from `example_order` (see build_dataset)."""
    import tensorflow as tf

    if config.label_nc < synthetic.NUM_CLASSES:
        raise SpadeError(f"the embedded synthetic dataset has {synthetic.NUM_CLASSES} classes but "
                         f"label_nc={config.label_nc}; use the 'tiny' preset or give --data")
    train = split == "train"
    size = num_examples or getattr(config, "synthetic_size", None) or SYNTHETIC_SIZE  # optional config field
    n = size if train else max(size // 8, 1)
    height, width = config.image_size
    photos, label_maps, instances = synthetic.generate(n, height, width, SYNTHETIC_SEED + (0 if train else 1))
    arrays = {"image": tf.constant(photos), "label": tf.constant(label_maps)}
    if config.use_instance_edges:
        arrays["instance"] = tf.constant(instances)

    def scene(index, position):
        example = {k: tf.gather(v, index) for k, v in arrays.items()}
        example["label"] = tf.cast(example["label"], tf.int32)
        return example, position

    return example_order(n, seed, shuffle, repeat, first).map(scene)


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


def _pair_loader(config, skip_bad, total):
    """tf function (image_path, label_path, instance_path) -> example dict with "ok" (False: dropped)."""
    import tensorflow as tf

    skips = SkipLog(total)
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

    return load_tf


def _drop_ok(example):
    return {k: v for k, v in example.items() if k != "ok"}


def _file_examples(config, data_dir, split, shuffle, seed, skip_bad, repeat=False, first=0,
                   skip_bad_cache=None):
    """(example, position) pairs read from the folder; only the paths at positions >= first are read."""
    import tensorflow as tf

    if skip_bad:
        pairs, note = usable_pairs(config, data_dir, split, skip_bad_cache)
        logger.info("%s", note)
    else:
        pairs = list_pairs(config, data_dir, split, skip_bad)
    paths = tf.constant([[p.image, p.label, p.instance] for p in pairs])
    load_tf = _pair_loader(config, skip_bad, len(pairs))

    def read(index, position):
        row = tf.gather(paths, index)
        return load_tf(row[0], row[1], row[2]), position

    ds = example_order(len(pairs), seed, shuffle, repeat, first).map(read, num_parallel_calls=_parallel())
    if skip_bad:  # only a file changed since it was validated can still fail here
        ds = ds.filter(lambda e, k: e["ok"])
    return ds.map(lambda e, k: (_drop_ok(e), k))


def _cached_file_examples(config, data_dir, split, shuffle, seed, skip_bad, cache):
    """Examples (no positions) decoded once, then kept (`cache`) and shuffled through a buffer."""
    import tensorflow as tf

    pairs = usable_pairs(config, data_dir, split)[0] if skip_bad else list_pairs(config, data_dir, split)
    paths = tf.data.Dataset.from_tensor_slices(
        ([p.image for p in pairs], [p.label for p in pairs], [p.instance for p in pairs]))
    ds = paths.map(_pair_loader(config, skip_bad, len(pairs)), num_parallel_calls=_parallel())
    if skip_bad:
        ds = ds.filter(lambda e: e["ok"])
    ds = ds.map(_drop_ok).cache("" if cache is True else str(cache))
    if shuffle:
        ds = ds.shuffle(min(len(pairs), 1024), seed=seed, reshuffle_each_iteration=True)
    return ds


# ---- skip_bad: validate once, keep the list --------------------------------------------------------
_USABLE_FORMAT = 1


def _content_key(config, data_dir, split, pairs) -> str:
    """sha256 of what decides which pairs are usable: every file's path, size and modification time,
    and the label settings the checks use."""
    import hashlib
    import json
    import os

    digest = hashlib.sha256()
    settings = [_USABLE_FORMAT, str(data_dir), split, config.label_nc, config.num_label_channels,
                config.contain_dontcare_label, config.use_instance_edges]
    digest.update(json.dumps(settings).encode())
    for pair in pairs:
        for path in (pair.image, pair.label, pair.instance):
            if path:
                try:
                    st = os.stat(path)
                    digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
                except OSError:
                    digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


def usable_pairs(config, data_dir, split="train", cache_dir=None) -> tuple[list[layouts.Pair], str]:
    """(the pairs skip_bad trains on, a line saying how they were found).

    Every pair is read and checked once (`decode.read_pair`, in threads); with `cache_dir` the list
    is kept in `cache_dir/usable_pairs-<split>-<key>.json`, the key hashing the folder's file names,
    sizes and modification times and the label settings, so a later call (a resumed run) reads
    the list instead of decoding every photo again; any change to the files makes a new key.
    """
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    pairs = list_pairs(config, data_dir, split, skip_bad=True)
    key = _content_key(config, data_dir, split, pairs)
    path = Path(cache_dir) / f"usable_pairs-{split}-{key[:20]}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("key") == key:
                keep = set(saved["usable"])
                good = [p for p in pairs if p.key in keep]
                if good:
                    return good, (f"skip_bad: {len(good)} usable of {len(pairs)} pairs, from the list "
                                  f"validated earlier ({path}; delete it to check again)")
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable list: validate again
    started = time.perf_counter()

    def check(pair):
        try:
            decode.read_pair(pair.image, pair.label, pair.instance, config)
        except decode.BadPair as e:
            return str(e)
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(pool.map(check, pairs))
    good = [p for p, problem in zip(pairs, problems, strict=True) if problem is None]
    bad = [problem for problem in problems if problem is not None]
    for count, problem in enumerate(bad, 1):
        logger.warning("skip_bad: dropped %s (%d bad pair(s) skipped so far)", problem, count)
    if not good:
        raise SpadeError(f"{data_dir}: all {len(pairs)} pairs are bad (see the warnings above); nothing to "
                         "train on")
    note = (f"skip_bad: validated {len(pairs)} pairs in {time.perf_counter() - started:.1f} s: "
            f"{len(good)} usable, {len(bad)} dropped")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "data": str(data_dir), "split": split,
                                   "usable": [p.key for p in good]}) + "\n", encoding="utf-8")
        tmp.replace(path)
        note += f"; list kept in {path} (a resumed run reads it instead of decoding every pair)"
    return good, note


def count_examples(config, data_dir=None, split="train", skip_bad=False, skip_bad_cache=None,
                   num_examples=None) -> tuple[int | None, str | None]:
    """(examples in one pass over `split`, a note or None) without reading any example where it can
    (with skip_bad: validating once, see `usable_pairs`). None for a TFDS folder with skip_bad
    (count it by iterating)."""
    if data_dir is None:
        size = num_examples or getattr(config, "synthetic_size", None) or SYNTHETIC_SIZE
        return (size if split == "train" else max(size // 8, 1)), None
    version_dir = tfds_version_dir(data_dir)
    if version_dir is not None:
        if skip_bad:
            return None, None
        import tensorflow_datasets as tfds

        splits = tfds.builder_from_directory(str(version_dir)).info.splits
        if split not in splits:
            raise SpadeError(f"{version_dir}: TFDS dataset has splits {sorted(splits)}, not '{split}'")
        return splits[split].num_examples, None
    if skip_bad:
        pairs, note = usable_pairs(config, data_dir, split, skip_bad_cache)
        return len(pairs), note
    return len(list_pairs(config, data_dir, split)), None


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

    def check(example):
        raw = tf.cast(example["label"][..., 0], tf.int32)
        valid = tf.reduce_all(labels.valid_tf(raw, config))
        same_size = tf.reduce_all(tf.equal(tf.shape(raw), tf.shape(example["image"])[:2]))
        return valid, same_size, raw

    def convert(example):
        valid, same_size, raw = check(example)
        if not skip_bad:  # the label-id rule's message, naming the example's file
            source = tf.strings.join([str(data_dir), "/", example["file_name"]])
            with tf.control_dependencies([
                    labels.assert_ids_tf(raw, config, source, prefix=_MARK),
                    tf.debugging.Assert(same_size, [
                        f"{_MARK}{data_dir}: bad pair", example["file_name"], "- label/photo size mismatch"],
                        summarize=1)]):
                raw = tf.identity(raw)
        out = {"image": example["image"], "label": labels.to_channels_tf(raw, config)}
        if config.use_instance_edges:
            out["instance"] = tf.cast(example["instance"][..., 0], tf.int32)
        return out

    if skip_bad:
        def keep(example):
            valid, same_size, _ = check(example)
            ok = valid & same_size
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
