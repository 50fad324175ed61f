"""`train(...)`: what `spade train` runs. Builds data, networks, GauGAN, callbacks; resumes; fits;
writes OUT_DIR/{generator.keras, encoder.keras, config.json, metrics.csv, samples/, logs/,
checkpoints/}.

Steps and epochs: a step is one official iteration (one batch). An epoch is one pass over the
training set (its batch count); for the endless synthetic set, `steps_per_epoch`. `steps`/`epochs`
are TOTALS, so re-running the same command after a crash continues to the same end point. The
learning-rate epoch is `step // steps_per_epoch`, so a resume in the middle of an epoch keeps the
official schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from pathlib import Path

from spade_tf.config import SPADEConfig
from spade_tf.errors import SpadeError

MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainResult:
    out_dir: Path
    start_step: int
    final_step: int
    resumed: bool
    generator_path: Path | None
    encoder_path: Path | None
    history: dict


def _log(msg: str) -> None:
    print(msg, flush=True)


# ---- data ------------------------------------------------------------------------------------------
def build_train_dataset(config: SPADEConfig, data_dir, batch_size: int, seed: int, repeat: bool,
                        skip_bad: bool = False, start: int = 0, skip_bad_cache=None):
    """The data helper's `build_dataset` (the embedded synthetic set when data_dir is None), from
    batch `start` of the stream on (nothing before it is read: see `build_dataset`)."""
    from spade_tf.data import build_dataset

    return build_dataset(config, data_dir, split="train", batch_size=batch_size, shuffle=True, seed=seed,
                         repeat=repeat, drop_remainder=True, skip_bad=skip_bad, start=start,
                         skip_bad_cache=skip_bad_cache)


def steps_per_epoch_of(config, data_dir, batch_size, seed, skip_bad: bool = False,
                       skip_bad_cache=None) -> int:
    """Batches in one pass over the training set, counted without reading the examples (with
    skip_bad: the pairs are validated once and the list kept in skip_bad_cache, see
    `spade_tf.data.pipeline.usable_pairs`)."""
    from spade_tf.data.pipeline import count_examples

    examples, note = count_examples(config, data_dir, "train", skip_bad, skip_bad_cache)
    if note:
        _log(note)
    if examples is None:  # a TFDS folder with skip_bad: count what the filter lets through
        ds = build_train_dataset(config, data_dir, batch_size, seed, repeat=False, skip_bad=skip_bad)
        n = sum(1 for _ in ds)
    else:
        n = examples // batch_size
    if n < 1:
        where = data_dir or "synthetic set"
        raise SpadeError(f"{where}: fewer training pairs than one batch of {batch_size}; "
                         "lower batchSize (--set batchSize=1) or add data")
    return n


# ---- networks ----------------------------------------------------------------------------------------
def _load_init_networks(init_dir, config):
    """(G, D or None, E or None) from a converted folder (generator.keras ...) or an official one."""
    import keras

    import spade_tf.models  # noqa: F401  (registers the layers for load_model)
    from spade_tf.config import load_config

    init_dir = Path(init_dir)
    if (init_dir / "generator.keras").exists():
        if (init_dir / "config.json").exists():
            _check_architecture(load_config(str(init_dir / "config.json")), config, init_dir / "config.json")
        nets = []
        for name in ("generator", "discriminator", "encoder"):
            path = init_dir / f"{name}.keras"
            nets.append(keras.saving.load_model(path, compile=False) if path.exists() else None)
        return tuple(nets)
    if list(init_dir.glob("*_net_G.pth")) or list(init_dir.glob("*_net_G.npz")):
        from spade_tf.convert.official import load_official

        src_config, g, d, e = load_official(init_dir)
        _check_architecture(src_config, config, init_dir / "opt.txt")
        return g, d, e
    raise SpadeError(f"--init-generator {init_dir}: expected a folder with generator.keras (from "
                     "`spade convert`) or an official checkpoint folder (opt.txt + latest_net_G.pth)")


def _check_architecture(source: SPADEConfig, config: SPADEConfig, where) -> None:
    diffs = [f"{k}: {there!r} there vs {here!r} here"
             for k, there, here in source.differences(config, SPADEConfig.ARCHITECTURE_KEYS)]
    if diffs:
        raise SpadeError(f"--init-generator: {where} describes a different network ({'; '.join(diffs)}); "
                         "pass matching --set values")


def _copy_weights(dst, src, what):
    if src is None or dst is None:
        return False
    try:
        dst.set_weights(src.get_weights())
    except ValueError as e:
        raise SpadeError(f"--init-generator: the {what} does not fit this configuration ({e})") from e
    return True


def _have_tensorboard() -> bool:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        _log("note: TensorBoard is not installed (pip install tensorboard): no TensorBoard logs; "
             "metrics.csv and samples/ are written as usual")
        return False
    return True


def _jax_distribution(distribute: str):
    """On JAX: `keras.distribution.DataParallel` over the local devices when there are several
    (auto / mirrored), else None. Under DataParallel the weights are
    replicated and each global batch is split over the devices; the compiled step still computes
    the whole-batch losses and batch statistics (XLA inserts the reductions), so one step equals a
    single-device step on the same batch."""
    import keras

    if distribute not in ("auto", "none", "mirrored"):
        raise SpadeError(f"--distribute {distribute}: on the JAX backend use auto, none or mirrored "
                         "(DataParallel over this machine's devices)")
    devices = keras.distribution.list_devices()
    if distribute == "none" or len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)


# ---- main entry ----------------------------------------------------------------------------------------
def train(config: SPADEConfig, out_dir, data_dir=None, steps: int | None = None, epochs: int | None = None,
          steps_per_epoch: int | None = None, save_every: int = 500, keep_checkpoints: int = 3,
          perceptual_weights=None, allow_download: bool = True, mixed_precision: str = "none",
          jit_compile: bool = False, run_eagerly: bool = False, init_generator=None, model_factory=None,
          distribute: str = "auto", strategy=None,
          log_every: int = 50, sample_every: int = 500, seed: int = 0, verbose="auto",
          tensorboard: bool = True, max_seconds: float | None = None, skip_bad: bool = False) -> TrainResult:
    import keras

    from spade_tf.data import reraise_data_errors
    from spade_tf.models import build_networks
    from spade_tf.training import callbacks as cb
    from spade_tf.training.checkpoints import CHECKPOINT_DIR, check_config_matches, write_config
    from spade_tf.training.gaugan import GauGAN
    from spade_tf.training.perceptual import build_perceptual_loss
    from spade_tf.training.schedule import StepLearningRateSchedule

    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise SpadeError(f"spade train runs on the TensorFlow and JAX Keras backends, not '{backend}' "
                         "(KERAS_BACKEND / --backend)")
    on_jax = backend == "jax"
    if on_jax:  # the int64 step counter is int32 under JAX (without jax_enable_x64): ample for steps
        import warnings

        warnings.filterwarnings("ignore", message="Explicitly requested dtype int64", category=UserWarning)
    if on_jax and mixed_precision != "none":
        raise SpadeError(f"--mixed-precision {mixed_precision}: on the JAX backend spade train runs in "
                         "float32 only (--mixed-precision none)")

    if steps is not None and epochs is not None:
        raise SpadeError("give --steps or --epochs, not both")
    if mixed_precision not in MIXED_PRECISION:
        raise SpadeError(f"--mixed-precision must be one of {MIXED_PRECISION}, got '{mixed_precision}'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = check_config_matches(out_dir, config)
    written_by = ((previous or {}).get("training") or {}).get("backend", "tensorflow")
    if previous is not None and written_by != backend:
        raise SpadeError(f"{out_dir / 'config.json'}: this folder holds a training on the {written_by} "
                         f"backend, whose checkpoints the {backend} backend cannot read; resume it with "
                         f"--backend {written_by}, or choose a new --out folder")

    if on_jax:
        # one process; several local devices: keras.distribution.DataParallel (see _jax_distribution)
        distribution = _jax_distribution(distribute)
        replicas, chief, own_dir = 1, True, out_dir
        devices = 1 if distribution is None else len(distribution.device_mesh.devices.flatten())
        if config.batchSize % devices:
            raise SpadeError(f"batchSize={config.batchSize} is not divisible by the {devices} devices; "
                             f"use --set batchSize={max(devices, config.batchSize // devices * devices)}")
    else:
        from spade_tf.training.distribute import is_chief, make_strategy, num_replicas, worker_id

        strategy = strategy or make_strategy(distribute)
        replicas = num_replicas(strategy)
        chief = is_chief(strategy)
        # non-chief workers of a multi-worker run write their (identical) state beside the chief's
        own_dir = out_dir if chief else out_dir / f"worker{worker_id(strategy)}"
    own_dir.mkdir(parents=True, exist_ok=True)
    global_batch = config.batchSize
    if global_batch % replicas:
        raise SpadeError(f"batchSize={global_batch} is not divisible by the {replicas} replicas; "
                         f"use --set batchSize={max(replicas, global_batch // replicas * replicas)}")

    old_policy = keras.mixed_precision.global_policy()
    if on_jax:
        old_distribution = keras.distribution.distribution()
        if distribution is not None:
            _log(f"JAX: data parallel over {devices} devices (keras.distribution.DataParallel)")
        keras.distribution.set_distribution(distribution)
    keras.mixed_precision.set_global_policy("float32" if mixed_precision == "none" else mixed_precision)
    try:
        # skip_bad validates the folder once; the list of usable pairs is kept here for later starts
        bad_cache = own_dir / "data_cache" if skip_bad else None
        spe = steps_per_epoch or steps_per_epoch_of(config, data_dir, global_batch, seed, skip_bad, bad_cache)
        total = steps if steps is not None else spe * (epochs if epochs is not None
                                                       else config.niter + config.niter_decay)
        keras.utils.set_random_seed(seed)  # same seed, same initial weights (and the same run)
        with contextlib.nullcontext() if on_jax else strategy.scope():
            g, d, e = build_networks(config, synchronized_bn=replicas > 1)
            perceptual = build_perceptual_loss(config, perceptual_weights, allow_download=allow_download)
            # model_factory: a GauGAN subclass or callable with GauGAN's arguments (`spade distill`)
            model = (model_factory or GauGAN)(config, g, d, e, perceptual, seed=seed, steps_per_epoch=spe)
            model.compile(jit_compile=jit_compile, run_eagerly=run_eagerly)
            if on_jax:
                from spade_tf.training.checkpoints import ArrayCheckpoints, EpochCounter

                epoch_var = EpochCounter()
                ckpts = ArrayCheckpoints(model, own_dir / CHECKPOINT_DIR, keep_checkpoints, epoch_var)
            else:
                import tensorflow as tf

                from spade_tf.training.checkpoints import TrainingCheckpoints

                epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
                ckpts = TrainingCheckpoints(model, own_dir / CHECKPOINT_DIR, keep_checkpoints, epoch_var)
            start = ckpts.restore_latest()
            resumed = start is not None
            if resumed:
                _log(f"resumed from step {start}")
                if init_generator:
                    _log(f"(--init-generator ignored: continuing the training in {out_dir})")
            else:
                start = 0
                if init_generator:
                    ig, idd, ie = _load_init_networks(init_generator, config)
                    loaded = [n for n, dst, src in (("generator", g, ig), ("discriminator", d, idd),
                                                    ("encoder", e, ie)) if _copy_weights(dst, src, n)]
                    if model.ema_generator is not None:
                        model.ema_generator.set_weights(g.get_weights())
                    _log(f"initialised {', '.join(loaded)} from {init_generator}"
                         + ("" if "discriminator" in loaded else " (discriminator: fresh)"))
        if chief:
            write_config(out_dir, config, {"seed": seed, "steps_per_epoch": spe, "total_steps": total,
                                           "mixed_precision": mixed_precision, "replicas": replicas,
                                           "jit_compile": bool(jit_compile), "backend": backend,
                                           "data": str(data_dir) if data_dir else "synthetic"})
        if previous is not None and not resumed:
            _log(f"note: {out_dir} has a config.json but no checkpoint; starting from step 0")

        history = {}
        guard = cb.NonFiniteLossGuard()
        saver = None
        if start < total:
            # the data position is restored without reading what came before it: the stream from batch
            # `start` on is made from the file indices and augmentation seeds at those positions
            ds = build_train_dataset(config, data_dir, global_batch, seed, repeat=True, skip_bad=skip_bad,
                                     start=start, skip_bad_cache=bad_cache)
            if start:
                _log(f"restoring the data position: the stream continues at batch {start} "
                     "(earlier batches are not read)")
            # samples always show the first batch of the run (the same pictures before and after a resume)
            first = ds if not start else build_train_dataset(config, data_dir, global_batch, seed, True,
                                                             skip_bad=skip_bad, skip_bad_cache=bad_cache)
            sample_batch = next(iter(first.take(1)))
            sample_batch = {k: v[: min(4, global_batch)] for k, v in sample_batch.items()}
            throughput = cb.Throughput(global_batch)
            callbacks = [guard, cb.StopAtStep(total, max_seconds),
                         StepLearningRateSchedule(config, spe, epoch_var), throughput]
            if model.ema_generator is not None and not on_jax:  # on JAX the step updates the EMA itself
                callbacks.append(cb.EMAUpdate())
            saver = cb.PeriodicCheckpoint(ckpts, save_every, guard)
            callbacks.append(saver)
            if chief:
                tb_dir = own_dir / "logs" if tensorboard and _have_tensorboard() else None
                callbacks += [
                    cb.MetricsLogger(own_dir / "metrics.csv", config, log_every, throughput, tb_dir),
                    cb.SampleImages(sample_batch, config, own_dir / "samples", sample_every, tb_dir)]
            first_epoch = start // spe
            n_epochs = math.ceil((total - start) / spe)
            with reraise_data_errors():
                fit = model.fit(ds, epochs=first_epoch + n_epochs, initial_epoch=first_epoch,
                                steps_per_epoch=spe, callbacks=callbacks, verbose=verbose,
                                shuffle=False)  # the dataset shuffles itself
            history = fit.history
        else:
            _log(f"already trained to step {start} (target {total}); writing the final models")
        if saver is not None and saver.failure is not None:
            step, names = saver.failure
            last = ckpts.latest_path()
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise SpadeError(f"training stopped: weights or optimizer slots became non-finite (NaN/Inf) at "
                             f"step {step} although the losses were finite ({shown}); that state was not "
                             f"saved. The last good checkpoint is {last or '(none yet)'}; rerunning "
                             "resumes from it. Lower the learning rate (--set lr=...), or try without mixed "
                             "precision.")
        if guard.failure is not None:
            step, key, value = guard.failure
            last = ckpts.latest_path()
            raise SpadeError(f"training stopped: loss '{key}' became {value} at step {step}. The last good "
                             f"checkpoint is {last or '(none yet)'}; rerunning resumes from it. Lower the "
                             "learning rate (--set lr=...), or try without mixed precision.")
        final = model.current_step()
        g_path = own_dir / "generator.keras"
        model.sampling_generator.save(g_path)
        e_path = None
        if model.encoder is not None:
            e_path = own_dir / "encoder.keras"
            model.encoder.save(e_path)
        if chief:
            _log(f"trained to step {final}; generator: {g_path}" + (f", encoder: {e_path}" if e_path else ""))
        return TrainResult(out_dir, start, final, resumed, g_path, e_path, history)
    finally:
        keras.mixed_precision.set_global_policy(old_policy)
        if on_jax:
            keras.distribution.set_distribution(old_distribution)
        sys.stdout.flush()
