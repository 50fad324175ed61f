"""SPADE-Lite generator and `spade distill`: the lite network, end-to-end distillation on the tiny
preset (resume included), and that the student's outputs and exports have the teacher's interface."""

import csv

import numpy as np
import pytest

from spade_tf.config import get_preset
from spade_tf.errors import SpadeError

SMALL = ["crop_size=32", "load_size=32", "batchSize=2", "lambda_vgg=0", "ngf=8", "ndf=4", "spade_nhidden=16",
         "num_D=1", "n_layers_D=2"]


def small_config(**changes):
    return get_preset("tiny").with_overrides(SMALL).replace(**changes)


def test_width_one_is_the_official_network():
    """netG=spade_lite with width 1 and no separable convs computes what SPADEGenerator does."""
    from spade_tf.models import LiteSPADEGenerator, SPADEGenerator, make_semantics

    cfg = small_config()
    h, w = cfg.image_size
    full = SPADEGenerator(cfg)
    full.build((None, h, w, cfg.semantic_nc))
    lite = LiteSPADEGenerator(cfg.replace(netG="spade_lite"))
    lite.build((None, h, w, cfg.semantic_nc))
    lite.set_weights(full.get_weights())
    ids = np.random.default_rng(0).integers(0, cfg.label_nc, (2, h, w))
    s = make_semantics(ids, cfg)
    np.testing.assert_allclose(np.asarray(lite(s)), np.asarray(full(s)), atol=1e-6)


def test_lite_config_is_checked_and_saved(tmp_path):
    import keras

    from spade_tf.models import make_generator

    with pytest.raises(SpadeError, match="netG"):
        small_config(width=0.5)  # width without netG=spade_lite
    with pytest.raises(SpadeError, match="width"):
        small_config(netG="spade_lite", width=1.5)
    cfg = small_config(netG="spade_lite", width=0.5, separable=True)
    g = make_generator(cfg)
    g.build((None, *cfg.image_size, cfg.semantic_nc))
    g.save(tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras", compile=False)
    assert (loaded.config.netG, loaded.config.width, loaded.config.separable) == ("spade_lite", 0.5, True)
    assert loaded.count_params() == g.count_params()
    # separable: depthwise convs in the residual and SPADE branches, 1x1 convs after them
    kinds = {type(layer).__name__ for layer in loaded._flatten_layers()}
    assert {"DepthwiseConv2D", "SeparableSPADE", "SeparableSPADEResBlock"} <= kinds


def _signature(interp):
    runner = interp.get_signature_runner("serving_default")

    def spec(details):
        return {k: (tuple(v["shape"]), np.dtype(v["dtype"]).name) for k, v in details.items()}

    return spec(runner.get_input_details()), spec(runner.get_output_details())


@pytest.mark.slow
def test_distill_end_to_end_resume_and_exports(tmp_path, capsys):
    import tensorflow as tf

    from spade_tf.cli import main
    from spade_tf.export import export_model
    from spade_tf.export.tflite import interpreter
    from spade_tf.inference import load_generator
    from spade_tf.training.runner import train

    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    train(small_config(), teacher_dir, steps=1, steps_per_epoch=2, run_eagerly=True, verbose=0,
          distribute="none", sample_every=100, log_every=1)
    args = ["distill", "--teacher", str(teacher_dir), "--out", str(out), "--width", "0.5", "--separable",
            "--steps-per-epoch", "2", "--save-every", "1", "--log-every", "1", "--sample-every", "1",
            "--run-eagerly", "--verbose", "0", "--distribute", "none"]
    assert main(args + ["--steps", "1"]) == 0
    text = capsys.readouterr().out
    assert "discriminator initialised from the teacher" in text  # from the run's newest checkpoint
    assert main(args + ["--steps", "2"]) == 0
    assert "resumed from step 1" in capsys.readouterr().out
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(float(r["G_L1"]) > 0 and float(r["G_distill"]) > 0 for r in rows)
    assert (out / "samples").is_dir() and list((out / "samples").glob("*.png"))
    assert (out / "logs").is_dir() and (out / "distill.json").exists()

    teacher, student = load_generator(teacher_dir), load_generator(out)
    assert student.config.netG == "spade_lite" and student.config.separable
    assert student.generator.count_params() < teacher.generator.count_params() / 3
    labels = np.random.default_rng(1).integers(0, 8, (2, 32, 32))
    assert student.synthesize(labels).shape == teacher.synthesize(labels).shape == (2, 32, 32, 3)

    # SavedModel (TF Serving): the signatures of any non-VAE model without instance edges
    saved = export_model(student, "saved_model", tmp_path / "exports", name="student")
    assert saved["check"]["max_abs"] < 1e-4  # the export computes what the Keras student computes
    signatures = tf.saved_model.load(saved["path"]).signatures
    assert set(signatures) == {"serving_default", "image_float"}
    fn = signatures["serving_default"]
    assert set(fn.structured_input_signature[1]) == {"label_map"}
    assert fn.structured_input_signature[1]["label_map"].dtype == tf.int32
    assert fn.structured_outputs["image"].dtype == tf.uint8
    images = fn(label_map=tf.constant(labels, tf.int32))["image"].numpy()
    assert images.shape == (2, 32, 32, 3)
    # TFLite: the same signature, inputs and outputs (names, shapes, dtypes) as the teacher's file
    sigs = {}
    for name, model in (("teacher", teacher), ("student", student)):
        lite = export_model(model, "tflite", tmp_path / "exports", name=name)
        assert lite["check"]["max_abs"] < 1e-4
        sigs[name] = _signature(interpreter(lite["path"]))
    assert sigs["student"] == sigs["teacher"]
    inputs, outputs = sigs["student"]
    assert inputs == {"label_map": ((1, 32, 32), "int32")}
    assert outputs["image"] == ((1, 32, 32, 3), "uint8")
