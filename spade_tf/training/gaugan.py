"""The GauGAN training model: `model.fit(dataset)` runs the official SPADE training iteration.

One `train_step` = one official iteration (`train.py` + `Pix2PixTrainer`):

1. generator step (only when `i % D_steps_per_G == 0`, with `i` the batch index within the epoch,
   as the official loop counts it): encoder (VAE) + generator trained together on GAN + feature
   matching + perceptual + KL losses;
2. discriminator step on the same batch with a freshly generated fake (generator in training mode,
   no gradient), hinge (or ls/original/w) D_Fake + D_real.

Fake and real go through the discriminator as ONE concatenated batch, fake first (official
`discriminate`), so batch-statistics layers see both.

Backends. Everything but the gradient computation is shared (`_step`, written with `keras.ops`):
under TensorFlow gradients come from `tf.GradientTape` (`_tf_gradients`) and randomness from
`tf.random.stateless_*` keyed by (seed, replica, step); under JAX the step is stateless
(`_jax_train_step`: the model state goes in and out as arrays, gradients from
`jax.value_and_grad`, noise from `jax.random` keyed by (seed, step)). TensorFlow and JAX are only
imported by the backend that uses them.

Under a `tf.distribute` strategy each replica scales its mean losses by the GLOBAL batch size
(`spade_tf.training.losses`), the optimizers sum the replicas' gradients, so one step equals a single-device
step on the whole batch. Loss trackers report the global-batch values.
"""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.config import SPADEConfig
from spade_tf.models.lite_generator import make_generator
from spade_tf.models.semantics import make_semantics
from spade_tf.training import losses

G_TERMS = ("G_GAN", "G_GAN_Feat", "G_VGG", "G_KLD")
D_TERMS = ("D_Fake", "D_real")
NOISE_KINDS = ("generator", "discriminator", "sample")
_NOISE_PURPOSE = {"generator": 1, "discriminator": 2, "sample": 2}  # keys of the default stream


def _backend() -> str:
    return keras.backend.backend()


@keras.saving.register_keras_serializable(package="spade_tf")
class TorchAdam(keras.optimizers.Adam):
    """Adam with `torch.optim.Adam`'s update: epsilon added AFTER the bias correction,

    `w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

    Keras's Adam computes `w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, i.e. its
    epsilon is torch's epsilon times sqrt(1 - b2^t) (0.32 at the first step with beta2 = 0.9). The
    two agree wherever |gradient| >> eps; they differ for gradients near eps (1e-8).
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            raise ValueError("TorchAdam does not implement amsgrad")
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_1), denom))


def default_optimizers(config: SPADEConfig):
    """(G optimizer, D optimizer) as official `create_optimizers`: Adam with the TTUR learning
    rates, the official betas and torch's epsilon 1e-8 (Keras's default is 1e-7), updating as
    `torch.optim.Adam` does (`TorchAdam`: epsilon after the bias correction)."""
    lr_g, lr_d = config.learning_rates
    beta_1, beta_2 = config.adam_betas
    return (TorchAdam(lr_g, beta_1=beta_1, beta_2=beta_2, epsilon=1e-8, name="g_adam"),
            TorchAdam(lr_d, beta_1=beta_1, beta_2=beta_2, epsilon=1e-8, name="d_adam"))


class _OptimizerPair:
    """What the JAX trainer sees as `model.optimizer`: the variables of both optimizers (G's first)."""

    def __init__(self, g_optimizer, d_optimizer):
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

    built = True  # both are built by `GauGAN.compile`

    @property
    def variables(self):
        return list(self.g_optimizer.variables) + list(self.d_optimizer.variables)


class GauGAN(keras.Model):
    """Trains G (+ E) and D. `fit` takes batches `{"label_map", "image"[, "instance_edges"]}`.

    generator / discriminator / encoder: prebuilt networks (e.g. a converted official generator
    for fine-tuning; D is then fresh). perceptual_loss: `spade_tf.training.perceptual.PerceptualLoss` or None
    (required when config.lambda_vgg > 0). seed: base of the per-step noise.

    steps_per_epoch: batches per epoch, so that `D_steps_per_G` counts the batch index within the
    epoch as the official loop does (`i = step % steps_per_epoch`); None counts the global step.

    noise_fn: optional `noise_fn(shape, kind, step) -> float32 [shape]`, the N(0, 1) draw of the VAE
    reparameterisation `z = mu + eps * exp(logvar / 2)`. `kind` is "generator" (the G step's draw),
    "discriminator" (the D step's fresh fake) or "sample" (`call`); `step` is the step counter
    (a scalar tensor). Each training step draws "generator" then "discriminator", in the official
    order. Default: normal noise keyed by (seed, replica, step, kind), reproducible on resume. A
    noise_fn that reads Python values (e.g. `int(step)`) needs an eager step (`run_eagerly=True`).

    gradient_hook: optional `gradient_hook(group, grads, variables)`, called in every step just
    before an optimizer applies its gradients: group "G" (G step: generator then encoder variables,
    `g_variables`) or "D" (D step, `d_variables`), as the optimizer receives them (under
    mixed_float16 still multiplied by the loss scale). For inspection (tests, debugging); it must
    not change its arguments. It runs inside the compiled step unless `run_eagerly=True`.
    """

    def __init__(self, config: SPADEConfig, generator, discriminator, encoder=None, perceptual_loss=None,
                 seed: int = 0, steps_per_epoch: int | None = None, noise_fn=None, gradient_hook=None,
                 **kwargs):
        super().__init__(**kwargs)
        if config.lambda_vgg > 0 and perceptual_loss is None:
            raise ValueError("config.lambda_vgg > 0 needs a perceptual_loss (spade_tf.training.perceptual)")
        if config.use_vae and encoder is None:
            raise ValueError("config.use_vae needs an encoder")
        if steps_per_epoch is not None and int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.config = config
        self.generator = generator
        self.discriminator = discriminator
        self.encoder = encoder
        self._perceptual = [perceptual_loss]  # in a list: not tracked, never checkpointed
        self.seed = int(seed)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self._hooks = [noise_fn, gradient_hook]  # in a list: not tracked
        self.step_counter = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros",
                                            trainable=False, aggregation="only_first_replica")
        self.ema_generator = None
        if config.use_ema:
            self.ema_generator = make_generator(config, name="generator_ema")  # netG: spade | spade_lite
            h, w = config.image_size
            self.ema_generator.build((None, h, w, config.semantic_nc))
            self.ema_generator.set_weights(generator.get_weights())
        names = [t for t in G_TERMS if self._term_active(t)] + list(D_TERMS) + ["G_loss", "D_loss"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @property
    def perceptual_loss(self):
        return self._perceptual[0]

    @property
    def noise_fn(self):
        return self._hooks[0]

    @property
    def gradient_hook(self):
        return self._hooks[1]

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
        if _backend() == "jax":  # the JAX trainer carries `model.optimizer.variables` as state
            self.optimizer = _OptimizerPair(g_optimizer, d_optimizer)

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

    def _noise(self, shape, kind):
        """N(0, 1) of `shape` for `kind` (see NOISE_KINDS): `noise_fn` when given, else keyed by
        (seed, replica, step, kind): reproducible, distinct per replica."""
        step = self.step_counter.value
        if self.noise_fn is not None:
            return ops.cast(ops.convert_to_tensor(self.noise_fn(shape, kind, step)), "float32")
        purpose = _NOISE_PURPOSE[kind]
        if _backend() == "tensorflow":
            return _tf_noise(shape, self.seed, step * 4 + purpose)
        if _backend() == "jax":
            return _jax_noise(shape, self.seed, step * 4 + purpose)
        return keras.random.normal(shape)

    def _latent(self, real_image, training, kind):
        """(z, mu, logvar): encoder + reparameterisation (VAE) or prior noise; (None, ...) without VAE."""
        if self.encoder is None:
            return None, None, None
        mu, logvar = self.encoder(real_image, training=training)
        mu, logvar = ops.cast(mu, "float32"), ops.cast(logvar, "float32")
        eps = self._noise(ops.shape(mu), kind)
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

    def _replicas(self) -> int:
        """Replicas that each see a slice of the batch in their own step (tf.distribute); 1 on JAX,
        whose data-parallel step sees the whole (sharded) batch."""
        if _backend() == "tensorflow":
            import tensorflow as tf

            return tf.distribute.get_strategy().num_replicas_in_sync
        return 1

    def _global_batch(self, local_batch):
        return local_batch * self._replicas()

    def generator_losses(self, semantics, real, training=True):
        """dict of the active G terms (official names) and the fake image."""
        cfg = self.config
        gb = self._global_batch(ops.shape(real)[0])
        z, mu, logvar = self._latent(real, training, "generator")
        fake = self.generator(semantics, z=z, training=training)
        terms = self.image_terms(semantics, fake, real, real, gb, training)
        if cfg.use_vae:
            terms["G_KLD"] = losses.kld_loss(mu, logvar, cfg.lambda_kld)
        return terms, fake

    def image_terms(self, semantics, fake, real, perceptual_target, global_batch, training):
        """The G terms of a fake image: G_GAN, G_GAN_Feat (vs D on `real`) and G_VGG (vs
        `perceptual_target`: the real photo here, the teacher's image in `spade distill`), when active."""
        cfg = self.config
        pred_fake, pred_real = self.discriminate(semantics, fake, real, training)
        terms = {"G_GAN": losses.generator_gan_loss(pred_fake, cfg.gan_mode, global_batch)}
        if cfg.lambda_feat > 0:
            terms["G_GAN_Feat"] = losses.feature_matching_loss(pred_fake, pred_real, cfg.lambda_feat,
                                                               global_batch)
        if cfg.lambda_vgg > 0:
            terms["G_VGG"] = self.perceptual_loss(fake, perceptual_target, global_batch)
        return terms

    def discriminator_losses(self, semantics, real, training=True):
        """dict {D_Fake, D_real} on a fresh fake (no gradient into G or E), as official."""
        gb = self._global_batch(ops.shape(real)[0])
        z, _, _ = self._latent(real, training, "discriminator")
        fake = ops.stop_gradient(self.generator(semantics, z=z, training=training))
        pred_fake, pred_real = self.discriminate(semantics, fake, real, training)
        d_fake, d_real = losses.discriminator_losses(pred_fake, pred_real, self.config.gan_mode, gb)
        return {"D_Fake": d_fake, "D_real": d_real}

    def _track(self, terms, weight=None):
        # each replica holds its share of the global loss; trackers average over replicas
        replicas = self._replicas()
        for name, value in terms.items():
            self.trackers[name].update_state(value * replicas, sample_weight=weight)

    def runs_generator_step(self, step):
        """Whether step `step` (the step counter) trains G: official `i % D_steps_per_G == 0` with
        `i` the batch index within the epoch (`step % steps_per_epoch`)."""
        i = step if self.steps_per_epoch is None else step % self.steps_per_epoch
        return ops.equal(i % self.config.D_steps_per_G, 0)

    # ---- the step, shared by the backends --------------------------------------------------------
    def _optimize(self, group, optimizer, loss_fn, variables):
        """Differentiate `loss_fn() -> (scaled loss, aux)` w.r.t. `variables`, apply; return aux."""
        if _backend() == "tensorflow":
            aux, grads = self._tf_gradients(loss_fn, variables)
        elif _backend() == "jax":
            aux, grads = self._jax_gradients(loss_fn, variables)
        else:
            raise NotImplementedError(f"GauGAN trains under TensorFlow and JAX, not '{_backend()}'")
        if self.gradient_hook is not None:
            self.gradient_hook(group, grads, variables)
        optimizer.apply(grads, variables)
        return aux

    def _generator_step(self, semantics, real):
        def loss_fn():
            terms, _ = self.generator_losses(semantics, real, training=True)
            total = sum(terms.values())
            terms = [terms[t] for t in G_TERMS if t in terms] + [total]
            return self.g_optimizer.scale_loss(total), terms  # loss scaling (mixed_float16)

        return self._optimize("G", self.g_optimizer, loss_fn, self.g_variables)

    def _discriminator_step(self, semantics, real):
        def loss_fn():
            terms = self.discriminator_losses(semantics, real, training=True)
            terms = [terms["D_Fake"], terms["D_real"], terms["D_Fake"] + terms["D_real"]]
            return self.d_optimizer.scale_loss(terms[-1]), terms

        return self._optimize("D", self.d_optimizer, loss_fn, self.d_variables)

    def _step(self, data):
        """One official iteration on `data`; updates every variable it owns (eager, traced or under
        a JAX stateless scope alike) and returns the logs."""
        if isinstance(data, (list, tuple)):  # (x, y, sample_weight) from `train_on_batch`
            data = data[0]
        semantics = self.semantics(data)
        real = ops.cast(data["image"], "float32")
        g_names = [t for t in G_TERMS if t in self.trackers] + ["G_loss"]
        g_weight = None
        if self.config.D_steps_per_G == 1:
            g_values = self._generator_step(semantics, real)
        else:
            run_g = self.runs_generator_step(self.step_counter.value)
            g_values = self._cond(run_g, lambda: self._generator_step(semantics, real),
                                  lambda: [ops.zeros((), "float32")] * len(g_names))
            g_weight = ops.cast(run_g, "float32")  # skipped G steps do not count in the trackers
        d_values = self._discriminator_step(semantics, real)
        self._track(dict(zip(g_names, g_values, strict=True)), g_weight)
        self._track(dict(zip([*D_TERMS, "D_loss"], d_values, strict=True)))
        self.step_counter.assign_add(1)
        return self._logs()

    def _cond(self, pred, true_fn, false_fn):
        if _backend() == "tensorflow":
            import tensorflow as tf

            return tf.cond(pred, true_fn, false_fn)
        if _backend() == "jax":
            return self._jax_cond(pred, true_fn, false_fn)
        return true_fn() if bool(pred) else false_fn()

    # ---- TensorFlow ------------------------------------------------------------------------------
    def _tf_gradients(self, loss_fn, variables):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            scaled, aux = loss_fn()
        return aux, tape.gradient(scaled, variables)

    def _tf_train_step(self, data):
        return self._step(data)

    # ---- JAX -------------------------------------------------------------------------------------
    def _state_variables(self):
        """Every variable the JAX state carries, in the JAX trainer's order."""
        return (list(self.trainable_variables) + list(self.non_trainable_variables)
                + (list(self.optimizer.variables) if self.optimizer is not None else [])
                + list(self.metrics_variables))

    def _in_scope(self, fn, variables=(), values=()):
        """Run `fn()` in a new stateless scope where `variables` hold `values` and every other state
        variable its value in the enclosing scope; return (fn's output, new values of the state)."""
        from keras import StatelessScope
        from keras.src.backend.common.stateless_scope import get_stateless_scope

        state = self._state_variables()
        enclosing = get_stateless_scope()
        current = {id(v): enclosing.get_current_value(v) for v in state}
        current.update({id(v): x for v, x in zip(variables, values, strict=True)})
        with StatelessScope(state_mapping=[(v, current[id(v)]) for v in state]) as scope:
            out = fn()
        return out, [scope.get_current_value(v) for v in state]

    def _assign_all(self, new_values):
        for v, x in zip(self._state_variables(), new_values, strict=True):
            v.assign(x)

    def _jax_gradients(self, loss_fn, variables):
        import jax
        from keras.src.backend.common.stateless_scope import get_stateless_scope

        def f(values):
            (scaled, aux), new = self._in_scope(loss_fn, variables, values)
            return scaled, (aux, new)

        start = [get_stateless_scope().get_current_value(v) for v in variables]
        (_, (aux, new)), grads = jax.value_and_grad(f, has_aux=True)(start)
        # state written by the forward pass (batch-norm statistics, spectral-norm u/v, ...); the
        # differentiated variables come back unchanged (the optimizer updates them next)
        self._assign_all(new)
        return aux, grads

    def _jax_cond(self, pred, true_fn, false_fn):
        import jax
        from keras.src.backend.common.stateless_scope import get_stateless_scope

        state = self._state_variables()
        values = [get_stateless_scope().get_current_value(v) for v in state]

        def branch(fn):
            return lambda vals: self._in_scope(fn, state, vals)

        out, new = jax.lax.cond(pred, branch(true_fn), branch(false_fn), values)
        self._assign_all(new)
        return out

    def _jax_train_step(self, state, data):
        """Stateless step for the JAX trainer: (logs, new state) from (state, data), state being
        (trainable, non-trainable, optimizer, metrics variable values) as Keras's JAX trainer has it."""
        from keras import StatelessScope

        variables = self._state_variables()
        flat = [x for part in state for x in part]
        with StatelessScope(state_mapping=list(zip(variables, flat, strict=True))) as scope:
            logs = self._step(data)
            if self.ema_generator is not None:  # on JAX the EMA is part of the step (no callback)
                self._update_ema()
            new = [scope.get_current_value(v) for v in variables]
        out, start = [], 0
        for part in state:
            out.append(new[start:start + len(part)])
            start += len(part)
        return logs, tuple(out)

    # ---- state between steps (callbacks) ----------------------------------------------------------
    def current_step(self) -> int:
        """The step counter as a Python int, also inside a JAX `fit` (whose newest state lives in
        `_jax_state` between steps, the variables being detached until `sync_state`)."""
        state = getattr(self, "_jax_state", None)
        if state and not getattr(self, "_jax_state_synced", True):
            index = next(i for i, v in enumerate(self.non_trainable_variables) if v is self.step_counter)
            return int(ops.convert_to_numpy(state["non_trainable_variables"][index]))
        return int(ops.convert_to_numpy(self.step_counter.value))

    def sync_state(self):
        """Attach the newest training state to the variables (JAX `fit` keeps it apart between steps);
        callbacks call this before they read or write a variable. A no-op on TensorFlow."""
        if _backend() == "jax":
            self.jax_state_sync()

    # ---- keras hooks ----------------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """No-op: networks, optimizers and trackers are all built in __init__ / compile.

        Keras's version (TF backend, under a tf.distribute strategy) pulls one batch from the
        training iterator (that batch is then lost for training: the data stream would be off by
        one) and MEAN-reduces it across workers, which fails for the int label maps under
        MultiWorkerMirroredStrategy.
        """
        return None

    def _symbolic_build(self, iterator=None, data_batch=None):
        """No-op for the same reason (the JAX trainer and `train_on_batch` call this one)."""
        return None

    def train_step(self, *args):
        """TensorFlow: `train_step(data)`; JAX: `train_step(state, data) -> (logs, state)`."""
        if _backend() == "jax":
            return self._jax_train_step(*args)
        return self._tf_train_step(*args)

    def test_step(self, data):
        """Losses with G, D (and E) in inference mode; nothing is updated (TensorFlow)."""
        semantics = self.semantics(data)
        real = ops.cast(data["image"], "float32")
        g_terms, _ = self.generator_losses(semantics, real, training=False)
        d_terms = self.discriminator_losses(semantics, real, training=False)
        self._track({**g_terms, "G_loss": sum(g_terms.values()), **d_terms,
                     "D_loss": d_terms["D_Fake"] + d_terms["D_real"]})
        return self._logs()

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        if _backend() == "tensorflow":
            import tensorflow as tf

            if _multi_worker(tf.distribute.get_strategy()):
                # Keras reduces step outputs across workers with reduce("MEAN", axis=0), which needs
                # a batch axis; the trackers are already synchronised, so [1] of the same value is exact.
                logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def call(self, data, training=False):
        """Synthesize: batch dict -> [B, H, W, 3] in [-1, 1] (sampling generator, inference mode)."""
        semantics = self.semantics(data)
        z = None
        if self.encoder is not None and "image" in data:
            z, _, _ = self._latent(ops.cast(data["image"], "float32"), False, "sample")
        elif self.config.use_vae:
            z = self._noise((ops.shape(semantics)[0], self.config.z_dim), "sample")
        return self.sampling_generator(semantics, z=z, training=False)

    # ---- EMA ---------------------------------------------------------------------------------------
    def update_ema(self):
        """ema = decay * ema + (1 - decay) * G for trainable weights; state (BN stats, u, v) copied.

        TensorFlow: called in cross-replica context (a callback), so mirrored variables stay in sync.
        JAX: the train step does this itself after every step (`_jax_train_step`).
        """
        if _backend() == "tensorflow":
            if getattr(self, "_tf_update_ema", None) is None:
                import tensorflow as tf

                self._tf_update_ema = tf.function(self._update_ema)
            return self._tf_update_ema()
        return self._update_ema()

    def _update_ema(self):
        decay = self.config.ema_decay
        for ema_v, v in zip(self.ema_generator.trainable_variables, self.generator.trainable_variables,
                            strict=True):
            ema_v.assign(decay * ema_v + (1.0 - decay) * v)
        for ema_v, v in zip(self.ema_generator.non_trainable_variables,
                            self.generator.non_trainable_variables, strict=True):
            ema_v.assign(v)


def _tf_noise(shape, seed, counter):
    import tensorflow as tf

    replica = tf.distribute.get_replica_context()
    replica_id = replica.replica_id_in_sync_group if replica is not None else 0
    replica_id = tf.cast(replica_id, "int64")
    key = tf.stack([tf.cast(seed, "int64") * 1_000_003 + replica_id, tf.cast(counter, "int64")])
    return tf.random.stateless_normal(shape, seed=key)


def _jax_noise(shape, seed, counter):
    import jax

    key = jax.random.fold_in(jax.random.PRNGKey(seed), ops.cast(counter, "uint32"))
    return jax.random.normal(key, tuple(int(d) for d in shape), dtype="float32")


def _multi_worker(strategy) -> bool:
    import tensorflow as tf

    extended = getattr(strategy, "extended", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and bool(getattr(extended, "_in_multi_worker_mode", lambda: False)()))
