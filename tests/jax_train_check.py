"""Run by `test_jax_train.py` as `KERAS_BACKEND=jax python tests/jax_train_check.py CASE...`: replays
the first official training iteration of each fixture through GauGAN under JAX and prints one JSON
line of figures (gradient errors per tensor, first-iteration losses)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import train_k3  # noqa: E402


def main(folders):
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    out = {}
    for folder in folders:
        run = train_k3.replay(Path(folder), iterations=int(os.environ.get("ITERATIONS", "1")),
                               run_eagerly=os.environ.get("EAGER", "0") == "1")
        errors = train_k3.gradient_errors(run["k3"], run["table"], run["recorder"])
        losses = train_k3.loss_errors(run["k3"], run["logs"])
        out[Path(folder).name] = {
            "gradients": {k: [e, n, bool(v)] for k, (e, n, v) in errors.items()},
            "losses": losses,
            "step": int(keras.ops.convert_to_numpy(run["model"].step_counter.value)),
            "modules": sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")),
        }
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
