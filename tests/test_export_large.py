"""ONNX large-model path (`convert_onnx(large_model=True)`, `save_onnx`): the path the official-size
generators take, forced here on a tiny model. Weights as conversion-time inputs, then initializers
in an external-data file beside the .onnx; parity with Keras as the in-memory path's."""

import shutil

import numpy as np
import onnx
import pytest
from test_export import _feed, seg  # noqa: F401  (module fixture: don't care + instance edges)

from spade_tf.export import export_model, reference_output
from spade_tf.export import onnx as sonnx


@pytest.fixture(scope="module")
def large(seg):  # noqa: F811
    return sonnx.convert_onnx(seg, large_model=True)


def test_large_model_layout_and_parity(tmp_path, seg, large):  # noqa: F811
    path = tmp_path / "a" / "model.onnx"
    written = sonnx.save_onnx(large, path)
    data = path.with_name("model.onnx.data")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    weights = sonnx.weight_bytes(seg)
    # the weights are in the data file (conv kernels transposed, same bytes); only tensors under
    # 1 KB (shapes, small constants) stay inside the graph file
    assert data.stat().st_size >= 0.95 * weights and path.stat().st_size < weights / 4
    assert written == path.stat().st_size + data.stat().st_size
    graph = onnx.load(str(path), load_external_data=False).graph
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) > 20
    inline = [t for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert all(len(t.raw_data) < 1024 for t in inline)
    assert {e.value for t in external for e in t.external_data if e.key == "location"} == {"model.onnx.data"}
    # no weight is left as an input: only the serving inputs
    assert [i.name for i in graph.input] == ["label_map", "instance_map"]
    assert not any(i.name.startswith(sonnx.WEIGHT_PREFIX) for i in graph.input)
    # the pair moves together (relative location) and matches Keras as a float32 export must
    moved = tmp_path / "b"
    shutil.copytree(path.parent, moved)
    shutil.rmtree(path.parent)
    feed = _feed(seg)
    out = sonnx.run_onnx(sonnx.session(moved / "model.onnx"), feed, config=seg.config)
    ref = reference_output(seg, feed)
    assert np.abs(out["image_float"] - ref).max() <= 1e-4 and ref.std() > 0.1
    assert out["label_ok"].all()
    # the data file is needed: without it the model does not load
    (moved / "model.onnx.data").unlink()
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own exception types
        sonnx.session(moved / "model.onnx")


def test_export_model_takes_the_large_path_above_the_threshold(tmp_path, seg, large,  # noqa: F811
                                                               monkeypatch):
    calls = []

    def converted(model, opset):  # the fixture's conversion, not a second one (time)
        calls.append(opset)
        return large

    monkeypatch.setattr(sonnx, "LARGE_MODEL_BYTES", 0)  # every model is "large"
    monkeypatch.setattr(sonnx, "_convert_large", converted)
    result = export_model(seg, "onnx", tmp_path, name="g")
    assert calls == [sonnx.DEFAULT_OPSET]
    assert (tmp_path / "g.onnx.data").exists() and result["check"]["passed"]
    assert result["check"]["max_abs"] <= 1e-4
    assert result["bytes"] == (tmp_path / "g.onnx").stat().st_size + (tmp_path / "g.onnx.data").stat().st_size
    # a second export over it (--overwrite) does not append to the old data file
    size = (tmp_path / "g.onnx.data").stat().st_size
    export_model(seg, "onnx", tmp_path, name="g", overwrite=True)
    assert (tmp_path / "g.onnx.data").stat().st_size == size
