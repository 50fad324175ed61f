"""Full-size checks: ONNX through the large-model path, and bf16 against float32, measured.

    python scripts/onnx_large_check.py --preset ade20k --batches 1,8 --runs 2 --calibrate 2 \
        --bf16 --out /tmp/onnx_ade20k.json

The generator has random weights; with --calibrate N its batch-norm running statistics are set
from N blocky label maps and its last conv scaled to a pre-tanh std of 0.6 (as the tests'
`realistic_networks`), so the images are not saturated at +-1 (which would hide errors).
Parity = max abs difference of `image_float` against the folded Keras generator on blocky random
label maps. bf16: `spade_tf.precision.with_precision` (tf.function, no XLA) against float32, PSNR.
Prints JSON: conversion time, peak RSS after conversion and at the end (this process's
ru_maxrss), file sizes, parity, latency per batch size (the variants alternated call by call).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="ade20k")
    p.add_argument("--batches", default="1")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--keep", default=None, help="folder to keep model.onnx (+ .data) in")
    p.add_argument("--calibrate", type=int, default=0, help="label maps for batch-norm statistics")
    p.add_argument("--bf16", action="store_true", help="also bf16 (PSNR vs float32, batch-1 latency)")
    args = p.parse_args(argv)

    import tensorflow as tf

    from spade_tf.benchmarks.random_model import blocky_label_maps as blocky
    from spade_tf.benchmarks.random_model import calibrate
    from spade_tf.config import get_preset
    from spade_tf.export import onnx as sonnx
    from spade_tf.export import reference_output
    from spade_tf.inference import from_networks
    from spade_tf.models import SPADEGenerator

    cfg = get_preset(args.preset)
    h, w = cfg.image_size
    g = SPADEGenerator(cfg, name="generator")
    g.build((None, h, w, cfg.semantic_nc))
    if args.calibrate:
        calibrate(g, cfg, blocky(cfg, args.calibrate, 100))
    model = from_networks(g, cfg)
    result = {"preset": args.preset, "params": int(g.count_params()), "rss_mb_model": rss_mb(),
              "weight_bytes": sonnx.weight_bytes(model), "loadavg_before": os.getloadavg()}
    t = time.perf_counter()
    proto = sonnx.convert_onnx(model, large_model=True)
    result["convert_s"] = time.perf_counter() - t
    result["rss_mb_after_convert"] = rss_mb()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp())
    path = folder / "model.onnx"
    result["bytes"] = sonnx.save_onnx(proto, path)
    result["files"] = {f.name: f.stat().st_size for f in folder.iterdir()}
    del proto
    sess = sonnx.session(path)
    result["rss_mb_after_session"] = rss_mb()

    def feed(batch, seed):
        f = {"label_map": blocky(cfg, batch, seed)}
        if cfg.use_instance_edges:
            f["instance_map"] = np.roll(f["label_map"], 3, axis=2)
        return f

    f = feed(2, 5)
    out = sonnx.run_onnx(sess, f, config=cfg)["image_float"]
    ref = reference_output(model, f)
    result["parity_max_abs"] = float(np.max(np.abs(out - ref)))
    result["parity_mean_abs"] = float(np.mean(np.abs(out - ref)))
    result["output_std"] = float(np.std(ref))

    from spade_tf.models import make_semantics

    bf16_call = None
    if args.bf16:
        from spade_tf import precision

        bf16 = precision.with_precision(model, "bf16")
        fp32_fn = tf.function(lambda s: model.generator(s, training=False))
        bf16_fn = tf.function(lambda s: bf16.generator(s, training=False))
        sem = make_semantics(tf.constant(f["label_map"]), cfg, None)
        out_bf16 = bf16_fn(sem).numpy()
        result["bf16_psnr_db"] = precision.psnr_db(out_bf16, ref)
        result["bf16_max_abs"] = float(np.max(np.abs(out_bf16 - ref)))
        result["fp32_function_vs_reference_max_abs"] = float(np.max(np.abs(fp32_fn(sem).numpy() - ref)))
        bf16_call = {"function_fp32": fp32_fn, "function_bf16": bf16_fn}

    xla = tf.function(lambda s: model.generator(s, training=False), jit_compile=True)
    timings = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        fb = feed(batch, 9)
        sem = make_semantics(tf.constant(fb["label_map"]), cfg,
                             None if not cfg.use_instance_edges else tf.zeros((batch, h, w, 1)))
        sonnx.run_onnx(sess, fb)
        xla(sem).numpy()
        onnx_t, xla_t = [], []
        for _ in range(args.runs):  # alternated, so a slow phase of the machine hits both
            t = time.perf_counter()
            sonnx.run_onnx(sess, fb)
            onnx_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            xla(sem).numpy()
            xla_t.append(time.perf_counter() - t)
        timings[batch] = {"onnx_s": onnx_t, "keras_xla_s": xla_t}
        if bf16_call and batch == 1:
            for fn in bf16_call.values():
                fn(sem).numpy()
            extra = {k: [] for k in bf16_call}
            for _ in range(args.runs):
                for k, fn in bf16_call.items():
                    t = time.perf_counter()
                    fn(sem).numpy()
                    extra[k].append(time.perf_counter() - t)
            timings[batch].update({f"{k}_s": v for k, v in extra.items()})
    result["timings"] = timings
    result["rss_mb_end"] = rss_mb()
    result["loadavg_after"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
