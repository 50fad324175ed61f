"""Distillation of a trained GauGAN generator into SPADE-Lite (`spade distill`).

The student (a `LiteSPADEGenerator`) is trained with `spade train`'s machinery (`runner.train`:
`model.fit`, resume, TensorBoard, samples, strategies) through `DistillGAN`, a `GauGAN` whose
generator step adds, for the same label map (and noise):

(a) output distillation: L1 to the teacher's image (`lambda_l1`) and the perceptual term
    (`lambda_vgg`) measured against the teacher's image instead of the photo;
(b) intermediate feature distillation, as GAN Compression (Li et al., CVPR 2020): the student's
    block outputs `DISTILL_LAYERS`, mapped to the teacher's widths by learned 1x1 convs, against
    the teacher's (mean squared error, `lambda_distill`);
(c) the GAN and feature-matching losses against a discriminator initialised from the teacher's
    when the teacher folder has one (`discriminator.keras`, an official latest_net_D.pth, or the
    discriminator of a `spade train` run's newest checkpoint), a fresh one otherwise.

The teacher runs in inference mode (spectral norm folded) and is never trained. The 1x1 maps are
trained with the student and checkpointed, not exported. Non-VAE teachers (the official
ADE20K / COCO-Stuff / Cityscapes releases are non-VAE); TensorFlow backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
from keras import ops

from spade_tf.config import SPADEConfig, load_config
from spade_tf.errors import SpadeError
from spade_tf.training.gaugan import GauGAN

DISTILL_LAYERS = ("head_0", "G_middle_1", "up_1", "up_2")
DISTILL_TERMS = ("G_L1", "G_distill")


def load_teacher(teacher_dir) -> tuple[SPADEConfig, object, object | None]:
    """(config, generator, discriminator or None) of a teacher folder: the output of `spade train`
    or `spade convert` (generator.keras [+ discriminator.keras] + config.json), or an official
    checkpoint folder (opt.txt + latest_net_G.pth [+ latest_net_D.pth])."""
    import spade_tf.models  # noqa: F401 - registers the layers for load_model

    folder = Path(teacher_dir)
    if not folder.is_dir():
        raise SpadeError(f"--teacher {folder}: not a folder; pass the output folder of `spade train` / "
                         "`spade convert`, or an official checkpoint folder")
    if (folder / "generator.keras").exists():
        try:
            g = keras.saving.load_model(folder / "generator.keras", compile=False)
        except (OSError, ValueError, TypeError) as e:
            raise SpadeError(f"{folder / 'generator.keras'}: cannot load this Keras model ({e})") from None
        config = getattr(g, "config", None)
        if not isinstance(config, SPADEConfig):
            raise SpadeError(f"{folder / 'generator.keras'}: not a spade_tf generator")
        if (folder / "config.json").exists():
            config = load_config(str(folder / "config.json"))
        d = None
        if (folder / "discriminator.keras").exists():
            d = keras.saving.load_model(folder / "discriminator.keras", compile=False)
        elif (folder / "checkpoints").is_dir():
            d = _discriminator_from_run(folder / "checkpoints", config)
        return config, g, d
    if list(folder.glob("*_net_G.pth")) or list(folder.glob("*_net_G.npz")):
        from spade_tf.convert.official import load_official

        config, g, d, _ = load_official(folder)
        return config, g, d
    raise SpadeError(f"--teacher {folder}: no generator.keras (from `spade train` / `spade convert`) and no "
                     "official latest_net_G.pth in this folder")


def _discriminator_from_run(checkpoint_dir: Path, config: SPADEConfig):
    """The discriminator of a `spade train` run's newest checkpoint (None when there is none)."""
    import tensorflow as tf

    from spade_tf.models import MultiscaleDiscriminator

    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest is None:
        return None
    d = MultiscaleDiscriminator(config, name="discriminator")
    h, w = config.image_size
    d.build((None, h, w, config.semantic_nc + config.output_nc))
    status = tf.train.Checkpoint(discriminator=[v.value for v in d.weights]).restore(latest)
    status.expect_partial()
    return d


def student_config(teacher: SPADEConfig, width: float, separable: bool, overrides=()) -> SPADEConfig:
    """The teacher's configuration with netG=spade_lite, width, separable (then `--set` overrides)."""
    if teacher.use_vae:
        raise SpadeError("spade distill: the teacher is a VAE model (use_vae=True); distillation supports "
                         "non-VAE generators (as the official ADE20K / COCO-Stuff / Cityscapes releases)")
    config = teacher.replace(netG="spade_lite", width=float(width), separable=bool(separable), use_ema=False)
    config = config.with_overrides(list(overrides)) if overrides else config
    if config.use_ema:
        raise SpadeError("spade distill: use_ema is not supported for the student; drop --set use_ema=true")
    return config


@keras.saving.register_keras_serializable(package="spade_tf")
class FeatureMaps(keras.layers.Layer):
    """One learned 1x1 conv per distilled layer: student channels → teacher channels."""

    def __init__(self, teacher_channels: dict, **kwargs):
        super().__init__(**kwargs)
        self.teacher_channels = dict(teacher_channels)
        self.maps = {name: keras.layers.Conv2D(c, 1, name=f"map_{name}")
                     for name, c in self.teacher_channels.items()}

    def build(self, student_channels: dict):
        for name, conv in self.maps.items():
            conv.build((None, None, None, student_channels[name]))

    def map(self, name, x):
        return self.maps[name](x)

    def get_config(self):
        return {**super().get_config(), "teacher_channels": self.teacher_channels}


class DistillGAN(GauGAN):
    """GauGAN whose student generator also learns from a frozen teacher (see the module docstring).

    teacher: a SPADEGenerator (folded or not; run with training=False). lambda_l1, lambda_distill:
    weights of the output L1 and of the feature distillation. Extra tracked terms: G_L1, G_distill.
    """

    def __init__(self, config: SPADEConfig, generator, discriminator, encoder=None, perceptual_loss=None,
                 seed: int = 0, teacher=None, lambda_l1: float = 10.0, lambda_distill: float = 10.0,
                 distill_layers=DISTILL_LAYERS, **kwargs):
        if teacher is None:
            raise ValueError("DistillGAN needs a teacher generator")
        super().__init__(config, generator, discriminator, encoder, perceptual_loss, seed=seed, **kwargs)
        self._teacher = [teacher]  # in a list: not tracked, not checkpointed, not trained
        self.lambda_l1, self.lambda_distill = float(lambda_l1), float(lambda_distill)
        self.distill_layers = tuple(distill_layers) if lambda_distill > 0 else ()
        h, w = config.image_size
        probe = ops.zeros((1, h, w, config.semantic_nc))
        _, t_feats = teacher(probe, training=False, return_intermediates=True)
        _, s_feats = generator(probe, training=False, return_intermediates=True)
        self.feature_maps = FeatureMaps({n: int(t_feats[n].shape[-1]) for n in self.distill_layers},
                                        name="distill_maps")
        self.feature_maps.build({n: int(s_feats[n].shape[-1]) for n in self.distill_layers})
        for name in DISTILL_TERMS:
            self.trackers[name] = keras.metrics.Mean(name=name)

    @property
    def teacher(self):
        return self._teacher[0]

    @property
    def g_variables(self):
        return super().g_variables + list(self.feature_maps.trainable_variables)

    def checkpoint_extras(self) -> dict:
        """Saved with the training state (`TrainingCheckpoints`): the 1x1 maps."""
        return {"distill_maps": [w.value for w in self.feature_maps.weights]}

    def generator_losses(self, semantics, real, training=True):
        gb = self._global_batch(ops.shape(real)[0])
        t_fake, t_feats = self.teacher(semantics, training=False, return_intermediates=True)
        t_fake = ops.stop_gradient(t_fake)
        fake, s_feats = self.generator(semantics, training=training, return_intermediates=True)
        terms = self.image_terms(semantics, fake, real, t_fake, gb, training)
        extra = {}
        if self.lambda_l1 > 0:
            per_sample = ops.mean(ops.abs(ops.cast(fake, "float32") - t_fake), axis=(1, 2, 3))
            extra["G_L1"] = ops.sum(per_sample) / ops.cast(gb, "float32") * self.lambda_l1
        if self.distill_layers:
            per_sample = 0.0
            for name in self.distill_layers:
                mapped = ops.cast(self.feature_maps.map(name, s_feats[name]), "float32")
                target = ops.stop_gradient(ops.cast(t_feats[name], "float32"))
                per_sample = per_sample + ops.mean(ops.square(mapped - target), axis=(1, 2, 3))
            extra["G_distill"] = ops.sum(per_sample) / ops.cast(gb, "float32") * self.lambda_distill
        if training:  # GauGAN's step tracks the official terms; these are tracked here
            self._track(extra)
        terms.update(extra)
        return terms, fake


def distill(teacher_dir, out_dir, data_dir=None, width: float = 0.25, separable: bool = False,
            overrides=(), lambda_l1: float = 10.0, lambda_distill: float = 10.0,
            init_discriminator: bool = True,
            **train_kwargs):
    """Train a SPADE-Lite student from TEACHER_DIR into OUT_DIR with `runner.train` (same outputs:
    generator.keras, config.json, checkpoints/, logs/, samples/, metrics.csv; plus distill.json).
    Re-running continues from OUT_DIR's newest checkpoint. Returns runner.train's TrainResult."""
    from spade_tf.training.runner import train

    t_config, t_generator, t_discriminator = load_teacher(teacher_dir)
    config = student_config(t_config, width, separable, overrides)
    teacher = t_generator.folded()  # inference only: spectral norm folded, no power iteration
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "distill.json").write_text(json.dumps({
        "teacher": str(teacher_dir), "teacher_netG": t_config.netG, "width": config.width,
        "separable": config.separable, "lambda_l1": lambda_l1, "lambda_distill": lambda_distill,
        "distill_layers": list(DISTILL_LAYERS) if lambda_distill > 0 else [],
        "discriminator_from_teacher": bool(init_discriminator and t_discriminator is not None)},
        indent=2) + "\n", encoding="utf-8")

    def factory(config, g, d, e, perceptual, **kwargs):
        if init_discriminator and t_discriminator is not None:
            try:
                d.set_weights(t_discriminator.get_weights())
            except ValueError as err:
                raise SpadeError(f"--teacher {teacher_dir}: its discriminator does not fit the student's "
                                 f"configuration ({err}); drop the --set values that change it") from err
            print(f"discriminator initialised from the teacher ({teacher_dir})", flush=True)
        else:
            print("discriminator: fresh (the teacher folder has none)", flush=True)
        return DistillGAN(config, g, d, e, perceptual, teacher=teacher, lambda_l1=lambda_l1,
                          lambda_distill=lambda_distill, **kwargs)

    return train(config, out_dir, data_dir=data_dir, model_factory=factory, **train_kwargs)
