"""The FID InceptionV3 ("inception-2015-12-05", as pytorch-fid 0.3.0 builds it), pool3 features.

This is not torchvision's InceptionV3: pytorch-fid's FIDInceptionA/C/E_1 average-pool their pool
branch with `count_include_pad=False`, FIDInceptionE_2 (Mixed_7c) max-pools it, the input is
resized to 299x299 (bilinear, half-pixel centres, no antialias) and scaled by 2x-1, and the
weights are the 2015 TF graph's (`pt_inception-2015-12-05-6726825d.pth`). Only with exactly this
network are FID numbers comparable with published ones.

Weights are given as a state dict with torchvision Inception3 names (`Conv2d_1a_3x3.conv.weight`,
`Mixed_5b.branch1x1.bn.running_var`, ...; OIHW kernels). BatchNorm (inference mode, eps 1e-3)
is folded into each conv's kernel and bias at load time.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

from spade_tf.errors import SpadeError

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"  # the published part; the full SHA-256 is in spade_tf.weights
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth")
BN_EPS = 1e-3
INPUT_SIZE = 299
POOL3_DIM = 2048


# ---- the architecture -------------------------------------------------------------------------
# Ops: ("conv", name, out_channels, (kh, kw), stride, (ph, pw)); ("max_pool", k, stride, pad);
# ("avg_pool_excl_pad", k, stride, pad); ("inception", name, branches) where a branch is
# (layers, split) and `split` (FIDInceptionE only) is a list of layer lists whose outputs, each fed
# the branch output, are concatenated.
def _conv(name, out, k=1, stride=1, pad=0):
    k = (k, k) if isinstance(k, int) else tuple(k)
    pad = (pad, pad) if isinstance(pad, int) else tuple(pad)
    return ("conv", name, out, k, stride, pad)


_AVG_EXCL = ("avg_pool_excl_pad", 3, 1, 1)  # pytorch-fid: count_include_pad=False
_MAX_3_2 = ("max_pool", 3, 2, 0)


def _inception_a(name, pool_features):
    c = lambda b, *a, **k: _conv(f"{name}.{b}", *a, **k)  # noqa: E731
    return ("inception", name, [
        ([c("branch1x1", 64)], None),
        ([c("branch5x5_1", 48), c("branch5x5_2", 64, 5, pad=2)], None),
        ([c("branch3x3dbl_1", 64), c("branch3x3dbl_2", 96, 3, pad=1),
          c("branch3x3dbl_3", 96, 3, pad=1)], None),
        ([_AVG_EXCL, c("branch_pool", pool_features)], None),
    ])


def _inception_b(name):
    c = lambda b, *a, **k: _conv(f"{name}.{b}", *a, **k)  # noqa: E731
    return ("inception", name, [
        ([c("branch3x3", 384, 3, stride=2)], None),
        ([c("branch3x3dbl_1", 64), c("branch3x3dbl_2", 96, 3, pad=1),
          c("branch3x3dbl_3", 96, 3, stride=2)], None),
        ([_MAX_3_2], None),
    ])


def _inception_c(name, c7):
    c = lambda b, *a, **k: _conv(f"{name}.{b}", *a, **k)  # noqa: E731
    return ("inception", name, [
        ([c("branch1x1", 192)], None),
        ([c("branch7x7_1", c7), c("branch7x7_2", c7, (1, 7), pad=(0, 3)),
          c("branch7x7_3", 192, (7, 1), pad=(3, 0))], None),
        ([c("branch7x7dbl_1", c7), c("branch7x7dbl_2", c7, (7, 1), pad=(3, 0)),
          c("branch7x7dbl_3", c7, (1, 7), pad=(0, 3)), c("branch7x7dbl_4", c7, (7, 1), pad=(3, 0)),
          c("branch7x7dbl_5", 192, (1, 7), pad=(0, 3))], None),
        ([_AVG_EXCL, c("branch_pool", 192)], None),
    ])


def _inception_d(name):
    c = lambda b, *a, **k: _conv(f"{name}.{b}", *a, **k)  # noqa: E731
    return ("inception", name, [
        ([c("branch3x3_1", 192), c("branch3x3_2", 320, 3, stride=2)], None),
        ([c("branch7x7x3_1", 192), c("branch7x7x3_2", 192, (1, 7), pad=(0, 3)),
          c("branch7x7x3_3", 192, (7, 1), pad=(3, 0)), c("branch7x7x3_4", 192, 3, stride=2)], None),
        ([_MAX_3_2], None),
    ])


def _inception_e(name, pool):
    c = lambda b, *a, **k: _conv(f"{name}.{b}", *a, **k)  # noqa: E731
    return ("inception", name, [
        ([c("branch1x1", 320)], None),
        ([c("branch3x3_1", 384)],
         [[c("branch3x3_2a", 384, (1, 3), pad=(0, 1))], [c("branch3x3_2b", 384, (3, 1), pad=(1, 0))]]),
        ([c("branch3x3dbl_1", 448), c("branch3x3dbl_2", 384, 3, pad=1)],
         [[c("branch3x3dbl_3a", 384, (1, 3), pad=(0, 1))], [c("branch3x3dbl_3b", 384, (3, 1), pad=(1, 0))]]),
        ([pool, c("branch_pool", 192)], None),
    ])


ARCHITECTURE = (
    _conv("Conv2d_1a_3x3", 32, 3, stride=2),
    _conv("Conv2d_2a_3x3", 32, 3),
    _conv("Conv2d_2b_3x3", 64, 3, pad=1),
    _MAX_3_2,
    _conv("Conv2d_3b_1x1", 80, 1),
    _conv("Conv2d_4a_3x3", 192, 3),
    _MAX_3_2,
    _inception_a("Mixed_5b", 32),
    _inception_a("Mixed_5c", 64),
    _inception_a("Mixed_5d", 64),
    _inception_b("Mixed_6a"),
    _inception_c("Mixed_6b", 128),
    _inception_c("Mixed_6c", 160),
    _inception_c("Mixed_6d", 160),
    _inception_c("Mixed_6e", 192),
    _inception_d("Mixed_7a"),
    _inception_e("Mixed_7b", _AVG_EXCL),
    _inception_e("Mixed_7c", ("max_pool", 3, 1, 1)),  # FIDInceptionE_2: max, not average
)


def _walk_convs(ops_list, in_ch):
    """Yield (conv op, in_channels) in state-dict order; return the output channel count."""
    for op in ops_list:
        if op[0] == "conv":
            yield op, in_ch
            in_ch = op[2]
        elif op[0] == "inception":
            total = 0
            for layers, split in op[2]:
                ch = yield from _walk_convs(layers, in_ch)
                if split:
                    ch = 0
                    for sub in split:
                        ch += yield from _walk_convs(sub, _last_channels(layers, in_ch))
                total += ch
            in_ch = total
    return in_ch


def _last_channels(layers, in_ch):
    convs = [op for op in layers if op[0] == "conv"]
    return convs[-1][2] if convs else in_ch


def _iter_convs():
    """(conv op, in_channels) for every conv, in state-dict order."""
    convs = []
    out = _drain(_walk_convs(ARCHITECTURE, 3), convs)
    assert out == POOL3_DIM
    return convs


def _drain(gen, into: list):
    """Drain a generator into `into`; return the generator's return value."""
    while True:
        try:
            into.append(next(gen))
        except StopIteration as stop:
            return stop.value


def state_dict_spec() -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of the weight file, in PyTorch order, with its shape (fc included)."""
    spec = []
    for (_, name, out_ch, (kh, kw), _, _), in_ch in _iter_convs():
        spec.append((f"{name}.conv.weight", (out_ch, in_ch, kh, kw)))
        spec += [(f"{name}.bn.{p}", (out_ch,)) for p in ("weight", "bias", "running_mean", "running_var")]
    return spec + [("fc.weight", (1008, POOL3_DIM)), ("fc.bias", (1008,))]


# ---- weights ------------------------------------------------------------------------------------
# The .pth is checked by its full SHA-256 (spade_tf.weights.PYTORCH_FID_INCEPTION). An .npz of the same
# tensors is checked by a digest of the tensors themselves (`weights.tensor_digest`), never by
# anything the .npz says about itself. That digest of pytorch-fid's state dict is not pinned yet: the
# file could not be obtained where this was written. Set it by running, on a machine with the
# verified .pth: `python -c "from spade_tf.backbones.inception import *; print(tensor_digest_of(PTH))"`.
# Until then an .npz is accepted for standard FID only with verify=False (wiring checks).
INCEPTION_TENSORS_SHA256: str | None = None


def missing_weights_message(path=None) -> str:
    from spade_tf.weights import FID_INCEPTION, PYTORCH_FID_INCEPTION, source_url

    where = f"'{path}' does not exist. " if path else ""
    return (f"{where}The standard FID needs pytorch-fid's Inception weights {WEIGHTS_FILENAME} (~91 MB) from "
            f"the pytorch-fid release page on GitHub ({source_url(PYTORCH_FID_INCEPTION)}, SHA-256 "
            f"{PYTORCH_FID_INCEPTION.sha256}); spade fetches it into its cache when it can, or "
            f"{FID_INCEPTION.where_to_pass()}. Without them use "
            f"--features alexnet (reported as fd_alexnet/kid_alexnet, not comparable with published FID).")


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    from spade_tf.weights import file_digest

    return file_digest(path, "sha256", chunk)


def resolve_inception_weights(path=None, allow_download: bool = True) -> Path:
    """The .pth/.npz to use: path, $SPADE_INCEPTION_WEIGHTS, the cache, or the release asset (checked)."""
    from spade_tf.weights import FID_INCEPTION, resolve

    try:
        return resolve(FID_INCEPTION, path, allow_download)
    except SpadeError as e:
        raise SpadeError(f"{e} " + missing_weights_message()) from e


def tensor_digest_of(path) -> str:
    """`weights.tensor_digest` of the file's state dict (without `fc.*`, which pool3 does not use)."""
    from spade_tf.pth import load_state_dict
    from spade_tf.weights import tensor_digest

    state = load_state_dict(path)
    return tensor_digest({k: v for k, v in state.items() if not k.startswith("fc.")})


def load_inception_weights(path: str | os.PathLike, verify: bool = True) -> dict[str, np.ndarray]:
    """Read the FID Inception state dict from pytorch-fid's .pth (or an .npz with the same names).

    verify: a .pth must have pytorch-fid's SHA-256 (the whole file); an .npz must hold exactly the
    tensors of that file (a digest of the tensors, `INCEPTION_TENSORS_SHA256`; see above).
    verify=False accepts any weights of the right shapes (for wiring checks only: such features
    do not give FID).
    """
    from spade_tf.pth import load_state_dict
    from spade_tf.weights import PYTORCH_FID_INCEPTION, tensor_digest

    path = Path(path)
    if not path.is_file():
        raise SpadeError(missing_weights_message(path))
    if verify and path.suffix != ".npz":
        digest = sha256_of(path)
        if digest != PYTORCH_FID_INCEPTION.sha256:
            raise SpadeError(
                f"{path}: SHA-256 {digest} is not pytorch-fid's {PYTORCH_FID_INCEPTION.sha256} (starting "
                f"{WEIGHTS_SHA256_PREFIX}), so this is not {WEIGHTS_FILENAME} (a truncated or different "
                "file). " + missing_weights_message())
    state = load_state_dict(path)
    if verify and path.suffix == ".npz":
        digest = tensor_digest({k: v for k, v in state.items() if not k.startswith("fc.")})
        if INCEPTION_TENSORS_SHA256 is None:
            raise SpadeError(
                f"{path}: an .npz can be checked only against the pinned digest of pytorch-fid's tensors, "
                f"which this version does not have; pass {WEIGHTS_FILENAME} itself (checked by its "
                "SHA-256), or use verify=False for wiring checks (not FID).")
        if digest != INCEPTION_TENSORS_SHA256:
            raise SpadeError(
                f"{path}: its tensors (digest {digest[:16]}...) are not those of pytorch-fid's "
                f"{WEIGHTS_FILENAME} ({INCEPTION_TENSORS_SHA256[:16]}...): a different or altered file.")
    check_state_dict(state, str(path))
    return state


def convert_inception_pth_to_npz(pth_path, npz_path) -> Path:
    """Verified .pth -> .npz of the same tensors (checked later by their digest, see above)."""
    state = load_inception_weights(pth_path, verify=True)
    np.savez(npz_path, **state)
    return Path(npz_path)


def check_state_dict(state: dict, where: str = "Inception weights") -> None:
    for name, shape in state_dict_spec():
        if name.startswith("fc."):
            continue  # not needed for pool3
        if name not in state:
            raise SpadeError(f"{where}: missing tensor '{name}'; expected pytorch-fid's {WEIGHTS_FILENAME}")
        if tuple(np.shape(state[name])) != shape:
            raise SpadeError(f"{where}: '{name}' has shape {tuple(np.shape(state[name]))}, expected {shape}")


def _folded_conv(state, name):
    """Conv (no bias) + inference BatchNorm -> HWIO kernel and bias."""
    w = np.asarray(state[f"{name}.conv.weight"], np.float64)
    gamma, beta, mean, var = (np.asarray(state[f"{name}.bn.{p}"], np.float64)
                              for p in ("weight", "bias", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + BN_EPS)
    kernel = (w * scale[:, None, None, None]).transpose(2, 3, 1, 0)
    return kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)


# ---- the layer ----------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="spade_tf")
class FIDInceptionV3(keras.layers.Layer):
    """pytorch-fid's InceptionV3 up to pool3. Frozen.

    Input: float RGB images [B, H, W, 3] in [0, 1], any H, W (resized to 299x299 inside).
    Output: pool3 features [B, 2048].

    `weights`: path to the .pth/.npz (checked, see `load_inception_weights`) or a state dict.
    """

    def __init__(self, weights=None, verify=True, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(weights, dict):
            check_state_dict(weights)
            state, self.weights_path = weights, None
        else:
            weights = resolve_inception_weights(weights)
            state, self.weights_path = load_inception_weights(weights, verify=verify), str(weights)
        self.verify = verify
        self.convs = {}
        for op, _ in _iter_convs():
            name = op[1]
            kernel, bias = _folded_conv(state, name)
            self.convs[name] = (
                self.add_weight(name=f"{name}.kernel", shape=kernel.shape, trainable=False,
                                initializer=keras.initializers.Constant(kernel)),
                self.add_weight(name=f"{name}.bias", shape=bias.shape, trainable=False,
                                initializer=keras.initializers.Constant(bias)),
            )

    def call(self, images):
        x = ops.image.resize(ops.cast(images, "float32"), (INPUT_SIZE, INPUT_SIZE), interpolation="bilinear",
                             antialias=False)
        x = 2.0 * x - 1.0
        x = self._run(ARCHITECTURE, x)
        return ops.mean(x, axis=(1, 2))

    def _run(self, ops_list, x):
        for op in ops_list:
            kind = op[0]
            if kind == "conv":
                x = self._conv(op, x)
            elif kind == "max_pool":
                _, k, s, p = op
                if p:  # PyTorch pads max pooling with -inf
                    x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=float("-inf"))
                x = ops.max_pool(x, k, s, padding="valid")
            elif kind == "avg_pool_excl_pad":
                x = _avg_pool_exclude_pad(x, *op[1:])
            elif kind == "inception":
                outs = []
                for layers, split in op[2]:
                    y = self._run(layers, x)
                    outs.extend([self._run(sub, y) for sub in split] if split else [y])
                x = ops.concatenate(outs, axis=-1)
            else:
                raise ValueError(kind)
        return x

    def _conv(self, op, x):
        _, name, _, (kh, kw), stride, (ph, pw) = op
        kernel, bias = self.convs[name]
        if stride == 1 and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2):
            padding = "same"  # identical to PyTorch's symmetric padding for odd kernels, stride 1
        else:
            if ph or pw:
                x = ops.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
            padding = "valid"
        return ops.relu(ops.conv(x, kernel, strides=stride, padding=padding) + bias)

    def compute_output_spec(self, images):
        return keras.KerasTensor((images.shape[0], POOL3_DIM), "float32")

    def get_config(self):
        if self.weights_path is None:
            raise NotImplementedError("FIDInceptionV3 from an in-memory state dict cannot be serialised")
        return {**super().get_config(), "weights": self.weights_path, "verify": self.verify}


def _avg_pool_exclude_pad(x, k, s, p):
    """Average over in-image pixels only (PyTorch `count_include_pad=False`), on any backend."""
    padding = [[0, 0], [p, p], [p, p], [0, 0]]
    sums = ops.average_pool(ops.pad(x, padding), k, s, padding="valid")
    ones = ops.pad(ops.ones_like(x[:1, :, :, :1]), padding)
    counts = ops.average_pool(ones, k, s, padding="valid")
    return sums / counts
