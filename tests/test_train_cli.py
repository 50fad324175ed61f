"""`spade train` argument wiring (the training itself is covered by test_train_runner.py)."""

from spade_tf.cli import main


def test_skip_bad_reaches_the_runner(monkeypatch, tmp_path):
    seen = {}

    class Result:
        out_dir = str(tmp_path)

    def fake_train(config, out_dir, **kwargs):
        seen.update(kwargs, config=config)
        return Result()

    monkeypatch.setattr("spade_tf.training.runner.train", fake_train)
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path), "--steps", "1", "--skip-bad",
                 "--set", "crop_size=32"]) == 0
    assert seen["skip_bad"] is True and seen["config"].crop_size == 32
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path), "--steps", "1"]) == 0
    assert seen["skip_bad"] is False


def test_skip_bad_reaches_the_dataset(monkeypatch):
    from spade_tf.training import runner

    calls = {}
    monkeypatch.setattr("spade_tf.data.build_dataset", lambda *a, **k: calls.update(k))
    runner.build_train_dataset(None, "somewhere", 2, 0, repeat=True, skip_bad=True)
    assert calls["skip_bad"] is True


def test_training_defaults_are_the_measured_fastest():
    """CPU: fp32 + XLA (docs/benchmarks.md); an eager run is never compiled; explicit choices win."""
    import tensorflow as tf

    from spade_tf.commands.train import resolve_defaults

    if tf.config.list_physical_devices("GPU"):
        assert resolve_defaults("auto", None) == ("mixed_float16", True)
    else:
        assert resolve_defaults("auto", None) == ("none", True)
    assert resolve_defaults("auto", None, run_eagerly=True)[1] is False
    assert resolve_defaults("mixed_bfloat16", False) == ("mixed_bfloat16", False)
