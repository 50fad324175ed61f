"""Read one pair from disk and check it: the only place files are opened.

Every problem raises `BadPair` (a `SpadeError`) whose message starts with the file at fault, so
the same checks serve `spade data validate` and the training pipeline (where they run inside
`tf.numpy_function`, at the latest when the element is read).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from spade_tf.errors import SpadeError

DONT_CARE_VALUE = 255  # what the datasets store for "unlabeled"


class BadPair(SpadeError):
    """A pair that cannot be trained on. `kind` is the problem class (see layouts.Problem)."""

    def __init__(self, kind: str, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.kind, self.path, self.reason = kind, path, reason


def _open(path: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise BadPair("unreadable", path, "file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadPair("unreadable", path, f"cannot read image ({e}); re-export or remove it") from None


def read_photo(path: str) -> np.ndarray:
    """uint8 [H, W, 3] (any mode converted to RGB, as official `convert('RGB')`)."""
    img = _open(path)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _ids(img: Image.Image, path: str, what: str) -> np.ndarray:
    """Integer ids [H, W] from a single-channel image (L, P, I, I;16, 1) or an RGB image whose
    channels are all equal (a greyscale map saved as RGB)."""
    if img.mode in ("L", "P"):
        return np.asarray(img)  # uint8; kept small until TensorFlow casts it
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    if img.mode.startswith("I"):
        return np.asarray(img).astype(np.int32)
    if img.mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(img)
        chans = arr[..., :3] if img.mode != "LA" else arr[..., :1]
        if (chans == chans[..., :1]).all():
            return chans[..., 0].astype(np.int32)
        if what == "instance":  # colour-coded instances: only distinctness matters for edges
            c = chans.astype(np.int32)
            return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
        raise BadPair("label_format", path, f"label map is a colour ({img.mode}) image; labels must "
                      "hold class ids (single-channel PNG), not colours")
    raise BadPair("label_format", path, f"unsupported {what} image mode '{img.mode}'; use an 8- or "
                  "16-bit single-channel PNG")


def check_label_values(ids: np.ndarray, config, path: str) -> np.ndarray:
    """Map don't care (255) to `label_nc` and reject ids the model has no channel for.

    Valid: 0 .. num_label_channels-1, plus 255 when `contain_dontcare_label`. Returns [H, W] ids
    in the input's integer dtype (uint8 for 8-bit files: label_nc <= 254 then).
    """
    n = config.num_label_channels
    bad = ids >= n
    if config.contain_dontcare_label:
        bad &= ids != DONT_CARE_VALUE
    bad |= ids < 0
    if bad.any():
        values = np.unique(ids[bad])
        shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
        allowed = f"0..{n - 1}" + (f" or {DONT_CARE_VALUE} (don't care)" if config.contain_dontcare_label
                                   else "")
        raise BadPair("label_value", path, f"label value(s) {shown} out of range ({int(bad.sum())} "
                      f"pixels); label_nc={config.label_nc} allows {allowed}. Fix the label or the "
                      f"label_nc / contain_dontcare_label settings")
    if config.contain_dontcare_label:
        dont_care = ids == DONT_CARE_VALUE
        if dont_care.any():
            ids = ids.copy()
            ids[dont_care] = config.label_nc
    return ids


def read_label_ids(path: str) -> np.ndarray:
    """Raw label ids [H, W] as stored (no range check, no don't-care mapping)."""
    return _ids(_open(path), path, "label")


def read_label(path: str, config) -> np.ndarray:
    return check_label_values(_ids(_open(path), path, "label"), config, path)


def read_instance(path: str) -> np.ndarray:
    return _ids(_open(path), path, "instance")


def read_pair(image_path: str, label_path: str, instance_path: str, config):
    """(photo uint8 [H,W,3], label ids [H,W], instance ids [H,W] or None), checked.

    Raises BadPair naming the file: unreadable, label format, label value, size mismatch.
    """
    label = read_label(label_path, config)
    photo = read_photo(image_path)
    if photo.shape[:2] != label.shape:
        raise BadPair("size_mismatch", label_path, f"label is {label.shape[1]}x{label.shape[0]} but its "
                      f"photo {image_path} is {photo.shape[1]}x{photo.shape[0]} (WxH); they must match")
    instance = None
    if instance_path:
        instance = read_instance(instance_path)
        if instance.shape != label.shape:
            raise BadPair("size_mismatch", instance_path, f"instance map is {instance.shape[1]}x"
                          f"{instance.shape[0]} but label {label_path} is {label.shape[1]}x"
                          f"{label.shape[0]} (WxH)")
    return photo, label, instance
