"""`spade benchmark`: speed and memory, ours next to the official PyTorch code, as JSON; and the
quality, export-format and demo-latency benchmarks. Options are parsed here; the work is in
`spade_tf.benchmarks` (speed, official, quality, export, demo), called with plain arguments."""

from __future__ import annotations

import argparse
import json
import os
import sys

from spade_tf.commands._options import add_overrides, add_preset, config_from

EXAMPLES = """examples:
  # generator inference, ADE20K preset (151 channels, 256x256), batch 1 and 4, several variants,
  # the official PyTorch generator timed in the same invocation (ratios = ours / official)
  spade benchmark generator --preset ade20k --batch 1 4 \\
      --variants eager,function,xla,xla+folded,function+bf16 \\
      --official /path/to/SPADE --torch-python /path/to/torch-venv/bin/python

  # one training iteration (G step + D step, hinge + feature matching, no VGG, TTUR Adam)
  spade benchmark train --preset ade20k --batch 1 --variants function,xla \\
      --official /path/to/SPADE --torch-python /path/to/torch-venv/bin/python

  # the official code alone (generator or train)
  spade benchmark official --mode train --preset ade20k \\
      --official /path/to/SPADE --torch-python /path/to/torch-venv/bin/python

  # quick check of the tooling at a small size
  spade benchmark generator --preset ade20k --set crop_size=64 --variants function --runs 1 --warmup 1

  # the other benchmarks (each with its own --help and examples)
  spade benchmark cost|quality|export|demo|tflite-ops --help

Variants: eager | function (tf.function) | xla (tf.function(jit_compile=True)), each optionally with
+folded (G.folded(): spectral norm folded into the kernels) and/or +bf16 (mixed_bfloat16 policy).
Each variant runs in its own process (own peak RSS); the official code runs first, in the same
invocation, under --torch-python (needs only torch and numpy). The official default norm_G
(spectralspadesyncbatch3x3) needs sync_batchnorm (--sync-batchnorm DIR holding sync_batchnorm/ from
github.com/vacancy/Synchronized-BatchNorm-PyTorch); without it the official side runs
spectralspadebatch3x3 (one device: the same F.batch_norm). Defaults come from the environment
variables SPADE_OFFICIAL_DIR, SPADE_TORCH_PYTHON, SPADE_SYNC_BATCHNORM when set.
"""


QUALITY_EXAMPLES = """examples:
  # CPU-sized (64x64, narrow networks, batch 1): three variants, evaluated every 150 steps
  spade benchmark quality --data facades/train --out runs/quality \\
      --preset facades --set crop_size=64 --set load_size=72 --set ngf=16 --set ndf=16 \\
      --set spade_nhidden=32 --set perceptual_backbone=alexnet \\
      --steps 1200 --eval-every 150 --segmenter-steps 600 --segmenter-width 16

  # the full-size facades preset (256x256, official widths, VGG19 perceptual loss) on a GPU
  spade benchmark quality --data facades/train --out runs/quality-full \\
      --steps 20000 --eval-every 2000   # VGG19: Keras downloads/caches it, or --perceptual-weights FILE

  # with a multimodal (VAE) variant, which also gets an LPIPS diversity score
  spade benchmark quality --data facades/train --out runs/q --variants baseline,vae
"""

EXPORT_EXAMPLES = """examples:
  # every format, the tiny preset, batch 1 and 8
  spade benchmark export --preset tiny --runs 5 --warmup 2 --out tiny.json

  # ADE20K size, a few formats, batch 1, TFLite / ONNX Runtime on 2 threads
  spade benchmark export --preset ade20k --batches 1 --runs 2 --warmup 1 \\
      --formats keras_xla,tflite_fp32,tflite_int8,onnx --threads 2 --out ade20k.json
"""

TFLITE_OPS_EXAMPLES = """examples:
  # where a .tflite spends its time: each op timed alone, grouped by op type, and which ops XNNPACK runs
  spade export --model runs/facades --format tflite --quantize int8 \\
      --representative-data datasets/facades/val_label --out exports
  spade benchmark tflite-ops exports/spade.tflite --runs 5 --out ops.json
"""

DEMO_EXAMPLES = """examples:
  # once: write a random-weight tiny model (latency does not depend on the weights), then time it
  spade benchmark demo --model /tmp/webdemo/tiny --make-random tiny --clients 1 --requests 1
  spade benchmark demo --model /tmp/webdemo/tiny --runtime keras --clients 1 4 16 --requests 10

  # the SavedModel runtime, two demo workers
  spade benchmark demo --model /tmp/webdemo/tiny --runtime savedmodel --workers 2 --clients 1 4 16
"""


def _common(p: argparse.ArgumentParser, default_variants: str | None) -> None:
    add_preset(p, default="ade20k")
    add_overrides(p)
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    if default_variants is not None:
        p.add_argument("--variants", default=default_variants,
                       help=f"comma-separated variants (default {default_variants})")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--runs", type=int, default=5, help="timed calls (default 5)")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the whole sequence (official, then each variant) this many times")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="intra/inter-op threads for TF and torch.set_num_threads (default: their own)")
    p.add_argument("--official", default=os.environ.get("SPADE_OFFICIAL_DIR"), metavar="DIR",
                   help="checkout of github.com/NVlabs/SPADE; omit to time ours only")
    p.add_argument("--torch-python", default=os.environ.get("SPADE_TORCH_PYTHON", "python3"),
                   metavar="PY", help="interpreter with torch for the official code (default python3)")
    p.add_argument("--sync-batchnorm", default=os.environ.get("SPADE_SYNC_BATCHNORM"), metavar="DIR",
                   help="folder containing sync_batchnorm/ for the official default norm_G")
    p.add_argument("--official-script", default=None, metavar="PATH",
                   help="scripts/bench_official_torch.py (default: the one in this checkout)")
    p.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=True,
                   help="with --official: keep the official process up and alternate its calls with "
                        "ours, one by one (default; fair on a shared machine). --no-interleave: run "
                        "official, then each variant, one after the other")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "benchmark", help="time the generator / a training iteration, next to the official code",
        description="Speed and peak memory of generator inference and of one training iteration, "
                    "with the official PyTorch code timed in the same invocation (prints JSON); "
                    "also cost (MACs, parameters), image quality against steps, latency and size "
                    "of each export format, and request latency of `spade demo`.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench_command", metavar="WHAT")
    g = sub.add_parser("generator", help="generator inference", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(g, "eager,function,xla,xla+folded")
    t = sub.add_parser("train", help="one training iteration (G step + D step, no VGG)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(t, "function")
    o = sub.add_parser("official", help="the official PyTorch code alone", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--mode", choices=("generator", "train"), default="generator")
    _common(o, None)
    c = sub.add_parser(
        "cost", help="MACs per image and parameters of a generator (official counting)",
        description="MACs per image (batch 1; conv: out.numel*kh*kw*cin/groups, dense: out*in, as the "
                    "official counting) and trainable parameters of a generator, from --model or a preset; "
                    "with --width (and --separable) also the SPADE-Lite generator of that size, side by "
                    "side. Prints JSON.",
        epilog="examples:\n  spade benchmark cost --preset ade20k\n"
               "  spade benchmark cost --preset ade20k --width 0.5 --separable\n"
               "  spade benchmark cost --model runs/distilled\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from spade_tf.commands.distill import add_cost_arguments

    add_cost_arguments(c)
    q = sub.add_parser(
        "quality", help="image quality against training steps, for a few training variants",
        description="Train variants of a preset for a fixed budget on a held-out split of a dataset folder "
                    "and record FD/KID (AlexNet features), segmentation accuracy of a built-in segmenter "
                    "and LPIPS diversity against steps. Writes results.csv/.json/.md and a PNG plot "
                    "(spade_tf.benchmarks.quality; see docs/benchmarks.md).",
        epilog=QUALITY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _quality_arguments(q)
    e = sub.add_parser(
        "export", help="latency per image and file size of each deployment format",
        description="Build a random-weight generator of a preset (calibrated: batch-norm statistics and "
                    "output scale as a working generator's, since int8 speed depends on activation ranges), "
                    "export it to each format and time it: one JSON line per (format, batch), then one line "
                    "of machine and model facts (spade_tf.benchmarks.export).",
        epilog=EXPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _export_arguments(e)
    d = sub.add_parser(
        "demo", help="request latency of `spade demo` over loopback (p50 / p95 per client count)",
        description="Start `spade demo --model MODEL` as its own process on a free loopback port, then C "
                    "client threads send a fixed number of requests back to back; prints one Markdown table "
                    "row per C (spade_tf.benchmarks.demo).",
        epilog=DEMO_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _demo_arguments(d)
    ops = sub.add_parser(
        "tflite-ops", help="op-by-op profile of a .tflite file (where the time goes, what XNNPACK runs)",
        description="Time every operator of a .tflite file on its own (a one-op model with the shapes the "
                    "whole model gives it, under XNNPACK exactly when XNNPACK takes the op in the whole "
                    "graph), then print a table by op type and the whole model's time "
                    "(spade_tf.benchmarks.tflite_ops).",
        epilog=TFLITE_OPS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ops.add_argument("model", help="the .tflite file")
    ops.add_argument("--threads", type=int, default=None, help="interpreter threads (default: every core)")
    ops.add_argument("--runs", type=int, default=5, help="timed calls per op, median (default 5)")
    ops.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    ops.add_argument("--out", default=None, metavar="FILE", help="also write every op's row as JSON here")
    return p


def _quality_arguments(p: argparse.ArgumentParser) -> None:
    from spade_tf.benchmarks.quality import VARIANTS

    p.add_argument("--data", required=True, help="dataset folder (facades layout: images/ + labels/)")
    p.add_argument("--out", required=True, help="output folder")
    add_preset(p, default="facades")
    add_overrides(p)
    p.add_argument("--steps", type=int, default=1000, help="training steps per variant (default 1000)")
    p.add_argument("--eval-every", type=int, default=200, help="evaluate every K steps (default 200)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="split, initial weights, data order, z (default 0)")
    p.add_argument("--variants", default="baseline,no_vgg,ema",
                   help=f"comma-separated, from {', '.join(VARIANTS)} (default baseline,no_vgg,ema)")
    p.add_argument("--segmenter-steps", type=int, default=1000,
                   help="training steps of the built-in segmenter (default 1000)")
    p.add_argument("--segmenter-width", type=int, default=32,
                   help="base width of the built-in segmenter (default 32)")
    p.add_argument("--diversity-k", type=int, default=3, help="samples per map for LPIPS diversity (VAE)")
    p.add_argument("--diversity-maps", type=int, default=16, help="label maps for LPIPS diversity (VAE)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--alexnet-weights", default=None, metavar="NPZ",
                   help="lpips_alex_v0.1.npz (default: $SPADE_ALEXNET_WEIGHTS, the cache, or fetched)")
    p.add_argument("--perceptual-weights", default=None, metavar="PATH",
                   help="weights of the perceptual loss (VGG19 file, or the AlexNet npz)")
    p.add_argument("--run-eagerly", action="store_true", help="no tf.function (debugging, tiny runs)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    from spade_tf.benchmarks.export import RUNTIMES

    add_preset(p, default="tiny")
    add_overrides(p)
    p.add_argument("--formats", default=",".join(RUNTIMES),
                   help=f"comma-separated, from {', '.join(RUNTIMES)} (default: all)")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--runs", type=int, default=3, help="timed calls per (format, batch) (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of the TFLite interpreter and ONNX Runtime session (default: every core)")
    p.add_argument("--out", default=None, metavar="FILE", help="also write all rows as JSON here")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder that `spade demo --model` serves")
    p.add_argument("--make-random", metavar="PRESET",
                   help="first write a random-weight PRESET model to --model")
    add_overrides(p, help="config override for --make-random, e.g. --set crop_size=64 (repeatable)")
    p.add_argument("--runtime", default="keras", choices=("keras", "savedmodel", "tflite"),
                   help="the demo's runtime (default keras)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16],
                   help="concurrent clients, one table row each (default 1 4 16)")
    p.add_argument("--requests", type=int, default=8, help="requests per client (default 8)")
    p.add_argument("--workers", type=int, default=1, help="the demo's --workers (default 1)")
    p.add_argument("--queue", type=int, default=16, help="the demo's --queue (default 16)")
    p.add_argument("--label", help="label PNG to send (default: blocky random ids)")


def _command_line() -> str:
    return ("spade " + " ".join(sys.argv[1:])).strip() if sys.argv else "spade"


def _run_quality(args) -> int:
    from spade_tf.benchmarks import quality

    report = quality.run_benchmark(
        args.data, args.out, preset=args.preset, overrides=args.overrides, steps=args.steps,
        eval_every=args.eval_every, val_fraction=args.val_fraction, seed=args.seed,
        variants=args.variants.split(","), segmenter_steps=args.segmenter_steps,
        segmenter_width=args.segmenter_width, diversity_k=args.diversity_k,
        diversity_maps=args.diversity_maps,
        kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
        alexnet_weights=args.alexnet_weights, perceptual_weights=args.perceptual_weights,
        run_eagerly=args.run_eagerly, plot=not args.no_plot, command=_command_line())
    print(quality.markdown_table(quality.final_rows(report)))
    return 0


def _run_export(args) -> int:
    from spade_tf.benchmarks.export import run_export_benchmark

    result = run_export_benchmark(
        args.preset, args.overrides, formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        batches=[int(b) for b in args.batches.split(",")], runs=args.runs, warmup=args.warmup,
        threads=args.threads, out=args.out)
    print(json.dumps(result["meta"]))
    return 0


def _run_demo(args) -> int:
    from spade_tf.benchmarks.demo import run_demo_benchmark

    run_demo_benchmark(args.model, runtime=args.runtime, clients=args.clients, requests=args.requests,
                       workers=args.workers, queue=args.queue, label=args.label,
                       make_random=args.make_random, overrides=args.overrides,
                       log=lambda line: print(line, flush=True))
    return 0

def _summary_row(batch, variant, result, official):
    from spade_tf.benchmarks.speed import compare

    if "error" in result:
        return {"batch": batch, "variant": variant, "error": result["error"]}
    ratio = compare(result, official)
    if ratio and "time_ratio" in result:  # interleaved: against the official calls of its own rounds
        ratio["time_ratio"] = result["time_ratio"]
    cpu = result["timing"]["cpu_per_wall"]
    return {"batch": batch, "variant": variant, "median_s": round(result["timing"]["median_s"], 4),
            "first_call_s": round(result["timing"]["first_call_s"] or 0.0, 3),
            "ratio_vs_official": round(ratio["time_ratio"], 3) if ratio else None,
            "peak_rss_mb": round(result["peak_rss_mb"]),
            "loadavg_1min": [round(result["loadavg_before"][0], 2), round(result["loadavg_after"][0], 2)],
            "cpu_per_wall": round(sum(cpu) / len(cpu), 2)}


def _interleaved_batch(args, kind, config, batch, variants, rnd, report):
    from spade_tf.benchmarks.official import run_interleaved, run_official

    official_cmd = run_official(kind, config, batch, args.official, args.torch_python, args.sync_batchnorm,
                                warmup=args.warmup, runs=args.runs, seed=args.seed, threads=args.threads,
                                script=args.official_script, serve=True)
    tasks = [{"kind": kind, "config": config.to_dict(), "batch": batch, "variant": v, "warmup": args.warmup,
              "runs": args.runs, "seed": args.seed, "threads": args.threads} for v in variants]
    print(f"[benchmark] {kind}, batch {batch}: official alternating with {', '.join(variants)} ...",
          file=sys.stderr, flush=True)
    try:
        official, results = run_interleaved(tasks, official_cmd, args.runs)
    except RuntimeError as e:  # the official process failed
        official, results = {"error": str(e)}, []
    report["summary"].append(_summary_row(batch, "official", official, official))
    for variant, result in zip(variants, results, strict=False):
        report["summary"].append(_summary_row(batch, variant, result, official))
    for row in report["summary"][-len(results) - 1:]:
        print(f"[benchmark]   {json.dumps(row)}", file=sys.stderr, flush=True)
    report["runs"].append({"round": rnd, "batch": batch, "official": official,
                           "ours": dict(zip(variants, results, strict=False))})


def run(args) -> int:
    from spade_tf.benchmarks.official import run_official
    from spade_tf.benchmarks.speed import machine_info, parse_variant, run_isolated
    from spade_tf.errors import SpadeError

    if args.bench_command is None:
        raise SpadeError("say what to benchmark: spade benchmark generator|train|official|cost|quality|"
                         "export|demo|tflite-ops (see spade benchmark --help)")
    if args.bench_command == "tflite-ops":
        from spade_tf.benchmarks.tflite_ops import run_profile

        run_profile(args.model, threads=args.threads, runs=args.runs, batch=args.batch, out=args.out,
                    log=lambda line: print(line, flush=True))
        return 0
    if args.bench_command in ("quality", "export", "demo"):
        return {"quality": _run_quality, "export": _run_export, "demo": _run_demo}[args.bench_command](args)
    if args.bench_command == "cost":
        from spade_tf.commands.distill import run_cost

        return run_cost(args)
    config = config_from(args)
    kind = args.mode if args.bench_command == "official" else args.bench_command
    variants = [] if args.bench_command == "official" else [v.strip() for v in args.variants.split(",")]
    for v in variants:
        parse_variant(v)  # fail early on a typo
    if args.bench_command == "official" and not args.official:
        raise SpadeError("spade benchmark official needs --official DIR (a checkout of NVlabs/SPADE)")

    report = {"command": "spade " + " ".join(sys.argv[1:]),
              "task": kind, "preset": args.preset, "overrides": args.overrides, "machine": machine_info(),
              "loadavg_start": list(os.getloadavg()), "summary": [], "runs": []}
    interleave = bool(args.official) and args.interleave and bool(variants)
    report["method"] = "interleaved" if interleave else "sequential"
    for rnd in range(args.rounds):
        for batch in args.batch:
            if interleave:
                _interleaved_batch(args, kind, config, batch, variants, rnd, report)
                continue
            entry = {"round": rnd, "batch": batch, "official": None, "ours": {}}
            if args.official:
                print(f"[benchmark] official {kind}, batch {batch} ...", file=sys.stderr, flush=True)
                entry["official"] = run_official(
                    kind, config, batch, args.official, args.torch_python, args.sync_batchnorm,
                    warmup=args.warmup, runs=args.runs, seed=args.seed, threads=args.threads,
                    script=args.official_script)
                official = entry["official"]
                report["summary"].append(_summary_row(batch, "official", official, official))
                print(f"[benchmark]   {json.dumps(report['summary'][-1])}", file=sys.stderr, flush=True)
            for variant in variants:
                print(f"[benchmark] ours {kind} {variant}, batch {batch} ...", file=sys.stderr, flush=True)
                task = {"kind": kind, "config": config.to_dict(), "batch": batch, "variant": variant,
                        "warmup": args.warmup, "runs": args.runs, "seed": args.seed, "threads": args.threads}
                entry["ours"][variant] = result = run_isolated(task)
                report["summary"].append(_summary_row(batch, variant, result, entry["official"]))
                print(f"[benchmark]   {json.dumps(report['summary'][-1])}", file=sys.stderr, flush=True)
            report["runs"].append(entry)
    report["loadavg_end"] = list(os.getloadavg())
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    failed = [row for row in report["summary"] if "error" in row]
    return 1 if failed else 0
