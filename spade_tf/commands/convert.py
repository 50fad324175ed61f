"""`spade convert`: official PyTorch checkpoint folder → Keras generator (+ encoder)."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  # an official release folder: checkpoints/coco_pretrained/{opt.txt,latest_net_G.pth}
  spade convert checkpoints/coco_pretrained --out converted/coco
  spade synthesize --model converted/coco --labels my_labels/ --out photos/

  # a specific epoch of your own official run
  spade convert checkpoints/my_run --which-epoch 50 --out converted/my_run_50

Reading .pth needs no PyTorch and runs no pickled code: only tensor data is accepted.
.npz state dicts (`latest_net_G.npz`) are read too.
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert", help="import an official SPADE/GauGAN checkpoint",
        description="Convert an official SPADE checkpoint folder (opt.txt + latest_net_G.pth "
                    "[+ latest_net_E.pth, latest_net_D.pth]) into OUT/generator.keras "
                    "(+ encoder.keras, discriminator.keras) and OUT/config.json.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint_dir", help="official checkpoint folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--which-epoch", default="latest", help="epoch prefix of the files (default: latest)")
    return p


def run(args) -> int:
    from spade_tf.convert.official import convert_checkpoint

    written = convert_checkpoint(args.checkpoint_dir, args.out, args.which_epoch)
    for what, path in written.items():
        print(f"{what:>14}: {path}")
    return 0
