#!/usr/bin/env python3
"""The networks under one Keras backend, against the official PyTorch fixtures. Prints JSON.

Run in a fresh process with the backend chosen by the environment (Keras reads it at import):

    KERAS_BACKEND=jax   python tests/backend_check.py --fixtures ../shared/fixtures/official_spade
    KERAS_BACKEND=torch python tests/backend_check.py --fixtures ../shared/fixtures/official_spade

tests/test_backends.py runs it once per backend. Every check compares with the official outputs
(never with our own earlier output) and fails with an AssertionError naming what differs:

- convert: `spade convert`'s library function (`convert_checkpoint`) on tiny_seg and tiny_vae,
  writing .keras files; those files loaded back (`keras.saving.load_model`) reproduce the
  official generator output, generator blocks, discriminator features and encoder mu/logvar;
- folded: the spectral-norm-folded generator reproduces the official output;
- inference_function: the backend's inference call (JAX: jax.jit over stateless_call, with the
  one-hot look-ups' run-time check compiled as lax.cond) reproduces the official output;
- training state: one training-mode call updates the spectral-norm u (one power iteration, as
  torch.nn.utils.spectral_norm) and the batch-norm running statistics (momentum 0.1, unbiased
  variance, as PyTorch), checked against numpy; under JAX through a jitted stateless_call;
- TensorFlow is made unimportable (as on the GPU machines, which have none): any import of it
  fails the check; Keras's and PyTorch's own probes for it see it as absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TOL = 1e-4


def nhwc(a):
    import numpy as np

    return np.transpose(a, (0, 2, 3, 1))


def max_diff(a, b) -> float:
    import keras
    import numpy as np

    return float(np.abs(np.asarray(keras.ops.convert_to_numpy(a), "float64") - b).max())


def check(results: dict, name: str, diff: float, tol: float = TOL) -> None:
    results[name] = diff
    assert diff <= tol, f"{name}: max |ours - official| = {diff:.3g} > {tol}"


def forward(model, **options):
    """`model(*arrays, training=False, **options)`; on JAX one jax.jit'd stateless call (one compile
    for the whole network instead of one per op and shape, which dominates eager JAX on a CPU)."""
    import keras

    if keras.backend.backend() != "jax":
        return lambda *arrays: model(*arrays, training=False, **options)
    import jax

    @jax.jit
    def call(trainable, non_trainable, arrays):
        return model.stateless_call(trainable, non_trainable, *arrays, training=False, **options)[0]

    return lambda *arrays: call([v.value for v in model.trainable_variables],
                                [v.value for v in model.non_trainable_variables], arrays)


def converted_parity(fixtures: Path, work: Path, results: dict) -> None:
    import keras
    import numpy as np

    import spade_tf.models  # noqa: F401  (registers the classes for load_model)
    from spade_tf.convert.official import convert_checkpoint

    for name in ("tiny_seg", "tiny_vae"):
        io = np.load(fixtures / name / "io.npz")
        written = convert_checkpoint(fixtures / name, work / name)
        g = keras.saving.load_model(written["generator"])
        onehot = nhwc(io["input_semantics_nchw"])
        z = io["z"] if g.config.use_vae else None
        image, inter = forward(g, return_intermediates=True)(onehot, z)
        official = nhwc(io["output_nchw"])
        check(results, f"{name}/generator", max_diff(image, official))
        blocks = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3", "conv_img"]
        for block in blocks:
            if f"g_{block}_out" in io:
                diff = max_diff(inter[block], nhwc(io[f"g_{block}_out"]))
                check(results, f"{name}/generator/{block}", diff)

        d = keras.saving.load_model(written["discriminator"])
        sem = nhwc(io["input_semantics_nchw"])
        fake = np.concatenate([sem, official], -1)
        real = np.concatenate([sem, nhwc(io["real_image_nchw"])], -1)
        outputs = forward(d)(np.concatenate([fake, real], 0))
        worst = 0.0
        for i, scale in enumerate(outputs):
            for j, feature in enumerate(scale):
                ref = np.concatenate([nhwc(io[f"d_{kind}_scale{i}_feat{j}"]) for kind in ("fake", "real")])
                worst = max(worst, max_diff(feature, ref))
        check(results, f"{name}/discriminator", worst)

        if g.config.use_vae:
            e = keras.saving.load_model(written["encoder"])
            mu, logvar = forward(e)(nhwc(io["real_image_nchw"]))
            check(results, f"{name}/encoder_mu", max_diff(mu, io["mu"]))
            check(results, f"{name}/encoder_logvar", max_diff(logvar, io["logvar"]))

        folded = g.folded()
        check(results, f"{name}/folded", max_diff(folded(onehot[:1], z=None if z is None else z[:1],
                                                          training=False), official[:1]))  # eager
        run = folded.inference_function(jit_compile=True)
        check(results, f"{name}/inference_function", max_diff(run(onehot, z), official))
        if keras.backend.backend() == "jax" and name == "tiny_seg":
            import jax

            trainable = [v.value for v in folded.trainable_variables]
            non_trainable = [v.value for v in folded.non_trainable_variables]
            jaxpr = jax.make_jaxpr(lambda t, n, s, m=folded: m.stateless_call(t, n, s, training=False)[0])(
                trainable, non_trainable, onehot)
            # the one-hot look-ups' run-time check is a lax.cond (no Python bool on a tracer)
            results["jit_onehot_check_is_lax_cond"] = "cond[" in str(jaxpr)
            assert results["jit_onehot_check_is_lax_cond"], "no lax.cond in the jitted generator"


def _l2n(x):
    import numpy as np

    return x / max(float(np.linalg.norm(x)), 1e-12)


def training_state(fixtures: Path, results: dict) -> None:
    """One training-mode generator call: spectral-norm u and batch-norm statistics, against numpy."""
    import keras
    import numpy as np

    from spade_tf.convert.official import load_official

    io = np.load(fixtures / "tiny_seg" / "io.npz")
    _, g, _, _ = load_official(fixtures / "tiny_seg")
    onehot = nhwc(io["input_semantics_nchw"])
    _, inter = forward(g, return_intermediates=True)(onehot)
    fc_out = np.asarray(keras.ops.convert_to_numpy(inter["fc"]), "float64")

    sn = g.head_0.conv_0
    bn = g.head_0.norm_0.param_free_norm
    kernel = keras.ops.convert_to_numpy(sn.layer.kernel)
    u0 = keras.ops.convert_to_numpy(sn.u)
    mean0, var0 = keras.ops.convert_to_numpy(bn.moving_mean), keras.ops.convert_to_numpy(bn.moving_variance)
    w_mat = kernel.transpose(3, 2, 0, 1).reshape(kernel.shape[3], -1).astype("float64")  # torch's view
    v_expected = _l2n(w_mat.T @ u0)
    u_expected = _l2n(w_mat @ v_expected)
    n = fc_out.shape[0] * fc_out.shape[1] * fc_out.shape[2]
    mean_expected = 0.9 * mean0 + 0.1 * fc_out.mean(axis=(0, 1, 2))
    var_expected = 0.9 * var0 + 0.1 * fc_out.var(axis=(0, 1, 2)) * n / (n - 1)

    if keras.backend.backend() == "jax":
        import jax

        def step(trainable, non_trainable, segmap):
            return g.stateless_call(trainable, non_trainable, segmap, training=True)

        _, new_state = jax.jit(step)([v.value for v in g.trainable_variables],
                                     [v.value for v in g.non_trainable_variables], onehot)
        values = {id(v): np.asarray(s) for v, s in zip(g.non_trainable_variables, new_state, strict=True)}
        # stateless: the variables themselves are untouched
        assert np.array_equal(keras.ops.convert_to_numpy(sn.u), u0), "stateless_call changed a variable"
        u1, v1 = values[id(sn.u)], values[id(sn.v)]
        mean1, var1 = values[id(bn.moving_mean)], values[id(bn.moving_variance)]
    else:
        g(onehot, training=True)
        u1, v1 = keras.ops.convert_to_numpy(sn.u), keras.ops.convert_to_numpy(sn.v)
        mean1 = keras.ops.convert_to_numpy(bn.moving_mean)
        var1 = keras.ops.convert_to_numpy(bn.moving_variance)
    check(results, "train/spectral_u", float(np.abs(u1 - u_expected).max()), 1e-5)
    check(results, "train/spectral_v", float(np.abs(v1 - v_expected).max()), 1e-5)
    check(results, "train/bn_moving_mean", float(np.abs(mean1 - mean_expected).max()), 1e-5)
    check(results, "train/bn_moving_variance", float(np.abs(var1 - var_expected).max()), 1e-4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", required=True, help="../shared/fixtures/official_spade")
    p.add_argument("--expect-backend", default=os.environ.get("KERAS_BACKEND"))
    p.add_argument("--allow-tensorflow", action="store_true",
                   help="do not block TensorFlow imports (default: blocked, as on the GPU machines)")
    args = p.parse_args(argv)
    fixtures = Path(args.fixtures)
    if not args.allow_tensorflow:
        # None in sys.modules: `import tensorflow` raises ModuleNotFoundError and
        # importlib.util.find_spec("tensorflow") returns None, exactly as where it is not installed
        sys.modules["tensorflow"] = None

    import keras

    results: dict = {"backend": keras.backend.backend(), "keras": keras.__version__}
    assert results["backend"] == args.expect_backend, (results["backend"], args.expect_backend)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spade_backend_check_") as tmp:
        converted_parity(fixtures, Path(tmp), results)
    results["seconds_convert_and_parity"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    training_state(fixtures, results)
    results["seconds_training_state"] = round(time.perf_counter() - start, 1)
    results["tensorflow_imported"] = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"
                                            and sys.modules[m] is not None)[:5]
    assert args.allow_tensorflow or not results["tensorflow_imported"], results["tensorflow_imported"]
    print("BACKEND_CHECK " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
