"""`spade benchmark quality` (spade_tf.benchmarks.quality): split, whole pipeline on a micro budget."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spade_tf.benchmarks import quality
from spade_tf.cli import main
from spade_tf.errors import SpadeError

SHARED = Path(__file__).parents[2] / "shared"
ALEX = SHARED / "weights" / "lpips_alex_v0.1.npz"


def _make_facades(root: Path, n: int = 12, size=(40, 48), seed: int = 0) -> Path:
    """n random 'facades' pairs in the shared/data/facades layout: ids 1..12, photo colour follows the id."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (13, 3))
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    h, w = size
    for i in range(n):
        label = np.full((h, w), 2, np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            label[y:y + rng.integers(4, 12), x:x + rng.integers(4, 12)] = rng.integers(1, 13)
        photo = np.clip(palette[label] + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(label, "L").save(root / "labels" / f"cmp_b{i + 1:04d}.png")
        Image.fromarray(photo).save(root / "images" / f"cmp_b{i + 1:04d}.jpg", quality=95)
    return root


def test_split_is_disjoint_complete_and_deterministic():
    stems = [f"cmp_b{i:04d}" for i in range(1, 101)]
    train, val = quality.split_stems(stems, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert not set(train) & set(val)
    assert sorted(train + val) == stems
    # same result for the same seed whatever the input order; another seed gives another split
    assert quality.split_stems(list(reversed(stems)), 0.1, seed=3) == (train, val)
    assert quality.split_stems(stems, 0.1, seed=4)[1] != val
    with pytest.raises(SpadeError, match="val-fraction"):
        quality.split_stems(stems, 1.5, seed=0)
    with pytest.raises(SpadeError, match="at least 2"):
        quality.split_stems(stems[:5], 0.1, seed=0)


def test_whole_pipeline_micro_budget(tmp_path):
    if not ALEX.is_file():
        pytest.skip(f"AlexNet/LPIPS weights not found at {ALEX} (the shared folder is absent)")
    data = _make_facades(tmp_path / "facades" / "train")
    out = tmp_path / "out"
    argv = ["benchmark", "quality", "--data", str(data), "--out", str(out), "--preset", "facades",
            "--set", "crop_size=32", "--set", "load_size=36", "--set", "ngf=8", "--set", "ndf=8",
            "--set", "spade_nhidden=16", "--set", "num_D=1", "--set", "n_layers_D=2", "--set", "batchSize=2",
            "--set", "lambda_vgg=0", "--steps", "2", "--eval-every", "1", "--val-fraction", "0.25",
            "--seed", "1", "--variants", "baseline,ema", "--segmenter-steps", "2", "--kid-subsets", "2",
            "--alexnet-weights", str(ALEX), "--run-eagerly"]
    assert main(argv) == 0

    split = json.loads((out / "split.json").read_text())
    assert split["n_train"] == 9 and split["n_val"] == 3
    assert not set(split["train_stems"]) & set(split["val_stems"])
    # the split folders hold exactly those stems, and the split repeats for the same seed
    for part in ("train", "val"):
        on_disk = sorted(p.stem for p in (out / "split" / part / "labels").iterdir())
        assert on_disk == split[f"{part}_stems"]
    assert quality.split_stems(split["train_stems"] + split["val_stems"], 0.25, 1) == (
        split["train_stems"], split["val_stems"])

    report = json.loads((out / "results.json").read_text())
    rows = report["rows"]
    # steps 0, 1, 2 for each variant: the same budget
    assert [(r["variant"], r["step"]) for r in rows] == [("baseline", 0), ("baseline", 1), ("baseline", 2),
                                                         ("ema", 0), ("ema", 1), ("ema", 2)]
    for r in rows:
        assert np.isfinite(r["fd_alexnet"]) and r["fd_alexnet"] >= 0
        assert np.isfinite(r["kid_alexnet"])
        assert 0.0 <= r["miou"] <= 1.0 and 0.0 <= r["pixel_accuracy"] <= 1.0
        assert r["lpips_diversity"] is None  # no latent code: one image per label map
    # same seed, same initial weights: both variants start from the same generator
    assert rows[0]["fd_alexnet"] == pytest.approx(rows[3]["fd_alexnet"], rel=1e-5)
    assert report["reference"]["segmenter_steps"] == 2
    assert 0.0 <= report["reference"]["real_val_miou"] <= 1.0

    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and set(quality.CSV_COLUMNS) == set(table[0])
    md = (out / "results.md").read_text()
    assert "| variant | step |" in md and "| ema | 2 |" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / quality.PLOT_NAME).exists()
    else:
        assert (out / quality.PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
