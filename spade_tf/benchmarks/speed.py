"""Speed benchmarks: generator inference and one training iteration, ours next to the official code.

How a figure is taken (`docs/benchmarks.md`):

* Every variant ("eager", "function", "xla", each optionally "+folded" and/or "+bf16") runs in its
  OWN fresh Python process (`python -m spade_tf.benchmarks.speed '<task json>'`), so its peak RSS
  (`getrusage(RUSAGE_SELF).ru_maxrss`) is its own and an XLA cache or allocator state cannot leak
  into the next variant.
* The official PyTorch code runs in the same invocation, right before ours, through
  `scripts/bench_official_torch.py` under the interpreter that has torch (`torch_python`), on the
  same configuration (`official.official_argv`). Ratios are ours / official medians.
* Each process: build, `warmup` untimed calls (the first one is reported: tracing / XLA compile),
  then `runs` timed calls; median, min, max, CPU-time / wall-time per call, 1-minute load average
  before and after. Inputs are built before timing (as the official `preprocess_input`).

`alternate` is the A/B tool used for the speed tuning: candidates in ONE process, called in
alternation for several rounds, so slow phases of a shared machine hit all candidates alike.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from spade_tf.errors import SpadeError

RESULT_MARKER = "SPADE_BENCH_RESULT "
BASES = ("eager", "function", "xla")
MODIFIERS = ("folded", "bf16")


def parse_variant(variant: str) -> tuple[str, set[str]]:
    """'xla+folded+bf16' -> ('xla', {'folded', 'bf16'}); SpadeError on unknown names."""
    base, *mods = variant.split("+")
    if base not in BASES or any(m not in MODIFIERS for m in mods):
        raise SpadeError(f"unknown variant '{variant}': use one of {BASES}, optionally followed by "
                         f"+folded and/or +bf16 (e.g. xla+folded)")
    return base, set(mods)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


READY_MARKER = "SPADE_BENCH_READY"
TIME_MARKER = "SPADE_BENCH_TIME "


def time_calls(fn, warmup: int = 2, runs: int = 5, serve: bool = False) -> dict:
    """Call `fn` warmup + runs times; statistics of the timed runs (seconds).

    serve=True: after the warm-up, print READY_MARKER and time one call per "run" line on stdin
    (printing TIME_MARKER + JSON after each) until a "done" line: `official.run_interleaved` drives two
    such processes in alternation.
    """
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
        print(READY_MARKER, flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            one()
            print(TIME_MARKER + json.dumps({"s": times[-1], "loadavg": os.getloadavg()[0]}), flush=True)
    else:
        for _ in range(runs):
            one()
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs_s": times, "first_call_s": first, "warmup_runs": warmup, "cpu_per_wall": cpu_per_wall}


def alternate(candidates: dict, rounds: int = 5, calls_per_round: int = 1, warmup: int = 1) -> dict:
    """A/B timing in one process: each round calls every candidate `calls_per_round` times in turn.

    candidates: name -> zero-argument callable. Returns name -> {median_s, min_s, runs_s} and
    "ratio_to_first": median of each / median of the first candidate.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for r in range(rounds):
        order = list(candidates.items())
        if r % 2:  # alternate the order too, so neither always runs right after the other
            order.reverse()
        for name, fn in order:
            for _ in range(calls_per_round):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    first = next(iter(candidates))
    out = {name: {"median_s": statistics.median(t), "min_s": min(t), "runs_s": t}
           for name, t in times.items()}
    base = out[first]["median_s"]
    out["ratio_to_first"] = {name: out[name]["median_s"] / base for name in candidates}
    return out


def machine_info() -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": model or platform.processor(),
            "platform": platform.platform(), "python": platform.python_version(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}


# ---- our side --------------------------------------------------------------------------------------

def _setup_tf(threads: int | None, precision: str):
    import keras
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    return tf, keras


def _inputs(config, batch: int, seed: int):
    """Random label map (every id, don't-care included), instance edges if used, image in [-1, 1]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = config.image_size
    data = {"label_map": rng.integers(0, config.num_label_channels, (batch, h, w)).astype("int32"),
            "image": rng.uniform(-1, 1, (batch, h, w, 3)).astype("float32")}
    if config.use_instance_edges:
        data["instance_edges"] = (rng.uniform(size=(batch, h, w, 1)) < 0.1).astype("float32")
    return data


def _count(weights) -> int:
    total = 0
    for w in weights:
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


def generator_inference(config, batch: int = 1, variant: str = "function", warmup: int = 2, runs: int = 5,
                        seed: int = 0, threads: int | None = None, serve: bool = False) -> dict:
    """Time `G(semantics, training=False)` for one variant; returns a JSON-able dict."""
    base, mods = parse_variant(variant)
    rss_before_import = peak_rss_mb()
    tf, keras = _setup_tf(threads, "bf16" if "bf16" in mods else "fp32")
    from spade_tf.models import make_generator, make_semantics

    rss_after_import = peak_rss_mb()
    keras.utils.set_random_seed(seed)
    h, w = config.image_size
    g = make_generator(config, name="generator")
    g.build((batch, h, w, config.semantic_nc))
    if "folded" in mods:
        g = g.folded()
    data = _inputs(config, batch, seed)
    semantics = make_semantics(data["label_map"], config, data.get("instance_edges"))
    z = None
    if config.use_vae:
        z = tf.random.normal((batch, config.z_dim), seed=seed)

    def forward(s, z_in):
        return g(s, z=z_in, training=False)

    if base != "eager":
        forward = tf.function(forward, jit_compile=base == "xla")

    def call():
        return keras.ops.convert_to_numpy(forward(semantics, z))

    result = {"implementation": "spade_tf", "task": "generator", "variant": variant, "batch": batch,
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "policy": keras.mixed_precision.global_policy().name,
              "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
              "image_size": [h, w], "semantic_nc": config.semantic_nc,
              "params_G": _count(g.trainable_weights), "peak_rss_mb_before_import": rss_before_import,
              "peak_rss_mb_after_import": rss_after_import, "loadavg_before": list(os.getloadavg())}
    result["timing"] = time_calls(call, warmup, runs, serve)
    result["loadavg_after"] = list(os.getloadavg())
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def train_iteration(config, batch: int = 1, variant: str = "function", warmup: int = 2, runs: int = 5,
                    seed: int = 0, threads: int | None = None, serve: bool = False) -> dict:
    """Time one GauGAN training iteration (G step then D step, as `model.fit` runs it).

    The configuration's VGG loss is switched off (lambda_vgg=0), as in the official comparison
    (`--no_vgg_loss`): hinge GAN + feature matching (+ KL with use_vae), TTUR Adam.
    """
    base, mods = parse_variant(variant)
    if "folded" in mods:
        raise SpadeError("a folded generator has no spectral norm to train: drop +folded for `train`")
    rss_before_import = peak_rss_mb()
    tf, keras = _setup_tf(threads, "bf16" if "bf16" in mods else "fp32")
    from spade_tf.models import build_networks
    from spade_tf.training.gaugan import GauGAN

    rss_after_import = peak_rss_mb()
    keras.utils.set_random_seed(seed)
    config = config.replace(lambda_vgg=0.0, batchSize=batch)
    g, d, e = build_networks(config)
    model = GauGAN(config, g, d, e, seed=seed)
    model.compile()
    model.build_optimizers()
    data = {k: tf.constant(v) for k, v in _inputs(config, batch, seed).items()}
    if base == "eager":
        step = model.train_step
    else:
        step = tf.function(model.train_step, jit_compile=base == "xla")
    last = {}

    def call():
        logs = step(data)
        last.update({k: float(v) for k, v in logs.items()})

    result = {"implementation": "spade_tf", "task": "train", "variant": variant, "batch": batch,
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "policy": keras.mixed_precision.global_policy().name,
              "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
              "image_size": list(config.image_size), "semantic_nc": config.semantic_nc,
              "params_G": _count(g.trainable_weights), "params_D": _count(d.trainable_weights),
              "peak_rss_mb_before_import": rss_before_import, "peak_rss_mb_after_import": rss_after_import,
              "loadavg_before": list(os.getloadavg())}
    result["timing"] = time_calls(call, warmup, runs, serve)
    result["losses_last_iteration"] = {k: v for k, v in last.items() if k in (
        "G_GAN", "G_GAN_Feat", "G_KLD", "D_Fake", "D_real")}
    result["loadavg_after"] = list(os.getloadavg())
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_task(task: dict) -> dict:
    """Worker entry: task = {"kind": "generator"|"train", "config": {...}, batch, variant, ...}."""
    from spade_tf.config import SPADEConfig

    config = SPADEConfig.from_dict(task["config"])
    fn = {"generator": generator_inference, "train": train_iteration}[task["kind"]]
    return fn(config, batch=task["batch"], variant=task["variant"], warmup=task["warmup"],
              runs=task["runs"], seed=task.get("seed", 0), threads=task.get("threads"),
              serve=task.get("serve", False))


def _last_json(stdout: str, marker: str | None):
    if marker:
        for line in reversed(stdout.splitlines()):
            if line.startswith(marker):
                return json.loads(line[len(marker):])
        return None
    start = stdout.find("{")
    return json.loads(stdout[start:]) if start >= 0 else None


def _run_process(cmd, marker, timeout, env=None) -> dict:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "command": cmd}
    try:
        result = _last_json(proc.stdout, marker) if proc.returncode == 0 else None
    except json.JSONDecodeError:
        result = None
    if result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        return {"error": f"exit status {proc.returncode}", "command": cmd, "stderr_tail": tail}
    return result


def run_isolated(task: dict, python: str | None = None, timeout: float = 3600) -> dict:
    """`run_task` in a fresh interpreter (own peak RSS, no state shared with other variants)."""
    cmd = [python or sys.executable, "-m", "spade_tf.benchmarks.speed", json.dumps(task)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return _run_process(cmd, RESULT_MARKER, timeout, env)


def compare(ours: dict, official: dict | None) -> dict | None:
    """ours / official ratios of median time and peak RSS; None when either failed."""
    if not official or "error" in official or "error" in ours:
        return None
    return {"time_ratio": ours["timing"]["median_s"] / official["timing"]["median_s"],
            "peak_rss_ratio": ours["peak_rss_mb"] / official["peak_rss_mb"]}


def main(argv=None) -> int:
    """Worker: `python -m spade_tf.benchmarks.speed '<task json>'` prints RESULT_MARKER + result JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m spade_tf.benchmarks.speed '<task json>' (used by `spade benchmark`)",
              file=sys.stderr)
        return 2
    result = run_task(json.loads(argv[0]))
    print(RESULT_MARKER + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
