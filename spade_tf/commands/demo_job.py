"""`spade demo-job` (what `make demo` runs): train, export, synthesize, say where everything is.

Trains the `tiny` preset on the embedded synthetic landscapes for a few minutes (2 CPU cores are
enough), exports the generator (SavedModel and TFLite, when the export module is installed),
synthesizes held-out label maps and writes a side-by-side grid to look at.
"""

from __future__ import annotations

import argparse
import time

from spade_tf.commands._options import add_overrides, config_from

EXAMPLES = """examples:
  spade demo-job --out demo_out                 # about 6 minutes on 2 CPU cores
  spade demo-job --out demo_out --minutes 15    # longer training, better pictures
  spade demo-job --out demo_out --steps 50      # a quick smoke run

Re-running continues the training in OUT/train (it resumes from its checkpoints).
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo-job", help="train the tiny model on built-in data, export it, synthesize (make demo)",
        description="End-to-end demo on the embedded synthetic dataset: no downloads.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget (default 5)")
    p.add_argument("--steps", type=int, default=100_000, help="training steps at most (default: time-bound)")
    p.add_argument("--samples", type=int, default=8, help="held-out label maps to synthesize (default 8)")
    add_overrides(p, "override a tiny-preset value")
    return p


def _write_labels(config, folder, n):
    """Held-out synthetic label maps (the data module's validation scenes) as class-id PNGs."""
    import numpy as np
    from PIL import Image

    from spade_tf.data import build_dataset

    folder.mkdir(parents=True, exist_ok=True)
    labels, photos = [], []
    for element in build_dataset(config, None, split="val", batch_size=n, shuffle=False).take(1):
        labels, photos = element["label_map"].numpy(), element["image"].numpy()
    for i, label in enumerate(labels):
        Image.fromarray(label.astype(np.uint8), mode="L").save(folder / f"scene_{i:02d}.png")
    return labels, photos


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from spade_tf.data.images import to_uint8
    from spade_tf.training.callbacks import colorize_labels, sample_grid
    from spade_tf.training.runner import train

    out = Path(args.out)
    config = config_from(args, "tiny")
    t0 = time.perf_counter()
    print(f"[1/3] training the 'tiny' preset on the synthetic landscapes for up to {args.minutes:g} min "
          f"-> {out / 'train'}", flush=True)
    result = train(config, out / "train", steps=args.steps, save_every=100, log_every=20, sample_every=100,
                   max_seconds=args.minutes * 60, verbose=2, distribute="none")
    print(f"      trained to step {result.final_step} in {time.perf_counter() - t0:.0f} s", flush=True)

    exported, failures = {}, []
    from spade_tf.export import export_model

    print(f"[2/3] exporting -> {out / 'export'}", flush=True)
    for fmt in ("saved_model", "tflite"):
        try:
            report = export_model(str(out / "train"), fmt, out / "export", overwrite=True)
        except Exception as e:  # report, go on with the demo, fail at the end
            failures.append(f"export {fmt}: {type(e).__name__}: {e}")
            print(f"      {fmt}: FAILED ({type(e).__name__}: {e})", flush=True)
            continue
        exported[fmt] = report["path"]
        check = report.get("check", {})
        err = check.get("max_abs", float("nan"))
        print(f"      {fmt}: {report['path']} (max |error| vs Keras {err:.2e})", flush=True)

    print(f"[3/3] synthesizing {args.samples} held-out label maps -> {out / 'synthesized'}", flush=True)
    from spade_tf.inference import load_generator, synthesize_files

    labels, photos = _write_labels(config, out / "labels", args.samples)
    model = load_generator(out / "train")
    synthesize_files(model, out / "labels", out / "synthesized")
    fakes = np.stack([np.asarray(Image.open(out / "synthesized" / f"scene_{i:02d}.png"))
                      for i in range(len(labels))])
    grid = sample_grid(colorize_labels(labels, config), fakes, np.asarray(to_uint8(photos)))
    grid_path = out / "demo_grid.png"
    Image.fromarray(grid).save(grid_path)

    print("\nwhere things are:")
    print(f"  side by side (labels | synthesized | real): {grid_path}")
    print(f"  synthesized images:   {out / 'synthesized'}/   (from the label maps in {out / 'labels'}/)")
    print(f"  trained generator:    {result.generator_path}   (+ config.json; `spade synthesize --model "
          f"{out / 'train'} ...`)")
    for fmt, path in exported.items():
        print(f"  exported {fmt + ':':<13} {path}")
    print(f"  training samples:     {out / 'train' / 'samples'}/   metrics: {out / 'train' / 'metrics.csv'}")
    print(f"  TensorBoard:          tensorboard --logdir {out / 'train' / 'logs'}")
    if failures:
        print("\nsome steps failed:\n  " + "\n  ".join(failures))
        return 1
    return 0
