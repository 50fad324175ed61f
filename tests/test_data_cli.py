"""`spade data validate|inspect` through the real CLI entry point."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spade_tf.cli import main

FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"


def make_folder(root, n=3):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "images" / f"f{i}.jpg")
        Image.fromarray(np.full((20, 30), 2, np.uint8)).save(root / "labels" / f"f{i}.png")
    return root


def test_validate_ok_on_clean_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "d")
    assert main(["data", "validate", "--preset", "facades", "--data", str(root)]) == 0
    assert "3 pairs found, 3 good" in capsys.readouterr().out


def test_validate_lists_every_bad_file_by_problem_class(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n=5)
    (root / "images" / "f0.jpg").write_bytes(b"broken")
    Image.fromarray(np.full((20, 30), 99, np.uint8)).save(root / "labels" / "f1.png")
    Image.fromarray(np.full((20, 30), 77, np.uint8)).save(root / "labels" / "f2.png")
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(root / "images" / "f3.jpg")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "images" / "alone.jpg")
    assert main(["data", "validate", "--preset", "facades", "--data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "missing_partner: 1 file(s)" in out and "alone.jpg" in out
    assert "unreadable: 1 file(s)" in out and "f0.jpg" in out
    assert "label_value: 2 file(s)" in out and "f1.png" in out and "f2.png" in out
    assert "size_mismatch: 1 file(s)" in out and "f3.png" in out
    assert "first problem class: missing_partner" in out


def test_validate_label_nc_override(tmp_path, capsys):
    root = make_folder(tmp_path / "d")
    assert main(["data", "validate", "--preset", "custom", "--data", str(root), "--set", "label_nc=2"]) == 1
    assert main(["data", "validate", "--preset", "custom", "--data", str(root), "--set", "label_nc=3"]) == 0


def test_missing_folder_is_a_clean_error(tmp_path, capsys):
    assert main(["data", "validate", "--preset", "facades", "--data", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_inspect_real_facades_histogram(capsys):
    if not FACADES.is_dir():
        pytest.skip(f"{FACADES} not found (../shared is absent)")
    pytest.importorskip("tensorflow")
    assert main(["data", "inspect", "--preset", "facades", "--data", str(FACADES), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "378 pairs, 378 read, 0 bad" in out
    assert "facade                    39.63 %" in out  # the README's class shares, recomputed
    assert "images/s" in out


def test_inspect_synthetic(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    grid = tmp_path / "grid.png"
    assert main(["data", "inspect", "--preset", "tiny", "--batches", "2", "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "512 scenes of 64x64" in out and "classes present: 8 of 8" in out and "images/s" in out
    assert Image.open(grid).size == (4 * 64, 2 * 64)  # batchSize 4: photos over labels


def _script(name):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_facades_script_writes_palette_indices_as_ids(tmp_path):
    """The download scripts need internet; their offline parts are checked on made-up inputs."""
    import io
    import zipfile

    ids = np.array([[1, 2, 3], [12, 12, 1]], np.uint8)
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([0, 0, 0, 0, 0, 170, 0, 0, 255, 0, 85, 255] + [255, 0, 0] * 252)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, img in (("base/cmp_b0001.png", pal), ("base/cmp_b0001.jpg", Image.new("RGB", (3, 2)))):
            data = io.BytesIO()
            img.save(data, format="PNG" if name.endswith("png") else "JPEG")
            z.writestr(name, data.getvalue())
    count = _script("download_facades").arrange(zipfile.ZipFile(buf), tmp_path)
    assert count == 1
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "train/labels/cmp_b0001.png")), ids)
    assert main(["data", "validate", "--preset", "facades", "--data", str(tmp_path)]) == 0


def test_coco_instance_map_script(tmp_path):
    import json

    (tmp_path / "lab").mkdir()
    Image.fromarray(np.full((20, 20), 156, np.uint8)).save(tmp_path / "lab" / "000000000001.png")
    ann = {"images": [{"id": 1, "file_name": "000000000001.jpg"}],
           "annotations": [{"image_id": 1, "segmentation": [[3, 3, 10, 3, 10, 10, 3, 10]]},
                           {"image_id": 1, "segmentation": [[12, 12, 18, 12, 18, 18, 12, 18]]}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    _script("download_cocostuff").instance_maps(tmp_path / "ann.json", tmp_path / "lab", tmp_path / "inst")
    inst = np.asarray(Image.open(tmp_path / "inst" / "000000000001.png"))
    assert inst[5, 5] == 0 and inst[15, 15] == 1 and inst[0, 0] == 156  # things numbered, stuff kept
