"""Thin entry point: `python export/export.py ARGS` is `spade export ARGS`."""

import sys

from spade_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
