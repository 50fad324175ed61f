"""The TFLite op profiler (spade_tf.benchmarks.tflite_ops) and the interpreter's thread default."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_export import _feed
from test_inference import _config, realistic_networks

from spade_tf.inference import from_networks

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def tiny_tflite():
    from spade_tf.export import tflite

    cfg = _config()
    g, _ = realistic_networks(cfg, seed=4)
    model = from_networks(g, cfg)
    feed = _feed(model, batch=1, seed=5)
    return tflite.convert_tflite(model, "none"), feed


def test_one_op_models_reproduce_the_graph(tiny_tflite):
    """Each one-op model, fed the values its inputs have in the whole graph, gives the value its
    output has there: the cut keeps options, constants, shapes and shape arguments."""
    from ai_edge_litert.interpreter import Interpreter

    from spade_tf.benchmarks import tflite_ops

    flatbuffer, feed = tiny_tflite
    whole = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
    whole.get_signature_runner("serving_default")(**feed)
    by_name = {d["name"]: d["index"] for d in whole.get_tensor_details()}
    checked = set()
    for _, name, shape, one in tflite_ops.one_op_flatbuffers(flatbuffer, feed):
        if name in checked and name != "GATHER":
            continue
        part = Interpreter(model_content=one)
        part.allocate_tensors()
        for d in part.get_input_details():
            part.set_tensor(d["index"], whole.get_tensor(by_name[d["name"]]))
        part.invoke()
        out = part.get_output_details()[0]
        want = whole.get_tensor(by_name[out["name"]])
        got = part.get_tensor(out["index"])
        assert list(got.shape) == list(shape) == list(want.shape), name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
        checked.add(name)
    assert {"CONV_2D", "GATHER", "ADD", "RESHAPE", "STRIDED_SLICE", "ONE_HOT"} <= checked


def test_profile_rows_and_delegation(tiny_tflite):
    from spade_tf.benchmarks import tflite_ops

    flatbuffer, feed = tiny_tflite
    rows = tflite_ops.profile_ops(flatbuffer, feed, threads=1, runs=1)
    delegated = tflite_ops.delegated_ops(flatbuffer)
    assert len(rows) == len(delegated) > 100
    assert all(r["seconds"] > 0 for r in rows)
    by_op = {}
    for r, d in zip(rows, delegated, strict=True):
        assert r["delegated"] == d, r  # the one-op model is delegated exactly when the op is in the graph
        by_op.setdefault(r["op"], set()).add(r["delegated"])
    assert by_op["CONV_2D"] == {True} and by_op["GATHER"] == {False}
    summary = tflite_ops.summarize(rows)
    assert sum(g["count"] for g in summary) == len(rows)
    assert abs(sum(g["share"] for g in summary) - 1) < 1e-9


def test_interpreter_uses_every_core_by_default(monkeypatch):
    """LiteRT's own default is one XNNPACK thread; ours is the process's cores."""
    import ai_edge_litert.interpreter as litert

    from spade_tf.export import tflite

    seen = []

    class Recorder:
        def __init__(self, **kwargs):
            seen.append(kwargs["num_threads"])

    monkeypatch.setattr(litert, "Interpreter", Recorder)
    tflite.interpreter(b"model")
    tflite.interpreter(b"model", num_threads=3)
    assert seen == [len(os.sched_getaffinity(0)), 3]


def test_cli_tflite_ops(tiny_tflite, tmp_path, capsys):
    import json

    from spade_tf.cli import main

    flatbuffer, _ = tiny_tflite
    path = tmp_path / "tiny.tflite"
    path.write_bytes(flatbuffer)
    assert main(["benchmark", "tflite-ops", str(path), "--runs", "1", "--threads", "1",
                 "--out", str(tmp_path / "ops.json")]) == 0
    printed = capsys.readouterr().out
    assert "| CONV_2D | yes |" in printed and "| GATHER | no |" in printed
    report = json.loads((tmp_path / "ops.json").read_text())
    assert report["ops"] == len(report["rows"]) > 100 and report["whole_s"] > 0
    assert 0 < report["ops_in_xnnpack"] < report["ops"]
    assert main(["benchmark", "tflite-ops", str(tmp_path / "missing.tflite")]) == 2
    assert "missing.tflite: no such .tflite file" in capsys.readouterr().err
