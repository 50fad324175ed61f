"""Where does a GauGAN training step spend its time? TensorFlow profiler, summed by op type.

    python scripts/profile_train_step.py --preset ade20k --batch 1            # tf.function
    python scripts/profile_train_step.py --preset ade20k --batch 1 --xla      # XLA (fusions)
    python scripts/profile_train_step.py --preset ade20k --part g_step        # G step only

Times `--runs` calls of one part of `GauGAN.train_step` (no VGG term, as the official comparison),
then traces one more with `tf.profiler` and prints the busiest op types: seconds summed over the
inter-op threads (so the column adds up to about cores x wall time), and call counts. The trace
stays in --logdir for TensorBoard's profile plugin. This is how docs/benchmarks.md's "where the
time went" table was made.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os


def op_time_by_type(xplane_path: str) -> collections.Counter:
    """{(thread kind, op type): seconds} from a profiler .xplane.pb (host CPU plane)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    seconds, calls = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # the python thread's events enclose the whole step
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                op_type = (meta.display_name or meta.name).split(":")[-1]
                if op_type in ("Process", "ParallelFor"):  # executor / Eigen events around the ops
                    continue
                seconds[op_type] += event.duration_ps / 1e12
                calls[op_type] += 1
    return seconds, calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ade20k")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--part", default="step", choices=("step", "g_step", "d_step", "g_forward"))
    p.add_argument("--xla", action="store_true", help="jit_compile the part")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--logdir", default="/tmp/spade_profile")
    args = p.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from spade_tf.benchmarks.speed import _inputs, time_calls
    from spade_tf.config import get_preset
    from spade_tf.models import build_networks, make_semantics
    from spade_tf.training.gaugan import GauGAN

    config = get_preset(args.preset).replace(lambda_vgg=0.0, batchSize=args.batch)
    keras.utils.set_random_seed(0)
    g, d, e = build_networks(config)
    model = GauGAN(config, g, d, e)
    model.compile()
    data = {k: tf.constant(v) for k, v in _inputs(config, args.batch, seed=0).items()}
    semantics = make_semantics(data["label_map"], config)

    def gradient_sum(loss, variables):  # every gradient is used, so nothing is pruned
        return tf.add_n([tf.reduce_sum(x) for x in tf.gradients(loss, variables)])

    def g_step():
        terms, _ = model.generator_losses(semantics, data["image"])
        return gradient_sum(tf.add_n(list(terms.values())), model.g_variables)

    def d_step():
        terms = model.discriminator_losses(semantics, data["image"])
        return gradient_sum(terms["D_Fake"] + terms["D_real"], model.d_variables)

    parts = {"step": lambda: model.train_step(data)["D_loss"], "g_step": g_step, "d_step": d_step,
             "g_forward": lambda: tf.reduce_sum(g(semantics, training=True))}
    fn = tf.function(parts[args.part], jit_compile=args.xla)
    timing = time_calls(lambda: np.asarray(fn()), warmup=1, runs=args.runs)
    print(f"first call (trace{' + compile' if args.xla else ''}): {timing['first_call_s']:.1f} s")
    print(f"{args.part}: median {timing['median_s']:.3f} s over {args.runs} calls "
          f"({', '.join(f'{t:.2f}' for t in timing['runs_s'])})")

    tf.profiler.experimental.start(args.logdir)
    np.asarray(fn())
    tf.profiler.experimental.stop()
    newest = max(glob.glob(os.path.join(args.logdir, "plugins/profile/*/*.xplane.pb")), key=os.path.getmtime)
    seconds, calls = op_time_by_type(newest)
    print(f"\nop type (summed over threads; trace {newest})")
    for op_type, total in seconds.most_common(args.top):
        print(f"{total:9.3f} s {calls[op_type]:6d}  {op_type}")


if __name__ == "__main__":
    main()
