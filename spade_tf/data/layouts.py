"""Find (photo, label[, instance]) file triples in the folder layouts the official code reads.

    ade20k      ADEChallengeData2016/: images/{training,validation}/ADE_{train,val}_*.jpg and
                annotations/.../*.png, found recursively by the `_train_` / `_val_` in the name
    coco        {split}_img/, {split}_label/, {split}_inst/ (+ *_portrait/ variants for train)
    cityscapes  leftImg8bit/{split}/<city>/*_leftImg8bit.png, gtFine/{split}/<city>/*_labelIds.png
                and *_instanceIds.png; paired by the first three name parts (city_seq_frame)
    facades     {split}/images + {split}/labels (the layout of shared/data/facades), the official
                {split}_img + {split}_label, or images/ + labels/ directly (train only)
    custom      as facades, with an optional instances/ (or {split}_inst/) folder

ADE20K label ids are used as stored (0 = "other", 1..150 the classes; 151 one-hot channels with
the ade20k preset's label_nc=150 + don't care). That is what the official code trains on: its
`ADE20KDataset.postprocess` meant to shift ids by -1 and send 0 to the don't-care id, but it edits a
copy (`label = label - 1`) and returns nothing, so it changes nothing; official ADE20K checkpoints
therefore expect the stored ids, and so does this loader.

Files are paired by stem (the file name without extension). The official code sorts the lists and
checks that the stems match position by position; keying by stem finds the same pairs and can name
every file that has no partner. Problems found here are returned, not raised, so that `spade data
validate` can list them all; `build_dataset` raises them (or drops them with skip_bad).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from spade_tf.errors import SpadeError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
LOSSY = (".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training example on disk. `instance` is '' when instance maps are not used."""

    key: str
    image: str
    label: str
    instance: str = ""


@dataclasses.dataclass(frozen=True)
class Problem:
    """A file that cannot be used, with its problem class and a reason a user can act on."""

    kind: str  # missing_partner | duplicate | label_format | unreadable | size_mismatch | label_value
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _phase(split: str) -> str:
    return "val" if split in ("val", "test", "validation") else "train"


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    if not folder.is_dir():
        return []
    walker = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in walker if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _keyed(paths: list[Path], role: str, key_fn, problems: list[Problem]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in paths:
        k = key_fn(p)
        if k in out:
            problems.append(Problem("duplicate", str(p), f"two {role} files share the name '{k}' "
                                    f"(other: {out[k]}); keep one"))
            continue
        out[k] = p
    return out


def _stem(p: Path) -> str:
    return p.stem


def _cityscapes_key(p: Path) -> str:
    return "_".join(p.name.split("_")[:3])


def pair_up(images: list[Path], labels: list[Path], instances: list[Path] | None,
            key_fn=_stem, where: str = "") -> tuple[list[Pair], list[Problem]]:
    """Pair files by key; every file without a partner becomes a `missing_partner` problem."""
    problems: list[Problem] = []
    img = _keyed(images, "photo", key_fn, problems)
    lab = _keyed(labels, "label", key_fn, problems)
    ins = _keyed(instances, "instance", key_fn, problems) if instances is not None else None
    pairs = []
    for k in sorted(set(img) | set(lab)):
        if k not in lab:
            problems.append(Problem("missing_partner", str(img[k]),
                                    f"photo has no label file named '{k}.*'{where}"))
            continue
        if k not in img:
            problems.append(Problem("missing_partner", str(lab[k]),
                                    f"label has no photo named '{k}.*'{where}"))
            continue
        if lab[k].suffix.lower() in LOSSY:
            problems.append(Problem("label_format", str(lab[k]), "label map stored as JPEG: lossy "
                                    "compression changes class ids; store labels as PNG"))
            continue
        inst = ""
        if ins is not None:
            if k not in ins:
                problems.append(Problem("missing_partner", str(lab[k]),
                                        f"pair '{k}' has no instance map{where}"))
                continue
            inst = str(ins[k])
        pairs.append(Pair(k, str(img[k]), str(lab[k]), inst))
    if ins is not None:
        for k in sorted(set(ins) - set(img) - set(lab)):
            problems.append(Problem("missing_partner", str(ins[k]),
                                    "instance map has no photo and no label"))
    return pairs, problems


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise SpadeError(f"{path}: {what} folder not found")
    return path


def _no_instances(config, data_dir) -> SpadeError:
    return SpadeError(f"{data_dir}: config uses instance edges (no_instance=false) but no instance "
                      f"maps were found; add them or set no_instance=true")


def _folder_dirs(data_dir: Path, split: str) -> tuple[Path, Path, Path] | None:
    """(images, labels, instances) folders of the facades/custom layouts, or None."""
    candidates = [
        (data_dir / split / "images", data_dir / split / "labels", data_dir / split / "instances"),
        (data_dir / f"{split}_img", data_dir / f"{split}_label", data_dir / f"{split}_inst"),
    ]
    if _phase(split) == "train":
        candidates.append((data_dir / "images", data_dir / "labels", data_dir / "instances"))
    for images, labels, instances in candidates:
        if images.is_dir() or labels.is_dir():
            return images, labels, instances
    return None


def find_pairs(config, data_dir, split: str = "train") -> tuple[list[Pair], list[Problem]]:
    """All pairs of `split` under `data_dir` in the layout of `config.dataset_mode`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SpadeError(f"{root}: data folder not found")
    mode = config.dataset_mode
    want_inst = config.use_instance_edges
    phase = _phase(split)

    if mode == "ade20k":
        files = _images(root, recursive=True)
        tag = f"_{phase}_"
        images = [p for p in files if tag in p.name and p.suffix.lower() in (".jpg", ".jpeg")]
        labels = [p for p in files if tag in p.name and p.suffix.lower() == ".png"]
        if not images and not labels:
            raise SpadeError(f"{root}: no ADE20K files with '{tag}' in their name (expected "
                             f"ADEChallengeData2016/images/... and annotations/...)")
        if want_inst:
            raise SpadeError("ADE20K has no instance maps: set no_instance=true (the ade20k preset does)")
        return pair_up(images, labels, None, where=f" under {root}")

    if mode == "cityscapes":
        label_dir = _need_dir(root / "gtFine" / phase, "Cityscapes gtFine/<split>")
        image_dir = _need_dir(root / "leftImg8bit" / phase, "Cityscapes leftImg8bit/<split>")
        gt = _images(label_dir, recursive=True)
        labels = [p for p in gt if p.name.endswith("_labelIds.png")]
        instances = [p for p in gt if p.name.endswith("_instanceIds.png")] if want_inst else None
        return pair_up(_images(image_dir, recursive=True), labels, instances, _cityscapes_key,
                       where=f" under {root}")

    if mode == "coco":
        split_name = "val" if phase == "val" else split
        dirs = [""] + (["_portrait"] if phase == "train" else [])
        images, labels, instances = [], [], []
        for suffix in dirs:
            images += _images(root / f"{split_name}_img{suffix}")
            labels += _images(root / f"{split_name}_label{suffix}")
            instances += _images(root / f"{split_name}_inst{suffix}")
        if not images and not labels:
            raise SpadeError(f"{root}: no COCO-Stuff files (expected {split_name}_img/ and "
                             f"{split_name}_label/)")
        if want_inst and not instances:
            raise _no_instances(config, root / f"{split_name}_inst")
        return pair_up(images, labels, instances if want_inst else None,
                       where=f" in {root}/{split_name}_*")

    # facades, custom, and anything folder-shaped
    dirs = _folder_dirs(root, split)
    if dirs is None:
        raise SpadeError(f"{root}: no '{split}/images' + '{split}/labels', '{split}_img' + "
                         f"'{split}_label' or 'images' + 'labels' folders found")
    image_dir, label_dir, inst_dir = dirs
    _need_dir(image_dir, "photo")
    _need_dir(label_dir, "label")
    if want_inst and not inst_dir.is_dir():
        raise _no_instances(config, inst_dir)
    return pair_up(_images(image_dir), _images(label_dir), _images(inst_dir) if want_inst else None,
                   where=f" (photos in {image_dir}, labels in {label_dir})")


def folder_pairs(image_dir, label_dir, instance_dir=None) -> tuple[list[Pair], list[Problem]]:
    """Pairs from three explicit folders (the official custom mode's --image_dir/--label_dir/...)."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    _need_dir(image_dir, "photo")
    _need_dir(label_dir, "label")
    instances = _images(_need_dir(Path(instance_dir), "instance")) if instance_dir else None
    return pair_up(_images(image_dir), _images(label_dir), instances,
                   where=f" (photos in {image_dir}, labels in {label_dir})")


def describe(pairs: list[Pair]) -> str:
    common = os.path.commonpath([p.image for p in pairs]) if pairs else ""
    return f"{len(pairs)} pairs" + (f" under {common}" if common else "")
