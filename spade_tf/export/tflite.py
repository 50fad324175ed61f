"""TFLite (LiteRT) export: builtin ops only, float32 / float16 / dynamic-range / full int8.

Converted from our own SavedModel (`SpadeServingModule(mobile=True)`, plain module variables),
never from `tf.saved_model.save` of the Keras model: the converter does not freeze Keras 3
variables and the result outputs NaN. Every export is run once on a label map afterwards and
rejected if its output is not finite.

Model: signature `serving_default`, inputs `label_map` int32 [B, H, W] (+ `z` float32 [B, z_dim]
for VAE models, `instance_map` int32 [B, H, W] with instance edges), outputs `image` uint8
[B, H, W, 3], `image_float` float32 [-1, 1] and `label_ok` bool [B] (TFLite has no asserts: a
False row holds ids the model does not take; `run_tflite(..., config=)` refuses it with the
label-id rule's message). The batch dimension is dynamic (default 1; resize the input).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from spade_tf.data import labels
from spade_tf.data.synthetic import blocky_ids
from spade_tf.errors import SpadeError
from spade_tf.export.saved_model import SpadeServingModule, save_module
from spade_tf.inference import SpadeModel, z_from_seed

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")


def representative_inputs(model: SpadeModel, label_maps: Iterable[np.ndarray], seed: int = 0):
    """Calibration feeds {input name: array [1, ...]} for int8: the label maps, N(0, 1) z for VAE
    models (seeds seed, seed+1, ...), all-one instance maps (no edges)."""
    cfg = model.config
    for i, label_map in enumerate(label_maps):
        feed = {"label_map": np.asarray(label_map, np.int32)[None]}
        if cfg.use_vae:
            feed["z"] = z_from_seed([seed + i], cfg.z_dim).numpy()
        if cfg.use_instance_edges:
            feed["instance_map"] = np.ones_like(feed["label_map"])
        yield feed


def convert_tflite(model: SpadeModel, quantize: str = "none", representative=None) -> bytes:
    """The .tflite flatbuffer. `representative`: callable → iterable of feeds (int8 only)."""
    if quantize not in QUANTIZE_MODES:
        raise SpadeError(f"--quantize must be one of {QUANTIZE_MODES}, got '{quantize}'")
    if quantize == "int8" and representative is None:
        raise SpadeError("--quantize int8 needs --representative-data DIR (label maps to calibrate on)")
    with tempfile.TemporaryDirectory(prefix="spade_tflite_") as tmp:
        save_module(SpadeServingModule(model, mobile=True), Path(tmp) / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved_model"),
                                                             signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex (SELECT_TF_OPS)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = representative
            # int8 kernels everywhere they exist; the one-hot, casts and tanh stay float builtins
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            return converter.convert()
        except Exception as e:  # the converter raises ConverterError and friends
            raise SpadeError(f"TFLite conversion ({quantize}) failed: {e}") from e


def default_threads() -> int:
    """The cores this process may use (its CPU affinity), as TensorFlow and onnxruntime take by
    default. LiteRT's own default (num_threads unset) is ONE thread for XNNPACK."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def interpreter(path_or_bytes, num_threads: int | None = None):
    """A LiteRT interpreter for a .tflite file or flatbuffer bytes, running on `num_threads`
    threads (default: every core this process may use, `default_threads()`)."""
    from ai_edge_litert.interpreter import Interpreter

    num_threads = num_threads or default_threads()
    if isinstance(path_or_bytes, bytes | bytearray):
        return Interpreter(model_content=bytes(path_or_bytes), num_threads=num_threads)
    return Interpreter(model_path=str(path_or_bytes), num_threads=num_threads)


def run_tflite(interp, feeds: dict[str, np.ndarray], config=None) -> dict[str, np.ndarray]:
    """Run the `serving_default` signature with any batch size.

    With the model's `config`, a row the graph flags (`label_ok` False: an id the model does not
    take) raises the SpadeError every other path gives (`spade_tf.data.labels`).
    """
    runner = interp.get_signature_runner("serving_default")
    out = runner(**feeds)
    if config is not None:
        labels.check_label_ok(out["label_ok"], feeds["label_map"], config)
    return out


def export_tflite(model: SpadeModel, out_path, quantize: str = "none", representative=None) -> Path:
    """Convert, check the output is finite on a sample label map, write `out_path`."""
    flatbuffer = convert_tflite(model, quantize, representative)
    check_finite(model, flatbuffer)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(flatbuffer)
    return out_path


def sample_feed(model: SpadeModel, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Blocky random label maps (and z / instance maps) for checks and benchmarks."""
    cfg = model.config
    labels = blocky_ids(batch, *cfg.image_size, cfg.label_nc, seed)
    feed = {"label_map": labels}
    if cfg.use_vae:
        feed["z"] = z_from_seed(np.arange(seed, seed + batch), cfg.z_dim).numpy()
    if cfg.use_instance_edges:
        feed["instance_map"] = labels.astype(np.int32)
    return feed


def check_finite(model: SpadeModel, flatbuffer: bytes) -> None:
    out = run_tflite(interpreter(flatbuffer), sample_feed(model))
    if not np.all(np.isfinite(out["image_float"])):
        raise SpadeError("the converted TFLite model outputs NaN/inf on a sample label map: weights were "
                         "lost in conversion; please report this with your TensorFlow version")
