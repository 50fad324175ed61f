"""Run by `test_jax_train.py` as `KERAS_BACKEND=jax python tests/jax_fit_check.py WORKDIR`: `spade
train`'s runner (`model.fit` on Keras's JAX trainer) at the tiny preset, smallest crop, and one JSON
line of figures (one process, so the trainings share one compilation of the step).

resume: 2 steps, stop, resume to 4 (a second `train` call on the same folder) beside an
uninterrupted 4-step run; max abs difference per checkpoint entry (weights, EMA, both optimizers'
slots, iterations and learning rates, step, epoch, seed). The learning rate changes every step
(steps_per_epoch=1, niter=1) and the generator is SPADE-Lite with an EMA copy.

parallel (when there are several devices, e.g. XLA_FLAGS=--xla_force_host_platform_device_count=2):
the same 2 steps under keras.distribution.DataParallel against the one-device run's step-2
checkpoint; max abs difference per entry.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np


def config():
    from spade_tf.config import get_preset

    return get_preset("tiny").with_overrides(
        ["crop_size=32", "load_size=36", "batchSize=2", "niter=1", "niter_decay=4", "use_ema=True",
         "netG=spade_lite"])


def run(out, steps, distribute="none"):
    import time

    from spade_tf.training.runner import train

    t = time.perf_counter()
    try:
        return train(config(), out, steps=steps, steps_per_epoch=1, save_every=2, keep_checkpoints=2,
                     distribute=distribute, log_every=1, sample_every=1000, verbose=0, tensorboard=False,
                     seed=3)
    finally:
        print(f"train {out} to {steps}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)


def checkpoint(out, step):
    with np.load(Path(out) / "checkpoints" / f"ckpt-{step}.npz") as data:
        return {k: data[k] for k in data.files}


def differences(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:5]
    return {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)), initial=0.0))
            for k in a}


def main(work):
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import jax

    work = Path(work)
    out = {"devices": len(jax.devices())}
    first = run(work / "resumed", 2)
    second = run(work / "resumed", 4)
    straight = run(work / "straight", 4)
    a, b = checkpoint(work / "resumed", 4), checkpoint(work / "straight", 4)
    out.update(
        first=[first.start_step, first.final_step, first.resumed],
        second=[second.start_step, second.final_step, second.resumed],
        straight=[straight.start_step, straight.final_step, straight.resumed],
        kept=sorted(p.name for p in (work / "resumed" / "checkpoints").iterdir()),
        differences=differences(a, b), step=int(a["step"]), epoch=int(a["epoch"]),
        # the scalar float entries of each optimizer: its learning rate (iterations is an int)
        lr={g: [float(v) for k, v in a.items() if k.startswith(g) and not v.shape and v.dtype.kind == "f"]
            for g in ("g_optimizer", "d_optimizer")},
        files=sorted(p.name for p in (work / "resumed").iterdir()),
        metrics_rows=len((work / "resumed" / "metrics.csv").read_text().strip().splitlines()) - 1,
    )
    if len(jax.devices()) > 1:
        parallel = run(work / "parallel", 2, distribute="auto")
        out["parallel"] = {"final": parallel.final_step, "differences": differences(
            checkpoint(work / "resumed", 2), checkpoint(work / "parallel", 2))}
    out["modules_tf"] = "tensorflow" in sys.modules
    out["pid"] = os.getpid()
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
