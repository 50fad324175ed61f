"""One code path for one device, many devices (MirroredStrategy) and many machines
(MultiWorkerMirroredStrategy from TF_CONFIG).

Everything (networks, optimizers, GauGAN) is created under `strategy.scope()`; `model.fit` then
splits each global batch over the replicas. Batch norm in the generator is synchronised across
replicas when there is more than one (`build_networks(..., synchronized_bn=True)`), the losses
are scaled by the global batch (see `spade_tf.training.losses`), and each replica draws its own noise.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from spade_tf.errors import SpadeError

STRATEGIES = ("auto", "none", "mirrored", "multiworker")


def make_strategy(kind: str = "auto", devices=None) -> tf.distribute.Strategy:
    """auto: multi-worker when TF_CONFIG names a cluster with more than one task, else mirrored
    over the GPUs when there are several, else the default (no) strategy."""
    if kind not in STRATEGIES:
        raise SpadeError(f"--distribute must be one of {STRATEGIES}, got '{kind}'")
    if kind == "auto":
        if _tf_config_workers() > 1:
            kind = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if "TF_CONFIG" not in os.environ:
        raise SpadeError("--distribute multiworker needs the TF_CONFIG environment variable "
                         "(cluster and task, see https://www.tensorflow.org/guide/distributed_training)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tf_config_workers() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise SpadeError(f"TF_CONFIG is not valid JSON: {e}") from None
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def is_chief(strategy) -> bool:
    """The task that writes logs, samples and final models (the only one without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    if not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0) if resolver is not None else 0


def num_replicas(strategy) -> int:
    return int(strategy.num_replicas_in_sync)
