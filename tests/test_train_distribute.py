"""Distribution: MirroredStrategy on 2 logical CPUs equals one device on the same global batch;
a 2-process MultiWorkerMirroredStrategy run on 127.0.0.1 ends with identical weights on both workers.

Both run in fresh subprocesses (logical devices and multi-worker strategies must be set up before
TensorFlow initialises its runtime).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).parents[1]
SMALL = ["crop_size=32", "load_size=32", "batchSize=4", "lambda_vgg=0", "ngf=4", "ndf=4", "spade_nhidden=8",
         "num_D=1", "n_layers_D=2"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from spade_tf.config import get_preset
    from spade_tf.models import build_networks
    from spade_tf.training.gaugan import GauGAN

    config = get_preset("tiny").with_overrides(json.loads(sys.argv[1]))
    rng = np.random.default_rng(0)
    h, w = config.image_size
    data = {"label_map": rng.integers(0, 8, (4, h, w)).astype("int32"),
            "image": rng.uniform(-1, 1, (4, h, w, 3)).astype("float32")}
    keras.utils.set_random_seed(0)
    initial = [w.get_weights() for w in build_networks(config)[:2]]

    def named(g, d):  # positional keys: layer auto-names differ between instances
        return {f"{tag}{i:03d}_{v.name}": np.array(v)
                for tag, net in (("G", g), ("D", d)) for i, v in enumerate(net.weights)}

    def one_step(strategy, synchronized):
        with strategy.scope():
            g, d, _ = build_networks(config, synchronized_bn=synchronized)
            g.set_weights(initial[0]); d.set_weights(initial[1])
            model = GauGAN(config, g, d)
            # SGD, not Adam: Adam's first step moves every weight by about lr * sign(gradient), so
            # float-rounding noise in gradients that are zero in exact arithmetic (e.g. a bias just
            # before a batch norm) becomes a full +-lr difference; SGD shows the real agreement.
            model.compile(g_optimizer=keras.optimizers.SGD(0.01), d_optimizer=keras.optimizers.SGD(0.01),
                          run_eagerly=True)
        model.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0)
        return named(g, d)

    with tf.distribute.get_strategy().scope():
        g0, d0, _ = build_networks(config)
        g0.set_weights(initial[0]); d0.set_weights(initial[1])
        start = named(g0, d0)
    single = one_step(tf.distribute.get_strategy(), False)
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored = one_step(mirrored_strategy, True)
    np.savez(sys.argv[2], **{"initial/" + k: v for k, v in start.items()},
             **{"single/" + k: v for k, v in single.items()},
             **{"mirrored/" + k: v for k, v in mirrored.items()})
""")


def test_mirrored_two_replicas_equal_one_device(tmp_path):
    out = tmp_path / "weights.npz"
    # 64x64: a 2x2 latent grid. At 32x32 (1x1) the first batch norms see only the 4 samples, and
    # their gradients amplify float rounding (summation order) to ~1e-4 in the spectral-norm u/v.
    config = SMALL + ["crop_size=64", "load_size=64"]
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(config), str(out)], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    arrays = np.load(out)
    keys = sorted(k.split("/", 1)[1] for k in arrays.files if k.startswith("single/"))
    assert keys and all(f"mirrored/{k}" in arrays.files for k in keys)
    # the step did train: the weights moved away from the common start
    moved = max(float(np.max(np.abs(arrays[f"single/{k}"] - arrays[f"initial/{k}"]))) for k in keys)
    assert moved > 1e-4
    # every weight, the synchronized batch norms' running mean and (unbiased) variance included
    assert any("moving_variance" in k for k in keys)
    for key in keys:
        # running variances (~1) go through the cross-replica sum of squares: rounding ~1e-5.
        # A per-replica count in the unbiased factor would be off by ~0.5 % here (n 8 vs 16).
        atol = 1e-4 if "moving_variance" in key else 1e-5
        np.testing.assert_allclose(arrays[f"mirrored/{key}"], arrays[f"single/{key}"], rtol=0, atol=atol,
                                   err_msg=key)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_two_processes_end_identical(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spade_tf", "train", "--preset", "tiny", "--out", str(out), "--steps", "3",
           "--save-every", "2", "--log-every", "1", "--sample-every", "100", "--distribute", "multiworker",
           "--verbose", "0", "--run-eagerly"] + [a for kv in SMALL for a in ("--set", kv)]
    # --run-eagerly: no tracing (the compiled step is tested in test_gaugan); same distributed code path
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**ENV, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                                   "task": {"type": "worker", "index": i}})})
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=540)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-4000:]
    import keras

    import spade_tf.models  # noqa: F401

    chief = keras.saving.load_model(out / "generator.keras", compile=False)
    other = keras.saving.load_model(out / "worker1" / "generator.keras", compile=False)
    for a, b in zip(chief.weights, other.weights, strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3"]  # the chief logs
    assert not (out / "worker1" / "metrics.csv").exists()
