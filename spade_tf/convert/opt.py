"""Read the official SPADE `opt.txt` and turn it into an `SPADEConfig`.

The official `BaseOptions.save_options` writes one option per line as
`'{:>25}: {:<30}{}'.format(key, value, comment)`, where the comment is `'\\t[default: X]'` when
the value differs from the parser default. `print_options` prints the same lines between
`----------------- Options ---------------` and `----------------- End -------------------`,
so a copy of the console block parses too. Values are `str(v)` of Python objects, so they are
typed back here: `True`/`False`, `None`, ints, floats, else strings.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from spade_tf.config import SPADEConfig
from spade_tf.errors import SpadeError

OptValue = str | int | float | bool | None

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*): ?(.*)$")
_DEFAULT_COMMENT = "\t[default: "
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$")

# Options copied onto SPADEConfig fields of the same name. The generator's (and encoder's)
# weight layout depends on REQUIRED (and z_dim with use_vae); the rest fall back to the official
# parser defaults, which are SPADEConfig's defaults (a test-time options dump has no D or
# training options).
# REQUIRED: SPADEConfig.ARCHITECTURE_KEYS less z_dim (required with use_vae only), netG (checked by
# _ONLY_SUPPORTED) and the keys that are ours, not official options.
REQUIRED = tuple(k for k in SPADEConfig.ARCHITECTURE_KEYS
                 if k not in ("z_dim", "netG", *SPADEConfig.OUR_ARCHITECTURE_KEYS))
OPTIONAL = ("z_dim", "name", "dataset_mode", "load_size", "preprocess_mode", "no_flip", "init_type",
            "init_variance", "ndf", "num_D", "n_layers_D", "norm_D", "norm_E", "gan_mode", "lambda_feat",
            "lambda_vgg", "lambda_kld", "batchSize", "lr", "beta1", "beta2", "no_TTUR", "niter",
            "niter_decay", "D_steps_per_G")
# Official options whose other values select code we do not have.
_ONLY_SUPPORTED = {"netG": "spade", "netD": "multiscale", "netD_subarch": "n_layer", "model": "pix2pix"}


def parse_value(text: str) -> OptValue:
    """`str(v)` of an option value back to a Python value."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def parse_opt_txt(path: str | Path) -> dict[str, OptValue]:
    """Read an official `opt.txt` (or the printed options block) into {option: typed value}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpadeError(f"{path}: options file not found (the official code writes "
                         "checkpoints/<name>/opt.txt)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpadeError(f"{path}: cannot read options file ({e})") from None
    options: dict[str, OptValue] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("-----------------"):
            continue  # blank, or the header/footer of the printed block
        match = _LINE.match(line)
        if match is None:
            raise SpadeError(f"{path}, line {number}: cannot read {line!r}; expected '<option>: <value>' "
                             "as written by the official SPADE options")
        key, rest = match.groups()
        if _DEFAULT_COMMENT in rest:
            rest, comment = rest.split(_DEFAULT_COMMENT, 1)
            if not comment.endswith("]"):
                raise SpadeError(f"{path}, line {number}: cannot read {line!r}; the '[default: ...]' "
                                 "comment is not closed")
        if key in options:
            raise SpadeError(f"{path}, line {number}: option '{key}' appears twice")
        options[key] = parse_value(rest.rstrip(" "))
    if not options:
        raise SpadeError(f"{path}: no options found; expected the official SPADE opt.txt")
    return options


def config_from_opt(opt: dict[str, OptValue], source: str = "opt.txt") -> SPADEConfig:
    """Map official options onto an `SPADEConfig`; refuse what this port cannot represent.

    `no_vgg_loss` / `no_ganFeat_loss` become `lambda_vgg=0` / `lambda_feat=0`, as they switch
    those losses off in the official code. `source` names the file in error messages.
    """
    for key, supported in _ONLY_SUPPORTED.items():
        if key in opt and opt[key] != supported:
            raise SpadeError(f"{source}: option '{key}' is '{opt[key]}'; only '{supported}' is supported "
                             "(this port implements the SPADE generator and multiscale discriminator)")
    missing = [key for key in REQUIRED + (("z_dim",) if opt.get("use_vae") else ()) if key not in opt]
    if missing:
        raise SpadeError(f"{source}: required option(s) {missing} missing; they define the network "
                         "weights. Use the opt.txt saved next to the checkpoint")
    types = {f.name: f.type for f in dataclasses.fields(SPADEConfig)}
    values = {key: _typed(source, key, opt[key], types[key]) for key in REQUIRED + OPTIONAL if key in opt}
    for flag, weight in (("no_vgg_loss", "lambda_vgg"), ("no_ganFeat_loss", "lambda_feat")):
        if flag in opt and _typed(source, flag, opt[flag], "bool"):
            values[weight] = 0.0
    try:
        config = SPADEConfig.from_dict(values, source=source)
    except SpadeError as e:
        raise SpadeError(f"{source}: {e}") from None
    if "semantic_nc" in opt and opt["semantic_nc"] != config.semantic_nc:
        raise SpadeError(f"{source}: option 'semantic_nc' is {opt['semantic_nc']}, but label_nc, "
                         f"contain_dontcare_label and no_instance give {config.semantic_nc}")
    return config


def _typed(source: str, key: str, value: OptValue, type_name: str) -> OptValue:
    if type_name == "str":
        if value is None:
            raise SpadeError(f"{source}: option '{key}' is None; expected a string")
        return str(value)  # e.g. a run named '2019' parses as an int
    if type_name == "bool":
        ok = isinstance(value, bool)
    elif type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_name == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:  # a field type this mapping does not know: a bug here, not the user's
        raise AssertionError(f"unhandled config field type {type_name} for '{key}'")
    if not ok:
        raise SpadeError(f"{source}: option '{key}' is {value!r}; expected {type_name}")
    return value
