"""Resume without replaying data (issue 14.1), the NaN guard on weights (14.6), short runs' records (15.5).

Reads are counted by wrapping `decode.read_pair` (the only place the pipeline opens files), with
`pipeline.READ_AHEAD` off so that a file is read only when its batch is asked for.
"""

import csv
import re

import numpy as np
import pytest
from PIL import Image

from spade_tf.config import get_preset
from spade_tf.errors import SpadeError

SMALL = ["crop_size=32", "load_size=32", "batchSize=2", "lambda_vgg=0", "ngf=4", "ndf=4", "spade_nhidden=8",
         "num_D=1", "n_layers_D=2"]


def small_config(*extra):
    return get_preset("tiny").with_overrides(SMALL + list(extra))


def run_train(out, steps, config=None, **kwargs):
    from spade_tf.training.runner import train

    kwargs = {"steps_per_epoch": 3, "save_every": 1, "log_every": 1, "sample_every": 2, "run_eagerly": True,
              "verbose": 0, "distribute": "none", "tensorboard": False, **kwargs}
    return train(config or small_config(), out, steps=steps, **kwargs)


def write_folder(root, n, bad=()):
    """n pairs 40x40 in images/ + labels/ (ids 0..7); the keys in `bad` get an unreadable photo."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    for i in range(n):
        label = rng.integers(0, 8, (40, 40)).astype(np.uint8)
        Image.fromarray(label).save(root / "labels" / f"p{i:02d}.png")
        if f"p{i:02d}" in bad:
            (root / "images" / f"p{i:02d}.png").write_bytes(b"not an image")
        else:
            photo = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)
            Image.fromarray(photo).save(root / "images" / f"p{i:02d}.png")
    return root


@pytest.fixture
def reads(monkeypatch):
    """A list that gets the label path of every pair the pipeline reads (validation included)."""
    from spade_tf.data import decode, pipeline

    monkeypatch.setattr(pipeline, "READ_AHEAD", False)
    seen = []
    original = decode.read_pair

    def counting(image_path, label_path, instance_path, config):
        seen.append(label_path)
        return original(image_path, label_path, instance_path, config)

    monkeypatch.setattr(decode, "read_pair", counting)
    return seen


def batches(ds, n):
    return [{k: np.asarray(v) for k, v in b.items()} for b in ds.take(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_example_order_is_a_function_of_seed_and_position():
    from spade_tf.data.pipeline import example_order

    full = list(example_order(5, seed=7, first=0).take(15).as_numpy_iterator())
    indices = [int(i) for i, _ in full]
    assert [int(k) for _, k in full] == list(range(15))
    for e in range(3):  # every epoch a permutation, and not all the same one
        assert sorted(indices[5 * e: 5 * e + 5]) == list(range(5))
    assert len({tuple(indices[5 * e: 5 * e + 5]) for e in range(3)}) > 1
    later = list(example_order(5, seed=7, first=7).take(8).as_numpy_iterator())
    assert [(int(i), int(k)) for i, k in later] == [(int(i), int(k)) for i, k in full[7:]]
    # positions a billion epochs on come without making the ones before
    far = list(example_order(5, seed=7, first=5 * 10**9 + 2).take(1).as_numpy_iterator())
    assert int(far[0][1]) == 5 * 10**9 + 2
    assert list(example_order(5, seed=7, shuffle=False, repeat=False).as_numpy_iterator())[2] == (2, 2)


def test_synthetic_stream_resumes_where_it_was():
    from spade_tf.data import build_dataset

    config = small_config()
    kwargs = {"batch_size": 2, "seed": 3, "repeat": True, "num_examples": 6}
    uninterrupted = batches(build_dataset(config, None, **kwargs), 9)  # crosses three epochs
    assert_same(batches(build_dataset(config, None, start=5, **kwargs), 4), uninterrupted[5:])
    assert not np.array_equal(uninterrupted[0]["image"], uninterrupted[3]["image"])  # reshuffled epochs
    # step 10**12 is as near as step 1: nothing before it is generated
    assert batches(build_dataset(config, None, start=10**12, **kwargs), 1)[0]["image"].shape == (2, 32, 32, 3)


def test_folder_stream_resumes_without_reading_skipped_files(tmp_path, reads):
    from spade_tf.data import build_dataset

    config = small_config()
    root = write_folder(tmp_path / "data", 5)
    kwargs = {"batch_size": 2, "seed": 1, "repeat": True}
    uninterrupted = batches(build_dataset(config, root, **kwargs), 12)
    assert len(reads) == 24
    reads.clear()
    resumed = batches(build_dataset(config, root, start=10, **kwargs), 2)
    assert len(reads) == 4  # the two batches asked for, nothing of the ten before them
    assert_same(resumed, uninterrupted[10:])


def test_resumed_training_reads_no_more_than_a_fresh_start_and_short_runs_leave_records(tmp_path, reads,
                                                                                       capsys):
    root = write_folder(tmp_path / "data", 7, bad={"p03"})  # 6 usable pairs: 3 batches an epoch
    out = tmp_path / "run"
    kwargs = {"data_dir": root, "skip_bad": True, "steps_per_epoch": None, "log_every": 50,
              "sample_every": 50}
    fresh = run_train(out, 2, **kwargs)
    log = capsys.readouterr().out
    assert fresh.final_step == 2 and "skip_bad: validated 7 pairs" in log and "6 usable, 1 dropped" in log
    # validation (7 pairs, once) + the sample batch + 2 steps
    assert len(reads) == 7 + 2 + 2 * 2
    # a run shorter than --log-every / --sample-every still records its last step
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ["2"]
    assert [p.name for p in (out / "samples").glob("*.png")] == ["step_00000002.png"]

    reads.clear()
    resumed = run_train(out, 3, **kwargs)
    log = capsys.readouterr().out
    assert (resumed.start_step, resumed.final_step) == (2, 3)
    assert "from the list validated earlier" in log and "continues at batch 2" in log
    # the sample batch + 1 step: the list of usable pairs is read, not re-validated, and the two
    # batches before the resume point are not read (a replay would read 4 more pairs)
    assert len(reads) == 2 + 2
    assert list((out / "data_cache").glob("usable_pairs-train-*.json"))


def test_non_finite_weights_with_finite_losses_are_not_saved(tmp_path, monkeypatch):
    """Infinite D gradients at step 3: its loss is finite (taken before the update) but the update
    makes D's weights and Adam slots NaN; that state must not become the last good checkpoint."""
    import tensorflow as tf

    from spade_tf.training import gaugan
    original = gaugan.default_optimizers

    def poisoned(config):
        g_opt, d_opt = original(config)
        apply = d_opt.apply  # what apply_gradients calls too

        def poisoned_apply(grads, trainable_variables=None):
            if int(d_opt.iterations.numpy()) == 2:  # the third D update
                grads = [g * float("inf") for g in grads]
            return apply(grads, trainable_variables)

        d_opt.apply = poisoned_apply
        return g_opt, d_opt

    monkeypatch.setattr(gaugan, "default_optimizers", poisoned)
    with pytest.raises(SpadeError, match=r"non-finite \(NaN/Inf\) at step 3 although the losses were finite "
                                         r"\((discriminator|d_optimizer)/.*ckpt-2") as err:
        run_train(tmp_path, 5)
    assert "d_optimizer/" in str(err.value) or "discriminator/" in str(err.value)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    assert not list((tmp_path / "checkpoints").glob("ckpt-3*"))
    assert not (tmp_path / "generator.keras").exists()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["step"] == "3" and np.isfinite(float(rows[-1]["D_loss"]))  # the loss guard saw nothing
    good = str(tmp_path / "checkpoints" / "ckpt-2")
    reader = tf.train.load_checkpoint(good)
    names = [n for n, _ in tf.train.list_variables(good) if re.match(r"(discriminator|d_optimizer)/", n)]
    assert names and all(np.isfinite(reader.get_tensor(n)).all() for n in names
                         if reader.get_tensor(n).dtype.kind == "f")
