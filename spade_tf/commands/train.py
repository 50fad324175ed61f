"""`spade train`: train GauGAN with `model.fit`; resumes automatically from its output folder."""

from __future__ import annotations

import argparse

from spade_tf.commands._options import add_overrides, add_preset, config_from

EXAMPLES = """examples:
  # a few minutes on a CPU: the tiny preset on the embedded synthetic dataset
  spade train --preset tiny --out runs/tiny --steps 300

  # your folders (see `spade data --help`), official hyper-parameters, 4 images per step
  spade train --preset custom --data my_dataset/ --out runs/mine --set label_nc=20 --set batchSize=4

  # the official perceptual loss needs VGG19 weights; offline, use the LPIPS AlexNet backbone
  spade train --preset ade20k --data ADEChallengeData2016/ --out runs/ade \\
      --vgg-weights ~/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
  spade train --preset facades --data facades/ --out runs/facades --set perceptual_backbone=alexnet

  # the same training on Keras's JAX backend (model.fit, jitted stateless step, .npz checkpoints)
  spade train --backend jax --preset tiny --out runs/tiny_jax --steps 300

  # fine-tune an official generator (`spade convert` output) with a fresh discriminator
  spade train --preset cocostuff --data coco/ --out runs/coco_ft --init-generator converted/coco

Re-running the same command continues from the newest checkpoint in OUT_DIR ("resumed from step
N"); --steps/--epochs are totals. A GPU machine with several GPUs uses all of them
(MirroredStrategy); with TF_CONFIG set, every worker runs the same command (MultiWorkerMirrored).
On --backend jax, several local devices are used through keras.distribution.DataParallel (not
verified yet: see README).

OUT_DIR receives: generator.keras (+ encoder.keras), config.json, metrics.csv, samples/*.png,
logs/ (TensorBoard: `tensorboard --logdir OUT_DIR/logs`) and checkpoints/.
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train GauGAN (model.fit), resuming from OUT_DIR",
        description="Train SPADE/GauGAN as the official train.py: TTUR Adam, hinge GAN + feature "
                    "matching + perceptual (+ KL) losses, official learning-rate schedule.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_preset(p, required=True)
    p.add_argument("--data", default=None, help="dataset folder (default: the embedded synthetic dataset)")
    p.add_argument("--out", required=True, help="output folder (also where training resumes from)")
    add_overrides(p, "override a config value, e.g. --set batchSize=4 --set lambda_vgg=0 (repeatable)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="train until this many steps in total")
    length.add_argument("--epochs", type=int, default=None,
                        help="train until this many epochs in total (default: niter + niter_decay)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="steps per epoch (default: one pass over the training set)")
    p.add_argument("--save-every", type=int, default=500, metavar="K",
                   help="checkpoint every K steps; a crash loses at most K steps (default 500)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="checkpoints kept (default 3)")
    p.add_argument("--vgg-weights", "--perceptual-weights", dest="perceptual_weights", default=None,
                   metavar="PATH", help="Keras VGG19 (no top) weights .h5 for the VGG loss; with "
                   "perceptual_backbone=alexnet, the lpips_alex_v0.1.npz")
    p.add_argument("--no-download", action="store_true", help="never try to download VGG19 weights")
    p.add_argument("--mixed-precision", default="auto",
                   choices=("auto", "none", "mixed_float16", "mixed_bfloat16"),
                   help="auto: none on a CPU (measured fastest, see docs); mixed_float16 on a GPU "
                        "(the usual choice there; not measured on a GPU by this project)")
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the train step (default: yes; measured fastest on the CPU, "
                        "not yet on a GPU; at the price of a slower first step while it compiles)")
    p.add_argument("--run-eagerly", action="store_true",
                   help="no tf.function (debugging; also starts faster for a handful of steps)")
    p.add_argument("--init-generator", default=None, metavar="DIR",
                   help="start from a converted (spade convert) or official checkpoint folder")
    p.add_argument("--distribute", default="auto", choices=("auto", "none", "mirrored", "multiworker"),
                   help="auto: multi-worker with TF_CONFIG, all GPUs when there are several; on JAX: "
                        "auto/mirrored = DataParallel over the local devices when there are several")
    p.add_argument("--backend", choices=("tensorflow", "jax"), default=None,
                   help="Keras backend to train on (default: $KERAS_BACKEND, else tensorflow); jax: "
                        "model.fit with the stateless jitted step, float32, .npz checkpoints, "
                        "DataParallel over several local devices; data still comes through tf.data")
    p.add_argument("--log-every", type=int, default=50, help="metrics.csv / TensorBoard every N steps")
    p.add_argument("--sample-every", type=int, default=500, help="sample grid PNG every N steps")
    p.add_argument("--seed", type=int, default=0, help="data order and noise seed")
    p.add_argument("--skip-bad", action="store_true",
                   help="drop unreadable or invalid pairs (and say how many) instead of stopping")
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2),
                   help="Keras progress: 1 bar, 2 one line per epoch, 0 silent")


def resolve_defaults(mixed_precision: str, jit_compile, run_eagerly: bool = False):
    """'auto' choices: CPU fp32 + XLA (measured fastest, docs/benchmarks.md); GPU fp16 + XLA (not measured).
    On the JAX backend: fp32 (the only precision trained there) + jit.

    On the 2-core CPU, XLA makes an ADE20K-size training step 0.82x the `tf.function` time
    (facades 256²: 0.83x; the tiny preset: 0.94x at batch 4 but 1.19x at batch 1); it compiles
    for 40-60 s on the first step.
    """
    import keras

    if keras.backend.backend() == "jax":
        return ("none" if mixed_precision == "auto" else mixed_precision), (
            not run_eagerly if jit_compile is None else jit_compile)
    import tensorflow as tf

    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    if mixed_precision == "auto":
        mixed_precision = "mixed_float16" if on_gpu else "none"
    if jit_compile is None:
        jit_compile = not run_eagerly  # an eager step cannot be compiled
    return mixed_precision, jit_compile


def run(args) -> int:
    if getattr(args, "backend", None):
        from spade_tf.commands.synthesize import _select_backend

        _select_backend(args.backend, "train")  # before anything imports keras
    from spade_tf.training.runner import train

    config = config_from(args)
    mixed_precision, jit_compile = resolve_defaults(args.mixed_precision, args.jit_compile, args.run_eagerly)
    result = train(config, args.out, data_dir=args.data, steps=args.steps, epochs=args.epochs,
                   steps_per_epoch=args.steps_per_epoch, save_every=args.save_every,
                   keep_checkpoints=args.keep_checkpoints, perceptual_weights=args.perceptual_weights,
                   allow_download=not args.no_download, mixed_precision=mixed_precision,
                   jit_compile=jit_compile, run_eagerly=args.run_eagerly, init_generator=args.init_generator,
                   distribute=args.distribute,
                   log_every=args.log_every, sample_every=args.sample_every, seed=args.seed,
                   verbose="auto" if args.verbose is None else args.verbose, skip_bad=args.skip_bad)
    print(f"output folder: {result.out_dir}")
    return 0
