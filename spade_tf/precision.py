"""Inference precision: float32 (default) or bfloat16 where the CPU computes it natively.

bf16 here is Keras's `mixed_bfloat16` policy on a copy of the (folded) generator: weights stay
float32 and are cast per call, every layer computes in bfloat16 (8-bit mantissa), the output is
cast to float32 before the final tanh (`SPADEGenerator.call`). The images are close to, not
bit-equal with, float32 (`psnr_db` reports the difference; docs/benchmarks.md has the figures).

Native bf16: x86 CPUs with AVX512_BF16 or AMX-BF16 (Intel Cooper Lake, Sapphire Rapids and later;
AMD Zen 4 and later), ARM CPUs with the BF16 extension (`bf16` in /proc/cpuinfo's Features).
Elsewhere TensorFlow emulates bfloat16 arithmetic, which is slower than float32, so bf16 is
refused with a SpadeError unless `allow_emulated=True`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from spade_tf.errors import SpadeError

PRECISIONS = ("float32", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 flags; ARM "Features: ... bf16"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (x86 `flags`, ARM `Features`); empty if unreadable."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has native bfloat16 arithmetic (see NATIVE_BF16_FLAGS)."""
    return bool(cpu_flags(cpuinfo) & set(NATIVE_BF16_FLAGS))


def check_precision(precision: str, allow_emulated: bool = False, cpuinfo: str | None = None) -> str:
    """Validate a --precision value; bf16 on a CPU without native bf16 raises SpadeError."""
    if precision not in PRECISIONS:
        raise SpadeError(f"--precision must be one of {PRECISIONS}, got '{precision}'")
    if precision == "bf16" and not allow_emulated and not native_bf16(cpuinfo):
        raise SpadeError(
            "--precision bf16: this CPU has no native bfloat16 arithmetic (no avx512_bf16 / amx_bf16 "
            "flag in /proc/cpuinfo, nor ARM bf16), so TensorFlow would emulate it, slower than float32. "
            "Use --precision float32 (the default), or a CPU with AVX512_BF16 / AMX (Intel Sapphire "
            "Rapids or later, AMD Zen 4 or later)")
    return precision


def bf16_generator(generator):
    """A copy of `generator` (a SPADEGenerator, folded or not) under the `mixed_bfloat16` policy,
    with the same (float32) weights."""
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        copy = generator.__class__.from_config(generator.get_config())
        h, w = generator.config.image_size
        copy.build((1, h, w, generator.config.semantic_nc))
    finally:
        keras.mixed_precision.set_global_policy(old)
    copy.set_weights(generator.get_weights())
    return copy


def with_precision(model, precision: str, allow_emulated: bool = False):
    """The SpadeModel `model` computing in `precision` ('float32': `model` itself)."""
    check_precision(precision, allow_emulated)
    if precision == "float32":
        return model
    return dataclasses.replace(model, generator=bf16_generator(model.generator))


def psnr_db(image, reference) -> float:
    """PSNR (dB) of float images in [-1, 1] (peak-to-peak 2), inf when equal."""
    err = np.mean((np.asarray(image, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return math.inf if err == 0 else float(10 * np.log10(4.0 / err))
