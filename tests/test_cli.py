"""The `spade` command: every subcommand has --help with examples; arguments reach their runners."""

import subprocess
import sys

import pytest

from spade_tf.cli import build_parser, main

SUBCOMMANDS = ["convert", "data", "train", "synthesize", "export", "evaluate", "benchmark", "demo",
               "demo-job"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"spade {command}" in out
    assert "example" in out.lower()


def test_benchmark_quality_takes_its_options_directly():
    args = build_parser().parse_args(["benchmark", "quality", "--data", "d", "--out", "o", "--steps", "3"])
    assert (args.data, args.out, args.steps) == ("d", "o", 3)


def test_benchmark_export_passes_plain_arguments(monkeypatch, capsys):
    from spade_tf.benchmarks import export

    seen = {}

    def fake(preset, overrides, **kwargs):
        seen.update(preset=preset, overrides=overrides, **kwargs)
        return {"meta": {"preset": preset}, "rows": []}

    monkeypatch.setattr(export, "run_export_benchmark", fake)
    assert main(["benchmark", "export", "--preset", "tiny", "--set", "crop_size=32", "--formats",
                 "keras_eager,tflite_fp32", "--batches", "1,4", "--runs", "2", "--warmup", "0",
                 "--threads", "2", "--out", "o.json"]) == 0
    assert seen == {"preset": "tiny", "overrides": ["crop_size=32"],
                    "formats": ["keras_eager", "tflite_fp32"], "batches": [1, 4], "runs": 2, "warmup": 0,
                    "threads": 2, "out": "o.json"}
    assert '"preset": "tiny"' in capsys.readouterr().out


def test_benchmark_demo_passes_plain_arguments(monkeypatch):
    from spade_tf.benchmarks import demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo_benchmark",
                        lambda model, **kwargs: seen.update(model=model, **kwargs))
    assert main(["benchmark", "demo", "--model", "m", "--make-random", "tiny", "--set", "crop_size=32",
                 "--runtime", "tflite", "--clients", "1", "2", "--requests", "3", "--workers", "2",
                 "--queue", "4"]) == 0
    seen.pop("log")
    assert seen == {"model": "m", "runtime": "tflite", "clients": [1, 2], "requests": 3, "workers": 2,
                    "queue": 4, "label": None, "make_random": "tiny", "overrides": ["crop_size=32"]}


@pytest.mark.parametrize("what", ["quality", "export", "demo", "cost"])
def test_benchmark_subcommands_have_help_with_examples(what, capsys):
    with pytest.raises(SystemExit) as done:
        main(["benchmark", what, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"spade benchmark {what}" in out and "example" in out.lower()


def test_python_dash_m_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "spade_tf", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_verbose_flag_goes_before_the_subcommand(monkeypatch):
    from spade_tf.cli import wants_verbose

    monkeypatch.delenv("SPADE_VERBOSE", raising=False)
    assert wants_verbose(["--verbose", "train"])
    assert not wants_verbose(["train", "--verbose", "2"])  # that one is Keras's fit verbosity
    monkeypatch.setenv("SPADE_VERBOSE", "1")
    assert wants_verbose(["train"])


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_tensorflow_log_lines_only_with_verbose(tmp_path, verbose):
    """A command that imports TensorFlow and fails: quiet, stderr is our one error line."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SPADE_VERBOSE")}
    argv = [sys.executable, "-m", "spade_tf"] + (["--verbose"] if verbose else []) + [
        "synthesize", "--model", str(tmp_path / "missing"), "--labels", str(tmp_path),
        "--out", str(tmp_path / "o")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("spade synthesize: error:") and "missing" in lines[-1]
    tf_lines = [line for line in lines if line[:1] in "IWEF" and "] " in line and line[1:5].isdigit()]
    if verbose:
        assert tf_lines, result.stderr  # TensorFlow's own notices are back
    else:
        assert lines == lines[-1:], result.stderr


def test_import_spade_tf_alone_registers_the_keras_classes(tmp_path):
    """A fresh interpreter: `import spade_tf`, nothing else of ours, then the classes resolve by name."""
    code = ("import keras, spade_tf, sys\n"
            "names = ['SPADEGenerator', 'MultiscaleDiscriminator', 'ConvEncoder', 'SPADE', 'SPADEResBlock',\n"
            "         'SpectralNormalization', 'TorchAdam', 'AlexNetFeatures', 'LPIPS', 'FIDInceptionV3']\n"
            "missing = [n for n in names if keras.saving.get_registered_object('spade_tf>' + n) is None]\n"
            "sys.exit('not registered: %s' % missing if missing else 0)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_building_the_cli_imports_no_keras():
    """`spade` picks the Keras backend (`--backend`) and TensorFlow's log level after parsing, so
    building the parser (every command's options) must not import Keras or TensorFlow."""
    code = ("import sys; sys.argv = ['spade']; from spade_tf import cli; cli.build_parser(); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
