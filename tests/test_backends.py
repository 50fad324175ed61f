"""The networks on the JAX and PyTorch backends of Keras, each in its own process.

Keras reads KERAS_BACKEND once, at import, so every backend runs in a subprocess with the variable
set: tests/backend_check.py (official-fixture parity of the converted generator, discriminator
and encoder through .keras save/load, the folded generator, the backend's inference call,
training-mode state updates; TensorFlow blocked, as on the GPU machines) and `spade synthesize
--backend jax` against the TensorFlow result in this process.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"jax": "jax", "torch": "torch"}


def _env(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TF_CONFIG", None)
    # tiny networks: XLA's CPU compile (one per op and shape in eager JAX) dominates, and LLVM's
    # optimizations triple it for no gain here
    env.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
    return env


def _need(backend: str):
    if importlib.util.find_spec(PACKAGES[backend]) is None:
        pytest.skip(f"{PACKAGES[backend]} is not installed (pip install -e '.[backends]')")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_networks_match_the_official_outputs_on_backend(backend, official_dir):
    _need(backend)
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "backend_check.py"), "--fixtures",
                           str(official_dir)], cwd=REPO, env=_env(backend), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = [s for s in proc.stdout.splitlines() if s.startswith("BACKEND_CHECK ")][-1]
    report = json.loads(line[len("BACKEND_CHECK "):])
    assert report["backend"] == backend
    for name in ("tiny_seg", "tiny_vae"):  # every check ran (a skipped one would be missing)
        for what in ("generator", "discriminator", "folded", "inference_function"):
            assert report[f"{name}/{what}"] <= 1e-4
    assert report["tiny_vae/encoder_mu"] <= 1e-4 and report["tiny_seg/generator/up_3"] <= 1e-4
    assert report["train/spectral_u"] <= 1e-5 and report["train/bn_moving_variance"] <= 1e-4
    assert report["tensorflow_imported"] == []
    if backend == "jax":
        assert report["jit_onehot_check_is_lax_cond"] is True


_SYNTHESIZE_FLOAT = r"""
import json, sys
import keras
import numpy as np
from PIL import Image
from spade_tf.inference import load_generator

model, labels, out = sys.argv[1:4]
ids = np.stack([np.asarray(Image.open(f"{labels}/{k}.png")) for k in range(2)])
np.save(out, load_generator(model).synthesize_float(ids, seed=3))
print(json.dumps({"backend": keras.backend.backend()}))
"""


def _perturbed_tiny_generator(path: Path):
    """A small VAE generator whose weights are N(0, 1/fan_in) (the official fixtures' recipe), so
    its output is far from zero and every layer matters; saved as a .keras file. Instance norm: with
    batch norm at inference (moving mean 0, variance 1) nothing renormalises these weights, the
    activations grow ~100x a block and the output is tanh(±1e16) = ±1 everywhere, a sign test that
    float noise can flip (seen on CI); instance norm and a scaled-down
    `conv_img` keep the output in tanh's graded range."""
    import keras

    from spade_tf.config import get_preset
    from spade_tf.models import SPADEGenerator

    config = get_preset("tiny").replace(ngf=4, spade_nhidden=16, use_vae=True,
                                        norm_G="spectralspadeinstance3x3")
    g = SPADEGenerator(config)
    g.build((None, *config.image_size, config.semantic_nc))
    rng = np.random.default_rng(0)
    for v in g.trainable_variables:
        shape = tuple(v.shape)
        if len(shape) >= 2:
            v.assign(rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape).astype("float32"))
        else:
            v.assign(rng.normal(0, 0.1, shape).astype("float32"))
    for v in g.conv_img.trainable_variables:  # pre-tanh values of order 1 (they are ~12 before)
        v.assign(v * 0.05)
    g.save(path)
    keras.backend.clear_session()
    return config


@pytest.mark.slow
def test_synthesize_backend_jax_matches_tensorflow(tmp_path):
    """`spade synthesize --backend jax` (jax.jit, folded spectral norm, one-hot look-ups) writes the
    images TensorFlow writes; the float outputs agree within 1e-4."""
    _need("jax")
    from PIL import Image

    from spade_tf.cli import main
    from spade_tf.inference import load_generator

    model = tmp_path / "generator.keras"
    config = _perturbed_tiny_generator(model)
    labels = tmp_path / "labels"
    labels.mkdir()
    rng = np.random.default_rng(1)
    ids = rng.integers(0, config.label_nc, (2, *config.image_size)).astype(np.uint8)
    ids[1, :32] = 3  # large regions as in real maps, beside per-pixel noise
    for k in range(2):
        Image.fromarray(ids[k]).save(labels / f"{k}.png")
    tf_float = load_generator(model).synthesize_float(ids, seed=3)
    assert tf_float.std() > 0.1  # far from zero: a wrong layer would show
    assert (np.abs(tf_float) < 0.9).mean() > 0.5  # graded values, not a saturated ±1 sign map
    assert main(["synthesize", "--model", str(model), "--labels", str(labels), "--out",
                 str(tmp_path / "tf"), "--seed", "3"]) == 0

    env = _env("jax")
    proc = subprocess.run([sys.executable, "-c", _SYNTHESIZE_FLOAT, str(model), str(labels),
                           str(tmp_path / "jax.npy")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"backend": "jax"}
    assert np.abs(np.load(tmp_path / "jax.npy") - tf_float).max() <= 1e-4

    env.pop("KERAS_BACKEND")  # the command line's --backend alone selects JAX
    command = ["synthesize", "--backend", "jax", "--model", str(model), "--labels", str(labels), "--out",
               str(tmp_path / "jax"), "--seed", "3"]
    proc = subprocess.run([sys.executable, "-m", "spade_tf", *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "wrote 2 images" in proc.stdout and "(Keras backend: jax)" in proc.stdout
    for k in range(2):
        a = np.asarray(Image.open(tmp_path / "tf" / f"{k}.png"), np.int16)
        b = np.asarray(Image.open(tmp_path / "jax" / f"{k}.png"), np.int16)
        assert a.shape == b.shape == (*config.image_size, 3)
        assert np.abs(a - b).max() <= 1  # uint8 rounding of floats equal within 1e-4


def test_synthesize_backend_refuses_a_switch_after_keras_is_imported(tmp_path, capsys):
    """In a process whose Keras already runs TensorFlow, --backend jax says what to do instead."""
    import keras

    from spade_tf.cli import main

    assert keras.backend.backend() == "tensorflow"
    code = main(["synthesize", "--backend", "jax", "--model", str(tmp_path / "g.keras"), "--labels",
                 str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "fresh process" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_benchmark_script_runs_at_tiny_size(tmp_path):
    """scripts/gpu_bench.py, which the GPU machines run under KERAS_BACKEND=jax without TensorFlow,
    runs its code paths on the CPU at tiny sizes: the jitted generator in bf16 and one GauGAN
    training iteration through Keras's JAX trainer (the official side needs a checkout and is
    skipped here)."""
    _need("jax")
    out = tmp_path / "gpu_bench.json"
    env = _env("jax")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--tiny", "--side", "ours",
                           "--dtypes", "bfloat16", "--train-batches", "1", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["backend"] == "jax" and result["tensorflow_imported"] is False
    rows = {(r["kind"], r["dtype"]): r for r in result["rows"]}
    assert set(rows) == {("generator", "bfloat16"), ("train", "float32")}
    for row in rows.values():
        assert "error" not in row, row
        assert row["median_s"] > 0 and row["images_per_s"] > 0
    generator = rows[("generator", "bfloat16")]
    assert generator["gmacs_per_image"] > 0 and generator["tflops"] > 0
