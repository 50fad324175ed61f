"""ONNX export through tf2onnx (opset 15-18), run with onnxruntime.

Source graph: the same `SpadeServingModule(mobile=True)` function as the TFLite export (plain
variables, frozen by tf2onnx). Inputs `label_map` int32 [B, H, W] (+ `z` float32 [B, z_dim] for
VAE models, `instance_map` int32 [B, H, W] with instance edges); outputs `image` uint8
[B, H, W, 3], `image_float` float32 [-1, 1], `label_ok` bool [B] (ONNX has no asserts; False
for a row with ids the model does not take, which `run_onnx(..., config=)` refuses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spade_tf.data import labels
from spade_tf.errors import SpadeError
from spade_tf.export.saved_model import SpadeServingModule
from spade_tf.inference import SpadeModel

OPSETS = (15, 16, 17, 18)
DEFAULT_OPSET = 17


def convert_onnx(model: SpadeModel, opset: int = DEFAULT_OPSET):
    """The ONNX ModelProto."""
    import tf2onnx

    if opset not in OPSETS:
        raise SpadeError(f"--opset must be one of {OPSETS}, got {opset}")
    module = SpadeServingModule(model, mobile=True)
    function = module.mobile_function()
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                 opset=opset)
    except Exception as e:  # tf2onnx raises plain exceptions of many kinds
        raise SpadeError(f"ONNX conversion (opset {opset}) failed: {e}") from e
    return proto


def session(path_or_proto, num_threads: int | None = None):
    """An onnxruntime CPU InferenceSession for a .onnx file or ModelProto."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if num_threads:
        options.intra_op_num_threads = num_threads
    source = path_or_proto if isinstance(path_or_proto, str | Path) else path_or_proto.SerializeToString()
    return ort.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                providers=["CPUExecutionProvider"])


def run_onnx(sess, feeds: dict[str, np.ndarray], config=None) -> dict[str, np.ndarray]:
    """Run the session; with the model's `config`, rows flagged by `label_ok` raise the label-id
    rule's SpadeError (`spade_tf.data.labels`), as every other path does."""
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(names, feeds), strict=True))
    if config is not None:
        labels.check_label_ok(out["label_ok"], feeds["label_map"], config)
    return out


def export_onnx(model: SpadeModel, out_path, opset: int = DEFAULT_OPSET) -> Path:
    """Convert, check the output is finite on a sample label map, write `out_path`."""
    from spade_tf.export.tflite import sample_feed

    proto = convert_onnx(model, opset)
    out = run_onnx(session(proto), sample_feed(model))
    if not np.all(np.isfinite(out["image_float"])):
        raise SpadeError("the converted ONNX model outputs NaN/inf on a sample label map")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(proto.SerializeToString())
    return out_path
