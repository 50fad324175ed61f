"""The `spade` console command. Argument parsing only; the work happens in the library.

Each subcommand lives in `spade_tf/commands/<name>.py` with two functions:
`register(subparsers)` adds its parser (with `--help` examples) and `run(args) -> int`.
Command modules are imported lazily so `spade --help` stays fast.

Quiet by default: TensorFlow's C++ log lines (oneDNN and CPU-instruction notices, `cuInit` failures on
machines without a GPU, XLA service notices) and its Python warnings are switched off before
TensorFlow is imported, so only our messages, progress bars and real errors (exceptions) show.
`spade --verbose COMMAND ...` or `SPADE_VERBOSE=1` brings them back; a TF_CPP_MIN_LOG_LEVEL you set
yourself is left as it is.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from spade_tf.errors import SpadeError

VERBOSE_ENV = "SPADE_VERBOSE"
COMMANDS = ("convert", "data", "train", "distill", "synthesize", "export", "evaluate", "benchmark", "demo",
            "demo_job")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade",
        description="SPADE / GauGAN in TensorFlow 2 and Keras 3: label map in, photo out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `spade COMMAND --help` for each command's options and examples.\n"
               f"TensorFlow's own log lines are hidden; `spade --verbose COMMAND` or {VERBOSE_ENV}=1 "
               "shows them.",
    )
    parser.add_argument("--verbose", action="store_true",
                        help=f"show TensorFlow's C++ and Python log lines (also: {VERBOSE_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"spade_tf.commands.{name}")
        sub = module.register(subparsers)
        sub.set_defaults(func=module.run)
    return parser


def wants_verbose(argv: list[str]) -> bool:
    """`--verbose` before the subcommand (after it, `spade train --verbose N` is Keras's), or the env var."""
    for arg in argv:
        if arg == "--verbose":
            return True
        if not arg.startswith("-"):
            break
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


class _SilentTensorFlowImport:
    """Meta-path hook: the first `import tensorflow` runs with the process's stderr (fd 2) on /dev/null.

    TensorFlow 2.21 prints its import-time notices (oneDNN, CUDA stubs, CPU instructions, "All log
    messages before absl::InitializeLog()") through absl before TF_CPP_MIN_LOG_LEVEL applies; after
    the import, TF_CPP_MIN_LOG_LEVEL=3 silences the rest. An import error still surfaces as a Python
    exception once stderr is back.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _SilentLoader(spec.loader)
        return spec


class _SilentLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        try:
            self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def quiet_tensorflow() -> None:
    """Before TensorFlow is imported: only errors that stop us (raised as exceptions) reach the user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++: INFO/WARNING/ERROR lines off
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # Python: tf_logging (AutoGraph notices...)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        pass
    hooked = any(isinstance(f, _SilentTensorFlowImport) for f in sys.meta_path)
    if "tensorflow" not in sys.modules and not hooked:
        sys.meta_path.insert(0, _SilentTensorFlowImport())


def configure_logging(argv: list[str]) -> None:
    """Quiet TensorFlow (or, with --verbose / SPADE_VERBOSE=1, leave its logs on); before TF's import."""
    if wants_verbose(argv):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    else:
        quiet_tensorflow()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    configure_logging(argv)
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
