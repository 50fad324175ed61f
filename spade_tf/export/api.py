"""`export_model` (what `spade export` calls): build one deployment export of a generator, check it
against the Keras generator within its format's tolerance, and keep it only then."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError

FORMATS = ("saved_model", "tflite", "onnx")

# precision → (figure of `error_stats`, limit, "max" or "min"): what an export must reach vs Keras
TOLERANCES = {
    "float32": ("max_abs", 1e-4, "max"),
    "float16": ("max_abs", 1e-2, "max"),
    "dynamic": ("psnr_db", 25.0, "min"),
    "int8": ("psnr_db", 25.0, "min"),
    "bf16": ("psnr_db", 30.0, "min"),  # SavedModel computing in bfloat16 (spade_tf.precision), vs float32
}
FIGURE_NAMES = {"max_abs": "max abs error", "psnr_db": "PSNR (dB)"}


class ExportCheckError(SpadeError):
    """An export whose output differs from the Keras generator's by more than its tolerance."""


def precision(fmt: str, quantize: str = "none") -> str:
    """The key of TOLERANCES for an export: SavedModel and ONNX are float32; TFLite its quantization."""
    if fmt != "tflite" or quantize == "none":
        return "float32"
    return quantize


def enforce_tolerance(stats: dict, precision_key: str, what: str, tolerance: float | None = None) -> dict:
    """Check `error_stats` against TOLERANCES[precision_key] (or `tolerance`, the same figure's limit).

    Returns {"figure", "value", "limit", "passed"}; raises ExportCheckError naming `what`, the
    figure, its value and the limit when outside.
    """
    figure, limit, kind = TOLERANCES[precision_key]
    limit = float(limit if tolerance is None else tolerance)
    value = float(stats[figure])
    passed = value <= limit if kind == "max" else value >= limit
    if not passed:
        relation = "above the limit" if kind == "max" else "below the limit"
        raise ExportCheckError(
            f"{what}: export check failed: {FIGURE_NAMES[figure]} {value:.4g} vs the Keras generator on "
            f"{stats['maps']} label maps is {relation} {limit:g} for {precision_key} exports "
            f"({'at most' if kind == 'max' else 'at least'} {limit:g}); nothing was written. Pass "
            "--no-check (check=False) to keep such an export anyway")
    return {"figure": figure, "value": value, "limit": limit, "passed": passed}


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
                 overwrite: bool = False, check: bool = True, tolerance: float | None = None,
                 compute_precision: str = "float32") -> dict:
    """Export MODEL (a SpadeModel or a path for `load_generator`) as `fmt`.

    check: compare the export with the Keras generator on 4 sample label maps (or the first 4
    representative maps) and raise ExportCheckError, writing nothing, when it is outside
    TOLERANCES[precision(fmt, quantize)]; `tolerance` replaces that limit (same figure).
    Returns {"path", "bytes", "check": error_stats + {"figure", "value", "limit", "passed",
    "precision"}} ("check" absent with check=False).
    compute_precision "bf16" (SavedModel only, CPUs with native bf16): the graph computes in
    bfloat16 (`spade_tf.precision`), checked against the float32 Keras output (PSNR, "bf16").
    """
    from spade_tf.inference import SpadeModel, load_generator

    if fmt not in FORMATS:
        raise SpadeError(f"--format must be one of {FORMATS}, got '{fmt}'")
    model = model if isinstance(model, SpadeModel) else load_generator(model)
    out_dir = Path(out_dir)
    reps = None
    if representative_data is not None:
        reps = read_calibration_maps(model, representative_data, calibration_maps)
    feed = _check_feed(model, reps)
    key = precision(fmt, quantize)
    served = model
    if compute_precision != "float32":
        from spade_tf.precision import with_precision

        if fmt != "saved_model":
            raise SpadeError(f"--precision {compute_precision} applies to --format saved_model only "
                             "(TFLite: --quantize; ONNX: float32)")
        served, key = with_precision(model, compute_precision), compute_precision
    result = {}

    def compare(out, what):
        stats = error_stats(out, reference_output(model, feed))
        result["check"] = {**stats, "precision": key, "passed": False}
        result["check"].update(enforce_tolerance(stats, key, what, tolerance))

    if fmt == "saved_model":
        import tensorflow as tf

        from spade_tf.export.saved_model import export_saved_model

        path = export_saved_model(served, out_dir, name=name, version=version, overwrite=overwrite)
        if check:
            signature = tf.saved_model.load(str(path)).signatures["image_float"]
            out = signature(**{k: tf.constant(v) for k, v in feed.items()})["image_float"].numpy()
            try:
                compare(out, str(path))
            except ExportCheckError:
                shutil.rmtree(path, ignore_errors=True)
                raise
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
        flatbuffer = tflite.convert_tflite(model, quantize, representative)
        tflite.check_finite(model, flatbuffer)
        if check:
            compare(tflite.run_tflite(tflite.interpreter(flatbuffer), feed)["image_float"], str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(flatbuffer)
        size = path.stat().st_size
    else:
        from spade_tf.export import onnx

        path = out_dir / f"{name}.onnx"
        _refuse_existing(path, overwrite)
        proto = onnx.convert_onnx(model, opset=opset)
        out = onnx.run_onnx(onnx.session(proto), feed)["image_float"]
        if not np.all(np.isfinite(out)):
            raise SpadeError("the converted ONNX model outputs NaN/inf on a sample label map")
        if check:
            compare(out, str(path))
        size = onnx.save_onnx(proto, path)  # large models: + NAME.onnx.data (external weights)
    result.update({"path": str(path), "bytes": int(size)})
    return result


def _refuse_existing(path: Path, overwrite: bool) -> None:
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
