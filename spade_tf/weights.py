"""Every pretrained weight file spade-tf uses, found one way (as Keras applications find theirs).

`resolve(SPEC, path)` returns a local file, trying in order:

1. `path` (a command-line option such as `--alexnet-weights`, or a Python argument);
2. the spec's environment variable (`SPADE_ALEXNET_WEIGHTS`, `SPADE_VGG19_WEIGHTS`,
   `SPADE_INCEPTION_WEIGHTS`);
3. the cache: `$SPADE_WEIGHTS_CACHE`, else `$KERAS_HOME/models`, else `~/.keras/models` (Keras's own
   cache folder, so a VGG19 file Keras downloaded earlier is found);
4. the published files, downloaded into the cache and checked against a pinned hash (SHA-256,
   or the MD5 Keras publishes for its VGG19), then converted once to the file we load (AlexNet/LPIPS:
   torchvision's AlexNet + the LPIPS v0.1 heads -> `lpips_alex_v0.1.npz`) and cached.

Downloading is off when `allow_download=False` (`spade train --no-download`) or `SPADE_OFFLINE=1`.
`SPADE_WEIGHTS_URL_BASE=URL` fetches every published file from `URL/<file name>` instead of its
origin (a mirror, a `file://` folder, a loopback server in the tests).

Any failure (no network, HTTP error, a truncated download, a wrong hash, downloading off) is one
`SpadeError` naming the file, its URL, its hash, the option and the environment variable.

Where the pinned hashes come from (checked when this module was written):

* torchvision AlexNet (`alexnet-owt-7be5be79.pth`, 244,408,911 bytes): torchvision publishes the
  first 8 hex digits of the SHA-256 in the file name (`torch.hub` checks that prefix). The full
  SHA-256 below is the one several independent public projects record for that URL (it starts with
  the published prefix); it could not be recomputed here (the file is not reachable from this
  machine), so the prefix is the part upstream vouches for.
* LPIPS v0.1 heads (`lpips/weights/v0.1/alex.pth`, 6,009 bytes): recomputed here from the file in
  the richzhang/PerceptualSimilarity repository at the pinned commit; its five heads are
  bit-identical to those in the project developers' reference `lpips_alex_v0.1.npz`.
* pytorch-fid Inception (`pt_inception-2015-12-05-6726825d.pth`, 95,628,359 bytes): the name carries
  the SHA-256 prefix (pytorch-fid's loader checks it); the full SHA-256 below is the one recorded by
  several public projects for that release asset, including one that pins it next to this exact
  URL; not recomputed here (file not reachable).
* Keras VGG19 without top: Keras publishes only an MD5 (`file_hash` in
  `keras/src/applications/vgg19.py`), so that is what is checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError

CACHE_ENV = "SPADE_WEIGHTS_CACHE"
URL_BASE_ENV = "SPADE_WEIGHTS_URL_BASE"
OFFLINE_ENV = "SPADE_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class Published:
    """One file as its authors publish it."""

    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None  # only where upstream publishes nothing better (Keras's VGG19)
    size: int | None = None

    def digest_name(self) -> str:
        return f"SHA-256 {self.sha256}" if self.sha256 else f"MD5 {self.md5}"


@dataclass(frozen=True)
class WeightSpec:
    """A weight file the package loads, and how to get it."""

    name: str
    filename: str  # the file we load (also its name in the cache)
    env: str
    option: str  # how a user passes it
    sources: tuple[Published, ...]
    build: Callable[[list[Path], Path], None] | None = field(default=None, compare=False)

    def where_to_pass(self) -> str:
        return f"pass it with {self.option} or set the environment variable {self.env}"


# ---- the published files -------------------------------------------------------------------------
TORCHVISION_ALEXNET = Published(
    "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", size=244_408_911)
LPIPS_REPO_COMMIT = "082bb24f84c091ea94de2867d34c4544f68e0963"
LPIPS_ALEX_HEADS = Published(
    "lpips_v0.1_alex-df73285e.pth",
    f"https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/{LPIPS_REPO_COMMIT}/"
    "lpips/weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", size=6_009)
PYTORCH_FID_INCEPTION = Published(
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359)
KERAS_VGG19_NOTOP = Published(
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    md5="253f8cb515780f3b799900260a226db6")

# LPIPS's input scaling (constants in the LPIPS code, `ScalingLayer`), stored in our .npz.
LPIPS_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
LPIPS_SCALE = np.array([0.458, 0.448, 0.450], np.float32)
ALEXNET_FEATURE_INDICES = (0, 3, 6, 8, 10)


def convert_lpips_alex(sources: list[Path], out: Path) -> None:
    """torchvision's AlexNet .pth + LPIPS's v0.1 alex.pth -> our `lpips_alex_v0.1.npz`.

    Keys: features.{0,3,6,8,10}.{weight,bias} (OIHW, from torchvision), lin{0..4}.weight ([1, C, 1, 1],
    LPIPS's `lin{i}.model.1.weight`), scaling.shift / scaling.scale. The files are read with the
    package's safe .pth reader (no pickle code runs).
    """
    from spade_tf.pth import load_state_dict

    alexnet_pth, heads_pth = sources
    trunk = load_state_dict(alexnet_pth)
    heads = load_state_dict(heads_pth)
    arrays = {}
    for i in ALEXNET_FEATURE_INDICES:
        for p in ("weight", "bias"):
            key = f"features.{i}.{p}"
            if key not in trunk:
                raise SpadeError(f"{alexnet_pth}: no tensor '{key}'; is this torchvision's AlexNet?")
            arrays[key] = np.asarray(trunk[key], np.float32)
    for i in range(5):
        key = f"lin{i}.model.1.weight"
        if key not in heads:
            raise SpadeError(f"{heads_pth}: no tensor '{key}'; is this LPIPS's weights/v0.1/alex.pth?")
        arrays[f"lin{i}.weight"] = np.asarray(heads[key], np.float32)
    arrays["scaling.shift"], arrays["scaling.scale"] = LPIPS_SHIFT, LPIPS_SCALE
    from spade_tf.backbones.alexnet import check_alexnet_arrays

    check_alexnet_arrays(arrays, str(out))
    np.savez(out, **arrays)


LPIPS_ALEX = WeightSpec(
    "AlexNet/LPIPS weights", "lpips_alex_v0.1.npz", "SPADE_ALEXNET_WEIGHTS",
    "--alexnet-weights (spade evaluate) or --perceptual-weights (spade train)",
    (TORCHVISION_ALEXNET, LPIPS_ALEX_HEADS), build=convert_lpips_alex)
VGG19_NOTOP = WeightSpec(
    "Keras VGG19 weights", KERAS_VGG19_NOTOP.filename, "SPADE_VGG19_WEIGHTS",
    "--vgg-weights (spade train)", (KERAS_VGG19_NOTOP,))
FID_INCEPTION = WeightSpec(
    "FID Inception weights", PYTORCH_FID_INCEPTION.filename, "SPADE_INCEPTION_WEIGHTS",
    "--inception-weights (spade evaluate)", (PYTORCH_FID_INCEPTION,))
SPECS = {"alexnet": LPIPS_ALEX, "vgg19": VGG19_NOTOP, "inception": FID_INCEPTION}


# ---- resolving ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """`$SPADE_WEIGHTS_CACHE`, else `$KERAS_HOME/models`, else `~/.keras/models` (as Keras)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    if not os.access(base if base.exists() else base.parent, os.W_OK):
        base = Path(tempfile.gettempdir()) / ".keras"  # Keras's own fallback
    return base / "models"


def downloads_allowed(allow_download: bool = True) -> bool:
    return allow_download and os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes")


def resolve(spec: WeightSpec, path: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The local file for `spec`: path, else its environment variable, else the cache, else download."""
    if path:
        return _existing(spec, Path(path).expanduser(), "given")
    if os.environ.get(spec.env):
        return _existing(spec, Path(os.environ[spec.env]).expanduser(), f"${spec.env}")
    target = cache_dir() / spec.filename
    if target.is_file() and (spec.build is not None or _matches(spec.sources[0], target)):
        return target
    if not downloads_allowed(allow_download):
        raise SpadeError(f"{spec.name}: {spec.filename} is not in the cache ({target.parent}) and "
                         f"downloading is off. {_how_to_get(spec)}")
    fetched = [fetch(spec, src) for src in spec.sources]
    if spec.build is None:
        return fetched[0]
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.npz")
    try:
        spec.build(fetched, tmp)
        os.replace(tmp, target)  # atomic: a cached file is always a complete one
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _existing(spec: WeightSpec, path: Path, how: str) -> Path:
    if not path.is_file():
        raise SpadeError(f"{spec.name}: {path} ({how}) does not exist. {_how_to_get(spec)}")
    return path


def _how_to_get(spec: WeightSpec) -> str:
    files = "; ".join(f"{s.filename} from {source_url(s)} ({s.digest_name()})" for s in spec.sources)
    made = (f", from which {spec.filename} is made once (spade_tf.weights.{spec.build.__name__})"
            if spec.build else "")
    return (f"It needs {files}{made}. Either {spec.where_to_pass()}, or put the published file(s) in "
            f"{cache_dir()} (checked by their hash), or allow downloading (no --no-download, "
            f"{OFFLINE_ENV} unset) on a machine that reaches the URL.")


def source_url(src: Published) -> str:
    base = os.environ.get(URL_BASE_ENV)
    return f"{base.rstrip('/')}/{src.filename}" if base else src.url


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _matches(src: Published, path: Path) -> bool:
    if src.size is not None and path.stat().st_size != src.size:
        return False
    if src.sha256:
        return file_digest(path, "sha256") == src.sha256
    return file_digest(path, "md5") == src.md5


def fetch(spec: WeightSpec, src: Published) -> Path:
    """`src` in the cache, downloaded (and checked) when absent or not matching its hash."""
    folder = cache_dir()
    target = folder / src.filename
    if target.is_file() and _matches(src, target):
        return target
    url = source_url(src)

    def fail(reason: str) -> SpadeError:
        return SpadeError(f"{spec.name}: could not get {src.filename} from {url}: {reason}. "
                          + _how_to_get(spec))

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fail(f"cannot create the cache folder {folder} ({e})") from e
    part = folder / f".{src.filename}.{os.getpid()}.part"
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r, open(part, "wb") as out:
            total = src.size or int(r.headers.get("Content-Length") or 0) or None
            bar = _progress(total, src.filename)
            while block := r.read(1 << 20):
                out.write(block)
                sha.update(block)
                md5.update(block)
                n += len(block)
                bar.update(len(block))
            bar.close()
        if src.size is not None and n != src.size:
            raise fail(f"got {n:,} bytes, expected {src.size:,} (a truncated or different file)")
        if src.sha256 and sha.hexdigest() != src.sha256:
            raise fail(f"SHA-256 {sha.hexdigest()} does not match the pinned {src.sha256} "
                       "(a truncated, corrupted or different file)")
        if not src.sha256 and md5.hexdigest() != src.md5:
            raise fail(f"MD5 {md5.hexdigest()} does not match the pinned {src.md5} "
                       "(a truncated, corrupted or different file)")
        os.replace(part, target)
    except SpadeError:
        raise
    except urllib.error.HTTPError as e:
        raise fail(f"HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:  # no network, HTTP error, timeout, bad URL
        raise fail(str(getattr(e, "reason", None) or e)) from e
    finally:
        part.unlink(missing_ok=True)
    return target


def _progress(total, name):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", leave=False,
                    disable=None)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass

        return _Null()


# ---- tensor digests (what a converted .npz is checked by) ------------------------------------------
def tensor_digest(arrays: dict) -> str:
    """SHA-256 over the tensors themselves: sorted names, each with dtype, shape and little-endian bytes.

    The same tensors give the same digest whatever file they came from (.pth or .npz, any zip
    layout), and a file cannot vouch for itself: nothing the file says about itself is read.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}\0{a.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def copy_into_cache(path: str | os.PathLike) -> Path:
    """Put a published file you downloaded yourself into the cache (it is checked when used)."""
    target = cache_dir() / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target
