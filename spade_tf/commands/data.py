"""`spade data validate|inspect`: check a dataset before training, look at what the pipeline yields."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spade_tf.commands._options import add_overrides, add_preset, config_from

EXAMPLES = """examples:
  # check every pair (exit status 1 and a list of bad files, grouped by problem, if any)
  spade data validate --preset facades --data facades
  spade data validate --preset cocostuff --data coco/ --split val

  # counts, class histogram and pipeline throughput (images/s)
  spade data inspect --preset tiny                      # the embedded synthetic dataset
  spade data inspect --preset facades --data facades --batches 50 --set batchSize=8

  # TFRecords via TFDS (then --data the printed folder in train/inspect)
  spade data build-tfds --config facades --manual-dir facades --data-dir ~/tensorflow_datasets

Layouts (see spade_tf/data/layouts.py): ade20k = ADEChallengeData2016/, cocostuff =
{train,val}_{img,label,inst}/, cityscapes = leftImg8bit/ + gtFine/, facades and custom =
{split}/images + {split}/labels [+ instances] (or images/ + labels/), or a TFDS-built folder.
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data", help="validate or inspect a dataset",
        description="Validate every photo/label pair of a dataset, or inspect counts, classes and "
                    "pipeline throughput.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="{validate,inspect,build-tfds}")
    for name, text in (("validate", "check every pair; non-zero exit listing all bad files"),
                       ("inspect", "counts, class histogram, pipeline throughput")):
        s = sub.add_parser(name, help=text, description=text, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_preset(s, required=True)
        s.add_argument("--data", default=None, required=name == "validate",
                       help="dataset folder" + (" (default: the embedded synthetic dataset)"
                                                if name == "inspect" else ""))
        s.add_argument("--split", default="train", help="train or val (default: train)")
        add_overrides(s, "override a config value, e.g. --set label_nc=20 (repeatable)")
        s.add_argument("--workers", type=int, default=8, help="reader threads (default 8)")
        if name == "inspect":
            s.add_argument("--batches", type=int, default=30,
                           help="batches timed for throughput (default 30)")
            s.add_argument("--limit", type=int, default=None,
                           help="only histogram the first N pairs (default: all)")
            s.add_argument("--cache", action="store_true", help="time with the decoded-pair cache on")
            s.add_argument("--top", type=int, default=20, help="classes shown in the histogram (default 20)")
            s.add_argument("--grid", default=None, metavar="PNG",
                           help="also save one batch as a PNG: photos over colourised labels (+ edges)")
    b = sub.add_parser("build-tfds", help="build a facades/custom folder into TFRecords (TFDS)",
                       description="Build images/ + labels/ [+ instances/] folders into a TFDS dataset "
                                   "(spade_folders/<config>); prints the folder to give as --data.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--config", default="custom", choices=("facades", "custom", "custom_instances"))
    b.add_argument("--manual-dir", required=True, help="the folder with {train,val}/images + labels")
    b.add_argument("--data-dir", default=str(Path.home() / "tensorflow_datasets"),
                   help="TFDS data dir (default ~/tensorflow_datasets)")
    return p


def _config(args):
    return config_from(args)


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pair", file=sys.stderr, disable=None)


def run(args) -> int:
    if not getattr(args, "data_command", None):
        print("spade data: choose a subcommand: validate, inspect or build-tfds (see spade data --help)",
              file=sys.stderr)
        return 2
    if args.data_command == "validate":
        return _validate(args)
    if args.data_command == "build-tfds":
        from spade_tf.data import tfds_builder

        print(tfds_builder.build(args.config, args.manual_dir, args.data_dir))
        return 0
    return _inspect(args)


def _validate(args) -> int:
    from spade_tf.data import layouts, validate

    config = _config(args)
    pairs, problems = layouts.find_pairs(config, args.data, args.split)
    with _progress(len(pairs), "checking") as bar:
        report = validate.check_pairs(pairs, config, args.workers, bar)
    report.problems = problems + report.problems
    print(f"{args.data} ({args.split}, preset {args.preset}): {len(pairs)} pairs found, "
          f"{report.good} good, {len(report.problems)} problem(s)")
    if report.ok:
        print("OK")
        return 0
    print(report.format_problems())
    first = next(iter(report.by_kind()))
    print(f"FAILED: first problem class: {first} (fix, or train with --skip-bad to drop these pairs)")
    return 1


def _inspect(args) -> int:
    import time

    import numpy as np

    from spade_tf.data import build_dataset, class_table, pipeline, validate

    config = _config(args)
    if args.data is None:
        from spade_tf.data import synthetic

        n = pipeline.SYNTHETIC_SIZE if args.split == "train" else pipeline.SYNTHETIC_SIZE // 8
        h, w = config.image_size
        _, labels, _ = synthetic.generate(n, h, w, pipeline.SYNTHETIC_SEED + (args.split != "train"))
        hist = np.bincount(labels.ravel(), minlength=config.num_label_channels)
        print(f"embedded synthetic dataset ({args.split}): {n} scenes of {w}x{h}")
        report = None
    elif pipeline.tfds_version_dir(args.data) is not None:  # a TFDS-built copy
        import tensorflow_datasets as tfds

        info = tfds.builder_from_directory(str(pipeline.tfds_version_dir(args.data))).info
        print(f"{args.data}: TFDS dataset {info.full_name}, splits "
              + ", ".join(f"{k} {v.num_examples}" for k, v in info.splits.items()))
        hist = np.zeros(config.num_label_channels, np.int64)
        report = None
    else:
        pairs = pipeline.list_pairs(config, args.data, args.split, skip_bad=True)
        with _progress(min(len(pairs), args.limit or len(pairs)), "reading") as bar:
            report = validate.check_pairs(pairs, config, args.workers, bar, args.limit)
        hist = report.histogram
        print(f"{args.data} ({args.split}): {len(pairs)} pairs, {report.good} read"
              + (f" (first {args.limit})" if args.limit else "") + f", {len(report.problems)} bad")
        common = report.sizes.most_common(3)
        print("sizes (WxH): " + ", ".join(f"{w}x{h} ({c})" for (w, h), c in common)
              + (f", ... {len(report.sizes)} distinct" if len(report.sizes) > 3 else ""))
    names = {i: name for i, name, _ in class_table(config)}
    total = max(int(hist.sum()), 1)
    present = int((hist > 0).sum())
    if hist.sum():
        print(f"classes present: {present} of {config.num_label_channels}; top {args.top} by pixels:")
    for i in np.argsort(-hist)[: args.top]:
        if hist[i] == 0:
            break
        print(f"  {i:>4}  {names.get(int(i), '?'):<24} {100 * hist[i] / total:6.2f} %")

    from tqdm import tqdm

    ds = build_dataset(config, args.data, split=args.split, repeat=True, skip_bad=True,
                       cache=args.cache)
    it = iter(ds)
    warmup = 1  # graph tracing, first files
    if args.cache and report is not None:  # fill the cache: one full epoch first
        warmup = -(-report.good // config.batchSize) + 1
    for _ in tqdm(range(warmup), desc="warm-up", unit="batch", file=sys.stderr, disable=None):
        next(it)
    start = time.perf_counter()
    for _ in tqdm(range(args.batches), desc="pipeline", unit="batch", file=sys.stderr, disable=None):
        next(it)
    seconds = time.perf_counter() - start
    images = args.batches * config.batchSize
    batch = next(it)
    h, w = batch["image"].shape[1:3]
    if args.grid:
        _save_grid(batch, config, args.grid)
        print(f"sample grid: {args.grid}")
    print(f"pipeline: {images / seconds:.1f} images/s ({args.batches} batches of {config.batchSize} at "
          f"{w}x{h}, {seconds:.2f} s, after {warmup} warm-up batch(es))")
    return 0


def _save_grid(batch, config, path) -> None:
    """Row 1: photos; row 2: labels in class colours, instance edges in white."""
    import numpy as np
    from PIL import Image

    from spade_tf.data import colorize
    from spade_tf.data.images import to_uint8

    photos = np.asarray(to_uint8(batch["image"]))
    labels = colorize(batch["label_map"].numpy(), config)
    if "instance_edges" in batch:
        labels[batch["instance_edges"].numpy()[..., 0] > 0] = 255
    grid = np.concatenate([np.concatenate(list(photos), 1), np.concatenate(list(labels), 1)], 0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
