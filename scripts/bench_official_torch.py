#!/usr/bin/env python3
"""Time the OFFICIAL PyTorch SPADE code (github.com/NVlabs/SPADE) on this machine; print JSON.

The official modules are imported at run time from a checkout you supply (--official); nothing of
that code is copied here. Modes:

  generator  netG(input_semantics) in eval mode under torch.no_grad()
  train      one official training iteration: Pix2PixTrainer.run_generator_one_step(data)
             then run_discriminator_one_step(data) (hinge GAN + feature matching, TTUR Adam)

Everything after `--` is passed to the official option parser as on its command line, e.g.
`-- --dataset_mode ade20k --no_vgg_loss --batchSize 1`. `--gpu_ids -1`, a throw-away
`--checkpoints_dir` and (for dataset modes that require them) dummy `--label_dir/--image_dir` are
added. The VGG loss needs torchvision with downloaded VGG19 weights: pass --no_vgg_loss.

Imports the official code needs but a benchmark does not use (torchvision, PIL, dill) are replaced
by import-only stubs when they are not installed; using them raises. The official default
norm_G (spectralspadesyncbatch3x3) needs `models/networks/sync_batchnorm` from
github.com/vacancy/Synchronized-BatchNorm-PyTorch: if the checkout lacks it, pass
--sync-batchnorm DIR (the folder that contains `sync_batchnorm/`), or run with
`--norm_G spectralspadebatch3x3` (on one device the same computation: F.batch_norm).

Example (the official venv needs only torch and numpy):
  /tmp/torchenv/bin/python scripts/bench_official_torch.py --official /tmp/spade_official \\
      --mode generator --warmup 2 --runs 7 -- --dataset_mode ade20k --batchSize 1 \\
      --norm_G spectralspadebatch3x3 --no_vgg_loss
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import types


class _Unavailable:
    """Placeholder for anything taken from a stub module: fine to reference, fails when used."""

    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is an import stub in this benchmark (not installed)")

    def __getattr__(self, attr):
        return _Unavailable(f"{self._name}.{attr}")


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self.__name__}.{attr}")


def _stub_if_missing(name, submodules=()):
    if importlib.util.find_spec(name) is not None:
        return False
    root = _StubModule(name)
    root.__path__ = []  # a package, so `import name.sub` works
    sys.modules[name] = root
    for sub in submodules:
        module = _StubModule(f"{name}.{sub}")
        sys.modules[f"{name}.{sub}"] = module
        setattr(root, sub, module)
    return True


def _install_sync_batchnorm(official_dir, sync_dir):
    """Make `models.networks.sync_batchnorm` importable; returns where it came from."""
    if os.path.isdir(os.path.join(official_dir, "models", "networks", "sync_batchnorm")):
        return "official checkout"
    if sync_dir:
        parent = sync_dir
        if os.path.basename(os.path.normpath(sync_dir)) == "sync_batchnorm":
            parent = os.path.dirname(os.path.normpath(sync_dir))
        if not os.path.isfile(os.path.join(parent, "sync_batchnorm", "__init__.py")):
            sys.exit(f"--sync-batchnorm {sync_dir}: no sync_batchnorm/__init__.py there")
        sys.path.insert(0, parent)
        import sync_batchnorm  # noqa: PLC0415

        sys.modules["models.networks.sync_batchnorm"] = sync_batchnorm
        return os.path.abspath(os.path.join(parent, "sync_batchnorm"))
    # absent: a stub whose SynchronizedBatchNorm2d fails when built (use --norm_G spectralspadebatch3x3)
    stub = _StubModule("models.networks.sync_batchnorm")
    sys.modules["models.networks.sync_batchnorm"] = stub
    return None


def _timed(fn, warmup, runs, serve=False):
    """warmup + runs calls; serve: after warm-up, one timed call per "run" line on stdin until "done"
    (the protocol of spade_tf.benchmarks.speed.time_calls, which alternates this process with ours)."""
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - start
    times, cpu_per_wall = [], []

    def one():
        wall0, cpu0 = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - wall0
        times.append(wall)
        cpu_per_wall.append((time.process_time() - cpu0) / wall)

    if serve:
        print("SPADE_BENCH_READY", flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            one()
            timing = {"s": times[-1], "loadavg": os.getloadavg()[0]}
            print("SPADE_BENCH_TIME " + json.dumps(timing), flush=True)
    else:
        for _ in range(runs):
            one()
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs_s": times, "first_call_s": first, "warmup_runs": warmup,
            "cpu_per_wall": cpu_per_wall}


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        ours, official_argv = argv[:split], argv[split + 1:]
    else:
        ours, official_argv = argv, []
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True, help="checkout of github.com/NVlabs/SPADE")
    p.add_argument("--sync-batchnorm", default=None, metavar="DIR",
                   help="folder containing sync_batchnorm/ (vacancy/Synchronized-BatchNorm-PyTorch)")
    p.add_argument("--mode", choices=("generator", "train"), required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve", action="store_true",
                   help="after warm-up, time one call per 'run' line on stdin until 'done' (used by "
                        "`spade benchmark` to alternate this process with ours)")
    args = p.parse_args(ours)

    official = os.path.abspath(args.official)
    if not os.path.isfile(os.path.join(official, "models", "pix2pix_model.py")):
        sys.exit(f"--official {args.official}: not a SPADE checkout (no models/pix2pix_model.py)")

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rss_after_torch_import = _peak_rss_mb()

    stubs = [name for name, subs in (("torchvision", ("transforms", "models")), ("PIL", ("Image",)),
                                      ("dill", ())) if _stub_if_missing(name, subs)]
    if "dill" in stubs:  # util.util uses `dill as pickle` only to save/load option files
        import pickle
        sys.modules["dill"] = pickle
    sys.path.insert(0, official)
    sync_source = _install_sync_batchnorm(official, args.sync_batchnorm)

    from options.train_options import TrainOptions  # official
    from trainers.pix2pix_trainer import Pix2PixTrainer  # official

    workdir = tempfile.mkdtemp(prefix="spade_official_bench_")
    extra = ["--gpu_ids", "-1", "--checkpoints_dir", workdir, "--name", "bench"]
    if "--dataset_mode" in official_argv and "custom" in official_argv:
        extra += ["--label_dir", workdir, "--image_dir", workdir]
    saved_argv, saved_stdout = sys.argv, sys.stdout
    sys.argv = ["train.py", *official_argv, *extra]
    sys.stdout = sys.stderr  # parse() prints every option; keep stdout for the JSON
    try:
        opt = TrainOptions().parse()
        trainer = Pix2PixTrainer(opt)
    finally:
        sys.argv, sys.stdout = saved_argv, saved_stdout
    model = trainer.pix2pix_model_on_one_gpu
    net_g = model.netG

    rng = np.random.default_rng(args.seed)
    b = opt.batchSize
    h, w = int(opt.crop_size / opt.aspect_ratio), opt.crop_size
    n_ids = opt.label_nc + (1 if opt.contain_dontcare_label else 0)
    data = {
        "label": torch.from_numpy(rng.integers(0, n_ids, (b, 1, h, w)).astype(np.float32)),
        "instance": torch.from_numpy(rng.integers(0, 8, (b, 1, h, w)).astype(np.float32)),
        "image": torch.from_numpy(rng.uniform(-1, 1, (b, 3, h, w)).astype(np.float32)),
    }
    if opt.no_instance:
        data["instance"] = torch.zeros(1)

    result = {
        "implementation": "official PyTorch (NVlabs/SPADE)", "mode": args.mode, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "processor": platform.processor(), "official_dir": official, "sync_batchnorm": sync_source,
        "import_stubs": stubs, "official_argv": official_argv,
        "opt": {k: getattr(opt, k) for k in ("dataset_mode", "label_nc", "contain_dontcare_label",
                                             "no_instance", "semantic_nc", "crop_size", "aspect_ratio",
                                             "ngf", "ndf", "num_D", "n_layers_D", "norm_G", "norm_D",
                                             "num_upsampling_layers", "use_vae", "batchSize",
                                             "no_vgg_loss", "no_ganFeat_loss", "gan_mode")},
        "image_size": [h, w],
        "params_G": sum(p.numel() for p in net_g.parameters()),
        "params_D": sum(p.numel() for p in model.netD.parameters()) if model.netD is not None else None,
        "peak_rss_mb_after_torch_import": rss_after_torch_import,
        "loadavg_before": list(os.getloadavg()),
    }

    if args.mode == "generator":
        net_g.eval()
        model.eval()
        semantics, _ = model.preprocess_input(dict(data))

        def call():
            with torch.no_grad():
                z = torch.randn(b, opt.z_dim) if opt.use_vae else None
                return net_g(semantics, z=z)

        result["timing"] = _timed(call, args.warmup, args.runs, args.serve)
    else:
        g_steps, d_steps = [], []

        def iteration():
            t0 = time.perf_counter()
            trainer.run_generator_one_step(dict(data))
            t1 = time.perf_counter()
            trainer.run_discriminator_one_step(dict(data))
            g_steps.append(t1 - t0)
            d_steps.append(time.perf_counter() - t1)

        result["timing"] = _timed(iteration, args.warmup, args.runs, args.serve)
        result["timing"]["G_step_s"] = g_steps[args.warmup:]
        result["timing"]["D_step_s"] = d_steps[args.warmup:]
        result["losses_last_iteration"] = {
            k: float(v.detach().mean()) for k, v in trainer.get_latest_losses().items()}

    result["loadavg_after"] = list(os.getloadavg())
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
