"""ONNX export of a full-size generator through the large-model path, measured.

    python scripts/onnx_large_check.py --preset ade20k --batches 1,8 --runs 2 --out /tmp/onnx_ade20k.json

Random weights with calibrated batch-norm statistics are not needed for parity of a float32 graph:
the generator is built with random weights (as `spade_tf.export.benchmark`); parity = max abs
difference of `image_float` against the folded Keras generator on blocky random label maps.
Prints JSON: conversion time, peak RSS after conversion and at the end (this process's
ru_maxrss), file sizes, parity, onnxruntime and Keras XLA latency per batch size (alternated).
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


def blocky(cfg, batch, seed):
    h, w = cfg.image_size
    coarse = np.random.default_rng(seed).integers(0, cfg.label_nc, (batch, -(-h // 8), -(-w // 8)))
    return np.repeat(np.repeat(coarse, 8, 1), 8, 2)[:, :h, :w].astype(np.int32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="ade20k")
    p.add_argument("--batches", default="1")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--keep", default=None, help="folder to keep model.onnx (+ .data) in")
    args = p.parse_args(argv)

    import tensorflow as tf

    from spade_tf.config import get_preset
    from spade_tf.export import onnx as sonnx
    from spade_tf.export import reference_output
    from spade_tf.inference import from_networks
    from spade_tf.models import SPADEGenerator

    cfg = get_preset(args.preset)
    h, w = cfg.image_size
    g = SPADEGenerator(cfg, name="generator")
    g.build((None, h, w, cfg.semantic_nc))
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
