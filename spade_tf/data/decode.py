"""Read image, label and instance files and check them: the only place these files are opened.

Training pairs (`read_pair`) and the maps `spade synthesize`, the exports and the demo read
(`read_label_map`, `read_instance_map`, `read_style_image`) go through the same readers, and label
ids through the one rule of `labels.py`. Every problem raises `BadPair` (a `SpadeError`) whose
message starts with the file at fault, so the same checks serve `spade data validate`, `spade
synthesize` and the training pipeline (where they run inside `tf.numpy_function`, at the latest
when the element is read).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from spade_tf.data import labels
from spade_tf.data.images import from_uint8
from spade_tf.errors import SpadeError


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
    """Refuse ids the model has no channel for (`labels.py`'s rule), map don't care (255) to
    `label_nc`. Returns [H, W] ids in the input's integer dtype (uint8 for 8-bit files when
    label_nc fits)."""
    found = labels.invalid_ids(ids, config)
    if found is not None:
        raise BadPair("label_value", path, labels.reason(*found, config))
    return labels.to_channels(ids, config)


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


# ---- single maps for inference (synthesize, export calibration, demo examples) --------------------
def resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of an id array to (H, W) (PIL NEAREST: pixel-centre sampling, as official)."""
    if ids.shape == tuple(size):
        return ids
    image = Image.fromarray(np.asarray(ids).astype(np.int32), mode="I")
    return np.asarray(image.resize((size[1], size[0]), Image.NEAREST))


def read_label_map(path, config, on_resize: Callable[[str, tuple, tuple], None] | None = None) -> np.ndarray:
    """Class-id image → int32 [H, W] at the model size (nearest resize), 255 → label_nc.

    Raises BadPair naming the file for unreadable files, colour images and ids the model does
    not take. `on_resize(path, old_hw, new_hw)` is called when the map had another size.
    """
    path = str(path)
    ids = check_label_values(read_label_ids(path), config, path)
    size = tuple(config.image_size)
    if ids.shape != size and on_resize is not None:
        on_resize(path, ids.shape, size)
    return resize_ids(ids, size).astype(np.int32)


def read_instance_map(path, config) -> np.ndarray:
    """Instance-id image → int32 [H, W] at the model size (nearest)."""
    return resize_ids(read_instance(str(path)), tuple(config.image_size)).astype(np.int32)


def read_style_image(path, config) -> np.ndarray:
    """RGB image → float32 [H, W, 3] in [-1, 1] at the model size (bicubic resize)."""
    image = _open(str(path))
    image = image if image.mode == "RGB" else image.convert("RGB")
    h, w = config.image_size
    if image.size != (w, h):
        image = image.resize((w, h), Image.BICUBIC)
    return from_uint8(np.asarray(image, np.float32))
