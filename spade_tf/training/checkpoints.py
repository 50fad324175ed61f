"""Training state on disk: checkpoints and the output `config.json`.

A checkpoint holds everything a resumed run needs to continue as if never stopped: generator,
discriminator, encoder, EMA generator, both optimizers (slots, iterations, learning rate, loss
scale), the step and epoch counters and the noise seed (the per-step noise is a function of seed and
step, see `GauGAN._noise`: seed + step are the whole random state). The official code saves
generator weights only.

Two formats, one interface (`save`, `restore_latest`, `latest_path`, `nonfinite_variables`):
- TensorFlow backend: `TrainingCheckpoints`, `tf.train.CheckpointManager` (OUT_DIR/checkpoints/ckpt-N.*);
- other Keras backends (JAX): `ArrayCheckpoints`, one `.npz` of every variable's value keyed by
  group and Keras variable path (OUT_DIR/checkpoints/ckpt-N.npz), written atomically (temporary
  file, fsync, rename), the last `keep` kept; no TensorFlow involved.
"""

from __future__ import annotations

import json
import os
import platform
import re
import warnings
from pathlib import Path

import numpy as np

from spade_tf.config import SPADEConfig
from spade_tf.errors import SpadeError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def library_versions() -> dict[str, str]:
    import keras
    import numpy

    import spade_tf

    versions = {"spade_tf": getattr(spade_tf, "__version__", "0"), "keras": keras.__version__,
                "keras_backend": keras.backend.backend(), "numpy": numpy.__version__,
                "python": platform.python_version()}
    for name in ("tensorflow", "jax"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed
            pass
    return versions


def write_config(out_dir: Path, config: SPADEConfig, training: dict | None = None) -> Path:
    """OUT_DIR/config.json: {"config": ..., "versions": ..., "training": ...} (read by load_config)."""
    path = Path(out_dir) / CONFIG_FILE
    payload = {"config": config.to_dict(), "versions": library_versions(), "training": training or {}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_config_matches(out_dir: Path, config: SPADEConfig) -> dict | None:
    """Compare with an existing OUT_DIR/config.json; None when there is none.

    Raises SpadeError listing the differing keys: resuming with another model would silently
    mix two trainings.
    """
    path = Path(out_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SpadeError(f"{path}: not valid JSON ({e}); move it away to start a new training") from None
    # a key added to SPADEConfig after the folder was written (e.g. netG, width) counts as its default
    saved = {**SPADEConfig().to_dict(), **payload.get("config", payload)}
    current = config.to_dict()
    absent = "<absent>"
    diffs = sorted(k for k in set(saved) | set(current) if saved.get(k, absent) != current.get(k, absent))
    if diffs:
        listing = ", ".join(f"{k}: saved {saved.get(k, absent)!r} vs now {current.get(k, absent)!r}"
                            for k in diffs)
        raise SpadeError(f"{path}: this output folder holds a training with another configuration "
                         f"({listing}). Resume with the same preset and --set values, or choose a new "
                         "--out folder.")
    return payload


class NonFiniteState(SpadeError):
    """The training state holds NaN/Inf: `names` lists the variables; it was not saved."""

    def __init__(self, step: int, names: list[str]):
        super().__init__(f"step {step}: non-finite values in {', '.join(names[:5])}"
                         + (f" and {len(names) - 5} more" if len(names) > 5 else ""))
        self.step, self.names = step, names


def _weights(network) -> list:
    """All variables of a network (trainable and state), in their fixed creation order."""
    return [w.value for w in network.weights]


class TrainingCheckpoints:
    """Save / restore the full training state in OUT_DIR/checkpoints, keeping the last `keep`."""

    def __init__(self, model, directory, keep: int = 3, epoch_variable=None):
        import tensorflow as tf

        self.model = model
        self.directory = Path(directory)
        self.epoch = epoch_variable if epoch_variable is not None else tf.Variable(0, dtype=tf.int64,
                                                                                    trainable=False)
        self.seed = tf.Variable(model.seed, dtype=tf.int64, trainable=False)
        # Networks are checkpointed as explicit, ordered weight lists: Keras 3 layers held in Python
        # lists (the discriminator's scales and layers) are invisible to tf.train's object graph, so
        # `Checkpoint(discriminator=D)` would silently skip e.g. its spectral-norm vectors.
        objects = {"generator": _weights(model.generator), "discriminator": _weights(model.discriminator),
                   "g_optimizer": model.g_optimizer, "d_optimizer": model.d_optimizer,
                   "step": model.step_counter.value, "epoch": self.epoch, "seed": self.seed}
        if model.encoder is not None:
            objects["encoder"] = _weights(model.encoder)
        if model.ema_generator is not None:
            objects["generator_ema"] = _weights(model.ema_generator)
        objects.update(getattr(model, "checkpoint_extras", dict)())  # e.g. distillation maps
        self._groups = {k: v for k, v in objects.items() if k in ("generator", "discriminator", "encoder",
                                                                   "generator_ema")}
        self._groups.update(g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=keep)

    @property
    def step(self) -> int:
        return int(self.model.step_counter.numpy())

    def nonfinite_variables(self) -> list[str]:
        """Names ("group/variable") of every floating-point weight (G, D, E, EMA) and optimizer slot
        holding a NaN or Inf; empty when the whole state is finite."""
        import tensorflow as tf

        bad = []
        for group, holder in self._groups.items():
            variables = holder.variables if hasattr(holder, "variables") else holder
            for v in variables:
                t = tf.convert_to_tensor(v)
                if t.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(t))):
                    bad.append(f"{group}/{getattr(v, 'path', None) or v.name}")
        return bad

    def latest_path(self) -> str | None:
        return self.manager.latest_checkpoint

    def save(self) -> str:
        """Write a checkpoint of the current step; NonFiniteState (nothing written) when any weight
        or optimizer slot is NaN/Inf, so the newest checkpoint is always a state training can go on from."""
        bad = self.nonfinite_variables()
        if bad:
            raise NonFiniteState(self.step, bad)
        return self.manager.save(checkpoint_number=self.step)

    def restore_latest(self) -> int | None:
        """Restore the newest readable checkpoint; returns its step, or None when there is none.

        A corrupt newest checkpoint (truncated file, missing shard) is skipped with a warning and
        the previous one is used.
        """
        candidates = list(reversed(self.manager.checkpoints))
        if not candidates:
            return None
        for i, path in enumerate(candidates):
            try:
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
            except Exception as e:  # DataLossError, NotFoundError, assertion on missing values
                if i + 1 < len(candidates):
                    warnings.warn(f"checkpoint {path} cannot be read ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200]}); falling back to {candidates[i + 1]}",
                                  stacklevel=2)
                    continue
                raise SpadeError(f"no readable checkpoint in {self.directory} (last error on {path}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0][:200]}); move the folder "
                                 "away to start again") from e
            self.model.seed = int(self.seed.numpy())
            return self.step
        return None


class EpochCounter:
    """The checkpointed epoch outside TensorFlow (what `StepLearningRateSchedule` assigns)."""

    def __init__(self, value: int = 0):
        self.value = int(value)

    def assign(self, value) -> None:
        self.value = int(value)

    def numpy(self) -> int:
        return self.value


_NAME = re.compile(r"ckpt-(\d+)\.npz$")


class ArrayCheckpoints:
    """The full training state as `.npz` files of variable values (any Keras backend; used on JAX).

    Keys are "group/index" (group: generator, discriminator, encoder, generator_ema, g_optimizer,
    d_optimizer; index: the variable's place in its group, a fixed creation order; Keras paths hold
    process-dependent layer numbers, so they are not keys), plus "step", "epoch" and "seed". A
    restore requires exactly the same keys and shapes, so a checkpoint of another network is refused
    rather than half loaded. Inside a JAX `fit` the newest state is
    attached to the variables first (`GauGAN.sync_state`).
    """

    def __init__(self, model, directory, keep: int = 3, epoch_variable=None):
        if getattr(model, "checkpoint_extras", None) is not None:
            raise SpadeError("this training model keeps extra state (e.g. `spade distill`), which only "
                             "the TensorFlow checkpoints hold; run it with KERAS_BACKEND=tensorflow")
        self.model = model
        self.directory = Path(directory)
        self.keep = max(1, int(keep))
        self.epoch = epoch_variable if epoch_variable is not None else EpochCounter()
        groups = {"generator": model.generator.weights, "discriminator": model.discriminator.weights}
        if model.encoder is not None:
            groups["encoder"] = model.encoder.weights
        if model.ema_generator is not None:
            groups["generator_ema"] = model.ema_generator.weights
        groups.update(g_optimizer=model.g_optimizer.variables, d_optimizer=model.d_optimizer.variables)
        self._variables = {f"{group}/{i:05d}": v for group, vs in groups.items() for i, v in enumerate(vs)}

    @property
    def step(self) -> int:
        return self.model.current_step()

    def _paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest_path(self) -> str | None:
        paths = self._paths()
        return str(paths[-1]) if paths else None

    def _values(self) -> dict:
        from keras import ops

        self.model.sync_state()
        return {k: ops.convert_to_numpy(v.value) for k, v in self._variables.items()}

    def nonfinite_variables(self, values=None) -> list[str]:
        values = self._values() if values is None else values
        return [f"{k.split('/')[0]}/{self._variables[k].path}" for k, x in values.items()
                if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all()]

    def save(self) -> str:
        """Write ckpt-STEP.npz (atomically) and drop all but the newest `keep`; NonFiniteState (nothing
        written) when any weight or optimizer slot is NaN/Inf."""
        values = self._values()
        step = self.step
        bad = self.nonfinite_variables(values)
        if bad:
            raise NonFiniteState(step, bad)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ckpt-{step}.npz"
        tmp = self.directory / f".ckpt-{step}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, step=np.int64(step), epoch=np.int64(self.epoch.numpy()),
                     seed=np.int64(self.model.seed), **values)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for old in self._paths()[:-self.keep]:
            old.unlink(missing_ok=True)
        return str(path)

    def _restore(self, path: Path) -> int:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
        missing = sorted(set(self._variables) - set(stored))
        extra = sorted(set(stored) - set(self._variables) - {"step", "epoch", "seed"})
        if missing or extra:
            raise SpadeError(f"{path} holds another network (missing {missing[:3]}, unexpected "
                             f"{extra[:3]}); resume with the configuration it was written with")
        for key, v in self._variables.items():
            if tuple(stored[key].shape) != tuple(v.shape):
                raise SpadeError(f"{path}: {key} ({v.path}) has shape {stored[key].shape}, the network "
                                 f"{tuple(v.shape)}; resume with the configuration it was written with")
        for key, v in self._variables.items():
            v.assign(stored[key])
        self.model.step_counter.assign(int(stored["step"]))
        self.epoch.assign(int(stored["epoch"]))
        self.model.seed = int(stored["seed"])
        return int(stored["step"])

    def restore_latest(self) -> int | None:
        """Restore the newest readable checkpoint; its step, or None when there is none. A corrupt
        newest file (truncated, unreadable) is skipped with a warning and the previous one is used."""
        candidates = list(reversed(self._paths()))
        for i, path in enumerate(candidates):
            try:
                return self._restore(path)
            except SpadeError:
                raise
            except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, OSError
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                if i + 1 < len(candidates):
                    warnings.warn(f"checkpoint {path} cannot be read ({why}); falling back to "
                                  f"{candidates[i + 1]}", stacklevel=2)
                    continue
                raise SpadeError(f"no readable checkpoint in {self.directory} (last error on {path}: "
                                 f"{why}); move the folder away to start again") from e
        return None
