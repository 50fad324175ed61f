"""The official PyTorch code's side of the speed benchmarks: its command line for a config, running
it (`scripts/bench_official_torch.py` under the interpreter that has torch), and timing it in
alternation with ours (`run_interleaved`). Our side and the worker protocol are in `speed.py`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from spade_tf.benchmarks.speed import READY_MARKER, RESULT_MARKER, TIME_MARKER, _last_json, _run_process
from spade_tf.errors import SpadeError


def official_argv(config, batch: int) -> list[str]:
    """The official train.py options that build the same networks as `config` (VGG loss off)."""
    if config.spade_nhidden != 128:
        raise SpadeError(f"spade_nhidden={config.spade_nhidden}: the official code fixes it at 128, "
                         "so there is no official counterpart to compare with")
    mode = config.dataset_mode if config.dataset_mode in ("ade20k", "coco", "cityscapes", "facades") \
        else "custom"
    argv = ["--dataset_mode", mode, "--batchSize", str(batch), "--no_vgg_loss",
            "--label_nc", str(config.label_nc), "--crop_size", str(config.crop_size),
            "--load_size", str(config.crop_size), "--aspect_ratio", str(config.aspect_ratio),
            "--ngf", str(config.ngf), "--ndf", str(config.ndf), "--num_D", str(config.num_D),
            "--n_layers_D", str(config.n_layers_D), "--norm_G", config.norm_G, "--norm_D", config.norm_D,
            "--norm_E", config.norm_E, "--num_upsampling_layers", config.num_upsampling_layers,
            "--z_dim", str(config.z_dim), "--gan_mode", config.gan_mode,
            "--lambda_feat", str(config.lambda_feat), "--lambda_kld", str(config.lambda_kld),
            "--init_type", config.init_type, "--init_variance", str(config.init_variance)]
    for flag in ("contain_dontcare_label", "no_instance", "use_vae", "no_TTUR"):
        if getattr(config, flag):
            argv.append(f"--{flag}")
    if config.lambda_feat == 0:
        argv.append("--no_ganFeat_loss")
    return argv


def default_official_script() -> Path:
    return Path(__file__).resolve().parents[2] / "scripts" / "bench_official_torch.py"


def run_official(kind: str, config, batch: int, official_dir: str, torch_python: str,
                 sync_batchnorm: str | None = None, warmup: int = 2, runs: int = 5, seed: int = 0,
                 threads: int | None = None, script: str | None = None, timeout: float = 3600,
                 serve: bool = False):
    """Run the official code through scripts/bench_official_torch.py; its JSON as a dict.

    serve=True: return the command line instead, for `run_interleaved`.

    Without a sync_batchnorm module (`models/networks/sync_batchnorm` in the checkout, or
    `sync_batchnorm`), `spectralspadesyncbatch3x3` is run as `spectralspadebatch3x3`: on one device
    the official SynchronizedBatchNorm2d is F.batch_norm, the same computation.
    """
    script = Path(script) if script else default_official_script()
    if not script.is_file():
        raise SpadeError(f"official benchmark script not found at {script}: pass --official-script PATH "
                         "(scripts/bench_official_torch.py of a spade-tf checkout)")
    if not Path(official_dir, "models", "pix2pix_model.py").is_file():
        raise SpadeError(f"--official {official_dir}: not a checkout of github.com/NVlabs/SPADE "
                         "(no models/pix2pix_model.py)")
    has_sync = Path(official_dir, "models", "networks", "sync_batchnorm").is_dir() or sync_batchnorm
    if not has_sync and "syncbatch" in config.norm_G:
        config = config.replace(norm_G=config.norm_G.replace("syncbatch", "batch"))
    cmd = [torch_python, str(script), "--official", str(official_dir), "--mode", kind,
           "--warmup", str(warmup), "--runs", str(runs), "--seed", str(seed)]
    if sync_batchnorm:
        cmd += ["--sync-batchnorm", str(sync_batchnorm)]
    if threads:
        cmd += ["--threads", str(threads)]
    if serve:
        cmd += ["--serve"]
    cmd += ["--", *official_argv(config, batch)]
    return cmd if serve else _run_process(cmd, None, timeout)


class _Served:
    """A benchmark process speaking the READY / run / TIME / done protocol of `time_calls`."""

    def __init__(self, cmd, marker, env=None):
        import tempfile

        self.marker = marker
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1, env=env)

    def _line_starting(self, prefix):
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line
        self.stderr.seek(0)
        tail = self.stderr.read().strip().splitlines()[-15:]
        raise RuntimeError(f"benchmark process ended early (status {self.proc.wait()}): {tail}")

    def ready(self):
        self._line_starting(READY_MARKER)

    def run_once(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self._line_starting(TIME_MARKER)[len(TIME_MARKER):])["s"]

    def finish(self) -> dict:
        self.proc.stdin.write("done\n")
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        self.proc.wait()
        result = _last_json(rest, self.marker)
        return result if result is not None else {"error": f"no result (status {self.proc.returncode})"}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_interleaved(tasks: list[dict], official_cmd: list[str] | None, runs: int) -> tuple[dict | None, list]:
    """Time the official process and each of ours in ALTERNATION, one call each in turn.

    The official process starts once and stays up; for each task (variant) a fresh process of
    ours starts, both warm up, then `runs` rounds call official and ours one after the other
    (order swapped every round), so load from other jobs hits both alike. Returns (official
    result with every timed run, [our result per task]); each of ours gets `paired_official_s`,
    the official times of its own rounds, and `time_ratio` = median ours / median of those.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    official = _Served(official_cmd, None) if official_cmd else None
    results = []
    try:
        if official:
            official.ready()
        for task in tasks:
            worker = [sys.executable, "-m", "spade_tf.benchmarks.speed", json.dumps({**task, "serve": True})]
            ours = _Served(worker, RESULT_MARKER, env)
            try:
                ours.ready()
                paired = []
                for r in range(runs):
                    if official and r % 2 == 0:
                        paired.append(official.run_once())
                    ours.run_once()
                    if official and r % 2 == 1:
                        paired.append(official.run_once())
                result = ours.finish()
            except RuntimeError as e:
                result = {"error": str(e)}
            finally:
                ours.kill()
            if official and "error" not in result:
                result["paired_official_s"] = paired
                result["time_ratio"] = result["timing"]["median_s"] / statistics.median(paired)
            results.append(result)
        official_result = official.finish() if official else None
    finally:
        if official:
            official.kill()
    return official_result, results
