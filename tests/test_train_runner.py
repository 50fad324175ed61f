"""`spade train` / `runner.train`: outputs, exact resume, config conflicts, corrupt checkpoints, NaN stop,
kill -9, learning-rate schedule."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spade_tf.config import get_preset
from spade_tf.errors import SpadeError

SMALL = ["crop_size=32", "load_size=32", "batchSize=2", "lambda_vgg=0", "ngf=4", "ndf=4", "spade_nhidden=8",
         "num_D=1", "n_layers_D=2"]
REPO = Path(__file__).parents[1]


def small_config(*extra):
    return get_preset("tiny").with_overrides(SMALL + list(extra))


def run_train(out, steps, config=None, **kwargs):
    from spade_tf.training.runner import train

    kwargs = {"steps_per_epoch": 3, "save_every": 1, "log_every": 1, "sample_every": 2, "run_eagerly": True,
              "verbose": 0, "distribute": "none", **kwargs}
    return train(config or small_config(), out, steps=steps, **kwargs)


def generator_weights(path):
    import keras

    import spade_tf.models  # noqa: F401

    return [np.array(w) for w in keras.saving.load_model(path, compile=False).weights]


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_lr_schedule_is_official():
    from spade_tf.training.schedule import learning_rates, lr_factor

    # niter=2, niter_decay=4: epochs 0,1 full; then 1, 3/4, 1/2, 1/4 (official: lr -= lr/niter_decay
    # at the end of each epoch > niter, 1-based)
    assert [lr_factor(e, 2, 4) for e in range(6)] == [1, 1, 1, 0.75, 0.5, 0.25]
    assert lr_factor(10, 5, 0) == 1.0
    cfg = get_preset("tiny").with_overrides(["niter=1", "niter_decay=2"])
    assert learning_rates(cfg, 2) == pytest.approx((0.5e-4, 2e-4))


def test_outputs_and_exact_resume(tmp_path, capsys):
    from spade_tf.config import load_config

    full = run_train(tmp_path / "full", 4)
    assert (full.start_step, full.final_step, full.resumed) == (0, 4, False)

    out = tmp_path / "split"
    run_train(out, 2)
    second = run_train(out, 4)
    assert "resumed from step 2" in capsys.readouterr().out
    assert (second.start_step, second.final_step, second.resumed) == (2, 4, True)
    # model, both optimizers, counters, noise and data position restored: same weights as one run
    a, b = generator_weights(full.generator_path), generator_weights(second.generator_path)
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True)) < 1e-5

    # the files a user and the other commands read
    assert load_config(str(out / "config.json")) == small_config()
    payload = json.loads((out / "config.json").read_text())
    assert {"tensorflow", "keras", "numpy"} <= set(payload["versions"])
    rows = csv_rows(out / "metrics.csv")
    assert rows[0][0] == "step" and {"G_GAN", "D_Fake", "lr_G", "lr_D", "images_per_s"} <= set(rows[0])
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]  # appended across the resume
    samples = sorted((out / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["step_00000002.png", "step_00000004.png"]
    from PIL import Image

    assert Image.open(samples[0]).size == (3 * 32, 2 * 32)  # labels | synthesized | real, 2 rows
    if (out / "logs").exists():
        assert list((out / "logs").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index"))[-1] == "ckpt-4.index"
    assert len(list((out / "checkpoints").glob("*.index"))) == 3  # keep the last 3

    # another configuration in the same folder: a clear error, nothing touched
    with pytest.raises(SpadeError, match=r"another configuration \(lambda_feat"):
        run_train(out, 5, config=small_config("lambda_feat=5"))

    # a corrupt newest checkpoint: warning, fall back to the previous one
    next((out / "checkpoints").glob("ckpt-4.data-*")).write_bytes(b"garbage" * 10)
    with pytest.warns(UserWarning, match="ckpt-4 cannot be read.*falling back"):
        third = run_train(out, 4)
    assert "resumed from step 3" in capsys.readouterr().out
    assert (third.start_step, third.final_step) == (3, 4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import tensorflow as tf

    from spade_tf.training import runner

    original = runner.build_train_dataset

    def poisoned(*args, **kwargs):  # the 3rd batch has a NaN pixel
        ds = original(*args, **kwargs)
        nan = ds.skip(2).take(1).map(lambda b: {**b, "image": b["image"] * float("nan")})
        return ds.take(2).concatenate(nan).concatenate(ds.skip(3))

    monkeypatch.setattr(runner, "build_train_dataset", poisoned)
    with pytest.raises(SpadeError, match=r"became nan at step 3.*ckpt-2"):
        run_train(tmp_path, 4)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    assert not (tmp_path / "generator.keras").exists()
    good = str(tmp_path / "checkpoints" / "ckpt-2")
    reader = tf.train.load_checkpoint(good)
    values = [reader.get_tensor(n) for n, _ in tf.train.list_variables(good) if n.startswith("generator/")]
    assert values and all(np.isfinite(v).all() for v in values)


def checkpoint_tensors(path):
    """Every saved variable of a checkpoint (networks, EMA, optimizers, counters), by name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if not name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))}


@pytest.mark.slow
def test_kill_9_loses_at_most_save_every_steps_and_resumes_exactly(tmp_path):
    """kill -9 mid-run, then the same training resumed: it ends with the weights (G, D, E, EMA) and
    optimizer slots of a run never interrupted."""
    import tensorflow as tf

    save_every = 2
    extra = ["use_vae=True", "use_ema=True"]  # so that E and the EMA generator are checked too
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spade_tf", "train", "--preset", "tiny", "--out", str(out), "--steps", "40",
           "--save-every", str(save_every), "--log-every", "1", "--sample-every", "1000", "--run-eagerly",
           "--verbose", "0", "--distribute", "none"] + [a for kv in SMALL + extra for a in ("--set", kv)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = out / "metrics.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and len(csv_rows(metrics)) > 3:  # step 3 done
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    logged = int(csv_rows(metrics)[-1][0])
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    saved = int(latest.rsplit("-", 1)[1])
    # metrics rows are written after that step's checkpoint: at most save_every - 1 logged steps are lost
    assert logged - saved <= save_every - 1, (logged, saved)
    assert tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == saved
    assert saved > 0
    total = saved + 3  # the resumed run saves once more on its way, then at the end

    config = small_config(*extra)
    common = {"config": config, "steps_per_epoch": None, "save_every": save_every, "sample_every": 1000}
    resumed = run_train(out, total, **common)
    assert (resumed.start_step, resumed.final_step, resumed.resumed) == (saved, total, True)
    run_train(tmp_path / "full", total, **common)
    a = checkpoint_tensors(str(out / "checkpoints" / f"ckpt-{total}"))
    b = checkpoint_tensors(str(tmp_path / "full" / "checkpoints" / f"ckpt-{total}"))
    assert a.keys() == b.keys()
    for prefix in ("generator/", "discriminator/", "encoder/", "generator_ema/", "g_optimizer/_variables/",
                   "d_optimizer/_variables/"):  # the optimizers' _variables are their Adam slots
        assert any(k.startswith(prefix) for k in a), prefix
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5, err_msg=name)
