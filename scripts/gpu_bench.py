#!/usr/bin/env python3
"""GPU figures for issue 18.4: ours on Keras/JAX against the official PyTorch code, one GPU, one call.

No TensorFlow is needed (the lent GPU machines have JAX and PyTorch only); run it through
scripts/gpu_benchmark.sh, which installs the Keras wheels and points at the official checkout.

  ours      the ADE20K SPADE generator (folded spectral norm, one-hot look-ups) as
            `SPADEGenerator.inference_function` (jax.jit over stateless_call), float32 and
            mixed_bfloat16, batch 1/8/32; one GauGAN training iteration (G step + D step, TTUR Adam,
            hinge + feature matching, no VGG) through Keras's JAX trainer (`train_on_batch`), batch 1/8
  official  github.com/NVlabs/SPADE imported at run time from a checkout (--official), as
            scripts/bench_official_torch.py does (nothing of it is copied here): netG under
            torch.no_grad (float32; bf16 under torch.autocast), and one iteration of its
            Pix2PixModel generator + discriminator steps with the optimizers of create_optimizers.
            It runs in a subprocess first (so JAX's allocator does not hold its memory).

Each row: median time of --runs timed calls after --warmup calls (the first call, JAX's compile,
reported apart), images/s, and for the generator the achieved TFLOP/s = 2 x MACs x batch / time,
MACs as the official counting (spade_tf.cost: convolutions and linears; SPADE's first conv counted
as the conv it computes, although ours runs it as look-ups), against the GPU's dense bf16 peak.

--tiny: a 64x64 model with 8 labels and few channels, on whatever device there is (CPU here):
the same code paths in seconds, for tests. Prints one JSON document; --out also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# dense bf16 tensor-core peaks (NVIDIA data sheets, SXM); the lent machines measured ~790 TFLOP/s
# on an 8192^3 bf16 matmul (/work/.library/device/KINDS.md)
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def _times(fn, sync, warmup: int, runs: int) -> dict:
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        sync(fn())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs_s": times, "first_call_s": first}


# ---- official PyTorch side (subprocess) --------------------------------------------------------
def official_argv(args, batch: int) -> list[str]:
    if args.tiny:
        return ["--dataset_mode", "custom", "--label_nc", "8", "--no_instance", "--crop_size", "64",
                "--load_size", "64", "--aspect_ratio", "1", "--ngf", "4", "--ndf", "8",
                "--norm_G", "spectralspadebatch3x3", "--no_vgg_loss", "--batchSize", str(batch)]
    # spectralspadebatch3x3: on one device the same computation as the default syncbatch
    return ["--dataset_mode", "ade20k", "--norm_G", "spectralspadebatch3x3", "--no_vgg_loss",
            "--batchSize", str(batch)]


def run_official(args) -> list[dict]:
    """Time the official generator / training iteration for every row; runs in its own process."""
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    import bench_official_torch as bot  # the stubs and sync-batchnorm handling of the CPU benchmark

    for name, subs in (("torchvision", ("transforms", "models")), ("PIL", ("Image",)), ("dill", ())):
        bot._stub_if_missing(name, subs)
    if isinstance(sys.modules.get("dill"), bot._StubModule):
        import pickle
        sys.modules["dill"] = pickle
    official = os.path.abspath(args.official)
    sys.path.insert(0, official)
    bot._install_sync_batchnorm(official, None)
    from models.pix2pix_model import Pix2PixModel  # official
    from options.train_options import TrainOptions  # official

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"

    def sync(_):
        if cuda:
            torch.cuda.synchronize()

    rows = []
    workdir = tempfile.mkdtemp(prefix="spade_gpu_official_")
    for kind, dtype, batch in plan(args):
        extra = ["--gpu_ids", "0" if cuda else "-1", "--checkpoints_dir", workdir, "--name", "bench"]
        if args.tiny:
            extra += ["--label_dir", workdir, "--image_dir", workdir]
        saved_argv, saved_stdout = sys.argv, sys.stdout
        sys.argv, sys.stdout = ["train.py", *official_argv(args, batch), *extra], sys.stderr
        try:
            opt = TrainOptions().parse()
            model = Pix2PixModel(opt)
        finally:
            sys.argv, sys.stdout = saved_argv, saved_stdout
        rng = np.random.default_rng(0)
        h, w = int(opt.crop_size / opt.aspect_ratio), opt.crop_size
        n_ids = opt.label_nc + (1 if opt.contain_dontcare_label else 0)
        data = {"label": torch.from_numpy(rng.integers(0, n_ids, (batch, 1, h, w)).astype(np.float32)),
                "instance": torch.zeros(1),
                "image": torch.from_numpy(rng.uniform(-1, 1, (batch, 3, h, w)).astype(np.float32))}
        autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
        row = {"side": "official", "kind": kind, "dtype": dtype, "batch": batch, "device": device}
        try:
            row.update(_official_times(model, opt, data, kind, autocast, sync, args))
            if cuda:
                row["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
        except Exception as e:  # noqa: BLE001 - report the row and go on (e.g. out of memory)
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()
    return rows


def _official_times(model, opt, data, kind, autocast, sync, args) -> dict:
    import torch

    if kind == "generator":
        model.eval()
        semantics, _ = model.preprocess_input(dict(data))

        def call():
            with torch.no_grad(), autocast:
                return model.netG(semantics)

        return _times(call, sync, args.warmup, args.runs)
    model.train()
    opt_g, opt_d = model.create_optimizers(opt)

    def iteration():  # the official trainer's run_generator_one_step + run_discriminator_one_step
        opt_g.zero_grad()
        with autocast:
            g_losses, _ = model(dict(data), mode="generator")
        sum(g_losses.values()).mean().backward()
        opt_g.step()
        opt_d.zero_grad()
        with autocast:
            d_losses = model(dict(data), mode="discriminator")
        sum(d_losses.values()).mean().backward()
        opt_d.step()

    return _times(iteration, sync, args.warmup, args.runs)


# ---- ours on Keras/JAX -------------------------------------------------------------------------
def our_config(args):
    from spade_tf.config import get_preset

    if args.tiny:
        return get_preset("tiny").replace(ngf=4, ndf=8, spade_nhidden=128, n_layers_D=4, lambda_vgg=0.0)
    return get_preset("ade20k").replace(lambda_vgg=0.0)


def run_ours(args, deadline: float) -> list[dict]:
    import jax
    import keras

    rows = []
    for kind, dtype, batch in plan(args):
        row = {"side": "ours", "kind": kind, "dtype": dtype, "batch": batch,
               "device": str(jax.devices()[0].device_kind)}
        if time.time() > deadline:
            row["error"] = "skipped: --time-budget spent"
            rows.append(row)
            continue
        keras.backend.clear_session()
        keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
        config = our_config(args)
        try:
            row.update(_our_times(config, kind, batch, args))
        except Exception as e:  # noqa: BLE001 - report the row and go on
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    keras.config.set_dtype_policy("float32")
    return rows


def _our_times(config, kind, batch, args) -> dict:
    import jax
    import keras
    import numpy as np

    from spade_tf.models import build_networks, make_semantics

    h, w = config.image_size
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.num_label_channels, (batch, h, w)).astype("int32")
    if kind == "generator":
        g, _, _ = build_networks(config)
        folded = g.folded()
        semantics = jax.device_put(keras.ops.convert_to_numpy(make_semantics(ids, config)))
        run = folded.inference_function(jit_compile=True)
        return {**_times(lambda: run(semantics), jax.block_until_ready, args.warmup, args.runs),
                **_macs(folded)}
    from spade_tf.training.gaugan import GauGAN

    g, d, e = build_networks(config)
    model = GauGAN(config, g, d, e, seed=0)
    model.compile()
    data = {"label_map": ids, "image": rng.uniform(-1, 1, (batch, h, w, 3)).astype("float32")}
    return {"train_step": "GauGAN.train_on_batch (Keras JAX trainer: jitted stateless step)",
            **_times(lambda: model.train_on_batch(data, return_dict=True),
                     lambda out: [float(v) for v in out.values()], args.warmup, args.runs)}


def _macs(model) -> dict:
    try:
        from spade_tf.cost import count_cost
    except ImportError:
        return {}
    return {"gmacs_per_image": count_cost(model)["macs"] / 1e9}


def plan(args):
    rows = [("generator", dtype, b) for dtype in args.dtypes for b in args.batches]
    rows += [("train", "float32", b) for b in args.train_batches]
    return rows


def summarize(rows: list[dict], peak: float | None) -> None:
    official = {(r["kind"], r["dtype"], r["batch"]): r for r in rows if r["side"] == "official"}
    for r in rows:
        if "median_s" not in r:
            continue
        r["images_per_s"] = r["batch"] / r["median_s"]
        macs = r.get("gmacs_per_image")
        if macs is None and r["kind"] == "generator":
            macs = next((o.get("gmacs_per_image") for o in rows if o["side"] == "ours"
                         and o["kind"] == "generator" and o.get("gmacs_per_image")), None)
            r["gmacs_per_image"] = macs
        if macs and r["kind"] == "generator":
            r["tflops"] = 2 * macs * 1e9 * r["batch"] / r["median_s"] / 1e12
            if peak:
                r["fraction_of_bf16_peak"] = r["tflops"] / peak
        ref = official.get((r["kind"], r["dtype"], r["batch"]))
        if r["side"] == "ours" and ref and "median_s" in ref:
            r["speedup_vs_official"] = ref["median_s"] / r["median_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny sizes (CPU test of the code paths)")
    p.add_argument("--official", default=os.environ.get("SPADE_OFFICIAL_DIR"),
                   help="checkout of github.com/NVlabs/SPADE (omit: ours only)")
    p.add_argument("--batches", default="1,8,32", help="generator batch sizes")
    p.add_argument("--train-batches", default="1,8", help="training-iteration batch sizes ('' for none)")
    p.add_argument("--dtypes", default="bfloat16,float32", help="generator dtypes: bfloat16, float32")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: by GPU name)")
    p.add_argument("--time-budget", type=float, default=480, help="seconds for our rows; later rows skipped")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--side", choices=("both", "official", "ours"), default="both")
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.train_batches = [int(b) for b in args.train_batches.split(",") if b]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    if args.tiny:
        args.batches, args.train_batches = args.batches[:1], args.train_batches[:1]
        args.warmup, args.runs = min(args.warmup, 1), min(args.runs, 2)

    if args.side == "official":
        print("OFFICIAL_ROWS " + json.dumps(run_official(args)))
        return 0

    start = time.time()
    result = {"command": sys.argv, "platform": platform.platform(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rows": []}
    if args.official and args.side == "both":
        if not (Path(args.official) / "models" / "pix2pix_model.py").is_file():
            sys.exit(f"--official {args.official}: not a SPADE checkout (no models/pix2pix_model.py)")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "official",
               "--official", args.official, "--batches", ",".join(map(str, args.batches)), "--train-batches",
               ",".join(map(str, args.train_batches)), "--dtypes", ",".join(args.dtypes),
               "--warmup", str(args.warmup), "--runs", str(args.runs)] + (["--tiny"] if args.tiny else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [s for s in proc.stdout.splitlines() if s.startswith("OFFICIAL_ROWS ")]
        if proc.returncode != 0 or not lines:
            result["official_error"] = proc.stderr[-3000:]
        else:
            result["rows"] += json.loads(lines[-1][len("OFFICIAL_ROWS "):])

    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.path.insert(0, str(REPO))
    import jax
    import keras

    result.update({"keras": keras.__version__, "backend": keras.backend.backend(), "jax": jax.__version__,
                   "jax_device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind})
    try:
        import torch
        result["torch"] = torch.__version__
    except ImportError:
        pass
    peak = args.peak_tflops or next(
        (v for k, v in BF16_PEAK_TFLOPS.items() if k in result["device_kind"]), None)
    result["bf16_peak_tflops"] = peak
    result["rows"] += run_ours(args, start + args.time_budget)
    summarize(result["rows"], peak)
    result["tensorflow_imported"] = "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None
    result["seconds"] = round(time.time() - start, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    for r in result["rows"]:
        figures = " ".join(f"{k}={r[k]:.4g}" for k in ("median_s", "images_per_s", "tflops",
                                                        "fraction_of_bf16_peak", "speedup_vs_official")
                           if isinstance(r.get(k), float))
        print(f"# {r['side']:8} {r['kind']:9} {r['dtype']:8} b={r['batch']:<3} {figures} "
              f"{r.get('error', '')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
