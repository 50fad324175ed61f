"""Training orchestration around `spade_tf.training.gaugan.GauGAN`: schedule, checkpoints, callbacks,
distribution, and `runner.train` (what `spade train` calls)."""
