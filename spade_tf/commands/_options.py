"""Options several commands share: `--preset` and `--set KEY=VALUE`, and the config they make."""

from __future__ import annotations

import argparse

PRESET_NAMES = "ade20k, cocostuff, cityscapes, facades, custom, tiny"


def add_preset(parser, required: bool = False, default: str | None = None, help: str | None = None) -> None:
    """`--preset NAME` (see `spade_tf.config.PRESETS`)."""
    parser.add_argument("--preset", required=required, default=default,
                        help=help or f"configuration preset: {PRESET_NAMES}"
                        + (f" (default {default})" if default else ""))


def add_overrides(parser, help: str | None = None) -> None:
    """`--set KEY=VALUE` (repeatable) into `args.overrides`."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=help or "override a config value, e.g. --set crop_size=64 (repeatable)")


def config_from(args: argparse.Namespace, preset: str | None = None):
    """The SPADEConfig of `--preset` (or `preset` when the command fixes or defaults it) + `--set`s."""
    from spade_tf.config import get_preset

    return get_preset(preset or args.preset).with_overrides(args.overrides)
