"""Deployment exports of a generator: SavedModel (TF Serving), TFLite (LiteRT), ONNX.

- `saved_model.py`: `SpadeServingModule` (signatures, in-graph validation), `export_saved_model`
- `tflite.py`: `convert_tflite` / `export_tflite` (float32, float16, dynamic, int8), LiteRT runner
- `onnx.py`: `convert_onnx` / `export_onnx` (tf2onnx), onnxruntime runner
- `api.py`: `export_model`, the format tolerances and the check
(the latency / size table per format is `spade_tf.benchmarks.export`)

`api.export_model` is what `spade export` calls (re-exported here with its constants). Heavy
imports happen inside the functions.

Every export is checked before it is kept: its float image on 4 label maps is compared with the
Keras generator's, and an export outside its format's tolerance (`TOLERANCES`) raises
`ExportCheckError` naming the figure and the limit, and is not written (SavedModel: removed).
`check=False` (`spade export --no-check`) skips the comparison.
"""

from spade_tf.export.api import (
    FIGURE_NAMES,
    FORMATS,
    TOLERANCES,
    ExportCheckError,
    enforce_tolerance,
    error_stats,
    export_model,
    precision,
    read_calibration_maps,
    reference_output,
)

__all__ = ["FIGURE_NAMES", "FORMATS", "TOLERANCES", "ExportCheckError", "enforce_tolerance", "error_stats",
           "export_model", "precision", "read_calibration_maps", "reference_output"]
