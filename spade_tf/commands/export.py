"""`spade export`: SavedModel (TF Serving), TFLite (LiteRT) or ONNX."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  # TF Serving: writes exports/spade_ade20k/1/ (serve with --model_base_path=$PWD/exports/spade_ade20k)
  spade export --model converted/ade20k --format saved_model --out exports --name spade_ade20k --version 1

  # TFLite, float32 / float16 / dynamic-range / full int8 (calibrated on your label maps)
  spade export --model runs/facades --format tflite --out exports
  spade export --model runs/facades --format tflite --out exports --quantize float16
  spade export --model runs/facades --format tflite --out exports --quantize int8 \\
      --representative-data datasets/facades/val_label

  # ONNX (opset 15-18, default 17), for onnxruntime
  spade export --model runs/facades --format onnx --out exports --opset 17

Every export is run once after conversion and compared with the Keras generator on 4 sample label
maps (max/mean abs error and PSNR on the [-1, 1] image are printed). An export outside its format's
tolerance - float32 (SavedModel, ONNX, TFLite): max abs error <= 1e-4; TFLite float16: <= 1e-2;
TFLite dynamic-range and int8: PSNR >= 25 dB - stops with exit status 2, naming the figure and the
limit, and is not written; --no-check skips the comparison (with a warning). An export whose
output is not finite is always rejected. SavedModel signatures: serving_default, with_z and style
(VAE models), image_float; inputs are validated in the graph. TFLite / ONNX have one signature
with inputs label_map (+ z for VAE, + instance_map with instance edges) and outputs image (uint8),
image_float and label_ok (False for a label map with ids the model does not take). Valid ids:
0 .. num_label_channels-1, and 255 with a don't-care label, as everywhere. See docs/serving.md.
"""

from spade_tf.export import FORMATS  # noqa: E402 - numpy-only import, after the help text


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a generator for TF Serving, TFLite (LiteRT) or ONNX",
        description="Export a trained or converted generator (spectral norm folded).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--model", required=True,
                   help="generator .keras file, or a folder with generator.keras (+ config.json, "
                        "encoder.keras)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="spade",
                   help="model name: OUT/NAME/VERSION/ (SavedModel), OUT/NAME[_QUANT].tflite, OUT/NAME.onnx")
    p.add_argument("--version", type=int, default=1, help="SavedModel version folder (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.add_argument("--quantize", default="none", choices=("none", "float16", "dynamic", "int8"),
                   help="TFLite quantization (default none = float32)")
    p.add_argument("--representative-data", default=None, metavar="DIR",
                   help="label maps (PNG) to calibrate --quantize int8 on (up to --calibration-maps)")
    p.add_argument("--calibration-maps", type=int, default=100,
                   help="label maps used for int8 calibration (default 100)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 15-18 (default 17)")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="SavedModel arithmetic (default float32); bf16 only where the CPU has native "
                        "bf16 (AVX512_BF16 / AMX), checked against float32 (PSNR >= 30 dB)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the comparison with the Keras generator after export (and its tolerance)")
    return p


def run(args) -> int:
    import sys
    from pathlib import Path

    from spade_tf.errors import SpadeError
    from spade_tf.export import FIGURE_NAMES, export_model

    if args.format != "tflite" and args.quantize != "none":
        raise SpadeError("--quantize applies to --format tflite only")
    if args.quantize == "int8" and not args.representative_data:
        raise SpadeError("--quantize int8 needs --representative-data DIR of label maps (class-id PNGs)")
    result = export_model(
        args.model, args.format, Path(args.out), name=args.name, version=args.version,
        quantize=args.quantize, representative_data=args.representative_data,
        calibration_maps=args.calibration_maps, opset=args.opset, overwrite=args.overwrite,
        check=not args.no_check, compute_precision=args.precision)
    print(f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB)")
    if "check" in result:
        c = result["check"]
        bound = "<=" if c["figure"] == "max_abs" else ">="
        print(f"check vs Keras on {c['maps']} sample label maps: max abs error {c['max_abs']:.3g}, "
              f"mean {c['mean_abs']:.3g}, PSNR {c['psnr_db']:.1f} dB (images in [-1, 1]); passed: "
              f"{FIGURE_NAMES[c['figure']]} {bound} {c['limit']:g} ({c['precision']})")
    else:
        print("warning: --no-check: this export was not compared with the Keras generator; its output "
              "may differ from the model's", file=sys.stderr)
    return 0
