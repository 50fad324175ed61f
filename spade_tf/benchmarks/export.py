"""Latency per image and file size of each deployment format (a benchmark, not a test).

`benchmark_export(model, ...)` returns one row per (format, batch): median seconds per call and
per image over `runs` timed calls after `warmup` untimed ones, and the exported size.
`run_export_benchmark(preset, ...)` does it on a random-weight generator of a preset; the command is
`spade benchmark export --preset tiny` (prints JSON lines).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

RUNTIMES = ("keras_eager", "keras_xla", "saved_model", "tflite_fp32", "tflite_fp16", "tflite_dynamic",
            "tflite_int8", "onnx")


def _timed(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def benchmark_export(model, formats=RUNTIMES, batches=(1, 8), runs: int = 3, warmup: int = 1,
                     threads: int | None = None, workdir=None, log=print) -> list[dict]:
    """Rows {format, batch, median_s, per_image_s, runs_s, bytes, convert_s} for a SpadeModel."""
    import tensorflow as tf

    from spade_tf.export import onnx, tflite
    from spade_tf.export.saved_model import export_saved_model
    from spade_tf.models import make_semantics

    rows = []
    tmp = tempfile.TemporaryDirectory(prefix="spade_bench_") if workdir is None else None
    work = Path(workdir or tmp.name)
    cfg = model.config
    generator = model.generator
    for fmt in formats:
        start = time.perf_counter()
        size = None
        if fmt in ("keras_eager", "keras_xla"):
            if fmt == "keras_xla":
                call = tf.function(lambda s, z: generator(s, z=z, training=False), jit_compile=True)
            else:
                call = lambda s, z: generator(s, z=z, training=False)  # noqa: E731

            def runner(feed, call=call):
                edges = tf.zeros((*feed["label_map"].shape, 1)) if cfg.use_instance_edges else None
                semantics = make_semantics(tf.constant(feed["label_map"]), cfg, edges)
                return call(semantics, None if "z" not in feed else tf.constant(feed["z"])).numpy()
        elif fmt == "saved_model":
            path = export_saved_model(model, work, name="bench", overwrite=True)
            size = _size(path)
            loaded = tf.saved_model.load(str(path))
            signature = loaded.signatures["with_z" if cfg.use_vae else "serving_default"]

            def runner(feed, signature=signature):
                return signature(**{k: tf.constant(v) for k, v in feed.items()})["image"].numpy()
        elif fmt.startswith("tflite"):
            quantize = {"tflite_fp32": "none", "tflite_fp16": "float16", "tflite_dynamic": "dynamic",
                        "tflite_int8": "int8"}[fmt]
            reps = None
            if quantize == "int8":
                maps = [tflite.sample_feed(model, 1, seed)["label_map"][0] for seed in range(8)]
                reps = lambda maps=maps: tflite.representative_inputs(model, maps)  # noqa: E731
            path = tflite.export_tflite(model, work / f"{fmt}.tflite", quantize, reps)
            size = _size(path)
            interp = tflite.interpreter(path, num_threads=threads)

            def runner(feed, interp=interp):
                return tflite.run_tflite(interp, feed)["image"]
        elif fmt == "onnx":
            path = onnx.export_onnx(model, work / "model.onnx")
            data = path.with_name(path.name + onnx.EXTERNAL_SUFFIX)  # large models' external weights
            size = _size(path) + (_size(data) if data.exists() else 0)
            sess = onnx.session(path, num_threads=threads)

            def runner(feed, sess=sess):
                return onnx.run_onnx(sess, feed)["image"]
        else:
            raise ValueError(f"unknown format {fmt}; choose from {RUNTIMES}")
        convert_s = time.perf_counter() - start
        for batch in batches:
            feed = tflite.sample_feed(model, batch)
            times = _timed(lambda runner=runner, feed=feed: runner(feed), runs, warmup)
            median = statistics.median(times)
            row = {"format": fmt, "batch": batch, "median_s": median, "per_image_s": median / batch,
                   "runs_s": times, "bytes": size, "convert_s": convert_s}
            rows.append(row)
            log(json.dumps(row))
    if tmp is not None:
        tmp.cleanup()
    return rows


def run_export_benchmark(preset: str = "tiny", overrides=(), formats=RUNTIMES, batches=(1, 8), runs: int = 3,
                         warmup: int = 1, threads: int | None = None, out=None, log=print) -> dict:
    """`benchmark_export` on a calibrated random-weight generator of `preset` + `overrides`
    (`random_model.calibrated_generator`: int8 latency depends on the activation ranges, and an
    uncalibrated generator's are absurd): {"meta": machine and model facts, "rows": [...]}, also
    written to `out` as JSON."""
    import os
    import platform

    from spade_tf.benchmarks.random_model import BENCHMARK_MODULATION_STD, calibrated_generator
    from spade_tf.config import get_preset
    from spade_tf.inference import from_networks

    overrides = list(overrides)
    cfg = get_preset(preset).with_overrides(overrides)
    h, w = cfg.image_size
    generator = calibrated_generator(cfg, maps=2, modulation_std=BENCHMARK_MODULATION_STD)
    model = from_networks(generator, cfg)
    rows = benchmark_export(model, list(formats), [int(b) for b in batches], runs, warmup, threads, log=log)
    meta = {"preset": preset, "overrides": overrides, "image_size": [h, w],
            "semantic_nc": cfg.semantic_nc, "generator_params": int(generator.count_params()),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()}
    if out:
        Path(out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return {"meta": meta, "rows": rows}
