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


def test_python_dash_m_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "spade_tf", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout
