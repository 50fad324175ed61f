"""ONNX export through tf2onnx (opset 15-18), run with onnxruntime.

Source graph: the same `SpadeServingModule(mobile=True)` function as the TFLite export (plain
variables, frozen by tf2onnx). Inputs `label_map` int32 [B, H, W] (+ `z` float32 [B, z_dim] for
VAE models, `instance_map` int32 [B, H, W] with instance edges); outputs `image` uint8
[B, H, W, 3], `image_float` float32 [-1, 1], `label_ok` bool [B] (ONNX has no asserts; False
for a row with ids the model does not take, which `run_onnx(..., config=)` refuses).

Large models (`large_model=True`, automatic from LARGE_MODEL_BYTES of weights, e.g. the official
ADE20K / COCO-Stuff / Cityscapes generators): tf2onnx freezes every weight into the graph and then
holds many copies of them in its grappler and constant passes (> 23 GB for the 386 MB ADE20K
generator). The large-model path traces the same serving function with the generator's weights as
extra *inputs* (`stateless_call`), so tf2onnx converts a graph without large constants; the
weight inputs then become initializers, the transposes tf2onnx puts on them (HWIO → OIHW) are
applied once here, and `save_onnx` writes the weights as ONNX external data
(`NAME.onnx` + `NAME.onnx.data` beside it, loaded by onnxruntime from the same folder).
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


# weights above this many bytes take the large-model path (tf2onnx needed > 23 GB for 386 MB)
LARGE_MODEL_BYTES = 64 * 2**20
EXTERNAL_SUFFIX = ".data"


def weight_bytes(model: SpadeModel) -> int:
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.generator.variables))


def convert_onnx(model: SpadeModel, opset: int = DEFAULT_OPSET, large_model: bool | None = None):
    """The ONNX ModelProto (weights inside it, in memory; `save_onnx` writes them external when
    large). large_model None: the large-model path when the weights exceed LARGE_MODEL_BYTES."""
    import tf2onnx

    if opset not in OPSETS:
        raise SpadeError(f"--opset must be one of {OPSETS}, got {opset}")
    if large_model is None:
        large_model = weight_bytes(model) > LARGE_MODEL_BYTES
    if large_model:
        return _convert_large(model, opset)
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


def export_onnx(model: SpadeModel, out_path, opset: int = DEFAULT_OPSET,
                large_model: bool | None = None) -> Path:
    """Convert, check the output is finite on a sample label map, write `out_path` (+ its
    external-data file for large models, see `save_onnx`)."""
    from spade_tf.export.tflite import sample_feed

    proto = convert_onnx(model, opset, large_model=large_model)
    out = run_onnx(session(proto), sample_feed(model))
    if not np.all(np.isfinite(out["image_float"])):
        raise SpadeError("the converted ONNX model outputs NaN/inf on a sample label map")
    out_path = Path(out_path)
    save_onnx(proto, out_path)
    return out_path


# ---- large models: weights as inputs while converting, initializers (external data) after ----------
WEIGHT_PREFIX = "spade_weight_"


def _is_external(proto) -> bool:
    """A large-model proto: marked by `_convert_large`'s metadata."""
    return any(p.key == "spade_large_model" for p in proto.metadata_props)


def save_onnx(proto, path) -> int:
    """Write `proto` to `path`; a large-model proto (`convert_onnx(large_model=True)`) keeps its
    weights in `path` + EXTERNAL_SUFFIX beside it (ONNX external data, one file, relative name).
    Returns the bytes written (both files)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _is_external(proto):
        path.write_bytes(proto.SerializeToString())
        return path.stat().st_size
    data = path.with_name(path.name + EXTERNAL_SUFFIX)
    if data.exists():
        data.unlink()  # onnx appends to an existing data file
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # convert_model_to_external_data edits in place: keep the caller's proto whole
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return path.stat().st_size + data.stat().st_size


class _WeightsAsInputs(SpadeServingModule):
    """The mobile serving module with the generator's weights passed in at call time."""

    def __init__(self, model: SpadeModel):
        # no plain-variable copies: the weights come in as function arguments
        self._weights = None
        super().__init__(model, mobile=True)

    def _generator_weights(self):
        return self._weights


def _weights_function(model: SpadeModel):
    import tensorflow as tf

    from spade_tf.inference import to_uint8

    module = _WeightsAsInputs(model)
    generator = module._generator.model  # the export copy (`saved_model.export_generator`)
    specs = module.input_specs("with_z" if model.config.use_vae else "default")
    variables = [*generator.trainable_variables, *generator.non_trainable_variables]
    n_trainable = len(generator.trainable_variables)
    weight_specs = [tf.TensorSpec(v.shape, v.dtype, name=f"{WEIGHT_PREFIX}{i:04d}")
                    for i, v in enumerate(variables)]

    def fn(*args):
        inputs = dict(zip(specs, args[:len(specs)], strict=True))
        weights = list(args[len(specs):])
        module._weights = (weights[:n_trainable], weights[n_trainable:])
        image, label_ok = module._run(**inputs)
        return {"image": to_uint8(image), "image_float": image, "label_ok": label_ok}

    function = tf.function(fn, input_signature=[*specs.values(), *weight_specs], autograph=False)
    return function, [v.numpy() for v in variables]


def _convert_large(model: SpadeModel, opset: int):
    import onnx
    import tf2onnx
    from onnx import numpy_helper

    function, values = _weights_function(model)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                 opset=opset)
    except Exception as e:  # tf2onnx raises plain exceptions of many kinds
        raise SpadeError(f"ONNX conversion (opset {opset}, large-model path) failed: {e}") from e
    graph = proto.graph
    by_name = {f"{WEIGHT_PREFIX}{i:04d}": v for i, v in enumerate(values)}
    keep, found = [], 0
    for inp in list(graph.input):
        name = inp.name.split(":")[0]
        if name in by_name:
            graph.initializer.append(numpy_helper.from_array(by_name[name], inp.name))
            found += 1
        else:
            keep.append(inp)
    if found != len(values):
        raise SpadeError(f"ONNX large-model conversion: {found} of {len(values)} weight inputs found in "
                         "the converted graph")
    del graph.input[:]
    graph.input.extend(keep)
    _fold_weight_transposes(graph)
    proto.metadata_props.add(key="spade_large_model", value="1")
    onnx.checker.check_model(proto)
    return proto


def _fold_weight_transposes(graph) -> None:
    """Apply Transpose / Identity nodes whose only input is an initializer, once, here (tf2onnx
    adds them on weight inputs, e.g. HWIO → OIHW for Conv): the graph then holds the weights in
    the layout its operators read, as a conversion with frozen weights does."""
    from onnx import numpy_helper

    inits = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    keep_nodes = []
    for node in graph.node:
        src = node.input[0] if node.input else None
        if node.op_type in ("Transpose", "Identity") and src in inits and node.output[0] not in outputs:
            array = numpy_helper.to_array(inits[src])
            if node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                array = np.transpose(array, perm)
            new = numpy_helper.from_array(np.ascontiguousarray(array), node.output[0])
            graph.initializer.append(new)
            inits[new.name] = new
            uses[src] -= 1
            if uses[src] == 0:
                graph.initializer.remove(inits.pop(src))
            continue
        keep_nodes.append(node)
    del graph.node[:]
    graph.node.extend(keep_nodes)
