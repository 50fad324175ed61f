"""Keras callbacks of a training run: NaN guard, checkpoints, EMA, metrics.csv, TensorBoard, samples.

Order matters (Keras calls callbacks in list order): the NaN guard runs first so that no
checkpoint is written after a non-finite loss (`runner.make_callbacks` builds the list).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import keras
import numpy as np

from spade_tf.data.images import to_uint8
from spade_tf.training.schedule import learning_rates


def _float(value):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


def _step(model) -> int:
    return model.current_step()  # also between the steps of a JAX fit (see GauGAN.current_step)


def _sync(model) -> None:
    """The newest state into the variables before a callback reads or writes them (JAX fit)."""
    sync = getattr(model, "sync_state", None)
    if sync is not None:
        sync()


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first NaN/Inf loss and remembers where (`failure`)."""

    def __init__(self):
        super().__init__()
        self.failure = None

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            v = _float(value)
            if v is not None and not math.isfinite(v):
                self.failure = (_step(self.model), key, v)
                self.model.stop_training = True
                return


class StopAtStep(keras.callbacks.Callback):
    """Stops when the step counter reaches `total` (ends a last, partial epoch), or after
    `max_seconds` of training (a time budget, e.g. the demo)."""

    def __init__(self, total: int, max_seconds: float | None = None):
        super().__init__()
        self.total, self.max_seconds = total, max_seconds
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        over_time = self.max_seconds is not None and time.perf_counter() - self._start > self.max_seconds
        if _step(self.model) >= self.total or over_time:
            self.model.stop_training = True


class EMAUpdate(keras.callbacks.Callback):
    """Generator EMA after every step (cross-replica context, so mirrored copies stay equal)."""

    def on_train_batch_end(self, batch, logs=None):
        self.model.update_ema()


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves every `every` steps and at the end, never after a non-finite loss, and never a state
    whose weights or optimizer slots are non-finite (a finite loss can come with non-finite
    gradients): then it stops training and keeps (step, variable names) in `failure`."""

    def __init__(self, checkpoints, every: int, guard: NonFiniteLossGuard | None = None, verbose=True):
        super().__init__()
        self.checkpoints, self.guard, self.verbose = checkpoints, guard, verbose
        self.every = max(1, int(every))
        self.last_saved = None
        self.failure = None

    def _healthy(self):
        return (self.guard is None or self.guard.failure is None) and self.failure is None

    def _save(self):
        from spade_tf.training.checkpoints import NonFiniteState

        step = _step(self.model)
        if step != self.last_saved and self._healthy():
            try:
                self.checkpoints.save()
            except NonFiniteState as e:
                self.failure = (e.step, e.names)
                self.model.stop_training = True
                return
            self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        self._save()


class Throughput(keras.callbacks.Callback):
    """images/s over the last logging interval (global batch / wall time per step)."""

    def __init__(self, global_batch: int):
        super().__init__()
        self.global_batch = global_batch
        self._t = None
        self._steps = 0
        self.images_per_s = float("nan")

    def on_train_batch_begin(self, batch, logs=None):
        if self._t is None:
            self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def take(self) -> float:
        """images/s since the last call (excludes nothing; first interval includes tracing)."""
        if self._t is not None and self._steps:
            now = time.perf_counter()
            self.images_per_s = self._steps * self.global_batch / max(now - self._t, 1e-9)
            self._t, self._steps = now, 0
        return self.images_per_s


class MetricsLogger(keras.callbacks.Callback):
    """Every `every` steps: a row in OUT_DIR/metrics.csv (first column `step`) and TensorBoard scalars.

    Logged: every loss term (running epoch means, as the progress bar), lr_G, lr_D, images_per_s.
    """

    def __init__(self, csv_path, config, every: int, throughput: Throughput, tensorboard_dir=None):
        super().__init__()
        self.csv_path = Path(csv_path)
        self.config, self.every, self.throughput = config, max(1, int(every)), throughput
        self.writer = None
        if tensorboard_dir is not None:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(str(tensorboard_dir))
        self.epoch = 0
        self._columns = None
        self._last_logged = None
        self._pending = None  # logs of the newest step not written yet

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every:
            self._pending = (step, dict(logs or {}))
            return
        self._log(step, logs)

    def on_train_end(self, logs=None):
        """The last step always gets its row, also in a run shorter than `every`."""
        if self._pending is not None and self._pending[0] != self._last_logged:
            self._log(*self._pending)
        self._pending = None

    def _log(self, step, logs):
        self._last_logged, self._pending = step, None
        lr_g, lr_d = learning_rates(self.config, self.epoch)
        row = {"step": step, "epoch": self.epoch}
        row.update({k: _float(v) for k, v in sorted((logs or {}).items())})
        row.update({"lr_G": lr_g, "lr_D": lr_d, "images_per_s": self.throughput.take()})
        self._write_csv(row)
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=step):
                for key, value in row.items():
                    if key not in ("step",) and value is not None:
                        tf.summary.scalar(key, value)
            self.writer.flush()

    def _write_csv(self, row):
        if self._columns is None:
            if self.csv_path.exists() and self.csv_path.stat().st_size:
                with open(self.csv_path, newline="", encoding="utf-8") as f:
                    self._columns = next(csv.reader(f))
            else:
                self._columns = list(row)
                with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerow(self._columns)
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(["" if row.get(c) is None else row.get(c) for c in self._columns])


def colorize_labels(label_map, config) -> np.ndarray:
    """uint8 RGB [B, H, W, 3]: the data helper's class colours, else a fixed fallback palette."""
    try:
        from spade_tf.data.classes import colorize
    except ImportError:
        colorize = None
    if colorize is not None:
        return colorize(np.asarray(label_map), config)
    rng = np.random.default_rng(0)
    lut = rng.integers(0, 256, (max(256, config.num_label_channels + 1), 3)).astype(np.uint8)
    return lut[np.asarray(label_map).astype(np.int64)]


def _pixels(images) -> np.ndarray:
    """uint8 NumPy images of [-1, 1] floats; NaN (a diverged network) → black."""
    return np.asarray(to_uint8(np.nan_to_num(np.asarray(images, np.float32), nan=-1.0)))


def sample_grid(label_rgb, fake, real) -> np.ndarray:
    """One row per sample: colourised labels | synthesized | real. uint8 [B*H, 3*W, 3]."""
    rows = [np.concatenate([lab, f, r], axis=1) for lab, f, r in zip(label_rgb, fake, real, strict=True)]
    return np.concatenate(rows, axis=0)


class SampleImages(keras.callbacks.Callback):
    """Every `every` steps and at the last step (also of a run shorter than `every`): PNG grid in
    OUT_DIR/samples/ and a TensorBoard image."""

    def __init__(self, batch, config, out_dir, every: int, tensorboard_dir=None):
        super().__init__()
        self.batch = {k: np.asarray(v) for k, v in batch.items()}
        self.config, self.every = config, max(1, int(every))
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tensorboard_dir = tensorboard_dir
        self.writer = None
        self.last = None

    def write(self):
        from PIL import Image

        step = _step(self.model)
        if step == self.last:
            return None
        self.last = step
        _sync(self.model)
        fake = _pixels(self.model(self.batch, training=False))
        grid = sample_grid(colorize_labels(self.batch["label_map"], self.config), fake,
                           _pixels(self.batch["image"]))
        path = self.out_dir / f"step_{step:08d}.png"
        Image.fromarray(grid).save(path)
        if self.tensorboard_dir is not None:
            import tensorflow as tf

            if self.writer is None:
                self.writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
            with self.writer.as_default(step=step):
                tf.summary.image("labels | synthesized | real", grid[None], max_outputs=1)
            self.writer.flush()
        return path

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) % self.every == 0:
            self.write()

    def on_train_end(self, logs=None):
        self.write()
