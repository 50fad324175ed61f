#!/usr/bin/env python3
"""SPADE-Lite int8 TFLite latency vs the official PyTorch generator, interleaved, in one invocation.

At ADE20K size (256², 151 classes), random weights. Each student is converted to int8 TFLite once
(calibrated on 8 random blocky label maps, as spade_tf.benchmarks.export does), then ROUNDS times:
every student is timed (LiteRT, XNNPACK, batch 1, --threads threads) and the official generator is
timed in a subprocess (scripts/bench_official_torch.py, its own venv), so the two see the same load.
Prints one JSON line per measurement and a summary line; load averages are recorded.

  nice -n 5 .venv/bin/python scripts/bench_lite_latency.py --torch-python /tmp/h7/torchenv/bin/python \
      --official /tmp/h7/spade_official --students 0.5:sep,0.25:sep,0.25:plain --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--torch-python", required=True, help="python of a venv with torch + numpy")
    p.add_argument("--official", required=True, help="checkout of github.com/NVlabs/SPADE")
    p.add_argument("--students", default="0.5:sep,0.25:sep,0.25:plain", help="width:sep|plain,...")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5, help="timed student calls per round")
    p.add_argument("--official-runs", type=int, default=2, help="timed official calls per round")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from spade_tf.benchmarks.export import _timed
    from spade_tf.config import get_preset
    from spade_tf.cost import generator_cost, summary
    from spade_tf.export import tflite
    from spade_tf.inference import from_networks
    from spade_tf.models import make_generator

    work = Path(tempfile.mkdtemp(prefix="spade_lite_lat_"))
    students = []
    for spec in args.students.split(","):
        width, kind = spec.split(":")
        cfg = get_preset("ade20k").replace(netG="spade_lite", width=float(width), separable=kind == "sep")
        g = make_generator(cfg)
        g.build((None, *cfg.image_size, cfg.semantic_nc))
        model = from_networks(g, cfg)
        maps = [tflite.sample_feed(model, 1, seed)["label_map"][0] for seed in range(8)]
        start = time.perf_counter()
        path = tflite.export_tflite(model, work / f"lite_{width}_{kind}.tflite", "int8",
                                    lambda maps=maps, model=model: tflite.representative_inputs(model, maps))
        convert_s = time.perf_counter() - start
        interp = tflite.interpreter(path, num_threads=args.threads)
        feed = tflite.sample_feed(model, 1)
        students.append({"name": f"lite w{width} {kind}", "cost": summary(generator_cost(cfg)),
                         "bytes": path.stat().st_size, "convert_s": convert_s,
                         "run": lambda interp=interp, feed=feed: tflite.run_tflite(interp, feed),
                         "times": []})
        print(json.dumps({"converted": students[-1]["name"], "bytes": students[-1]["bytes"],
                          "convert_s": round(convert_s, 1)}), flush=True)

    official_cmd = [args.torch_python, str(Path(__file__).with_name("bench_official_torch.py")),
                    "--official", args.official, "--mode", "generator", "--warmup", "1",
                    "--runs", str(args.official_runs), "--threads", str(args.threads), "--",
                    "--dataset_mode", "ade20k", "--batchSize", "1", "--norm_G", "spectralspadebatch3x3",
                    "--no_vgg_loss"]
    official = []
    loads = [("start", os.getloadavg())]
    for rnd in range(args.rounds):
        for s in students:
            t = _timed(s["run"], args.runs, 2)
            s["times"] += t
            print(json.dumps({"round": rnd, "model": s["name"], "runs_s": [round(x, 4) for x in t],
                              "loadavg": os.getloadavg()}), flush=True)
        out = subprocess.run(official_cmd, capture_output=True, text=True, check=True).stdout
        row = json.loads(out)["timing"]
        official.append(row)
        print(json.dumps({"round": rnd, "model": "official torch", **{k: row[k] for k in row
                          if k in ("median_s", "runs_s", "cpu_per_wall")}, "loadavg": os.getloadavg()}),
              flush=True)
        loads.append((f"after round {rnd}", os.getloadavg()))
    off_times = [t for r in official for t in r["runs_s"]]
    off_med = statistics.median(off_times)
    for s in students:
        med = statistics.median(s["times"])
        print(json.dumps({"summary": s["name"], "gmac": s["cost"], "int8_bytes": s["bytes"],
                          "median_ms": round(1000 * med, 1), "min_ms": round(1000 * min(s["times"]), 1),
                          "max_ms": round(1000 * max(s["times"]), 1), "n": len(s["times"]),
                          "official_median_s": round(off_med, 3), "speedup": round(off_med / med, 1)}))
    print(json.dumps({"official_runs_s": off_times, "loadavg": loads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
