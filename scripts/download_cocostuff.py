"""Download COCO-Stuff 2017 and arrange it as `--preset cocostuff` reads it (the official layout):

    DEST/{train,val}_img/*.jpg     COCO 2017 photos
    DEST/{train,val}_label/*.png   stuffthingmaps: ids 0..181, 255 = unlabeled
    DEST/{train,val}_inst/*.png    instance maps, made here as the SPADE authors describe them
                                   (datasets/coco_generate_instance_map.py there): the stuff label map
                                   with every COCO "thing" polygon painted with its own running index

Sources (as the official SPADE README lists): images.cocodataset.org (train2017.zip 18 GB,
val2017.zip, annotations_trainval2017.zip) and the COCO-Stuff stuffthingmaps_trainval2017.zip.
Needs internet and ~45 GB of disk; not run by the tests (the build machine is offline).

    python scripts/download_cocostuff.py --dest datasets/coco [--splits val]
    spade data validate --preset cocostuff --data datasets/coco --split val
"""

import argparse
import json
import shutil
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

URLS = {
    "train2017.zip": "http://images.cocodataset.org/zips/train2017.zip",
    "val2017.zip": "http://images.cocodataset.org/zips/val2017.zip",
    "annotations_trainval2017.zip": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
    "stuffthingmaps_trainval2017.zip":
        "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",
}


def fetch(name: str, dest: Path) -> Path:
    path = dest / "downloads" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"downloading {URLS[name]}")
        urllib.request.urlretrieve(URLS[name], path.with_suffix(".part"))
        path.with_suffix(".part").rename(path)
    return path


def unzip(path: Path, into: Path, member_prefix: str = "") -> None:
    with zipfile.ZipFile(path) as z:
        z.extractall(into, [m for m in z.namelist() if m.startswith(member_prefix)])


def instance_maps(annotation_file: Path, label_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = json.loads(annotation_file.read_text())
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for i, info in enumerate(data["images"]):
        name = info["file_name"].replace(".jpg", ".png")
        inst = Image.open(label_dir / name).convert("L")
        draw = ImageDraw.Draw(inst)
        count = 0
        for ann in by_image.get(info["id"], []):
            if isinstance(ann["segmentation"], list):  # polygons; RLE (crowd) regions are skipped
                for seg in ann["segmentation"]:
                    xy = (np.asarray(seg).reshape(-1, 2) - 1).ravel().tolist()
                    if len(xy) >= 6:
                        draw.polygon(xy, fill=count % 256)
                count += 1
        inst.save(out_dir / name)
        if i % 1000 == 0:
            print(f"instance maps: {i} / {len(data['images'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default="datasets/coco")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    args = parser.parse_args()
    dest = Path(args.dest)
    unzip(fetch("stuffthingmaps_trainval2017.zip", dest), dest / "downloads" / "stuffthingmaps")
    unzip(fetch("annotations_trainval2017.zip", dest), dest / "downloads", "annotations/instances_")
    for split in args.splits:
        unzip(fetch(f"{split}2017.zip", dest), dest / "downloads")
        shutil.move(str(dest / "downloads" / f"{split}2017"), dest / f"{split}_img")
        shutil.move(str(dest / "downloads" / "stuffthingmaps" / f"{split}2017"), dest / f"{split}_label")
        instance_maps(dest / "downloads" / "annotations" / f"instances_{split}2017.json",
                      dest / f"{split}_label", dest / f"{split}_inst")
    print(f"COCO-Stuff ready in {dest} (the downloads/ folder can be deleted)")


if __name__ == "__main__":
    main()
