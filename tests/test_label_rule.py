"""One label-id rule on every path (spade_tf.data.labels): ADE20K's 151 channels take ids 0..150
and 255; class 150 synthesizes, id 151 is refused with the same message, on the data pipeline
(folders and TFDS), `spade synthesize`, the SavedModel, TFLite, ONNX and the web demo.

ADE20K preset at 32x32 with a 4-wide generator (random weights): the id rule does not depend on
the size, and the paths run in seconds.
"""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spade_tf.cli import main
from spade_tf.config import get_preset
from spade_tf.data import build_dataset, labels, reraise_data_errors
from spade_tf.errors import SpadeError
from spade_tf.inference import load_generator

CFG = get_preset("ade20k").with_overrides(["crop_size=32", "load_size=32", "ngf=4", "spade_nhidden=8"])
BAD_PIXELS = 64


def ade_map(top: int) -> np.ndarray:
    """A 32x32 map of stored ADE20K ids: stripes of 0, 7, 149, 255 and `top` (150 or 151) in an
    8x8 block (BAD_PIXELS pixels)."""
    ids = np.zeros((32, 32), np.uint8)
    ids[:, 8:], ids[:, 16:], ids[:, 24:] = 7, 149, 255
    ids[:8, :8] = top
    return ids


def expected(source: str) -> str:
    """The one refusal: what every path must say about ade_map(151)."""
    return labels.message(source, [151], BAD_PIXELS, CFG)


def test_rule_itself():
    assert CFG.num_label_channels == 151
    ok = ade_map(150)
    np.testing.assert_array_equal(labels.check_ids(ok, CFG, "m"), np.where(ok == 255, 150, ok))
    assert labels.invalid_ids(ade_map(151), CFG)[0].tolist() == [151]
    with pytest.raises(SpadeError) as err:
        labels.check_ids(ade_map(151), CFG, "m")
    assert str(err.value) == expected("m")
    assert "it takes 0..150 and 255 (dontcare, read as 150)" in str(err.value)
    # without a don't-care label, 255 and label_nc are refused (facades: 13 channels, ids 0..12)
    facades = get_preset("facades")
    assert labels.invalid_ids(np.array([0, 12, 13, 255]), facades)[0].tolist() == [13, 255]
    # the graph version agrees with NumPy, message included
    assert tf.reduce_all(labels.valid_tf(tf.constant(ade_map(150).astype(np.int32)), CFG)).numpy()
    graph = labels.message_tf("m", tf.constant(ade_map(151).astype(np.int32)), CFG).numpy().decode()
    assert graph == expected("m")


@pytest.fixture(scope="module")
def ade_model(tmp_path_factory):
    """A model folder laid out as `spade train` writes it, and its SpadeModel."""
    from test_inference import realistic_networks  # unsaturated, label-dependent random weights

    folder = tmp_path_factory.mktemp("ade") / "model"
    folder.mkdir()
    g, _ = realistic_networks(CFG, seed=5)
    g.save(folder / "generator.keras")
    (folder / "config.json").write_text(json.dumps({"config": CFG.to_dict()}))
    return folder, load_generator(folder)


def _keras(model, stored_ids):
    return model.synthesize(labels.to_channels(stored_ids, CFG).astype(np.int32))


def test_pipeline_folders_and_tfds(tmp_path):
    for key, ids in (("a", ade_map(150)), ("b", ade_map(151))):
        for sub, image in (("images", np.full((32, 32, 3), 90, np.uint8)), ("labels", ids)):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(image).save(tmp_path / sub / f"{key}.png")
    good = {"image_dir": str(tmp_path / "images"), "label_dir": str(tmp_path / "labels")}
    batch = next(iter(build_dataset(CFG, good, batch_size=1, shuffle=False, augment=False, skip_bad=True)))
    lab = batch["label_map"].numpy()
    assert lab.shape == (1, 32, 32) and lab[0, 4, 4] == 150 and lab[0, 0, 30] == 150  # 150 and 255 → 150
    with pytest.raises(SpadeError) as err:
        with reraise_data_errors():
            list(build_dataset(CFG, good, batch_size=1, shuffle=False))
    assert str(err.value) == expected(str(tmp_path / "labels" / "b.png"))

    tfds = pytest.importorskip("tensorflow_datasets")
    del tfds
    from spade_tf.data import tfds_builder

    manual = tmp_path / "manual" / "train"
    (manual / "images").mkdir(parents=True)
    (manual / "labels").mkdir()
    for key, ids in (("a", ade_map(150)), ("b", ade_map(151))):
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(manual / "images" / f"{key}.jpg")
        Image.fromarray(ids).save(manual / "labels" / f"{key}.png")
    version_dir = tfds_builder.build("custom", tmp_path / "manual", tmp_path / "tfds")
    kept = list(build_dataset(CFG, version_dir, batch_size=1, shuffle=False, augment=False, skip_bad=True))
    assert len(kept) == 1 and kept[0]["label_map"].numpy()[0, 4, 4] == 150
    with pytest.raises(SpadeError) as err:
        with reraise_data_errors():
            list(build_dataset(CFG, version_dir, batch_size=1, shuffle=False))
    assert str(err.value).endswith(expected("b.png"))


def test_spade_synthesize(ade_model, tmp_path, capsys):
    folder, model = ade_model
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(ade_map(150)).save(maps / "ok.png")
    as_dont_care = ade_map(150)
    as_dont_care[:8, :8] = 255  # 255 and 150 are the same channel
    Image.fromarray(as_dont_care).save(maps / "same.png")
    out = tmp_path / "out"
    assert main(["synthesize", "--model", str(folder), "--labels", str(maps), "--out", str(out),
                 "--no-jit-compile"]) == 0
    image = np.asarray(Image.open(out / "ok.png"))
    assert np.abs(image.astype(int) - _keras(model, ade_map(150))[0]).max() <= 1
    np.testing.assert_array_equal(np.asarray(Image.open(out / "same.png")), image)
    # class 150 reaches the generator as its own channel, which the generator does not ignore
    assert model.semantics(ade_map(150)[None].astype(np.int32)).numpy()[0, 0, 0, 150] == 1
    other = model.synthesize_float(ade_map(7)[None].astype(np.int32))
    assert np.abs(model.synthesize_float(ade_map(150)[None].astype(np.int32)) - other).max() > 1e-3
    Image.fromarray(ade_map(151)).save(maps / "bad.png")
    capsys.readouterr()
    assert main(["synthesize", "--model", str(folder), "--labels", str(maps), "--out", str(out),
                 "--no-jit-compile"]) == 2
    assert expected(str(maps / "bad.png")) in capsys.readouterr().err


def test_saved_model(ade_model, tmp_path):
    from spade_tf.export.saved_model import export_saved_model

    _, model = ade_model
    serve = tf.saved_model.load(str(export_saved_model(model, tmp_path))).signatures["serving_default"]
    image = serve(label_map=tf.constant(ade_map(150)[None].astype(np.int32)))["image"].numpy()
    assert np.abs(image.astype(int) - _keras(model, ade_map(150))).max() <= 1
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        serve(label_map=tf.constant(np.stack([ade_map(150), ade_map(151)]).astype(np.int32)))
    assert expected("label_map") in err.value.message


def _mobile_feed():
    return {"label_map": np.stack([ade_map(150), ade_map(151)]).astype(np.int32)}


def test_tflite(ade_model):
    from spade_tf.export import tflite

    _, model = ade_model
    interp = tflite.interpreter(tflite.convert_tflite(model))
    out = tflite.run_tflite(interp, _mobile_feed())
    assert out["label_ok"].tolist() == [True, False]
    assert np.abs(out["image"][0].astype(int) - _keras(model, ade_map(150))[0]).max() <= 1
    with pytest.raises(SpadeError) as err:
        tflite.run_tflite(interp, _mobile_feed(), config=CFG)
    assert str(err.value) == expected("label_map")


def test_onnx(ade_model):
    from spade_tf.export import onnx

    _, model = ade_model
    sess = onnx.session(onnx.convert_onnx(model))
    out = onnx.run_onnx(sess, _mobile_feed())
    assert out["label_ok"].tolist() == [True, False]
    assert np.abs(out["image"][0].astype(int) - _keras(model, ade_map(150))[0]).max() <= 1
    with pytest.raises(SpadeError) as err:
        onnx.run_onnx(sess, _mobile_feed(), config=CFG)
    assert str(err.value) == expected("label_map")


def test_demo(ade_model):
    pytest.importorskip("fastapi", reason="the demo extra (fastapi) is not installed")
    pytest.importorskip("httpx", reason="httpx (needed by fastapi.testclient) is not installed")
    from fastapi.testclient import TestClient

    from spade_tf.demo.backend import DemoModel
    from spade_tf.demo.server import create_app

    folder, model = ade_model
    client = TestClient(create_app(DemoModel.load(folder), workers=1, queue=1, max_upload_bytes=64 << 10,
                                   max_side=256))

    def post(ids):
        buf = io.BytesIO()
        Image.fromarray(ids).save(buf, format="PNG")
        return client.post("/api/synthesize", files={"label": ("label.png", buf.getvalue(), "image/png")})

    ok = post(ade_map(150))
    assert ok.status_code == 200, ok.text
    image = np.asarray(Image.open(io.BytesIO(ok.content)))
    assert np.abs(image.astype(int) - _keras(model, ade_map(150))[0]).max() <= 1
    bad = post(ade_map(151))
    assert bad.status_code == 422 and bad.json()["detail"] == expected("label")
    assert bad.json()["unknown_ids"] == [151]
