"""Learning-rate schedule as official `Pix2PixTrainer.update_learning_rate`.

The official trainer keeps `lr` for `niter` epochs, then lowers it by `lr / niter_decay` at the end
of every later epoch, so epoch e (0-based) trains with lr * (1 - max(0, e - niter) / niter_decay),
reaching lr / niter_decay in the last epoch (e = niter + niter_decay - 1). TTUR applies the same
factor to both optimizers (G: lr/2, D: 2 lr).
"""

from __future__ import annotations

import keras


def lr_factor(epoch: int, niter: int, niter_decay: int) -> float:
    """Multiplier of the base learning rates in 0-based `epoch`."""
    if niter_decay <= 0 or epoch < niter:
        return 1.0
    return max(0.0, 1.0 - (epoch - niter) / niter_decay)


def learning_rates(config, epoch: int) -> tuple[float, float]:
    """(G lr, D lr) in 0-based `epoch`."""
    factor = lr_factor(epoch, config.niter, config.niter_decay)
    lr_g, lr_d = config.learning_rates
    return lr_g * factor, lr_d * factor


def set_learning_rate(optimizer, value: float) -> None:
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    inner.learning_rate = value


class StepLearningRateSchedule(keras.callbacks.Callback):
    """Official schedule with epoch = step // steps_per_epoch (so a resume mid-epoch keeps it);
    also keeps the checkpointed epoch variable current."""

    def __init__(self, config, steps_per_epoch: int, epoch_variable=None):
        super().__init__()
        self.config, self.steps_per_epoch, self.epoch_variable = config, steps_per_epoch, epoch_variable
        self.current = None

    def on_train_batch_begin(self, batch, logs=None):
        epoch = self.model.current_step() // self.steps_per_epoch
        if epoch != self.current:
            self.current = epoch
            self.model.sync_state()  # JAX fit: the learning rates are state variables
            if self.epoch_variable is not None:
                self.epoch_variable.assign(epoch)
            lr_g, lr_d = learning_rates(self.config, epoch)
            set_learning_rate(self.model.g_optimizer, lr_g)
            set_learning_rate(self.model.d_optimizer, lr_d)
