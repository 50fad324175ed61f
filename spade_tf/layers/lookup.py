"""A convolution over an exactly one-hot label map, computed as table look-ups.

conv(one_hot(ids), kernel) = sum over the kh*kw taps of kernel[tap, id at that tap]: about
C_out adds per output pixel and tap instead of label_nc multiply-adds, and a gradient that is a
scatter-add into the kernel instead of a label_nc-wide filter gradient. Exact (no rounding
difference beyond the summation order). Used by SPADE's first conv and by the discriminator's
first conv at full resolution, behind a run-time check that the channels really are one-hot.
"""

from __future__ import annotations

import keras
from keras import ops


def is_exactly_onehot(onehot):
    """Scalar bool: every value is 0 or 1 and every pixel's values sum to 1. onehot: [B, H, W, n]."""
    return ops.logical_and(
        ops.all(ops.equal(ops.sum(onehot, axis=-1), 1)),
        ops.all(ops.logical_or(ops.equal(onehot, 0), ops.equal(onehot, 1))))


def cond(pred, true_fn, false_fn):
    """`ops.cond(pred, true_fn, false_fn)`, except for a concrete JAX predicate (eager JAX), which
    takes the Python branch: JAX's eager `lax.cond` traces and compiles both branches on every
    call. Under `jax.jit` (a tracer) it is `lax.cond`; on TensorFlow and PyTorch, `ops.cond`."""
    if keras.backend.backend() == "jax":
        import jax

        try:
            flag = bool(pred)
        except jax.errors.ConcretizationTypeError:  # a tracer: compiled control flow
            return ops.cond(pred, true_fn, false_fn)
        return true_fn() if flag else false_fn()
    return ops.cond(pred, true_fn, false_fn)


def onehot_ids(onehot):
    """[B, H, W, n] one-hot → int32 ids [B, H, W]; an all-zero pixel (no label) → n.

    Id n is `lookup_conv`'s zero row, so an all-zero pixel contributes nothing, as in the conv.
    Computed as sum(onehot * [0, 1, ..., n-1]) + n * (1 - sum(onehot)) in float32 (exact): Keras's
    argmax has a bitwise op that TFLite's builtins lack.
    """
    n = onehot.shape[-1]
    onehot = ops.cast(onehot, "float32")
    ids = ops.sum(onehot * ops.arange(n, dtype="float32"), axis=-1) + n * (1.0 - ops.sum(onehot, axis=-1))
    return ops.cast(ids, "int32")


def lookup_conv(ids, kernel, stride: int, pad: int):
    """'valid' conv of one_hot(ids, n) zero-padded by `pad` on each side, n = kernel.shape[2].

    ids: int32 [B, H, W] in [0, n); kernel: [kh, kw, n, C_out] (no bias).
    Returns [B, (H + 2 pad - kh) // stride + 1, (W + 2 pad - kw) // stride + 1, C_out].
    """
    kh, kw, n, c_out = kernel.shape
    # id n is the zero padding outside the image: a zero row after each tap's n rows. One flat
    # table [kh*kw*(n+1), C_out] (tap t's rows start at t*(n+1)), so the gradient is one
    # scatter-add per tap into it and no per-tap slicing of the kernel.
    table = ops.concatenate([kernel, ops.zeros((kh, kw, 1, c_out), kernel.dtype)], axis=2)
    table = ops.reshape(table, (kh * kw * (n + 1), c_out))
    ids = ops.pad(ids, ((0, 0), (pad, pad), (pad, pad)), constant_values=n)
    h, w = ids.shape[1], ids.shape[2]
    if h is None or w is None:
        h, w = ops.shape(ids)[1], ops.shape(ids)[2]
    out_h, out_w = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = None
    for dy in range(kh):
        for dx in range(kw):
            tap_ids = ids[:, dy:dy + (out_h - 1) * stride + 1:stride, dx:dx + (out_w - 1) * stride + 1:stride]
            tap = ops.take(table, tap_ids + (dy * kw + dx) * (n + 1), axis=0)
            out = tap if out is None else out + tap
    return out


def conv_via_lookups(conv, x, n: int, pad: int, ids=None):
    """What `conv` (a Keras Conv2D with zero padding `pad` on each side, explicit or 'same')
    gives for x whose first n channels are one-hot: look-ups for those channels, the conv itself
    on the rest (e.g. an instance-edge or image channel), plus the bias. x: [B, H, W, C].

    ids: int32 [B, H, W], the one-hot's ids (n where a pixel has none) when the caller has them:
    then they are not recomputed from x (export graphs pass them: in an int8 graph the float
    arithmetic of `onehot_ids` would be quantized, and an id off by one is another class)."""
    dtype = conv.compute_dtype
    kernel = ops.cast(conv.kernel, dtype)
    ids = onehot_ids(x[..., :n]) if ids is None else ids
    out = lookup_conv(ids, kernel[:, :, :n, :], conv.strides[0], pad)
    if x.shape[-1] > n:
        rest = ops.cast(x[..., n:], dtype)
        if conv.padding == "valid":
            rest = ops.pad(rest, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        out = out + conv.convolution_op(rest, kernel[:, :, n:, :])
    if conv.use_bias:
        out = out + ops.cast(conv.bias, dtype)
    return out
