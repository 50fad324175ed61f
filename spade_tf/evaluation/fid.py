"""Fréchet distance and KID between two image sets, with the standard FID Inception or AlexNet features.

* `frechet_distance`: pytorch-fid's formula: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with
  scipy's `sqrtm`, its real part, and a 1e-6 diagonal offset when the square root is not finite.
* `kid`: Kernel Inception Distance (Bińkowski et al. 2018), the unbiased MMD^2 with the cubic
  polynomial kernel k(x, y) = (x.y / d + 1)^3 over random subsets; mean and std over subsets.
* Features: `inception_extractor` (pool3 of pytorch-fid's InceptionV3, 2048-d; the only features
  that give a number called "fid") or `alexnet_extractor` (LPIPS-alex relu5, global-average-pooled,
  256-d; reported as fd_alexnet / kid_alexnet).
* Features of a real image set are cached by content hash (file names, bytes, feature network).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import linalg

from spade_tf.data.images import from_uint8
from spade_tf.errors import SpadeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ALEXNET_INPUT_SIZE = 224  # AlexNet features are size-dependent; real and fake are resized alike
CACHE_VERSION = "1"


# ---- the distances ------------------------------------------------------------------------------
def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (np.cov, ddof 1) of features [N, D], in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise SpadeError(f"need at least 2 feature vectors [N, D] for statistics, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), exactly as pytorch-fid computes it."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise SpadeError(f"feature statistics differ in size: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # scipy warns on singular products (few samples); pytorch-fid goes on the same way.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise SpadeError(f"Fréchet distance: sqrtm has an imaginary component of "
                             f"{np.max(np.abs(covmean.imag)):.3g}; use more images per set")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_low_rank(features_a, features_b) -> float:
    """The same Fréchet distance from the features themselves, without a D x D square root.

    With centred features A [n_a, D], B [n_b, D] and S_a = A'A / (n_a - 1), S_b likewise, the
    eigenvalues of S_a S_b are the squared singular values of A B' / sqrt((n_a - 1)(n_b - 1)), so
    Tr sqrtm(S_a S_b) is that matrix's nuclear norm. Exact, and far cheaper than `sqrtm` when
    there are fewer images than feature dimensions (then the covariances are singular and scipy's
    `sqrtm`, which pytorch-fid uses, is also less accurate).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise SpadeError(f"need two feature sets [N, D] with equal D and N >= 2, got {a.shape} and {b.shape}")
    diff = a.mean(0) - b.mean(0)
    ca, cb = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    cross = (ca @ cb.T) / np.sqrt(na * nb)
    tr_covmean = np.linalg.svd(cross, compute_uv=False).sum()
    return float(diff.dot(diff) + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2 * tr_covmean)


def frechet_distance_from_features(features_a, features_b, method: str = "auto") -> tuple[float, str]:
    """Fréchet distance of two feature sets -> (value, method used).

    method "sqrtm": pytorch-fid's computation (statistics, then `frechet_distance`). "low_rank":
    `frechet_distance_low_rank`. "auto": sqrtm unless both sets have no more vectors than feature
    dimensions (the rank-deficient case, where a 2048 x 2048 sqrtm takes minutes on a CPU).
    """
    a, b = np.asarray(features_a), np.asarray(features_b)
    if method == "auto":
        method = "low_rank" if max(len(a), len(b)) <= a.shape[-1] else "sqrtm"
    if method == "low_rank":
        return frechet_distance_low_rank(a, b), method
    if method == "sqrtm":
        return frechet_distance(*feature_statistics(a), *feature_statistics(b)), method
    raise SpadeError(f"unknown Fréchet method '{method}' (auto, sqrtm, low_rank)")


def polynomial_mmd2_unbiased(x, y) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3; x [m, d], y [n, d], m, n >= 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
                 + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2 * k_xy.sum() / (m * n))


def kid(real_features, fake_features, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int]:
    """KID: mean and std (ddof 0) of the unbiased polynomial MMD^2 over `subsets` random subsets.

    Each subset draws `subset_size` vectors from each set without replacement; the size is capped
    at the smaller set. Returns (mean, std, subset size used).
    """
    real, fake = np.asarray(real_features), np.asarray(fake_features)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise SpadeError(f"KID needs at least 2 images per set, got {len(real)} real and {len(fake)} fake")
    if subsets < 1:
        raise SpadeError(f"--kid-subsets must be >= 1, got {subsets}")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        xi = rng.choice(len(real), size, replace=False)
        yi = rng.choice(len(fake), size, replace=False)
        values.append(polynomial_mmd2_unbiased(real[xi], fake[yi]))
    return float(np.mean(values)), float(np.std(values)), size


# ---- feature extractors -------------------------------------------------------------------------
@dataclass
class FeatureExtractor:
    """uint8 images [B, H, W, 3] -> features [B, dim]. `network` names it in reports;
    `fingerprint` identifies network + weights + preprocessing for the cache."""

    network: str
    dim: int
    fingerprint: str
    fd_key: str
    kid_key: str
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, images_uint8: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(images_uint8), np.float32)


def inception_extractor(weights_path, verify: bool = True) -> FeatureExtractor:
    """pytorch-fid's pool3 features; images go in as uint8 / 255 (as pytorch-fid feeds them)."""
    from spade_tf.backbones.inception import FIDInceptionV3, resolve_inception_weights, sha256_of

    weights_path = resolve_inception_weights(weights_path)
    net = FIDInceptionV3(str(weights_path), verify=verify)
    predict = _compiled(net)
    return FeatureExtractor(
        network="inception-2015-12-05 (pytorch-fid InceptionV3 pool3, 2048-d)", dim=2048,
        fingerprint=f"inception:{sha256_of(weights_path)}", fd_key="fid", kid_key="kid",
        fn=lambda x: predict(np.asarray(x, np.float32) / 255.0))


def alexnet_extractor(weights_path=None) -> FeatureExtractor:
    """LPIPS-alex relu5, global-average-pooled (256-d), on images resized to 224x224 (bilinear)."""
    import keras

    from spade_tf.backbones.alexnet import AlexNetFeatures, resolve_alexnet_weights
    from spade_tf.backbones.inception import sha256_of

    path = resolve_alexnet_weights(weights_path)
    net = AlexNetFeatures(path)

    class _Pooled(keras.layers.Layer):
        def call(self, images):  # uint8-valued float -> [-1, 1], fixed size, relu5 pooled
            x = keras.ops.image.resize(from_uint8(images), (ALEXNET_INPUT_SIZE, ALEXNET_INPUT_SIZE),
                                       interpolation="bilinear", antialias=False)
            return keras.ops.mean(net(x)[4], axis=(1, 2))

    predict = _compiled(_Pooled())
    return FeatureExtractor(
        network=f"alexnet (LPIPS-alex v0.1 / torchvision ImageNet AlexNet relu5, global average pool, 256-d, "
                f"input {ALEXNET_INPUT_SIZE}x{ALEXNET_INPUT_SIZE})", dim=256,
        fingerprint=f"alexnet-relu5-gap-{ALEXNET_INPUT_SIZE}:{sha256_of(path)}", fd_key="fd_alexnet",
        kid_key="kid_alexnet", fn=lambda x: predict(np.asarray(x, np.float32)))


def _compiled(layer):
    """A function running `layer` as a compiled graph (variable image sizes allowed)."""
    import keras

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layer(inputs))
    return lambda x: model.predict_on_batch(x)


# ---- images and features ------------------------------------------------------------------------
def list_images(directory) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise SpadeError(f"image folder not found: {directory}")
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise SpadeError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {directory}")
    return paths


def load_image(path) -> np.ndarray:
    """RGB uint8 [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), np.uint8)
    except OSError as e:
        raise SpadeError(f"cannot read image {path}: {e}") from e


def extract_features(images: Iterable[np.ndarray], extractor: FeatureExtractor, batch_size: int = 32,
                     total: int | None = None, progress: bool = True, desc: str = "features") -> np.ndarray:
    """Features [N, dim] of uint8 images [H, W, 3] (consecutive same-size images are batched)."""
    from tqdm import tqdm

    out, batch = [], []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)

    def flush():
        if batch:
            out.append(extractor(np.stack(batch)))
            bar.update(len(batch))
            batch.clear()

    for image in images:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise SpadeError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            flush()
        batch.append(image)
    flush()
    bar.close()
    if not out:
        raise SpadeError("no images to extract features from")
    return np.concatenate(out)


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~/.cache/spade_tf/fid_stats"))


def content_hash(paths: Sequence[Path], fingerprint: str) -> str:
    """SHA-256 over the feature network's fingerprint and every file's name and bytes."""
    h = hashlib.sha256(f"spade_tf-features-v{CACHE_VERSION}\n{fingerprint}\n".encode())
    for p in paths:
        h.update(p.name.encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def folder_features(directory, extractor: FeatureExtractor, batch_size: int = 32, cache_dir=None,
                    use_cache: bool = True, progress: bool = True, desc: str | None = None) -> np.ndarray:
    """Features of every image in `directory`; cached (by content hash) when use_cache."""
    paths = list_images(directory)
    cache_file = None
    if use_cache:
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        cache_file = cache_dir / f"{content_hash(paths, extractor.fingerprint)}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as f:
                return f["features"]
    feats = extract_features((load_image(p) for p in paths), extractor, batch_size, total=len(paths),
                             progress=progress, desc=desc or f"features {Path(directory).name}")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        mu, sigma = feature_statistics(feats) if len(feats) > 1 else (feats.mean(0), np.zeros(0))
        np.savez(tmp, features=feats, mu=mu, sigma=sigma,
                 meta=np.array(json.dumps({"network": extractor.network, "n": len(feats),
                                           "folder": str(Path(directory).resolve())})))
        os.replace(tmp, cache_file)
    return feats


def distances(real_features, fake_features, extractor: FeatureExtractor, kid_subsets: int = 100,
              kid_subset_size: int = 1000, seed: int = 0, fd_method: str = "auto") -> dict:
    """The Fréchet distance and KID under the extractor's labels (fid/kid or fd_alexnet/kid_alexnet)."""
    fd, fd_method = frechet_distance_from_features(real_features, fake_features, fd_method)
    kid_mean, kid_std, size = kid(real_features, fake_features, kid_subsets, kid_subset_size, seed)
    return {
        extractor.fd_key: fd,
        "fd_method": fd_method,
        extractor.kid_key: kid_mean,
        f"{extractor.kid_key}_std": kid_std,
        "kid_subsets": kid_subsets,
        "kid_subset_size": size,
        "n_real": int(len(real_features)),
        "n_fake": int(len(fake_features)),
        "feature_network": extractor.network,
    }
