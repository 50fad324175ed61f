"""bf16 inference (`spade_tf.precision`, `spade synthesize --precision bf16`).

The bf16 images are compared with the float32 ones of the same generator (a random generator made
non-trivial by `realistic_networks`); runs that need native bf16 are skipped on a CPU without it.
"""

import keras
import numpy as np
import pytest
from PIL import Image
from test_inference import _random_model, _save_png, blocky_labels

from spade_tf import precision
from spade_tf.cli import main
from spade_tf.errors import SpadeError
from spade_tf.inference import load_generator

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
X86_AMX = "flags\t\t: fpu avx512f amx_bf16 amx_tile\n"
X86_PLAIN = "flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd asimddp bf16 i8mm\n"
ARM_PLAIN = "Features\t: fp asimd asimddp\n"
NATIVE = precision.native_bf16()
needs_bf16 = pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16 / "
                                                   "ARM bf16): bf16 inference is refused here")


def test_detection_from_cpuinfo():
    assert precision.native_bf16(X86_BF16) and precision.native_bf16(X86_AMX)
    assert precision.native_bf16(ARM_BF16)
    assert not precision.native_bf16(X86_PLAIN) and not precision.native_bf16(ARM_PLAIN)
    assert not precision.native_bf16("")


def test_refused_without_native_bf16():
    with pytest.raises(SpadeError, match="no native bfloat16.*--precision float32"):
        precision.check_precision("bf16", cpuinfo=X86_PLAIN)
    assert precision.check_precision("bf16", cpuinfo=X86_BF16) == "bf16"
    assert precision.check_precision("bf16", allow_emulated=True, cpuinfo=X86_PLAIN) == "bf16"
    assert precision.check_precision("float32", cpuinfo=X86_PLAIN) == "float32"
    with pytest.raises(SpadeError, match="--precision must be one of"):
        precision.check_precision("fp16")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return _random_model(tmp_path_factory.mktemp("prec") / "m")


@needs_bf16
def test_bf16_close_to_float32(model_folder):
    folder, _, _, cfg = model_folder
    model = load_generator(folder)
    labels = blocky_labels(cfg, 4, 11)
    ref = model.synthesize_float(labels)
    bf16 = precision.with_precision(model, "bf16")
    out = bf16.synthesize_float(labels)
    assert bf16.generator.dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy is not left behind
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    assert np.abs(out - ref).max() > 0  # it really computes in bf16
    assert precision.psnr_db(out, ref) >= 30.0
    # the 30 dB bar means something here: the images' own mean colour scores far below it
    assert precision.psnr_db(np.broadcast_to(ref.mean(axis=(0, 1, 2)), ref.shape), ref) < 20.0


@needs_bf16
def test_synthesize_cli_bf16(tmp_path, model_folder):
    folder, _, _, cfg = model_folder
    labels_dir = tmp_path / "labels"
    for k, labels in enumerate(blocky_labels(cfg, 2, 5)):
        _save_png(labels_dir / f"{k}.png", labels.astype(np.uint8))
    for p in ("float32", "bf16"):
        assert main(["synthesize", "--model", str(folder), "--labels", str(labels_dir),
                     "--out", str(tmp_path / p), "--precision", p, "--no-jit-compile"]) == 0
    for k in range(2):
        a, b = (np.asarray(Image.open(tmp_path / p / f"{k}.png"), np.float32) / 127.5 - 1
                for p in ("float32", "bf16"))
        assert precision.psnr_db(b, a) >= 30.0


def test_synthesize_cli_refuses_bf16_without_it(tmp_path, model_folder, monkeypatch, capsys):
    monkeypatch.setattr(precision, "native_bf16", lambda cpuinfo=None: False)
    labels_dir = tmp_path / "labels"
    _save_png(labels_dir / "a.png", np.zeros((32, 32), np.uint8))
    assert main(["synthesize", "--model", str(model_folder[0]), "--labels", str(labels_dir),
                 "--out", str(tmp_path / "out"), "--precision", "bf16"]) == 2
    assert "no native bfloat16" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.png").exists()


@needs_bf16
def test_bf16_saved_model_export(tmp_path, model_folder):
    import tensorflow as tf

    from spade_tf.export import export_model, reference_output

    folder, _, _, cfg = model_folder
    model = load_generator(folder)
    result = export_model(model, "saved_model", tmp_path, compute_precision="bf16")
    check = result["check"]
    assert check["precision"] == "bf16" and check["figure"] == "psnr_db" and check["limit"] == 30.0
    assert check["passed"] and check["psnr_db"] >= 30.0
    labels = blocky_labels(cfg, 2, 21)
    signature = tf.saved_model.load(result["path"]).signatures["image_float"]
    out = signature(label_map=tf.constant(labels))["image_float"].numpy()
    ref = reference_output(model, {"label_map": labels})
    assert np.abs(out - ref).max() > 1e-4  # bf16 arithmetic in the graph, not float32
    assert precision.psnr_db(out, ref) >= 30.0
    with pytest.raises(SpadeError, match="applies to --format saved_model only"):
        export_model(model, "onnx", tmp_path, compute_precision="bf16")
