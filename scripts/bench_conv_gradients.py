"""TensorFlow's own conv gradients against `spade_tf.layers.conv.same_conv` (gradients as forward convs).

    python scripts/bench_conv_gradients.py            # the generator's conv shapes at ADE20K size

For each shape [B, H, W, C_in] -> C_out (3x3, stride 1, 'same'): forward + input gradient + kernel
gradient in one `tf.function`, median of --runs calls, both ways, and the largest difference of
the gradients. This is the measurement behind `layers.conv.forward_conv_gradients`.
"""

from __future__ import annotations

import argparse

SHAPES = [(1, 16, 16, 1024, 1024), (1, 32, 32, 1024, 512), (1, 64, 64, 512, 256), (1, 128, 128, 256, 128),
          (1, 256, 256, 128, 64), (1, 256, 256, 64, 3), (1, 128, 128, 128, 256)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf

    from spade_tf.benchmarks.speed import time_calls
    from spade_tf.layers.conv import same_conv

    def median_time(fn):
        return time_calls(lambda: [np.asarray(t) for t in fn()], warmup=1, runs=args.runs)["median_s"]

    print("shape (B, H, W, C_in -> C_out) | TF native s | forward-conv gradients s | ratio | max |grad diff|")
    for b, h, w, c_in, c_out in SHAPES:
        x = tf.random.normal([b, h, w, c_in])
        kernel = tf.random.normal([3, 3, c_in, c_out]) * 0.05
        upstream = tf.random.normal([b, h, w, c_out])

        def with_gradients(conv, x=x, kernel=kernel, upstream=upstream):
            def fn():
                with tf.GradientTape() as tape:
                    tape.watch([x, kernel])
                    y = conv(x, kernel)
                return tape.gradient(y, [x, kernel], output_gradients=upstream)
            return tf.function(fn)

        native = with_gradients(lambda a, k: tf.nn.conv2d(a, k, 1, "SAME"))
        ours = with_gradients(same_conv)
        diff = max(float(tf.reduce_max(tf.abs(a - o))) for a, o in zip(native(), ours(), strict=True))
        t_native, t_ours = median_time(native), median_time(ours)
        print(f"{b}, {h}, {w}, {c_in} -> {c_out} | {t_native:.3f} | {t_ours:.3f} | "
              f"{t_ours / t_native:.2f} | {diff:.1e}")


if __name__ == "__main__":
    main()
