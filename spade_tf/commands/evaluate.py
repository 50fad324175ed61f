"""`spade evaluate`: FID/KID between image folders, or synthesize from a dataset and evaluate."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """examples:
  # standard FID/KID with pytorch-fid's Inception (fetched once into ~/.keras/models, SHA-256 checked)
  spade evaluate --real data/val_img --fake results/
  # ... or with the file you downloaded yourself (or $SPADE_INCEPTION_WEIGHTS)
  spade evaluate --real data/val_img --fake results/ --inception-weights pt_inception-2015-12-05-6726825d.pth

  # no Inception weights: the same distances on AlexNet features (reported as fd_alexnet/kid_alexnet)
  spade evaluate --real data/val_img --fake results/ --features alexnet

  # synthesize from the validation label maps of a dataset and evaluate in one go,
  # with segmentation accuracy from a small segmenter trained on the real pairs (cached)
  spade evaluate --model runs/facades --preset facades --data facades/ --split train \\
      --features alexnet --segmenter builtin --max-images 100

  # a VAE model: also LPIPS diversity over 5 samples for each of 16 label maps
  spade evaluate --model runs/mine --data my_dataset/ --features alexnet --diversity 5

Prints one JSON object on stdout (progress bars go to stderr). Real-image features are cached by
content hash in ~/.cache/spade_tf/fid_stats (--cache-dir, --no-cache). FID from fewer than 2048
images is biased upwards; compare numbers only at equal image counts. KID is unbiased.
"""

# CLI names (a value starting with "-" would read as an option) -> segmentation.INPUT_RANGES keys
INPUT_RANGES = {"minus1-1": "-1,1", "0-1": "0,1", "0-255": "0,255"}


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="FID/KID, segmentation accuracy, LPIPS diversity",
        description="Compare generated images with real ones: Fréchet distance and KID on the standard FID "
                    "Inception features (or AlexNet features), and for a model: segmentation accuracy "
                    "of its outputs and multimodal LPIPS diversity.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("what to compare (either --real and --fake, or --model)")
    src.add_argument("--real", metavar="DIR", help="folder of real images")
    src.add_argument("--fake", metavar="DIR", help="folder of generated images")
    src.add_argument("--model", metavar="MODEL",
                     help="generator.keras or a `spade train`/`spade convert` folder")
    src.add_argument("--preset", default=None, help="dataset layout of --data (default: the model's config)")
    src.add_argument("--data", metavar="DIR", default=None,
                     help="dataset folder for --model (default: the embedded synthetic dataset)")
    src.add_argument("--split", default="val", help="dataset split to synthesize from (default val)")
    src.add_argument("--max-images", type=int, default=None, metavar="N", help="use at most N label maps")
    feats = p.add_argument_group("features")
    feats.add_argument("--features", choices=("inception", "alexnet"), default="inception",
                       help="inception: standard FID (pytorch-fid weights, fetched or --inception-weights); "
                            "alexnet: fd_alexnet/kid_alexnet")
    feats.add_argument("--inception-weights", metavar="PATH",
                       help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: "
                            "$SPADE_INCEPTION_WEIGHTS, the cache, or fetched from pytorch-fid's release)")
    feats.add_argument("--alexnet-weights", metavar="PATH",
                       help="lpips_alex_v0.1.npz (default: $SPADE_ALEXNET_WEIGHTS, the cache, or made from "
                            "the published torchvision/LPIPS files)")
    feats.add_argument("--kid-subsets", type=int, default=100, metavar="N", help="KID subsets (default 100)")
    feats.add_argument("--kid-subset-size", type=int, default=1000, metavar="M",
                       help="images per KID subset, capped at the smaller set (default 1000)")
    feats.add_argument("--fd-method", choices=("auto", "sqrtm", "low_rank"), default="auto",
                       help="sqrtm: pytorch-fid's computation; low_rank: exact, fast when images < feature "
                            "dims; auto (default): low_rank only then")
    feats.add_argument("--batch-size", type=int, default=16)
    feats.add_argument("--cache-dir", metavar="DIR",
                       help="feature cache (default ~/.cache/spade_tf/fid_stats)")
    feats.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    extra = p.add_argument_group("with --model")
    extra.add_argument("--segmenter", metavar="PATH|builtin",
                       help="segmentation accuracy of the outputs: a .keras file or SavedModel directory "
                            "(images -> [B,H,W,C] logits or [B,H,W] ids), or 'builtin'")
    extra.add_argument("--segmenter-input-range", choices=tuple(INPUT_RANGES), default="minus1-1",
                       help="pixel range the --segmenter network expects (default minus1-1 = [-1, 1])")
    extra.add_argument("--segmenter-steps", type=int, default=2000,
                       help="training steps of the builtin segmenter (default 2000)")
    extra.add_argument("--segmenter-cache", metavar="DIR",
                       help="where builtin segmenters are kept (default ~/.cache/spade_tf/segmenters)")
    extra.add_argument("--diversity", type=int, default=0, metavar="K",
                       help="LPIPS diversity: K samples per label map (VAE models)")
    extra.add_argument("--diversity-maps", type=int, default=16, metavar="N",
                       help="label maps for --diversity (default 16)")
    p.add_argument("--seed", type=int, default=0, help="KID subsets, z and segmenter seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from spade_tf.errors import SpadeError

    folders = args.real is not None or args.fake is not None
    if folders == (args.model is not None):
        raise SpadeError("give either --real DIR and --fake DIR, or --model MODEL "
                         "(see spade evaluate --help)")
    if folders:
        if not (args.real and args.fake):
            raise SpadeError("--real and --fake go together")
        for flag in ("segmenter", "diversity", "max_images", "data", "preset", "segmenter_cache"):
            if getattr(args, flag):
                raise SpadeError(f"--{flag.replace('_', '-')} needs --model")
    if args.inception_weights and args.features != "inception":
        raise SpadeError("--inception-weights is for --features inception; leave one of them out")

    from spade_tf.evaluation.run import evaluate_folders, evaluate_model

    common = dict(features=args.features, inception_weights=args.inception_weights,
                  alexnet_weights=args.alexnet_weights, kid_subsets=args.kid_subsets,
                  kid_subset_size=args.kid_subset_size, batch_size=args.batch_size,
                  progress=not args.no_progress, seed=args.seed, fd_method=args.fd_method)
    if folders:
        result = evaluate_folders(args.real, args.fake, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                                  **common)
    else:
        result = evaluate_model(args.model, args.data, args.preset, args.split, max_images=args.max_images,
                                segmenter=args.segmenter,
                                segmenter_input_range=INPUT_RANGES[args.segmenter_input_range],
                                segmenter_steps=args.segmenter_steps,
                                segmenter_cache_dir=args.segmenter_cache, diversity_k=args.diversity,
                                diversity_maps=args.diversity_maps, **common)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0
