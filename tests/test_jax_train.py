"""GauGAN trains under the JAX backend: the first official training iteration (`train_k3.npz`) replayed
through `train_on_batch` (Keras's JAX trainer, jitted stateless step with `jax.value_and_grad`) in a
separate process with KERAS_BACKEND=jax (`jax_train_check.py`): gradients per tensor <= 1e-3
relative, first-iteration losses <= 1e-5 relative, no TensorFlow imported.

tiny_seg runs by default (about a minute of CPU, mostly XLA compilation); SPADE_JAX_TRAIN_ALL=1 adds
tiny_vae (encoder, KL, recorded noise).

`spade train` on JAX (`jax_fit_check.py`, one subprocess): exact resume through the .npz
checkpoints and the schedule (DataParallel only where several devices are visible).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OFFICIAL

HERE = Path(__file__).resolve().parent
CASES = ["tiny_seg"] + (["tiny_vae"] if os.environ.get("SPADE_JAX_TRAIN_ALL") == "1" else [])


def test_first_iteration_parity_under_jax():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install jax)")
    folders = [OFFICIAL / c for c in CASES]
    missing = [str(f) for f in folders if not (f / "train_k3.npz").is_file()]
    if missing:
        pytest.skip(f"official training fixtures not found: {missing} (../shared is absent)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(HERE / "jax_train_check.py"), *map(str, folders)],
                          env=env, capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert set(result) == set(CASES)
    for case, figures in result.items():
        grads = figures["gradients"]
        assert len(grads) > 100, case
        for vanishing, limit in ((False, 1e-3), (True, 1e-6)):
            group = {k: e for k, (e, _, v) in grads.items() if v == vanishing}
            worst = max(group, key=group.get)
            assert group[worst] <= limit, (case, worst, group[worst])
        assert len(figures["losses"]) == (5 if case == "tiny_vae" else 4)
        for key, (ours, official) in figures["losses"].items():
            assert ours == pytest.approx(official, rel=1e-5), (case, key)
        assert figures["step"] == 1
        assert figures["modules"] == [], f"TensorFlow was imported under JAX: {figures['modules'][:5]}"


@pytest.mark.slow
def test_spade_train_on_jax_resumes_exactly(tmp_path):
    """`train` (model.fit on JAX), in one KERAS_BACKEND=jax process (`jax_fit_check.py`): 2 steps,
    stop, resume to 4 equals 4 uninterrupted steps in every checkpointed value (weights, EMA copy,
    both optimizers' slots, iterations, learning rates, step, epoch, seed), the schedule having
    changed the learning rates on the way (one step per epoch, niter=1).

    DataParallel is not run here: on 2 loaded CPU cores, two forced host devices
    (--xla_force_host_platform_device_count=2) aborted in XLA's all-reduce rendezvous (40 s
    timeout); `jax_fit_check.py` runs that comparison when it sees several devices."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install jax)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}  # compile fast: about state, not speed
    proc = subprocess.run([sys.executable, str(HERE / "jax_fit_check.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["first"] == [0, 2, False]
    assert result["second"] == [2, 4, True]
    assert result["straight"] == [0, 4, False]
    diffs = result["differences"]
    groups = {k.split("/")[0] for k in diffs}
    assert {"generator", "discriminator", "generator_ema", "g_optimizer", "d_optimizer", "step"} <= groups
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-5, (worst, diffs[worst])
    assert result["step"] == 4 and result["epoch"] == 3
    # epoch 3 with niter=1, niter_decay=4: the TTUR rates (G lr/2, D 2 lr, lr 2e-4) times 1 - 2/4
    assert result["lr"]["g_optimizer"] == [pytest.approx(0.5e-4)]
    assert result["lr"]["d_optimizer"] == [pytest.approx(2e-4)]
    assert result["kept"] == ["ckpt-2.npz", "ckpt-4.npz"]
    assert {"generator.keras", "metrics.csv", "config.json", "checkpoints"} <= set(result["files"])
    assert result["metrics_rows"] == 4
    if "parallel" in result:  # several devices visible
        worst = max(result["parallel"]["differences"], key=result["parallel"]["differences"].get)
        assert result["parallel"]["differences"][worst] <= 1e-5, worst


def test_run_folder_of_another_backend_is_refused(tmp_path):
    """A folder trained on JAX (.npz checkpoints) does not silently restart from step 0 under
    TensorFlow (nor the other way round): the message names the backend to resume with."""
    import keras

    from spade_tf.config import get_preset
    from spade_tf.errors import SpadeError
    from spade_tf.training.checkpoints import write_config
    from spade_tf.training.runner import train

    config = get_preset("tiny")
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    write_config(tmp_path, config, {"backend": other})
    with pytest.raises(SpadeError, match=f"--backend {other}"):
        train(config, tmp_path, steps=1)
