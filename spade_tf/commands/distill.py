"""`spade distill`: a phone-sized SPADE-Lite generator distilled from a trained GauGAN; and the
cost counter behind `spade benchmark cost`."""

from __future__ import annotations

import argparse
import json

from spade_tf.commands._options import PRESET_NAMES, add_overrides, add_preset, config_from

EXAMPLES = """examples:
  # the tiny preset: a teacher from `spade train`, then a student a quarter as wide, separable convs
  spade train --preset tiny --out runs/tiny --steps 300
  spade distill --teacher runs/tiny --out runs/tiny_lite --width 0.25 --separable --steps 300

  # an imported official generator as the teacher (`spade convert` output), on its dataset
  spade distill --teacher converted/ade20k --data ADEChallengeData2016/ --out runs/ade_lite \\
      --width 0.5 --separable --vgg-weights vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5

  # then, as any generator: export an int8 TFLite file for phones (docs/mobile.md)
  spade export --model runs/ade_lite --format tflite --quantize int8 --representative-data maps/ --out exports

The student learns (a) the teacher's image for the same label map (L1 + the perceptual term),
(b) the teacher's intermediate features through learned 1x1 maps (GAN Compression), and (c) the
GAN + feature-matching losses against a discriminator initialised from the teacher's when the
teacher folder has one. Training is `spade train`'s: model.fit, automatic resume from OUT_DIR,
TensorBoard logs, samples/, metrics.csv, checkpoints/; OUT_DIR/generator.keras is the student.
`spade benchmark cost --model OUT_DIR` prints its MACs and parameters.
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "distill", help="distill a trained generator into a phone-sized SPADE-Lite student",
        description="Train a SPADE-Lite generator (channel widths scaled by --width, optionally "
                    "depthwise-separable convs) from a trained or converted GauGAN generator.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, metavar="DIR",
                   help="output folder of `spade train` / `spade convert`, or an official checkpoint folder")
    p.add_argument("--data", default=None, help="dataset folder (default: the embedded synthetic dataset)")
    p.add_argument("--out", required=True, help="output folder (also where training resumes from)")
    p.add_argument("--width", type=float, default=0.25, help="channel width factor in (0, 1] (default 0.25)")
    p.add_argument("--separable", action="store_true",
                   help="depthwise-separable 3x3 convs in the residual and SPADE branches")
    add_overrides(p, "override a config value of the student, e.g. --set batchSize=4 (repeatable)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="train until this many steps in total")
    length.add_argument("--epochs", type=int, default=None,
                        help="train until this many epochs in total (default: niter + niter_decay)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="steps per epoch (default: one pass over the training set)")
    p.add_argument("--lambda-l1", type=float, default=10.0, help="L1 to the teacher's image (default 10)")
    p.add_argument("--lambda-distill", type=float, default=10.0,
                   help="intermediate feature distillation (default 10; 0 turns it off)")
    p.add_argument("--fresh-discriminator", action="store_true",
                   help="do not initialise the discriminator from the teacher's")
    p.add_argument("--save-every", type=int, default=500, metavar="K", help="checkpoint every K steps")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="checkpoints kept (default 3)")
    p.add_argument("--vgg-weights", "--perceptual-weights", dest="perceptual_weights", default=None,
                   metavar="PATH", help="weights of the perceptual network (as `spade train`)")
    p.add_argument("--no-download", action="store_true", help="never try to download VGG19 weights")
    p.add_argument("--mixed-precision", default="auto",
                   choices=("auto", "none", "mixed_float16", "mixed_bfloat16"))
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the train step (default: yes)")
    p.add_argument("--run-eagerly", action="store_true", help="no tf.function (debugging)")
    p.add_argument("--distribute", default="auto", choices=("auto", "none", "mirrored", "multiworker"))
    p.add_argument("--log-every", type=int, default=50, help="metrics.csv / TensorBoard every N steps")
    p.add_argument("--sample-every", type=int, default=500, help="sample grid PNG every N steps")
    p.add_argument("--seed", type=int, default=0, help="data order and noise seed")
    p.add_argument("--skip-bad", action="store_true", help="drop unreadable or invalid pairs")
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2))
    return p


def run(args) -> int:
    from spade_tf.commands.train import resolve_defaults
    from spade_tf.training.distill import distill

    mixed_precision, jit_compile = resolve_defaults(args.mixed_precision, args.jit_compile, args.run_eagerly)
    result = distill(args.teacher, args.out, data_dir=args.data, width=args.width, separable=args.separable,
                     overrides=args.overrides, lambda_l1=args.lambda_l1, lambda_distill=args.lambda_distill,
                     init_discriminator=not args.fresh_discriminator, steps=args.steps, epochs=args.epochs,
                     steps_per_epoch=args.steps_per_epoch, save_every=args.save_every,
                     keep_checkpoints=args.keep_checkpoints, perceptual_weights=args.perceptual_weights,
                     allow_download=not args.no_download, mixed_precision=mixed_precision,
                     jit_compile=jit_compile, run_eagerly=args.run_eagerly, distribute=args.distribute,
                     log_every=args.log_every, sample_every=args.sample_every, seed=args.seed,
                     verbose="auto" if args.verbose is None else args.verbose, skip_bad=args.skip_bad)
    print(f"output folder: {result.out_dir}")
    return 0


# ---- spade benchmark cost ---------------------------------------------------------------------------
def add_cost_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, metavar="M",
                        help="a generator.keras file or model folder (spade train / convert / distill)")
    add_preset(source, help=f"configuration preset: {PRESET_NAMES} (default ade20k)")
    add_overrides(p, "override a config value of the preset (repeatable)")
    p.add_argument("--width", type=float, default=None,
                   help="also count the SPADE-Lite generator of this width (side by side)")
    p.add_argument("--separable", action="store_true", help="with --width: depthwise-separable convs")
    p.add_argument("--layers", action="store_true", help="list every counted layer")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")


def run_cost(args) -> int:
    from spade_tf.cost import count_cost, generator_cost, summary
    from spade_tf.errors import SpadeError

    if args.model is not None:
        from spade_tf.inference import load_generator

        model = load_generator(args.model)
        config = model.config
        first = count_cost(model.generator)
        first.update({"source": str(args.model), "image_size": list(config.image_size),
                      "semantic_nc": config.semantic_nc, "netG": config.netG, "width": config.width,
                      "separable": config.separable})
    else:
        config = config_from(args, args.preset or "ade20k")
        first = generator_cost(config)
        first["source"] = f"preset {args.preset or 'ade20k'}"
    rows = [first]
    if args.width is not None:
        if config.netG == "spade_lite":
            raise SpadeError("--width: the model is already a SPADE-Lite generator; give a full-size one")
        lite = generator_cost(config.replace(netG="spade_lite", width=args.width, separable=args.separable))
        sep = ", separable" if args.separable else ""
        lite["source"] = f"SPADE-Lite of the above (width {args.width}{sep})"
        rows.append(lite)
    out_rows = []
    for row in rows:
        out = summary(row)
        out["macs_ratio"] = round(rows[0]["macs"] / row["macs"], 3)
        out["params_ratio"] = round(rows[0]["params"] / row["params"], 3)
        if args.layers:
            out["layers"] = row["layers"]
        out_rows.append(out)
    report = {"definition": "MACs per image, batch 1: conv out.numel*kh*kw*cin/groups, dense out*in "
                            "(the official counting); params: trainable weights", "rows": out_rows}
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0
