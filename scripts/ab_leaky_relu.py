"""A/B timing of the discriminator's LeakyReLU on the non-XLA training path (docs/benchmarks.md, remapper).

Usage: python scripts/ab_leaky_relu.py A|B BATCH
  A: `ops.leaky_relu` (patched in; grappler's remapper fails on it), B: `maximum(x, 0.2x)` (committed).
Prints one JSON line: the first step's seconds (trace + compile) and the median of steps 6-30 in ms.
"""
import json
import statistics
import sys
import time

import keras
from keras import ops

import spade_tf.models.discriminator as discriminator
from spade_tf.config import get_preset
from spade_tf.models import build_networks
from spade_tf.training.gaugan import GauGAN
from spade_tf.training.runner import build_train_dataset


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def main(variant: str, batch: int) -> None:
    if variant == "A":
        discriminator._lrelu = lambda x: ops.leaky_relu(x, 0.2)
    config = get_preset("tiny")
    keras.utils.set_random_seed(0)
    netG, netD, netE = build_networks(config)
    model = GauGAN(config, netG, netD, netE, None, seed=0)
    model.compile(jit_compile=False)
    timer = StepTimer()
    model.fit(build_train_dataset(config, None, batch, 0, repeat=True), steps_per_epoch=30, epochs=1,
              verbose=0, callbacks=[timer])
    print(json.dumps({"variant": variant, "batch": batch, "first_s": round(timer.times[0], 2),
                      "median_ms": round(1000 * statistics.median(timer.times[5:]), 1)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
