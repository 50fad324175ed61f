"""Deployment exports of a generator: SavedModel (TF Serving), TFLite (LiteRT), ONNX.

- `saved_model.py`: `SpadeServingModule` (signatures, in-graph validation), `export_saved_model`
- `tflite.py`: `convert_tflite` / `export_tflite` (float32, float16, dynamic, int8), LiteRT runner
- `onnx.py`: `convert_onnx` / `export_onnx` (tf2onnx), onnxruntime runner
- `benchmark.py`: `benchmark_export` latency / size table

`export_model` is what `spade export` calls. Heavy imports happen inside the functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = ("saved_model", "tflite", "onnx")


def error_stats(output: np.ndarray, reference: np.ndarray) -> dict:
    """max / mean abs error and PSNR (peak-to-peak 2: images in [-1, 1]) of output vs reference."""
    diff = np.asarray(output, np.float64) - np.asarray(reference, np.float64)
    mse = float(np.mean(diff ** 2))
    return {"max_abs": float(np.max(np.abs(diff))), "mean_abs": float(np.mean(np.abs(diff))),
            "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse)),
            "maps": int(diff.shape[0])}


def reference_output(model, feed: dict) -> np.ndarray:
    """The Keras generator's float image for a feed {label_map, z?, instance_map?}."""
    return model.synthesize_float(feed["label_map"], z=feed.get("z"),
                                  instance_maps=feed.get("instance_map"))


def read_calibration_maps(model, folder, limit: int = 100) -> list[np.ndarray]:
    """Up to `limit` label maps from a folder (validated, at the model size)."""
    from spade_tf.inference import label_files, read_label_map

    return [read_label_map(p, model.config) for p in label_files(folder)[:limit]]


def export_model(model, fmt: str, out_dir, name: str = "spade", version: int = 1, quantize: str = "none",
                 representative_data=None, calibration_maps: int = 100, opset: int = 17,
                 overwrite: bool = False, check: bool = True) -> dict:
    """Export MODEL (a SpadeModel or a path for `load_generator`) as `fmt`.

    Returns {"path", "bytes", "check": error_stats vs Keras on 4 sample label maps (or the first
    4 representative maps)}.
    """
    from spade_tf.errors import SpadeError
    from spade_tf.inference import SpadeModel, load_generator

    if fmt not in FORMATS:
        raise SpadeError(f"--format must be one of {FORMATS}, got '{fmt}'")
    model = model if isinstance(model, SpadeModel) else load_generator(model)
    out_dir = Path(out_dir)
    reps = None
    if representative_data is not None:
        reps = read_calibration_maps(model, representative_data, calibration_maps)
    feed = _check_feed(model, reps)
    result = {}
    if fmt == "saved_model":
        import tensorflow as tf

        from spade_tf.export.saved_model import export_saved_model

        path = export_saved_model(model, out_dir, name=name, version=version, overwrite=overwrite)
        if check:
            signature = tf.saved_model.load(str(path)).signatures["image_float"]
            out = signature(**{k: tf.constant(v) for k, v in feed.items()})["image_float"].numpy()
            result["check"] = error_stats(out, reference_output(model, feed))
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    elif fmt == "tflite":
        from spade_tf.export import tflite

        path = out_dir / (f"{name}.tflite" if quantize == "none" else f"{name}_{quantize}.tflite")
        _refuse_existing(path, overwrite)
        representative = None
        if quantize == "int8":
            if not reps:
                raise SpadeError("--quantize int8 needs --representative-data DIR of label maps")
            representative = lambda: tflite.representative_inputs(model, reps)  # noqa: E731
        tflite.export_tflite(model, path, quantize=quantize, representative=representative)
        if check:
            out = tflite.run_tflite(tflite.interpreter(path), feed)["image_float"]
            result["check"] = error_stats(out, reference_output(model, feed))
        size = path.stat().st_size
    else:
        from spade_tf.export import onnx

        path = out_dir / f"{name}.onnx"
        _refuse_existing(path, overwrite)
        onnx.export_onnx(model, path, opset=opset)
        if check:
            out = onnx.run_onnx(onnx.session(path), feed)["image_float"]
            result["check"] = error_stats(out, reference_output(model, feed))
        size = path.stat().st_size
    result.update({"path": str(path), "bytes": int(size)})
    return result


def _refuse_existing(path: Path, overwrite: bool) -> None:
    from spade_tf.errors import SpadeError

    if path.exists() and not overwrite:
        raise SpadeError(f"{path}: already exists; pass --overwrite or choose another --name")


def _check_feed(model, reps) -> dict:
    from spade_tf.export.tflite import sample_feed
    from spade_tf.inference import z_from_seed

    if not reps:
        return sample_feed(model, batch=4)
    labels = np.stack(reps[:4]).astype(np.int32)
    feed = {"label_map": labels}
    if model.config.use_vae:
        feed["z"] = z_from_seed(np.arange(len(labels)), model.config.z_dim).numpy()
    if model.config.use_instance_edges:
        feed["instance_map"] = labels.copy()
    return feed
