"""`spade evaluate`: one JSON object, labelled features, clear errors, the --model path."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from spade_tf.cli import main

WEIGHTS = Path(__file__).parents[2] / "shared" / "weights" / "lpips_alex_v0.1.npz"
needs_alexnet = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"LPIPS-alex weights missing: {WEIGHTS}")


def _folder(path, seed, n=5):
    from PIL import Image

    rs = np.random.RandomState(seed)
    path.mkdir()
    for i in range(n):
        Image.fromarray(rs.randint(0, 256, (32, 48, 3)).astype(np.uint8)).save(path / f"{i}.png")
    return path


def _run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_missing_inception_weights_is_a_clear_error(tmp_path, capsys):
    real, fake = _folder(tmp_path / "real", 0), _folder(tmp_path / "fake", 1)
    rc, out, err = _run(["evaluate", "--real", str(real), "--fake", str(fake)], capsys)
    assert rc == 2 and out == ""
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "github.com/mseitzer/pytorch-fid" in err
    assert "--features alexnet" in err and "--inception-weights" in err and "SPADE_INCEPTION_WEIGHTS" in err
    rc, _, err = _run(["evaluate", "--real", str(real), "--fake", str(fake), "--inception-weights",
                       str(tmp_path / "nope.pth")], capsys)
    assert rc == 2 and "nope.pth" in err
    rc, _, err = _run(["evaluate", "--real", str(real)], capsys)
    assert rc == 2 and "--fake" in err
    rc, _, err = _run(["evaluate", "--real", str(real), "--fake", str(fake), "--features", "alexnet",
                       "--segmenter", "builtin"], capsys)
    assert rc == 2 and "--segmenter needs --model" in err


def test_segmenter_input_range_names_parse():
    from spade_tf.cli import build_parser
    from spade_tf.commands.evaluate import INPUT_RANGES
    from spade_tf.evaluation.segmentation import INPUT_RANGES as LIBRARY_RANGES

    for name in INPUT_RANGES:
        args = build_parser().parse_args(["evaluate", "--model", "m", "--segmenter-input-range", name])
        assert INPUT_RANGES[args.segmenter_input_range] in LIBRARY_RANGES


@needs_alexnet
def test_folders_with_alexnet_features_print_one_labelled_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPADE_ALEXNET_WEIGHTS", str(WEIGHTS))
    real, fake = _folder(tmp_path / "real", 0, 6), _folder(tmp_path / "fake", 1, 5)
    cache = tmp_path / "cache"
    argv = ["evaluate", "--real", str(real), "--fake", str(fake), "--features", "alexnet",
            "--kid-subsets", "4", "--kid-subset-size", "3", "--cache-dir", str(cache), "--no-progress"]
    rc, out, _ = _run(argv, capsys)
    assert rc == 0
    result = json.loads(out)  # exactly one JSON object
    assert result["n_real"] == 6 and result["n_fake"] == 5 and result["kid_subset_size"] == 3
    assert "fid" not in result and "kid" not in result
    assert result["fd_alexnet"] > 0 and np.isfinite(result["kid_alexnet"]) and result["kid_alexnet_std"] >= 0
    assert result["feature_network"].startswith("alexnet")
    assert len(list(cache.glob("*.npz"))) == 1  # the real set's features
    rc, out2, _ = _run(argv, capsys)
    assert json.loads(out2)["fd_alexnet"] == pytest.approx(result["fd_alexnet"], rel=1e-6)


@needs_alexnet
def test_model_mode_synthesizes_and_reports_segmentation_and_diversity(tmp_path, capsys, monkeypatch):
    from spade_tf.config import get_preset
    from spade_tf.models import build_networks

    monkeypatch.setenv("SPADE_ALEXNET_WEIGHTS", str(WEIGHTS))
    cfg = dataclasses.replace(get_preset("tiny"), use_vae=True)
    generator, _, _ = build_networks(cfg)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    generator.save(model_dir / "generator.keras")
    (model_dir / "config.json").write_text(cfg.to_json())
    argv = ["evaluate", "--model", str(model_dir), "--features", "alexnet", "--max-images", "6",
            "--batch-size", "4", "--kid-subsets", "2", "--segmenter", "builtin", "--segmenter-steps", "2",
            "--segmenter-cache", str(tmp_path / "seg"), "--diversity", "2", "--diversity-maps", "2",
            "--no-progress"]
    rc, out, _ = _run(argv, capsys)
    assert rc == 0
    result = json.loads(out)
    assert result["n_real"] == 6 and result["n_fake"] == 6 and "fd_alexnet" in result
    s = result["segmentation"]
    assert s["num_classes"] == cfg.label_nc and 0 <= s["miou"] <= 1 and 0 <= s["pixel_accuracy"] <= 1
    assert Path(s["segmenter_file"]).is_file() and s["segmenter_cached"] is False
    d = result["lpips_diversity"]
    assert d["samples_per_map"] == 2 and d["label_maps"] == 2 and d["value"] > 0  # z differs -> images differ
    rc, _, err = _run(["evaluate", "--model", str(model_dir), "--features", "alexnet", "--preset", "facades"],
                      capsys)
    assert rc == 2 and "label_nc" in err
