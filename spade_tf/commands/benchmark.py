"""`spade benchmark`: speed and memory, ours next to the official PyTorch code, as JSON."""

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

Variants: eager | function (tf.function) | xla (tf.function(jit_compile=True)), each optionally with
+folded (G.folded(): spectral norm folded into the kernels) and/or +bf16 (mixed_bfloat16 policy).
Each variant runs in its own process (own peak RSS); the official code runs first, in the same
invocation, under --torch-python (needs only torch and numpy). The official default norm_G
(spectralspadesyncbatch3x3) needs sync_batchnorm (--sync-batchnorm DIR holding sync_batchnorm/ from
github.com/vacancy/Synchronized-BatchNorm-PyTorch); without it the official side runs
spectralspadebatch3x3 (one device: the same F.batch_norm). Defaults come from the environment
variables SPADE_OFFICIAL_DIR, SPADE_TORCH_PYTHON, SPADE_SYNC_BATCHNORM when set.
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
                    "with the official PyTorch code timed in the same invocation. Prints JSON.",
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
        "quality", help="image quality benchmark (spade_tf.benchmarks.quality)",
        description="Train variants (baseline, lambda_vgg=0, EMA) on a held-out split and record FD/KID "
                    "(AlexNet features), mIoU with the built-in segmenter and LPIPS diversity against "
                    "steps; see docs/benchmarks.md.",
        epilog="example:\n  spade benchmark quality --data ../shared/data/facades/train \\\n"
               "      --out runs/quality --set crop_size=64 --set load_size=72 --steps 1200\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from spade_tf.benchmarks.quality import add_arguments

    add_arguments(q)
    return p


def _run_quality(args) -> int:
    from spade_tf.benchmarks import quality
    argv = " ".join(sys.argv[1:]) if sys.argv else ""
    return int(quality.run_args(args, command=f"spade {argv}".strip()) or 0)


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
        raise SpadeError("say what to benchmark: spade benchmark generator|train|official|quality|cost "
                         "(see spade benchmark --help)")
    if args.bench_command == "quality":
        return _run_quality(args)
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
