"""GauGAN trains under the JAX backend: the first official training iteration (`train_k3.npz`) replayed
through `train_on_batch` (Keras's JAX trainer, jitted stateless step with `jax.value_and_grad`) in a
separate process with KERAS_BACKEND=jax (`jax_train_check.py`): gradients per tensor <= 1e-3
relative, first-iteration losses <= 1e-5 relative, no TensorFlow imported.

tiny_seg runs by default (about a minute of CPU, mostly XLA compilation); SPADE_JAX_TRAIN_ALL=1 adds
tiny_vae (encoder, KL, recorded noise).
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


@pytest.mark.slow
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
