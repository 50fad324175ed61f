"""`spade synthesize`: label maps (class-id PNGs) → photos."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  # one label map, one image
  spade synthesize --model runs/ade20k --labels street.png --out results/

  # a folder (searched recursively) of thousands of label maps, batches of 8, progress bar
  spade synthesize --model converted/ade20k/generator.keras --labels val_label/ --out results/ \\
      --batch-size 8

  # VAE model: 4 different styles per label map (sample k uses seed S+k, the same z for every
  # label map), or the style of a photo (the encoder's mean; with --seed, a sample around it)
  spade synthesize --model runs/vae --labels maps/ --out results/ --num-samples 4 --seed 10
  spade synthesize --model runs/vae --labels maps/ --out results/ --style beach.jpg

  # COCO-Stuff / Cityscapes (instance edges): instance maps with the same relative names
  spade synthesize --model converted/coco --labels val_label/ --instances val_inst/ --out results/

  # the generator on Keras's JAX backend (jax.jit) instead of TensorFlow (same images)
  spade synthesize --model converted/ade20k --labels val_label/ --out results/ --backend jax

  # bfloat16 arithmetic on a CPU with AVX512_BF16 / AMX (figures: docs/benchmarks.md)
  spade synthesize --model converted/ade20k --labels val_label/ --out results/ --precision bf16

Label maps hold class ids 0 .. num_label_channels-1 (label_nc, + 1 with a don't-care label; e.g.
0..150 for ADE20K) and 255 (= don't care, for models trained with it), one channel (PNG mode L,
P or I); any other id stops with the file named (or is skipped with --skip-bad). Maps of another
size are resized to the model size, nearest neighbour. Models with instance edges use edges of
--instances when given, else no edges (all zero). Output: OUT/<relative name>.png, or
OUT/<name>_<k>.png with --num-samples > 1.
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synthesize", help="label maps → images with a trained or converted generator",
        description="Generate photos from label maps (class-id PNGs).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--model", required=True,
                   help="generator .keras file, or a folder with generator.keras "
                        "(+ config.json, encoder.keras)")
    p.add_argument("--labels", required=True, help="a label PNG or a folder of them (recursive)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--instances", default=None,
                   help="instance-id PNG or folder (same relative names as --labels); models with "
                        "instance edges only")
    p.add_argument("--seed", type=int, default=None,
                   help="z seed for VAE models (default 0; with --style: the encoder's mean unless given)")
    p.add_argument("--num-samples", type=int, default=1, help="images per label map (VAE models)")
    p.add_argument("--style", default=None, help="style image for VAE models (needs encoder.keras)")
    p.add_argument("--batch-size", type=int, default=4, help="label maps per generator call (default 4)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report unreadable/invalid label maps and go on (default: stop at the first)")
    p.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                   help="Keras backend for the generator (default: $KERAS_BACKEND, else tensorflow); "
                        "jax compiles it with jax.jit, torch runs it eagerly")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="generator arithmetic (default float32); bf16 = Keras mixed_bfloat16, only on a "
                        "CPU with native bf16 (AVX512_BF16 / AMX; refused elsewhere), images close to "
                        "float32 (PSNR in docs/benchmarks.md), faster")
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the generator (default: yes, no with --precision bf16, where XLA's "
                        "CPU code is slower than oneDNN's; faster per image after a compile of "
                        "a few seconds per batch shape; --no-jit-compile for a handful of maps)")
    return p


def run(args) -> int:
    from spade_tf.errors import SpadeError

    if args.batch_size < 1 or args.num_samples < 1:
        raise SpadeError("--batch-size and --num-samples must be >= 1")
    if args.backend:
        _select_backend(args.backend)
    from spade_tf.inference import synthesize_files

    model = args.model
    if args.jit_compile is None:  # bf16: oneDNN (AMX / AVX512_BF16) kernels, not XLA's
        args.jit_compile = getattr(args, "precision", "float32") != "bf16"
    if getattr(args, "precision", "float32") != "float32":
        from spade_tf import precision
        from spade_tf.inference import load_generator

        precision.check_precision(args.precision)  # before loading: the CPU check is instant
        model = precision.with_precision(load_generator(args.model), args.precision)
    report = synthesize_files(
        model, args.labels, args.out, instances=args.instances, seed=args.seed,
        num_samples=args.num_samples, style=args.style, batch_size=args.batch_size,
        skip_bad=args.skip_bad, progress=True, jit_compile=args.jit_compile)
    resized = ""
    if report["resized"]:
        resized = f" ({report['resized']} label maps resized to {report['size']}, nearest)"
    skipped = f"; skipped {len(report['bad'])} bad files" if report["bad"] else ""
    import keras

    name = keras.backend.backend()
    backend = "" if name == "tensorflow" else f" (Keras backend: {name})"
    print(f"wrote {report['written']} images to {args.out}{resized}{skipped}{backend}")
    for path, why in report["bad"][:20]:
        print(f"  skipped {path}: {why}")
    return 1 if report["bad"] else 0


def _select_backend(backend: str, command: str = "synthesize") -> None:
    """Keras reads KERAS_BACKEND once, when it is first imported: set it before that happens."""
    import os
    import sys

    from spade_tf.errors import SpadeError

    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise SpadeError(f"--backend {backend}: Keras was already imported in this process with the "
                             f"{current} backend; run `spade {command}` in a fresh process (or set "
                             f"KERAS_BACKEND={backend} before starting Python)")
        return
    os.environ["KERAS_BACKEND"] = backend
