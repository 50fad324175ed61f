"""The label-id rule, in one place: which values a label map may hold and what they become.

A model has `num_label_channels` one-hot channels for its label map: `label_nc` classes, plus a
don't-care channel (index `label_nc`) when `contain_dontcare_label`. A label map may hold

    0 .. num_label_channels-1    the channel index, used as stored
    255 (DONT_CARE)              only with `contain_dontcare_label`: becomes channel `label_nc`

and nothing else. ADE20K (label_nc=150 + don't care = 151 channels) therefore takes the stored ids
0..150 (150 is a class of the dataset and the don't-care channel, as in the official code) and
255; id 151 is refused.

Every path uses this module, so they all accept the same ids and refuse the others with the same
message (`message`): the data pipeline (`decode.check_label_values`, the TFDS source in
`pipeline.py`), `spade synthesize` / `SpadeModel` (`inference/model.py`), the SavedModel's in-graph
asserts and the TFLite / ONNX `label_ok` output (`export/saved_model.py`), and the web demo.

NumPy versions (`invalid_ids`, `check_ids`, `to_channels`, `check_label_ok` for the exported
graphs' flags) and TensorFlow graph versions
(`valid_tf`, `to_channels_tf`, `assert_ids_tf`); TensorFlow is imported only by the latter.
"""

from __future__ import annotations

import numpy as np

from spade_tf.errors import SpadeError

DONT_CARE = 255  # what datasets store for "unlabeled"
SHOWN = 10  # ids shown at each end of a long list (as tf.strings.format's `summarize`)

# {ids} and {pixels} are filled in at run time (NumPy or in the graph); the rest from the config.
_REASON = "label ids {ids} are not ids of this model ({pixels} pixel(s)); it takes {allowed}"


def allowed_text(config) -> str:
    """What the model takes, with the config keys that decide it (no quote characters: graph
    asserts escape them)."""
    n, nc = config.num_label_channels, config.label_nc
    if config.contain_dontcare_label:
        return (f"0..{n - 1} and {DONT_CARE} (dontcare, read as {nc}), as label_nc={nc} with "
                "contain_dontcare_label=True")
    return (f"0..{n - 1}, as label_nc={nc} with contain_dontcare_label=False ({DONT_CARE}, dontcare, "
            "only with True)")


def _reason_template(config) -> str:
    """The reason with the config filled in and `{}` left for ids and pixel count."""
    return _REASON.format(ids="{}", pixels="{}", allowed=allowed_text(config))


def format_ids(values) -> str:
    """'[150 151]', or the first and last SHOWN values around '...' (as tf.strings.format prints)."""
    values = [int(v) for v in np.asarray(values).ravel()]
    if len(values) > 2 * SHOWN:
        values = values[:SHOWN] + ["..."] + values[-SHOWN:]
    return "[" + " ".join(str(v) for v in values) + "]"


def reason(values, pixels: int, config) -> str:
    """Why a map with the (sorted, unique) invalid ids `values` in `pixels` pixels is refused."""
    return _reason_template(config).format(format_ids(values), int(pixels))


def message(source: str, values, pixels: int, config) -> str:
    """The refusal every path gives: '<source>: label ids [151] are not ids of this model ...'."""
    return f"{source}: {reason(values, pixels, config)}"


# ---- NumPy ------------------------------------------------------------------------------------
def valid_mask(ids, config) -> np.ndarray:
    """bool array: which entries of `ids` the model takes."""
    ids = np.asarray(ids)
    ok = (ids >= 0) & (ids < config.num_label_channels)
    if config.contain_dontcare_label:
        ok |= ids == DONT_CARE
    return ok


def invalid_ids(ids, config) -> tuple[np.ndarray, int] | None:
    """(sorted unique invalid ids, pixel count), or None when every id is valid."""
    bad = ~valid_mask(ids, config)
    if not bad.any():
        return None
    return np.unique(np.asarray(ids)[bad]), int(bad.sum())


def to_channels(ids, config) -> np.ndarray:
    """Valid ids → one-hot channel indices (255 → label_nc); the input's dtype where label_nc fits."""
    ids = np.asarray(ids)
    if config.contain_dontcare_label:
        dont_care = ids == DONT_CARE
        if dont_care.any():
            fits = config.label_nc <= np.iinfo(ids.dtype).max
            ids = ids.astype(ids.dtype if fits else np.int32)  # a copy: the input is left alone
            ids[dont_care] = config.label_nc
    return ids


def check_ids(ids, config, source: str) -> np.ndarray:
    """Refuse invalid ids (SpadeError with `message`), else return `to_channels(ids)`."""
    found = invalid_ids(ids, config)
    if found is not None:
        raise SpadeError(message(source, *found, config))
    return to_channels(ids, config)


def check_label_ok(label_ok, ids, config, source: str = "label_map") -> None:
    """Refuse, with `message`, the rows an exported TFLite / ONNX graph flagged (`label_ok` False)."""
    label_ok = np.asarray(label_ok, bool).reshape(-1)
    if label_ok.all():
        return
    rows = np.asarray(ids)[~label_ok]
    found = invalid_ids(rows, config)
    if found is None:  # the graph and this module disagree: a bug, never an image
        raise SpadeError(f"{source}: the exported model flagged rows {np.flatnonzero(~label_ok).tolist()} "
                         f"as holding invalid ids but their ids are valid ({allowed_text(config)}); "
                         "please report this")
    raise SpadeError(message(source, *found, config))


# ---- TensorFlow graphs ------------------------------------------------------------------------
def valid_tf(ids, config):
    """bool tensor: which entries of the int tensor `ids` the model takes."""
    import tensorflow as tf

    ok = (ids >= 0) & (ids < config.num_label_channels)
    if config.contain_dontcare_label:
        ok |= tf.equal(ids, DONT_CARE)
    return ok


def to_channels_tf(ids, config):
    """Valid ids → channel indices (255 → label_nc), in the graph."""
    import tensorflow as tf

    if not config.contain_dontcare_label:
        return ids
    return tf.where(tf.equal(ids, DONT_CARE), tf.cast(config.label_nc, ids.dtype), ids)


def message_tf(source, ids, config, prefix: str = ""):
    """The refusal as a string tensor; `source` a Python str or a string tensor (e.g. a file name)."""
    import tensorflow as tf

    flat = tf.reshape(ids, [-1])
    bad = tf.boolean_mask(flat, tf.logical_not(valid_tf(flat, config)))
    values = tf.sort(tf.unique(bad)[0])
    text = tf.strings.format(_reason_template(config), [values, tf.size(bad)], summarize=SHOWN)
    return tf.strings.join([prefix, source, ": ", text])


def assert_ids_tf(ids, config, source, prefix: str = ""):
    """A `tf.debugging.Assert` op that fails with `message` (after `prefix`) on any invalid id."""
    import tensorflow as tf

    ok = tf.reduce_all(valid_tf(ids, config))
    return tf.debugging.Assert(ok, [message_tf(source, ids, config, prefix)])
