"""Adding up a value over the replicas of a TensorFlow distribution strategy, for the layers.

The one piece of `tf.distribute` that a layer needs (the synchronized batch norm's element count),
kept here so that `spade_tf/layers` holds only `keras.ops`. TensorFlow is imported only when the
Keras backend is TensorFlow, at call time: the layers still import under JAX without it.
"""

from __future__ import annotations


def sum_over_replicas(x):
    """`x` summed over the replicas that run this step in sync (tf.distribute); `x` itself with one
    replica, outside a replica context, or on another Keras backend (JAX and PyTorch steps see the
    whole global batch as one array). The same all-reduce `keras.ops.moments(synchronized=True)`
    uses for the moments."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return x
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: nothing to add up
        return x
    return context.all_reduce(tf.distribute.ReduceOp.SUM, x)
