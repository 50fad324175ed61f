"""Download the CMP Facade Database (base set, 378 pairs, CC BY-SA) and arrange it as
`--preset facades` reads it (the layout of ../shared/data/facades):

    DEST/train/images/cmp_bNNNN.jpg   photo
    DEST/train/labels/cmp_bNNNN.png   8-bit single-channel class ids 1..12

The source labels are palette PNGs whose palette *indices* are the class ids; they are written out
as plain greyscale index images (never convert them with a colour-to-grey conversion).
--max-side 512 also shrinks each pair as the shared copy was (photo bicubic, labels nearest).
Needs internet; not run by the tests (the build machine is offline).

    python scripts/download_facades.py --dest datasets/facades [--max-side 512]
    spade data validate --preset facades --data datasets/facades
"""

import argparse
import io
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

URL = "https://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_base.zip"


def arrange(archive: zipfile.ZipFile, dest: Path, max_side: int = 0) -> int:
    """Write the pairs of the CMP zip into dest/train/{images,labels}; returns the pair count."""
    images, labels = dest / "train" / "images", dest / "train" / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    stems = sorted(Path(n).stem for n in archive.namelist() if n.endswith(".jpg"))
    for stem in stems:
        photo = Image.open(archive.open(f"base/{stem}.jpg")).convert("RGB")
        ids = Image.fromarray(np.asarray(Image.open(archive.open(f"base/{stem}.png"))).astype(np.uint8))
        scale = max_side / max(photo.size) if max_side else 1.0
        if scale < 1:
            size = (round(photo.width * scale), round(photo.height * scale))
            photo, ids = photo.resize(size, Image.BICUBIC), ids.resize(size, Image.NEAREST)
        photo.save(images / f"{stem}.jpg", quality=90)
        ids.save(labels / f"{stem}.png")
    return len(stems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default="datasets/facades")
    parser.add_argument("--max-side", type=int, default=0, help="shrink pairs to this longer side (0: keep)")
    args = parser.parse_args()
    print(f"downloading {URL}")
    with urllib.request.urlopen(URL) as r:
        archive = zipfile.ZipFile(io.BytesIO(r.read()))
    count = arrange(archive, Path(args.dest), args.max_side)
    print(f"{count} pairs in {args.dest}/train")


if __name__ == "__main__":
    main()
