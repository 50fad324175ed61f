"""TFLite at full size: size, latency and quality of each quantization, side by side with Keras XLA
and the official PyTorch generator, on real label maps; optionally where each graph's time goes.

    python scripts/tflite_full_check.py --preset ade20k --labels ../shared/data/facades/train/labels \\
        --official /path/to/SPADE --torch-python .venv/bin/python --runs 5 --profile --out tflite.json

The generator has seeded random weights, calibrated (`spade_tf.benchmarks.random_model`) on label
maps from --labels (the first --bn-maps files): batch-norm statistics from them, pre-tanh std 0.6,
so activations have the ranges of a working generator (int8 depends on them). int8 is calibrated on
the next --calibration-maps files; quality is PSNR of `image_float` against the float32 Keras output
on the --eval-maps files after those (all different files). Latency: batch 1, one call of each
runtime in turn per round (the official process too), so load hits all alike; TFLite with the
interpreter's default threads (every core). --profile: `spade_tf.benchmarks.tflite_ops` per graph.
Prints one JSON document (and writes --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

QUANTIZE = {"tflite_fp32": "none", "tflite_fp16": "float16", "tflite_dynamic": "dynamic",
            "tflite_int8": "int8"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ade20k")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--labels", required=True, help="folder of real label maps (PNG ids)")
    p.add_argument("--bn-maps", type=int, default=16)
    p.add_argument("--calibration-maps", type=int, default=100)
    p.add_argument("--eval-maps", type=int, default=8)
    p.add_argument("--modulation-std", type=float, default=None,
                   help="std of SPADE's gamma / beta (random_model.scale_modulation; default "
                        "BENCHMARK_MODULATION_STD)")
    p.add_argument("--formats", default=",".join(QUANTIZE))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--official", default=None, help="checkout of NVlabs/SPADE: time the official generator")
    p.add_argument("--torch-python", default="python3")
    p.add_argument("--profile", action="store_true", help="op-by-op profile of each TFLite graph")
    p.add_argument("--keep", default=None, help="folder to keep the .tflite files in")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import tensorflow as tf

    from spade_tf.benchmarks import tflite_ops
    from spade_tf.benchmarks.official import _Served, run_official
    from spade_tf.benchmarks.random_model import BENCHMARK_MODULATION_STD, calibrated_generator
    from spade_tf.benchmarks.speed import machine_info
    from spade_tf.config import get_preset
    from spade_tf.export import error_stats, reference_output, tflite
    from spade_tf.inference import from_networks, label_files, read_label_map
    from spade_tf.models import make_semantics

    cfg = get_preset(args.preset).with_overrides(args.overrides)
    files = label_files(args.labels)
    need = args.bn_maps + args.calibration_maps + args.eval_maps
    if len(files) < need:
        raise SystemExit(f"{args.labels}: {len(files)} label maps, need {need}")
    maps = np.stack([read_label_map(f, cfg) for f in files[:need]])
    bn_maps, cal_maps = maps[:args.bn_maps], maps[args.bn_maps:args.bn_maps + args.calibration_maps]
    eval_maps = maps[args.bn_maps + args.calibration_maps:]
    modulation_std = args.modulation_std or BENCHMARK_MODULATION_STD
    generator = calibrated_generator(cfg, seed=0, label_maps=bn_maps, modulation_std=modulation_std)
    model = from_networks(generator, cfg)
    reference = reference_output(model, {"label_map": eval_maps})
    result = {"preset": args.preset, "modulation_std": modulation_std, "overrides": args.overrides,
              "params": int(generator.count_params()),
              "labels": str(args.labels), "eval_files": [f.name for f in files[need - args.eval_maps:need]],
              "reference_std": float(reference.std()), "machine": machine_info(),
              "threads": tflite.default_threads(),
              "loadavg_start": os.getloadavg(), "formats": {}}

    feed = {"label_map": eval_maps[:1]}
    xla = tf.function(lambda s: model.generator(s, training=False), jit_compile=True)
    semantics = make_semantics(tf.constant(feed["label_map"]), cfg, None)
    runners = {"keras_xla": lambda: xla(semantics).numpy()}
    work = Path(args.keep or tempfile.mkdtemp(prefix="tflite_full_"))
    work.mkdir(parents=True, exist_ok=True)
    for fmt in args.formats.split(","):
        quantize = QUANTIZE[fmt]
        reps = (lambda: tflite.representative_inputs(model, cal_maps)) if quantize == "int8" else None
        start = time.perf_counter()
        path = tflite.export_tflite(model, work / f"{fmt}.tflite", quantize, reps)
        info = {"convert_s": time.perf_counter() - start, "bytes": path.stat().st_size,
                "rss_mb_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        interp = tflite.interpreter(path)
        outs = [tflite.run_tflite(interp, {"label_map": m[None]})["image_float"] for m in eval_maps]
        info["quality"] = error_stats(np.concatenate(outs), reference)
        info["psnr_per_map_db"] = [error_stats(o, r[None])["psnr_db"]
                                   for o, r in zip(outs, reference, strict=True)]
        flatbuffer = path.read_bytes()
        delegated = tflite_ops.delegated_ops(flatbuffer)
        info["ops"], info["ops_in_xnnpack"] = len(delegated), int(sum(delegated))
        if args.profile:
            rows = tflite_ops.profile_ops(flatbuffer, feed)
            info["profile_sum_s"] = sum(r["seconds"] for r in rows)
            info["profile"] = tflite_ops.summarize(rows)[:12]
        runner = interp.get_signature_runner("serving_default")
        runners[fmt] = lambda runner=runner: runner(**feed)
        result["formats"][fmt] = info
        print(json.dumps({fmt: {k: v for k, v in info.items() if k != "profile"}}), flush=True)

    official = None
    if args.official:
        cmd = run_official("generator", cfg, 1, args.official, args.torch_python, runs=args.runs, serve=True)
        official = _Served(cmd, None)
        official.ready()
        runners["official_pytorch"] = official.run_once
    times = {name: [] for name in runners}
    for fn in runners.values():
        fn()  # warm-up (XLA compiles, XNNPACK packs)
    for r in range(args.runs):
        order = list(runners.items())
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            if name == "official_pytorch":
                times[name].append(fn())
                continue
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    if official:
        official.finish()
        official.kill()
    result["latency_s"] = {name: {"median": statistics.median(t), "runs": t} for name, t in times.items()}
    result["loadavg_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
