"""The GauGAN training model: `model.fit(dataset)` runs the official SPADE training iteration.

One `train_step` = one official iteration (`train.py` + `Pix2PixTrainer`):

1. generator step (only when `step % D_steps_per_G == 0`, as official): encoder (VAE) + generator
   trained together on GAN + feature matching + perceptual + KL losses;
2. discriminator step on the same batch with a freshly generated fake (generator in training mode,
   no gradient), hinge (or ls/original/w) D_Fake + D_real.

Fake and real go through the discriminator as ONE concatenated batch, fake first (official
`discriminate`), so batch-statistics layers see both. This module is the TensorFlow-specific part
of the models package: gradients use `tf.GradientTape`, randomness `tf.random.stateless_*` keyed by
(step, replica), so runs are reproducible, resumable and each replica draws its own noise.

Under a `tf.distribute` strategy each replica scales its mean losses by the GLOBAL batch size
(`spade_tf.losses`), the optimizers sum the replicas' gradients, so one step equals a single-device
step on the whole batch. Loss trackers report the global-batch values.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from spade_tf import losses
from spade_tf.config import SPADEConfig
from spade_tf.layers.normalization import BatchNorm
from spade_tf.models.generator import SPADEGenerator
from spade_tf.models.semantics import make_semantics

G_TERMS = ("G_GAN", "G_GAN_Feat", "G_VGG", "G_KLD")
D_TERMS = ("D_Fake", "D_real")
_NOISE_ENCODE, _NOISE_PRIOR = 1, 2


def default_optimizers(config: SPADEConfig):
    """(G optimizer, D optimizer) as official `create_optimizers`: Adam, TTUR lrs and betas."""
    lr_g, lr_d = config.learning_rates
    beta_1, beta_2 = config.adam_betas
    return (keras.optimizers.Adam(lr_g, beta_1=beta_1, beta_2=beta_2, name="g_adam"),
            keras.optimizers.Adam(lr_d, beta_1=beta_1, beta_2=beta_2, name="d_adam"))


class GauGAN(keras.Model):
    """Trains G (+ E) and D. `fit` takes batches `{"label_map", "image"[, "instance_edges"]}`.

    generator / discriminator / encoder: prebuilt networks (e.g. a converted official generator
    for fine-tuning; D is then fresh). perceptual_loss: `spade_tf.perceptual.PerceptualLoss` or None
    (required when config.lambda_vgg > 0). seed: base of the per-step noise.
    """

    def __init__(self, config: SPADEConfig, generator, discriminator, encoder=None, perceptual_loss=None,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if config.lambda_vgg > 0 and perceptual_loss is None:
            raise ValueError("config.lambda_vgg > 0 needs a perceptual_loss (spade_tf.perceptual)")
        if config.use_vae and encoder is None:
            raise ValueError("config.use_vae needs an encoder")
        self.config = config
        self.generator = generator
        self.discriminator = discriminator
        self.encoder = encoder
        self._perceptual = [perceptual_loss]  # in a list: not tracked, never checkpointed
        self.seed = int(seed)
        self.step_counter = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros",
                                            trainable=False, aggregation="only_first_replica")
        self.ema_generator = None
        if config.use_ema:
            self.ema_generator = SPADEGenerator(config, name="generator_ema")
            h, w = config.image_size
            self.ema_generator.build((None, h, w, config.semantic_nc))
            self.ema_generator.set_weights(generator.get_weights())
        names = [t for t in G_TERMS if self._term_active(t)] + list(D_TERMS) + ["G_loss", "D_loss"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @property
    def perceptual_loss(self):
        return self._perceptual[0]

    def _term_active(self, term: str) -> bool:
        cfg = self.config
        return {"G_GAN": True, "G_GAN_Feat": cfg.lambda_feat > 0, "G_VGG": cfg.lambda_vgg > 0,
                "G_KLD": cfg.use_vae}[term]

    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        """Official defaults when an optimizer is not given (see `default_optimizers`).

        Under mixed_float16 the optimizers are wrapped in `LossScaleOptimizer` here.
        """
        default_g, default_d = default_optimizers(self.config)
        g_optimizer = g_optimizer or default_g
        d_optimizer = d_optimizer or default_d
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            if not isinstance(g_optimizer, keras.optimizers.LossScaleOptimizer):
                g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer)
            if not isinstance(d_optimizer, keras.optimizers.LossScaleOptimizer):
                d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer)
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        # slots now, not inside the first traced step (which would then be traced twice)
        self.build_optimizers()

    # ---- variables ----------------------------------------------------------------------------
    @property
    def g_variables(self):
        """What the G optimizer trains: generator (+ encoder), as official `G_params`."""
        variables = list(self.generator.trainable_variables)
        if self.encoder is not None:
            variables += list(self.encoder.trainable_variables)
        return variables

    @property
    def d_variables(self):
        return list(self.discriminator.trainable_variables)

    def build_optimizers(self):
        """Create the optimizer slots now (before restoring a checkpoint into them)."""
        self.g_optimizer.build(self.g_variables)
        self.d_optimizer.build(self.d_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def sampling_generator(self):
        """The generator used for samples and export: the EMA copy when on."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    # ---- pieces of the step ---------------------------------------------------------------------
    def semantics(self, batch):
        return make_semantics(batch["label_map"], self.config, batch.get("instance_edges"))

    def _noise(self, shape, purpose):
        """N(0, 1) keyed by (seed, replica, step, purpose): reproducible, distinct per replica."""
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        replica_id = tf.cast(replica_id, "int64")
        seed = tf.stack([tf.cast(self.seed, "int64") * 1_000_003 + replica_id,
                         self.step_counter.value * 4 + purpose])
        return tf.random.stateless_normal(shape, seed=seed)

    def _latent(self, real_image, training, purpose):
        """(z, mu, logvar): encoder + reparameterisation (VAE) or prior noise; (None, ...) without VAE."""
        if self.encoder is None:
            return None, None, None
        mu, logvar = self.encoder(real_image, training=training)
        mu, logvar = ops.cast(mu, "float32"), ops.cast(logvar, "float32")
        eps = self._noise(ops.shape(mu), purpose)
        return eps * ops.exp(0.5 * logvar) + mu, mu, logvar

    def discriminate(self, semantics, fake, real, training):
        """Official `discriminate`: one D call on [fake; real], returns (pred_fake, pred_real)."""
        fake_and_real = ops.concatenate([
            ops.concatenate([semantics, ops.cast(fake, semantics.dtype)], -1),
            ops.concatenate([semantics, ops.cast(real, semantics.dtype)], -1)], 0)
        outputs = self.discriminator(fake_and_real, training=training)
        n = ops.shape(semantics)[0]
        return ([[t[:n] for t in scale] for scale in outputs],
                [[t[n:] for t in scale] for scale in outputs])

    def _global_batch(self, local_batch):
        return local_batch * tf.distribute.get_strategy().num_replicas_in_sync

    def generator_losses(self, semantics, real, training=True):
        """dict of the active G terms (official names) and the fake image."""
        cfg = self.config
        gb = self._global_batch(ops.shape(real)[0])
        z, mu, logvar = self._latent(real, training, _NOISE_ENCODE)
        fake = self.generator(semantics, z=z, training=training)
        pred_fake, pred_real = self.discriminate(semantics, fake, real, training)
        terms = {"G_GAN": losses.generator_gan_loss(pred_fake, cfg.gan_mode, gb)}
        if cfg.lambda_feat > 0:
            terms["G_GAN_Feat"] = losses.feature_matching_loss(pred_fake, pred_real, cfg.lambda_feat, gb)
        if cfg.lambda_vgg > 0:
            terms["G_VGG"] = self.perceptual_loss(fake, real, gb)
        if cfg.use_vae:
            terms["G_KLD"] = losses.kld_loss(mu, logvar, cfg.lambda_kld)
        return terms, fake

    def discriminator_losses(self, semantics, real, training=True):
        """dict {D_Fake, D_real} on a fresh fake (no gradient into G or E), as official."""
        gb = self._global_batch(ops.shape(real)[0])
        z, _, _ = self._latent(real, training, _NOISE_PRIOR)
        fake = ops.stop_gradient(self.generator(semantics, z=z, training=training))
        pred_fake, pred_real = self.discriminate(semantics, fake, real, training)
        d_fake, d_real = losses.discriminator_losses(pred_fake, pred_real, self.config.gan_mode, gb)
        return {"D_Fake": d_fake, "D_real": d_real}

    def _apply(self, optimizer, tape, scaled_loss, variables):
        grads = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def _track(self, terms, weight=None):
        # each replica holds its share of the global loss; trackers average over replicas
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for name, value in terms.items():
            self.trackers[name].update_state(value * replicas, sample_weight=weight)

    # ---- keras hooks ----------------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """No-op: networks, optimizers and trackers are all built in __init__ / compile.

        Keras's version (TF backend, under a tf.distribute strategy) pulls one batch from the
        training iterator (that batch is then lost for training: the data stream would be off by
        one) and MEAN-reduces it across workers, which fails for the int label maps under
        MultiWorkerMirroredStrategy.
        """
        return None

    def _set_replicas_for_sync_bn(self):
        """Synchronized batch norms count the elements of all replicas (see `BatchNorm`)."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for net in (self.generator, self.discriminator, self.encoder):
            for layer in net._flatten_layers() if net is not None else ():
                if isinstance(layer, BatchNorm) and layer.synchronized:
                    layer.num_replicas = replicas

    def train_step(self, data):
        self._set_replicas_for_sync_bn()
        semantics = self.semantics(data)
        real = ops.cast(data["image"], "float32")

        def generator_step():
            with tf.GradientTape() as tape:
                terms, _ = self.generator_losses(semantics, real, training=True)
                total = tf.add_n(list(terms.values()))
                scaled = self.g_optimizer.scale_loss(total)  # loss scaling (mixed_float16)
            self._apply(self.g_optimizer, tape, scaled, self.g_variables)
            return [terms[t] for t in G_TERMS if t in terms] + [total]

        g_names = [t for t in G_TERMS if t in self.trackers] + ["G_loss"]
        g_weight = None
        if self.config.D_steps_per_G == 1:
            g_values = generator_step()
        else:  # official: `if i % D_steps_per_G == 0: run_generator_one_step`
            run_g = tf.equal(self.step_counter.value % self.config.D_steps_per_G, 0)
            g_values = tf.cond(run_g, generator_step, lambda: [tf.constant(0.0)] * len(g_names))
            g_weight = tf.cast(run_g, "float32")  # skipped G steps do not count in the trackers

        with tf.GradientTape() as tape:
            d_terms = self.discriminator_losses(semantics, real, training=True)
            d_total = d_terms["D_Fake"] + d_terms["D_real"]
            scaled = self.d_optimizer.scale_loss(d_total)
        self._apply(self.d_optimizer, tape, scaled, self.d_variables)

        self._track(dict(zip(g_names, g_values, strict=True)), g_weight)
        self._track({**d_terms, "D_loss": d_total})
        self.step_counter.assign_add(1)
        return self._logs()

    def test_step(self, data):
        """Losses with G, D (and E) in inference mode; nothing is updated."""
        semantics = self.semantics(data)
        real = ops.cast(data["image"], "float32")
        g_terms, _ = self.generator_losses(semantics, real, training=False)
        d_terms = self.discriminator_losses(semantics, real, training=False)
        self._track({**g_terms, "G_loss": tf.add_n(list(g_terms.values())), **d_terms,
                     "D_loss": d_terms["D_Fake"] + d_terms["D_real"]})
        return self._logs()

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras reduces step outputs across workers with reduce("MEAN", axis=0), which needs a
            # batch axis; the trackers are already synchronised, so [1] of the same value is exact.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def call(self, data, training=False):
        """Synthesize: batch dict -> [B, H, W, 3] in [-1, 1] (sampling generator, inference mode)."""
        semantics = self.semantics(data)
        z = None
        if self.encoder is not None and "image" in data:
            z, _, _ = self._latent(ops.cast(data["image"], "float32"), False, _NOISE_PRIOR)
        elif self.config.use_vae:
            z = self._noise((ops.shape(semantics)[0], self.config.z_dim), _NOISE_PRIOR)
        return self.sampling_generator(semantics, z=z, training=False)

    # ---- EMA ---------------------------------------------------------------------------------------
    @tf.function
    def update_ema(self):
        """ema = decay * ema + (1 - decay) * G for trainable weights; state (BN stats, u, v) copied.

        Called in cross-replica context (a callback), so mirrored variables stay in sync.
        """
        decay = self.config.ema_decay
        for ema_v, v in zip(self.ema_generator.trainable_variables, self.generator.trainable_variables,
                            strict=True):
            ema_v.assign(decay * ema_v + (1.0 - decay) * v)
        for ema_v, v in zip(self.ema_generator.non_trainable_variables,
                            self.generator.non_trainable_variables, strict=True):
            ema_v.assign(v)


def _multi_worker(strategy) -> bool:
    extended = getattr(strategy, "extended", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and bool(getattr(extended, "_in_multi_worker_mode", lambda: False)()))
