"""The `spade` console command. Argument parsing only; the work happens in the library.

Each subcommand lives in `spade_tf/commands/<name>.py` with two functions:
`register(subparsers)` adds its parser (with `--help` examples) and `run(args) -> int`.
Command modules are imported lazily so `spade --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from spade_tf.errors import SpadeError

COMMANDS = ("convert", "data", "train", "distill", "synthesize", "export", "evaluate", "benchmark", "demo",
            "demo_job")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade",
        description="SPADE / GauGAN in TensorFlow 2 and Keras 3: label map in, photo out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `spade COMMAND --help` for each command's options and examples.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"spade_tf.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"spade_tf.commands.{name}":
                continue  # not built yet
            raise
        sub = module.register(subparsers)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpadeError as e:
        print(f"spade {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spade {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
