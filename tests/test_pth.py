"""The torch-free checkpoint reader against the official fixtures, and against hostile files.

Real-format coverage comes from the official fixtures (tiny_seg: legacy pickle format, tiny_vae:
zip format, both written by torch 2.13). Their values are checked through relations the official
code guarantees (fc/D-layer outputs recorded in io.npz, spectral-norm u = normalize(W v), trainable
parameter counts from the manifest), never against our own earlier output. Layouts the fixtures
do not contain (strides, offsets, bfloat16, ...) use files built here with plain `pickle` in the
torch layout, so no test needs torch.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spade_tf.errors import SpadeError
from spade_tf.pth import load_state_dict

OFFICIAL = Path(__file__).parents[2] / "shared" / "fixtures" / "official_spade"
BUFFERS = ("weight_u", "weight_v", "running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def official() -> Path:
    if not (OFFICIAL / "manifest.json").is_file():
        pytest.skip(f"official SPADE fixtures not found at {OFFICIAL}")
    return OFFICIAL


@pytest.fixture(scope="module")
def manifest(official) -> dict:
    return json.loads((official / "manifest.json").read_text())


# ---- numpy reference ops (NCHW / OIHW, float64) ------------------------------------------------
def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, pad: int) -> np.ndarray:
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.einsum("ncijkl,ockl->noij", windows, w.astype(np.float64))
    return out if b is None else out + b.astype(np.float64)[None, :, None, None]


def lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.2 * x)


def spectral_weight(sd: dict, prefix: str) -> np.ndarray:
    """Eval-mode spectral norm, as the README states: weight_orig / dot(u, W v)."""
    w = sd[prefix + "weight_orig"].astype(np.float64)
    sigma = sd[prefix + "weight_u"] @ (w.reshape(w.shape[0], -1) @ sd[prefix + "weight_v"])
    return w / sigma


# ---- official fixtures ---------------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["tiny_seg", "tiny_vae"])
def test_generator_layout_matches_official_state_dict(official, manifest, folder):
    sd = load_state_dict(official / folder / "latest_net_G.pth")
    files = manifest["folders"][folder]["files"]
    assert len(sd) == files["latest_net_G.pth"]["tensors"] == 234
    keys = list(sd)
    assert keys[:2] == ["fc.weight", "fc.bias"] and keys[-2:] == ["conv_img.weight", "conv_img.bias"]
    assert not any(k.endswith("conv_0.weight") for k in keys)  # spectral norm keeps weight_orig only
    for key, value in sd.items():
        if key.endswith("num_batches_tracked"):  # int64, always 0 (README)
            assert value.dtype == np.int64 and value.shape == () and value == 0, key
        else:
            assert value.dtype == np.float32, key
    semantic_nc = manifest["folders"][folder]["semantic_nc"]
    conv_0 = sd["head_0.conv_0.weight_orig"]  # ngf=1: 16 -> 16 channels, 3x3, OIHW
    assert conv_0.shape == (16, 16, 3, 3)
    assert sd["head_0.conv_0.weight_u"].shape == (16,)  # [out]
    assert sd["head_0.conv_0.weight_v"].shape == (16 * 3 * 3,)  # [in*kh*kw]
    assert sd["head_0.norm_0.mlp_shared.0.weight"].shape == (128, semantic_nc, 3, 3)
    assert sd["conv_img.weight"].shape == (3, 1, 3, 3)
    trainable = sum(v.size for k, v in sd.items() if not k.endswith(BUFFERS))
    assert trainable == manifest["folders"][folder]["trainable_params"]["G"]


def test_legacy_and_zip_formats_are_the_ones_named(official):
    assert not zipfile.is_zipfile(official / "tiny_seg" / "latest_net_G.pth")
    assert zipfile.is_zipfile(official / "tiny_vae" / "latest_net_G.pth")


@pytest.mark.parametrize("folder,nets", [("tiny_seg", "DG"), ("tiny_vae", "DEG")])
def test_parameter_counts_and_spectral_vectors(official, manifest, folder, nets):
    # After the fixture's train-mode passes, u is the power-iteration update normalize(W v):
    # this ties weight_orig, weight_u and weight_v values together.
    for net in nets:
        sd = load_state_dict(official / folder / f"latest_net_{net}.pth")
        trainable = sum(v.size for k, v in sd.items() if not k.endswith(BUFFERS))
        assert trainable == manifest["folders"][folder]["trainable_params"][net]
        origs = [k[: -len("weight_orig")] for k in sd if k.endswith("weight_orig")]
        assert origs
        for prefix in origs:
            w = sd[prefix + "weight_orig"]
            wv = w.reshape(w.shape[0], -1).astype(np.float64) @ sd[prefix + "weight_v"]
            np.testing.assert_allclose(wv / np.linalg.norm(wv), sd[prefix + "weight_u"], atol=1e-5)


def test_legacy_generator_fc_values_reproduce_official_output(official):
    sd = load_state_dict(official / "tiny_seg" / "latest_net_G.pth")
    io_ = np.load(official / "tiny_seg" / "io.npz")
    out = conv2d(io_["g_fc_in"], sd["fc.weight"], sd["fc.bias"], stride=1, pad=1)
    np.testing.assert_allclose(out, io_["g_fc_out"], atol=1e-5)


def test_zip_generator_fc_values_reproduce_official_output(official):
    sd = load_state_dict(official / "tiny_vae" / "latest_net_G.pth")
    io_ = np.load(official / "tiny_vae" / "io.npz")
    assert sd["fc.weight"].shape == (16 * 2 * 4, 256)  # Linear(z_dim, 16*ngf*sh*sw), (out, in)
    out = io_["g_fc_in"].astype(np.float64) @ sd["fc.weight"].T + sd["fc.bias"]
    np.testing.assert_allclose(out, io_["g_fc_out"], atol=1e-5)


@pytest.mark.parametrize("folder", ["tiny_seg", "tiny_vae"])
def test_discriminator_values_reproduce_official_features(official, folder):
    # Layer 0 is a plain conv, layer 1 a spectral conv + affine-free InstanceNorm: both formats'
    # D weights (and u/v) must reproduce the official features.
    sd = load_state_dict(official / folder / "latest_net_D.pth")
    io_ = np.load(official / folder / "io.npz")
    x = np.concatenate([io_["input_semantics_nchw"], io_["output_nchw"]], axis=1)
    feat0 = lrelu(conv2d(x, sd["discriminator_0.model0.0.weight"], sd["discriminator_0.model0.0.bias"], 2, 2))
    np.testing.assert_allclose(feat0, io_["d_fake_scale0_feat0"], atol=1e-4)
    y = conv2d(io_["d_fake_scale0_feat0"], spectral_weight(sd, "discriminator_0.model1.0.0."), None, 2, 2)
    y = (y - y.mean(axis=(2, 3), keepdims=True)) / np.sqrt(y.var(axis=(2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(lrelu(y), io_["d_fake_scale0_feat1"], atol=1e-4)


def test_reader_never_imports_torch(official):
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "from spade_tf.pth import load_state_dict\n"
            f"assert len(load_state_dict({str(official / 'tiny_seg' / 'latest_net_D.pth')!r})) == 26\n"
            f"assert len(load_state_dict({str(official / 'tiny_vae' / 'latest_net_D.pth')!r})) == 26\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name", ["tiny_seg/latest_net_G.pth", "tiny_vae/latest_net_G.pth"])
@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
def test_truncated_checkpoint_is_a_clear_error(official, tmp_path, name, fraction):
    data = (official / name).read_bytes()
    bad = tmp_path / "cut.pth"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SpadeError, match=r"cut\.pth.*(truncated|corrupt)"):
        load_state_dict(bad)


def test_corrupted_zip_storage_fails_its_checksum(official, tmp_path):
    bad = tmp_path / "flipped.pth"
    shutil.copy(official / "tiny_vae" / "latest_net_D.pth", bad)
    with zipfile.ZipFile(bad) as zf:
        info = zf.getinfo("latest_net_D/data/0")
    data = bytearray(bad.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0xFF  # a payload byte (local header: 30 B)
    bad.write_bytes(bytes(data))
    with pytest.raises(SpadeError, match=r"flipped\.pth.*corrupt"):
        load_state_dict(bad)


# ---- files in the torch layout, built with plain pickle ----------------------------------------
class _Global:
    """Pickled as GLOBAL module.name, without importing it (torch is not needed)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce functions to be callable
        raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, type_name: str, data: np.ndarray, numel: int | None = None) -> None:
        self.key, self.type_name, self.data = key, type_name, np.ascontiguousarray(data).ravel()
        self.numel = self.data.size if numel is None else numel  # what the file claims


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return _Global("torch._utils", "_rebuild_tensor_v2"), (*self.args, False, collections.OrderedDict())


class _Call:
    """Pickles as a call of any global: what a malicious checkpoint contains."""

    def __init__(self, module: str, name: str, *args) -> None:
        self.func, self.args = _Global(module, name), args

    def __reduce__(self):
        return self.func, self.args


class _TorchLikePickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            pid = ("storage", _Global("torch", obj.type_name), obj.key, "cpu", obj.numel)
            return pid + (None,) if self.legacy else pid
        return None


_TorchLikePickler.dispatch[_Global] = lambda self, obj: self.write(
    pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())


def _storages(obj) -> dict[str, _Storage]:
    if isinstance(obj, _Tensor):
        return {obj.args[0].key: obj.args[0]}
    found = {}
    for value in obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []:
        found.update(_storages(value))
    return found


def write_torch_file(path: Path, obj, legacy: bool, skip_record: bool = False,
                     big_endian: bool = False, compression: int = zipfile.ZIP_STORED) -> Path:
    """Write `obj` as torch.save does (legacy: `_use_new_zipfile_serialization=False`)."""
    buf = io.BytesIO()
    order = ">" if big_endian else "<"

    def raw(storage: _Storage) -> bytes:
        return storage.data.astype(storage.data.dtype.newbyteorder(order)).tobytes()

    if legacy:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": not big_endian,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, buf, protocol=2)
        _TorchLikePickler(buf, legacy=True).dump(obj)
        storages = _storages(obj)
        pickle.dump(sorted(storages), buf, protocol=2)
        for key in sorted(storages):
            buf.write(struct.pack(f"{order}q", storages[key].numel) + raw(storages[key]))
        path.write_bytes(buf.getvalue())
    else:
        _TorchLikePickler(buf, legacy=False).dump(obj)
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            zf.writestr("archive/data.pkl", buf.getvalue())
            zf.writestr("archive/byteorder", "big" if big_endian else "little")
            for key, storage in _storages(obj).items():
                if not skip_record:
                    zf.writestr(f"archive/data/{key}", raw(storage))
    return path


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_strides_offsets_scalars_and_dtypes(tmp_path, legacy):
    base = np.arange(60, dtype=np.float32)
    shared = _Storage("0", "FloatStorage", base)
    bf16_values = np.array([1.5, -2.25, 3.0e-3], dtype=np.float32)
    sd = collections.OrderedDict()
    sd["transposed"] = _Tensor(shared, 0, (5, 4, 3), (1, 5, 20))  # base.reshape(3,4,5).T
    sd["sliced"] = _Tensor(shared, 21, (2, 2, 3), (20, 10, 1))  # base.reshape(3,4,5)[1:, ::2, 1:4]
    sd["scalar"] = _Tensor(shared, 7, (), ())
    sd["expanded"] = _Tensor(shared, 2, (3, 4), (1, 0))
    sd["empty"] = _Tensor(shared, 0, (0, 3), (3, 1))
    sd["num_batches_tracked"] = _Tensor(_Storage("1", "LongStorage", np.array([0], np.int64)), 0, (), ())
    sd["half"] = _Tensor(_Storage("2", "HalfStorage", np.array([0.5, -1], np.float16)), 0, (2,), (1,))
    bf16_bits = (bf16_values.view(np.uint32) >> 16).astype(np.uint16)
    sd["bf16"] = _Tensor(_Storage("3", "BFloat16Storage", bf16_bits), 0, (3,), (1,))
    sd["mask"] = _Tensor(_Storage("4", "BoolStorage", np.array([True, False])), 0, (2,), (1,))
    sd["bytes"] = _Tensor(_Storage("5", "ByteStorage", np.array([250, 4], np.uint8)), 0, (2,), (1,))
    sd["int"] = _Tensor(_Storage("6", "IntStorage", np.array([-7, 9], np.int32)), 1, (1,), (1,))
    loaded = load_state_dict(write_torch_file(tmp_path / "sd.pth", sd, legacy))

    assert list(loaded) == list(sd)
    cube = base.reshape(3, 4, 5)
    np.testing.assert_array_equal(loaded["transposed"], cube.T)
    np.testing.assert_array_equal(loaded["sliced"], cube[1:, ::2, 1:4])
    assert loaded["scalar"].shape == () and loaded["scalar"] == 7.0
    np.testing.assert_array_equal(loaded["expanded"], np.broadcast_to(base[2:5, None], (3, 4)))
    assert loaded["empty"].shape == (0, 3)
    assert loaded["num_batches_tracked"].dtype == np.int64 and loaded["num_batches_tracked"] == 0
    assert loaded["half"].dtype == np.float16 and loaded["half"].tolist() == [0.5, -1.0]
    # bfloat16 values exactly representable in it come back exactly, widened to float32
    assert loaded["bf16"].dtype == np.float32
    np.testing.assert_array_equal(loaded["bf16"], (bf16_values.view(np.uint32) & 0xFFFF0000).view(np.float32))
    assert loaded["mask"].tolist() == [True, False] and loaded["bytes"].tolist() == [250, 4]
    assert loaded["int"].dtype == np.int32 and loaded["int"].tolist() == [9]
    values = list(loaded.values())
    for i, value in enumerate(values):  # writable, C order, no aliasing: safe to hand to TF
        assert value.flags.c_contiguous and value.flags.writeable
        assert not any(np.shares_memory(value, other) for other in values[i + 1:])


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_big_endian_files(tmp_path, legacy):
    values = np.array([1.5, -2.0, 3.25e-3], np.float32)
    sd = {"w": _Tensor(_Storage("0", "FloatStorage", values), 0, (3,), (1,)),
          "n": _Tensor(_Storage("1", "LongStorage", np.array([258], np.int64)), 0, (), ())}
    loaded = load_state_dict(write_torch_file(tmp_path / "be.pth", sd, legacy, big_endian=True))
    np.testing.assert_array_equal(loaded["w"], values)
    assert loaded["n"] == 258 and loaded["w"].dtype == np.dtype("=f4")


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                         ("torch.nn.modules.conv", "Conv2d")])
def test_foreign_global_is_refused_and_never_called(tmp_path, legacy, module, name):
    marker = tmp_path / "pwned"
    payload = {"fc.weight": _Call(module, name, f"open({str(marker)!r}, 'w')" if name == "eval"
                                  else f"touch {marker}")}
    path = write_torch_file(tmp_path / "evil.pth", payload, legacy)
    with pytest.raises(SpadeError, match=rf"evil\.pth: refuses to load global '{module}\.{name}'"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_huge_claimed_storage_is_refused_before_allocating(tmp_path, legacy):
    sd = {"w": _Tensor(_Storage("0", "FloatStorage", np.ones(4, np.float32), numel=10**14), 0, (4,), (1,))}
    with pytest.raises(SpadeError, match=r"huge\.pth: exceeds the reader's byte budget .* at storage '0' "
                                         r"\(100,000,000,000,000 elements\)"):
        load_state_dict(write_torch_file(tmp_path / "huge.pth", sd, legacy))


def test_compressed_zip_records_are_refused(tmp_path):
    # torch.save writes every record stored; a deflated one is refused, never inflated.
    sd = {"w": _Tensor(_Storage("0", "FloatStorage", np.ones(4, np.float32)), 0, (4,), (1,))}
    path = write_torch_file(tmp_path / "deflated.pth", sd, legacy=False, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(SpadeError, match=r"deflated\.pth: zip record 'archive/.*' is compressed"):
        load_state_dict(path)


def test_zip_without_data_pkl_is_a_clear_error(tmp_path):
    path = tmp_path / "nopkl.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data/0", b"\0" * 16)
        zf.writestr("archive/version", "3")
    with pytest.raises(SpadeError, match=r"nopkl\.pth: .*data\.pkl"):
        load_state_dict(path)


def test_zip_missing_storage_record_is_a_clear_error(tmp_path):
    sd = {"w": _Tensor(_Storage("0", "FloatStorage", np.ones(4, np.float32)), 0, (4,), (1,))}
    path = write_torch_file(tmp_path / "partial.pth", sd, legacy=False, skip_record=True)
    with pytest.raises(SpadeError, match=r"partial\.pth: storage record 'archive/data/0' is missing"):
        load_state_dict(path)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("offset,size,stride,message", [
    (2, (2, 2), (2, 1), r"tensor 'w' reaches element 5 of a storage of 4"),
    (0, (10**12,), (0,), r"byte budget .* at tensor 'w', a broadcast view of 1000000000000 elements over a "
                         r"storage of 4"),
    (0, (0, 10**30), (1, 1), r"tensor 'w' is too large to hold in memory"),
    (-1, (1,), (1,), r"tensor 'w' has an invalid layout"),
])
def test_bad_layouts_are_refused(tmp_path, legacy, offset, size, stride, message):
    sd = {"w": _Tensor(_Storage("0", "FloatStorage", np.ones(4, np.float32)), offset, size, stride)}
    with pytest.raises(SpadeError, match=message):
        load_state_dict(write_torch_file(tmp_path / "oob.pth", sd, legacy))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_non_state_dicts_are_refused(tmp_path, legacy):
    tensor = _Tensor(_Storage("0", "FloatStorage", np.ones(2, np.float32)), 0, (2,), (1,))
    cases = {"nested": ({"state_dict": {"w": tensor}, "epoch": 3}, r"entry 'state_dict' holds dict.*"
                        r"checkpoint\['state_dict'\]"),
             "number": ({"w": tensor, "epoch": 3}, r"entry 'epoch' holds int, not a tensor"),
             "single": (tensor, r"holds a single tensor, not a state dict"),
             "list": ([1, 2], r"holds a list, not a state dict")}
    for name, (obj, message) in cases.items():
        with pytest.raises(SpadeError, match=rf"{name}\.pth: {message}"):
            load_state_dict(write_torch_file(tmp_path / f"{name}.pth", obj, legacy))


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(SpadeError, match=r"nothere\.pth: checkpoint file not found"):
        load_state_dict(tmp_path / "nothere.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(SpadeError, match=r"text\.pth: not a PyTorch checkpoint"):
        load_state_dict(tmp_path / "text.pth")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(SpadeError, match=r"plain\.pkl: a pickle, but not a torch\.save checkpoint"):
        load_state_dict(tmp_path / "plain.pkl")


def test_npz_goes_through_the_same_function(tmp_path):
    arrays = {"b.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.count": np.array(0, np.int64)}
    np.savez(tmp_path / "w.npz", **arrays)
    loaded = load_state_dict(tmp_path / "w.npz")
    assert list(loaded) == ["b.weight", "a.count"]
    np.testing.assert_array_equal(loaded["b.weight"], arrays["b.weight"])
    np.savez(tmp_path / "obj.npz", bad=np.array([{"x": 1}], dtype=object))
    with pytest.raises(SpadeError, match=r"obj\.npz: .*needs pickle"):
        load_state_dict(tmp_path / "obj.npz")
