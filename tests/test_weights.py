"""spade_tf.weights: path > environment variable > cache > pinned-hash download (+ conversion), and one
clear error for a wrong hash, a truncated file, a missing file, no network and downloading off.

Nothing here reaches the internet: files are served from a loopback HTTP server or a file:// folder.
"""

import collections
import functools
import hashlib
import http.server
import io
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import WEIGHTS_DIR

from spade_tf import weights as W
from spade_tf.errors import SpadeError

SHARED_NPZ = WEIGHTS_DIR / "lpips_alex_v0.1.npz"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SPADE_WEIGHTS_CACHE", str(folder))
    monkeypatch.delenv("SPADE_OFFLINE", raising=False)
    return folder


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/served; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_for(url: str, data: bytes, name="blob.bin", size=True) -> W.WeightSpec:
    src = W.Published(name, url, sha256=sha256(data), size=len(data) if size else None)
    return W.WeightSpec("test weights", name, "SPADE_TEST_WEIGHTS", "--test-weights", (src,))


def assert_names_everything(err: SpadeError, spec: W.WeightSpec, url: str):
    msg = str(err)
    assert spec.sources[0].filename in msg and url in msg
    assert spec.option in msg and spec.env in msg


# ---- order: path, variable, cache, download ---------------------------------------------------------
def test_download_is_checked_cached_and_reused_offline(cache, server, monkeypatch):
    root, base = server
    data = b"weights" * 1000
    (root / "blob.bin").write_bytes(data)
    spec = spec_for(f"{base}/blob.bin", data)
    got = W.resolve(spec)
    assert got == cache / "blob.bin" and got.read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["blob.bin"]  # no partial file left behind
    (root / "blob.bin").unlink()  # the origin is gone; downloading off: the cache still answers
    monkeypatch.setenv("SPADE_OFFLINE", "1")
    assert W.resolve(spec) == got


def test_path_then_variable_then_cache(cache, tmp_path, monkeypatch):
    data = b"cached"
    spec = spec_for("http://127.0.0.1:9/never", data)
    cache.mkdir()
    (cache / "blob.bin").write_bytes(data)
    mine, env = tmp_path / "mine.bin", tmp_path / "env.bin"
    mine.write_bytes(b"mine")
    env.write_bytes(b"env")
    monkeypatch.setenv("SPADE_TEST_WEIGHTS", str(env))
    assert W.resolve(spec, mine) == mine
    assert W.resolve(spec) == env
    monkeypatch.delenv("SPADE_TEST_WEIGHTS")
    assert W.resolve(spec) == cache / "blob.bin"
    with pytest.raises(SpadeError, match="nope.bin") as e:
        W.resolve(spec, tmp_path / "nope.bin")
    assert "--test-weights" in str(e.value)


def test_a_corrupted_cached_file_is_fetched_again(cache, server):
    root, base = server
    data = b"good" * 100
    (root / "blob.bin").write_bytes(data)
    cache.mkdir()
    (cache / "blob.bin").write_bytes(b"good" * 50)  # an earlier truncated copy
    assert W.resolve(spec_for(f"{base}/blob.bin", data)).read_bytes() == data


# ---- failures: one message naming the file, its URL, the option and the variable -------------------
@pytest.mark.parametrize("case", ["wrong_hash", "truncated", "missing", "no_network", "offline"])
def test_failures_are_one_clear_error(cache, server, monkeypatch, case):
    root, base = server
    data = b"the real file" * 100
    url = f"{base}/blob.bin"
    spec = spec_for(url, data, size=case == "truncated")
    if case == "wrong_hash":
        (root / "blob.bin").write_bytes(b"another file" * 100)
        expect = "does not match the pinned"
    elif case == "truncated":
        (root / "blob.bin").write_bytes(data[:-7])
        expect = "truncated"
    elif case == "missing":
        expect = "404"
    elif case == "no_network":
        url = "http://127.0.0.1:9/blob.bin"  # discard port: nothing listens
        spec = spec_for(url, data)
        expect = "refused"
    else:
        monkeypatch.setenv("SPADE_OFFLINE", "1")
        expect = "downloading is off"
    with pytest.raises(SpadeError) as e:
        W.resolve(spec)
    assert expect in str(e.value).lower() or expect in str(e.value)
    assert_names_everything(e.value, spec, url)
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-written is kept


def test_url_base_serves_the_pinned_files_from_a_mirror(cache, tmp_path, monkeypatch):
    """SPADE_WEIGHTS_URL_BASE (a file:// folder here) replaces the origin; the pinned hash still rules."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / W.TORCHVISION_ALEXNET.filename).write_bytes(b"not torchvision's alexnet")
    monkeypatch.setenv("SPADE_WEIGHTS_URL_BASE", mirror.as_uri())
    with pytest.raises(SpadeError) as e:
        W.resolve(W.LPIPS_ALEX)
    msg = str(e.value)
    assert f"{mirror.as_uri()}/{W.TORCHVISION_ALEXNET.filename}" in msg
    assert "got 25 bytes, expected 244,408,911" in msg
    assert "SPADE_ALEXNET_WEIGHTS" in msg and "--alexnet-weights" in msg
    (mirror / W.TORCHVISION_ALEXNET.filename).unlink()
    with pytest.raises(SpadeError, match="alexnet-owt-7be5be79.pth"):  # missing on the mirror
        W.resolve(W.LPIPS_ALEX)


def test_pinned_sources_are_well_formed():
    for spec in W.SPECS.values():
        assert spec.sources
        for src in spec.sources:
            assert src.url.startswith("https://") and src.url.rsplit("/", 1)[1]
            assert (src.sha256 and len(src.sha256) == 64) or (src.md5 and len(src.md5) == 32)
    # torchvision and pytorch-fid publish a SHA-256 prefix in the file name: the pinned hash agrees
    assert W.TORCHVISION_ALEXNET.sha256.startswith("7be5be79")
    assert W.PYTORCH_FID_INCEPTION.sha256.startswith("6726825d")
    assert W.LPIPS_ALEX_HEADS.sha256.startswith("df73285e")


# ---- the AlexNet/LPIPS file made from the published .pth files ---------------------------------------
class _Global:
    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pragma: no cover - only pickled
        raise AssertionError


class _Tensor:
    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array, np.float32)

    def __reduce__(self):
        shape = self.array.shape
        stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self, 0, shape, stride, False, collections.OrderedDict()))


class _Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[_Global] = lambda self, g: self.write(pickle.GLOBAL + f"{g.module}\n{g.name}\n".encode())

    def persistent_id(self, obj):
        if isinstance(obj, _Tensor) and getattr(self, "_in_tensor", None) is obj:
            return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.array.size)
        return None

    def save_reduce(self, func, args, *rest, **kw):
        if isinstance(func, _Global) and args and isinstance(args[0], _Tensor):
            self._in_tensor = args[0]
        return super().save_reduce(func, args, *rest, **kw)


def write_pth(path: Path, state: dict) -> bytes:
    """A state dict in torch.save's zip layout (float32), without torch."""
    tensors = collections.OrderedDict((k, _Tensor(str(i), v)) for i, (k, v) in enumerate(state.items()))
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(tensors)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for t in tensors.values():
            zf.writestr(f"archive/data/{t.key}", t.array.tobytes())
    return path.read_bytes()


def lpips_arrays():
    """The shared reference file's arrays when present, else random arrays of the right shapes."""
    if SHARED_NPZ.is_file():
        with np.load(SHARED_NPZ) as f:
            return {k: f[k] for k in f.files}
    rs = np.random.RandomState(0)
    shapes = {"features.0": (64, 3, 11, 11), "features.3": (192, 64, 5, 5), "features.6": (384, 192, 3, 3),
              "features.8": (256, 384, 3, 3), "features.10": (256, 256, 3, 3)}
    out = {}
    for k, s in shapes.items():
        out[f"{k}.weight"] = rs.standard_normal(s).astype(np.float32)
        out[f"{k}.bias"] = rs.standard_normal(s[0]).astype(np.float32)
    for i, c in enumerate((64, 192, 384, 256, 256)):
        out[f"lin{i}.weight"] = rs.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
    out["scaling.shift"], out["scaling.scale"] = W.LPIPS_SHIFT, W.LPIPS_SCALE
    return out


def test_lpips_alex_npz_is_made_once_from_the_published_files(cache, server, monkeypatch):
    """torchvision-layout AlexNet + LPIPS-layout heads, served and hash-checked, become our npz."""
    root, base = server
    arrays = lpips_arrays()
    trunk = {k: v for k, v in arrays.items() if k.startswith("features.")}
    trunk["classifier.6.bias"] = np.zeros(1000, np.float32)  # torchvision's file has more than we use
    heads = {f"lin{i}.model.1.weight": arrays[f"lin{i}.weight"] for i in range(5)}
    a = write_pth(root / W.TORCHVISION_ALEXNET.filename, trunk)
    h = write_pth(root / W.LPIPS_ALEX_HEADS.filename, heads)
    spec = W.WeightSpec(
        "AlexNet/LPIPS weights", "lpips_alex_v0.1.npz", "SPADE_ALEXNET_WEIGHTS", "--alexnet-weights",
        (W.Published(W.TORCHVISION_ALEXNET.filename, "https://example.invalid/a", sha256=sha256(a)),
         W.Published(W.LPIPS_ALEX_HEADS.filename, "https://example.invalid/h", sha256=sha256(h))),
        build=W.convert_lpips_alex)
    monkeypatch.setattr(W, "LPIPS_ALEX", spec)
    monkeypatch.setenv("SPADE_WEIGHTS_URL_BASE", base)
    from spade_tf.backbones.alexnet import load_alexnet_npz

    got = load_alexnet_npz()  # no path, no variable, empty cache: fetched and converted
    assert (cache / "lpips_alex_v0.1.npz").is_file()
    assert set(got) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k], err_msg=k)
    # converted once: the origin is gone, and the cached npz answers
    for p in root.iterdir():
        p.unlink()
    monkeypatch.setenv("SPADE_OFFLINE", "1")
    assert set(load_alexnet_npz()) == set(arrays)
