"""Training state on disk: `tf.train.CheckpointManager` checkpoints and the output `config.json`.

A checkpoint holds everything a resumed run needs to continue as if never stopped: generator,
discriminator, encoder, EMA generator, both optimizers (slots, iterations, loss scale), the step
and epoch counters and the noise seed (the per-step noise is a function of seed and step, see
`GauGAN._noise`). The official code saves generator weights only.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from pathlib import Path

import tensorflow as tf

from spade_tf.config import SPADEConfig
from spade_tf.errors import SpadeError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def library_versions() -> dict[str, str]:
    import keras
    import numpy

    import spade_tf

    return {"spade_tf": getattr(spade_tf, "__version__", "0"), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


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
        bad = []
        for group, holder in self._groups.items():
            variables = holder.variables if hasattr(holder, "variables") else holder
            for v in variables:
                t = tf.convert_to_tensor(v)
                if t.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(t))):
                    bad.append(f"{group}/{getattr(v, 'path', None) or v.name}")
        return bad

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
