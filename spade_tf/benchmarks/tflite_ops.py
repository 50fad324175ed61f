"""Where a TFLite graph spends its time: every op timed on its own, and which ops XNNPACK runs.

LiteRT's Python API has no per-op profiler (the C++ `benchmark_model` tool has one and is not
shipped in the wheel), so `profile_ops` cuts the model apart instead: for each operator of the
main subgraph it builds a one-op model (the op, its constant inputs, its other inputs as model
inputs with the concrete shapes the full model gives them at the benchmark's batch size), runs it
under the default XNNPACK delegate with `threads` threads and takes the median of `runs` calls.
An op's time alone can differ from its time in the graph (caches, the delegate fusing neighbours),
so the report gives the sum of the parts beside the whole model's time.

Inputs are zeros (indices stay in range, so gathers and one-hots are valid; no op here has
data-dependent speed).
"""

from __future__ import annotations

import collections
import statistics
import time

import numpy as np


def _litert():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    return schema, Interpreter, flatbuffer_utils


def op_names(model) -> list[str]:
    """Builtin op name of every operator of the main subgraph (flatbuffer ModelT)."""
    schema, _, fb = _litert()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(fb.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]), "CUSTOM")
            for op in model.subgraphs[0].operators]


def concrete_tensors(model, feed: dict[str, np.ndarray], small: int = 64):
    """(tensor index → shape, tensor index → value of every computed int tensor of at most `small`
    elements) for the signature inputs `feed`: shapes as the interpreter propagates them, and the
    shape arguments (a RESHAPE's target shape, a TILE's multiples) that a one-op model must get as
    constants rather than zeros."""
    _, Interpreter, fb = _litert()
    sub = model.subgraphs[0]
    interp = Interpreter(model_content=bytes(fb.convert_object_to_bytearray(model)))
    interp.get_signature_runner("serving_default")(**feed)
    shapes = {d["index"]: [int(n) for n in d["shape"]] for d in interp.get_tensor_details()}
    consts = {i for i, t in enumerate(sub.tensors) if t.buffer and model.buffers[t.buffer].data is not None
              and len(model.buffers[t.buffer].data)}
    wanted = [i for i, t in enumerate(sub.tensors) if i not in consts and i in shapes
              and np.prod(shapes[i]) <= small and t.type in (2, 4)]  # INT32, INT64
    old_outputs, old_sigs = sub.outputs, model.signatureDefs
    sub.outputs, model.signatureDefs = np.array(wanted, np.int32), []
    try:
        probe = Interpreter(model_content=bytes(fb.convert_object_to_bytearray(model)))
    finally:
        sub.outputs, model.signatureDefs = old_outputs, old_sigs
    for d in probe.get_input_details():
        name = next(k for k in feed if k in d["name"])
        probe.resize_tensor_input(d["index"], feed[name].shape)
    probe.allocate_tensors()
    for d in probe.get_input_details():
        probe.set_tensor(d["index"], feed[next(k for k in feed if k in d["name"])].astype(d["dtype"]))
    probe.invoke()
    values = {d["index"]: probe.get_tensor(d["index"]) for d in probe.get_output_details()}
    return shapes, values


def delegated_ops(flatbuffer: bytes, threads: int = 1) -> list[bool]:
    """For each operator: does the XNNPACK delegate take it? (node fusion disabled, so every
    delegated op becomes its own DELEGATE node; matched by output tensor)."""
    _, Interpreter, fb = _litert()
    model = fb.read_model_from_bytearray(flatbuffer)
    interp = Interpreter(model_content=flatbuffer, num_threads=threads,
                         experimental_disable_delegate_node_fusion=True)
    interp.allocate_tensors()
    # the details list the graph's original nodes, then one DELEGATE node per op XNNPACK took
    taken = {tuple(d["outputs"]) for d in interp._get_ops_details() if d["op_name"] == "DELEGATE"}
    return [tuple(op.outputs) in taken for op in model.subgraphs[0].operators]


def _one_op_model(model, op, shapes, values):
    """A ModelT holding only `op`: inputs without constant data become model inputs, except small
    computed int tensors (shape arguments), which become constants holding their real `values`."""
    schema, _, _ = _litert()
    sub = model.subgraphs[0]
    new = schema.ModelT()
    new.version, new.operatorCodes, new.description = model.version, model.operatorCodes, b"one op"
    new.buffers = [schema.BufferT()]
    new_sub = schema.SubGraphT()
    remap, tensors, inputs = {}, [], []

    def add(index, is_input):
        if index < 0 or index in remap:
            return
        src = sub.tensors[index]
        t = schema.TensorT()
        t.name, t.type, t.quantization = src.name, src.type, src.quantization
        t.shape = np.array(shapes.get(index, src.shape), np.int32)
        t.shapeSignature = None
        data = model.buffers[src.buffer].data if src.buffer else None
        if (data is None or not len(data)) and index in values:
            data = np.frombuffer(np.ascontiguousarray(values[index]).tobytes(), np.uint8)
        if data is not None and len(data):
            buf = schema.BufferT()
            buf.data = data
            new.buffers.append(buf)
            t.buffer = len(new.buffers) - 1
        else:
            t.buffer = 0
            if is_input:
                inputs.append(len(tensors))
        remap[index] = len(tensors)
        tensors.append(t)

    for i in op.inputs:
        add(i, True)
    for i in op.outputs:
        add(i, False)
    new_op = schema.OperatorT()
    for attr in ("opcodeIndex", "builtinOptionsType", "builtinOptions", "customOptions",
                 "customOptionsFormat", "builtinOptions2Type", "builtinOptions2"):
        if hasattr(op, attr):
            setattr(new_op, attr, getattr(op, attr))
    new_op.inputs = np.array([remap.get(i, -1) for i in op.inputs], np.int32)
    new_op.outputs = np.array([remap[i] for i in op.outputs], np.int32)
    new_sub.tensors, new_sub.operators = tensors, [new_op]
    new_sub.inputs = np.array(inputs, np.int32)
    new_sub.outputs = np.array([remap[i] for i in op.outputs], np.int32)
    new.subgraphs = [new_sub]
    return new


def _time_model(flatbuffer: bytes, threads: int, runs: int, delegate: bool = True) -> tuple[float, bool]:
    """(median seconds of one invoke, delegated?) for a one-op model fed zeros; `delegate` False:
    LiteRT's builtin kernel, as in a graph where XNNPACK did not take the op."""
    from ai_edge_litert.interpreter import OpResolverType

    _, Interpreter, _ = _litert()
    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=flatbuffer, num_threads=threads,
                         experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    delegated = any(d["op_name"] == "DELEGATE" for d in interp._get_ops_details())
    interp.invoke()  # warm-up (XNNPACK packs weights on the first call)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times), delegated


def one_op_flatbuffers(flatbuffer: bytes, feed: dict[str, np.ndarray]):
    """Yields (index, op name, output shape, one-op .tflite bytes) for every operator of the main
    subgraph, shapes and shape arguments taken from running the model on `feed`."""
    _, _, fb = _litert()
    model = fb.read_model_from_bytearray(flatbuffer)
    shapes, values = concrete_tensors(model, feed)
    names = op_names(model)
    for index, op in enumerate(model.subgraphs[0].operators):
        one = bytes(fb.convert_object_to_bytearray(_one_op_model(model, op, shapes, values)))
        yield index, names[index], shapes.get(int(op.outputs[0])), one


def profile_ops(flatbuffer: bytes, feed: dict[str, np.ndarray], threads: int = 2, runs: int = 5,
                log=None) -> list[dict]:
    """One row per operator: {index, op, seconds, delegated, output_shape}. An op runs under XNNPACK
    alone exactly when XNNPACK takes it in the whole graph (`delegated_ops`: the graph's dynamic
    batch dimension keeps some ops XNNPACK could run out of it)."""
    rows = []
    in_graph = delegated_ops(flatbuffer, threads)
    for index, name, shape, one in one_op_flatbuffers(flatbuffer, feed):
        try:
            seconds, delegated = _time_model(one, threads, runs, delegate=in_graph[index])
        except RuntimeError:  # e.g. a float16 weight's DEQUANTIZE, which XNNPACK folds into its
            seconds, delegated = _time_model(one, threads, runs, delegate=False)  # consumer in the graph
        rows.append({"index": index, "op": name, "seconds": seconds, "delegated": delegated,
                     "output_shape": shape})
        if log is not None and index % 100 == 99:
            log(f"  {index + 1} ops timed")
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per op type (and delegated or not): count and total seconds, largest first."""
    groups = collections.defaultdict(lambda: {"count": 0, "seconds": 0.0})
    for r in rows:
        g = groups[(r["op"], r["delegated"])]
        g["count"] += 1
        g["seconds"] += r["seconds"]
    total = sum(r["seconds"] for r in rows) or 1.0
    out = [{"op": op, "delegated": d, **g, "share": g["seconds"] / total} for (op, d), g in groups.items()]
    return sorted(out, key=lambda g: -g["seconds"])


def time_model(flatbuffer: bytes, feed: dict[str, np.ndarray], threads: int = 2, runs: int = 5) -> float:
    """Median seconds of the whole model's signature call."""
    _, Interpreter, _ = _litert()
    interp = Interpreter(model_content=flatbuffer, num_threads=threads)
    runner = interp.get_signature_runner("serving_default")
    runner(**feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(**feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def zeros_feed(flatbuffer: bytes, batch: int = 1) -> dict[str, np.ndarray]:
    """Zeros for every input of the `serving_default` signature, the batch dimension set to `batch`
    (id 0 is a valid label everywhere, and no op here has data-dependent speed)."""
    _, Interpreter, _ = _litert()
    runner = Interpreter(model_content=flatbuffer).get_signature_runner("serving_default")
    feed = {}
    for name, detail in runner.get_input_details().items():
        shape = [batch if n < 0 else int(n) for n in detail["shape_signature"]]
        feed[name] = np.zeros(shape, detail["dtype"])
    return feed


def run_profile(path, threads: int | None = None, runs: int = 5, batch: int = 1, out=None,
                log=print) -> dict:
    """Profile a .tflite file: {"whole_s", "sum_of_ops_s", "ops", "ops_in_xnnpack", "by_op", "rows"}
    (also written to `out` as JSON), logging a table of op types, largest share first."""
    import json
    from pathlib import Path

    from spade_tf.errors import SpadeError
    from spade_tf.export.tflite import default_threads

    path = Path(path)
    if not path.is_file():
        raise SpadeError(f"{path}: no such .tflite file")
    flatbuffer = path.read_bytes()
    threads = threads or default_threads()
    feed = zeros_feed(flatbuffer, batch)
    whole = time_model(flatbuffer, feed, threads, runs)
    rows = profile_ops(flatbuffer, feed, threads, runs, log=log)
    by_op = summarize(rows)
    result = {"file": str(path), "threads": threads, "batch": batch, "whole_s": whole,
              "sum_of_ops_s": sum(r["seconds"] for r in rows), "ops": len(rows),
              "ops_in_xnnpack": sum(r["delegated"] for r in rows), "by_op": by_op, "rows": rows}
    log(f"{path.name}: {whole:.4f} s per call (batch {batch}, {threads} threads); ops timed alone sum to "
        f"{result['sum_of_ops_s']:.4f} s; {result['ops_in_xnnpack']} of {len(rows)} ops run by XNNPACK")
    log("| op | XNNPACK | count | seconds | share |\n|---|---|---:|---:|---:|")
    for g in by_op:
        log(f"| {g['op']} | {'yes' if g['delegated'] else 'no'} | {g['count']} | {g['seconds']:.4f} | "
            f"{100 * g['share']:.1f}% |")
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result
