"""Fréchet distance (vs pytorch-fid's reference values), KID (hand-computed), feature caching."""

from pathlib import Path

import numpy as np
import pytest

from spade_tf.errors import SpadeError
from spade_tf.evaluation import fid

FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures" / "fid_inception"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "frechet_reference.npz").is_file(),
                                    reason=f"Fréchet reference missing: {FIXTURES}")


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURES / "frechet_reference.npz") as f:
        return {k: f[k] for k in f.files}


@needs_fixtures
def test_statistics_and_frechet_distance_match_pytorch_fid(ref):
    mu_a, sigma_a = fid.feature_statistics(ref["features_a"])
    np.testing.assert_allclose(mu_a, ref["mu_a"], atol=1e-12)
    np.testing.assert_allclose(sigma_a, ref["sigma_a"], atol=1e-12)
    d = fid.frechet_distance(ref["mu_a"], ref["sigma_a"], ref["mu_b"], ref["sigma_b"])
    assert d == pytest.approx(float(ref["fid_ab"]), rel=1e-10)
    value, method = fid.frechet_distance_from_features(ref["features_a"], ref["features_b"])
    assert method == "sqrtm" and value == pytest.approx(float(ref["fid_ab"]), rel=1e-10)
    assert fid.frechet_distance_low_rank(ref["features_a"], ref["features_b"]) == pytest.approx(
        float(ref["fid_ab"]), rel=1e-9)


@needs_fixtures
def test_frechet_distance_rank_deficient_2048d_case(ref):
    with np.load(FIXTURES / "wiring_random_weights.npz") as f:
        a, b = f["pool3_299"], f["pool3_256"]
    value, method = fid.frechet_distance_from_features(a, b)  # 8 vectors of 2048-d: low-rank path
    assert method == "low_rank"
    assert value == pytest.approx(float(ref["wiring_fid_299_vs_256"]), rel=1e-5)


def test_frechet_distance_is_zero_for_identical_and_translation_for_shifted():
    x = np.random.RandomState(0).standard_normal((50, 5))
    mu, sigma = fid.feature_statistics(x)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8)
    shift = np.array([1.0, 2.0, 0, 0, 0])  # same covariance: only ||mu1 - mu2||^2 = 5 remains
    assert fid.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(5.0, abs=1e-7)
    with pytest.raises(SpadeError):
        fid.frechet_distance(mu, sigma, mu[:4], sigma[:4, :4])


def test_kid_unbiased_polynomial_mmd_hand_computed():
    # d = 1, k(a, b) = (a b + 1)^3. X = {0, 1}, Y = {1, 2}:
    # XX off-diagonal: k(0,1) = 1, twice, / (2*1) = 1; YY: k(1,2) = 27, twice, / 2 = 27;
    # XY: 1 + 1 + 8 + 27 = 37, * 2 / 4 = 18.5. MMD^2 = 1 + 27 - 18.5 = 9.5.
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert fid.polynomial_mmd2_unbiased(x, y) == pytest.approx(9.5, abs=1e-12)
    # d = 2: divide by d inside the kernel. X = {(0,0), (2,0)}, Y = {(0,2), (2,2)}.
    # k(x, x') = (x.x'/2 + 1)^3: XX (0,0)-(2,0) -> 1; YY (0,2).(2,2) = 4 -> 27;
    # XY dots: 0, 0, 0, 4 -> 1 + 1 + 1 + 27 = 30. MMD^2 = 1 + 27 - 2 * 30 / 4 = 13.
    x2, y2 = np.array([[0.0, 0], [2, 0]]), np.array([[0.0, 2], [2, 2]])
    assert fid.polynomial_mmd2_unbiased(x2, y2) == pytest.approx(13.0, abs=1e-12)
    # With subset size = set size every subset is the whole set: mean = MMD^2, std = 0.
    mean, std, size = fid.kid(x, y, subsets=5, subset_size=10)
    assert (mean, std, size) == (pytest.approx(9.5), pytest.approx(0.0), 2)


def test_kid_subsets_mean_and_std():
    rs = np.random.RandomState(1)
    real, fake = rs.standard_normal((40, 3)), rs.standard_normal((30, 3)) + 1.5
    mean, std, size = fid.kid(real, fake, subsets=20, subset_size=10, seed=3)
    # Recompute the same subsets by hand.
    rng = np.random.RandomState(3)
    vals = []
    for _ in range(20):
        xi, yi = rng.choice(40, 10, replace=False), rng.choice(30, 10, replace=False)
        vals.append(fid.polynomial_mmd2_unbiased(real[xi], fake[yi]))
    assert size == 10 and mean == pytest.approx(np.mean(vals)) and std == pytest.approx(np.std(vals))
    assert mean > 0.5 and std > 0  # clearly different distributions
    with pytest.raises(SpadeError):
        fid.kid(real[:1], fake)


def _write_images(folder, colors):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(colors):
        Image.fromarray(np.full((8, 8, 3), c, np.uint8)).save(folder / f"{i:03d}.png")


def test_folder_features_cached_by_content_hash(tmp_path):
    calls = []

    def mean_color(batch):
        calls.append(len(batch))
        return batch.reshape(len(batch), -1, 3).mean(1)

    ext = fid.FeatureExtractor("mean colour", 3, "test-mean-colour", "fd_test", "kid_test", mean_color)
    real = tmp_path / "real"
    _write_images(real, [(10, 20, 30), (40, 50, 60), (70, 80, 90)])
    cache = tmp_path / "cache"
    f1 = fid.folder_features(real, ext, batch_size=2, cache_dir=cache, progress=False)
    np.testing.assert_allclose(f1, [[10, 20, 30], [40, 50, 60], [70, 80, 90]])
    assert calls == [2, 1] and len(list(cache.glob("*.npz"))) == 1
    f2 = fid.folder_features(real, ext, cache_dir=cache, progress=False)
    assert calls == [2, 1]  # served from the cache
    np.testing.assert_array_equal(f1, f2)
    _write_images(real, [(10, 20, 30), (40, 50, 60), (71, 80, 90)])  # one pixel value changes
    f3 = fid.folder_features(real, ext, cache_dir=cache, progress=False)
    assert calls == [2, 1, 3] and f3[2, 0] == 71 and len(list(cache.glob("*.npz"))) == 2
    other = fid.FeatureExtractor("other", 3, "another-network", "fd_o", "kid_o", mean_color)
    fid.folder_features(real, other, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 3  # the feature network is part of the key


def test_distances_use_extractor_labels():
    ext = fid.FeatureExtractor("net", 2, "fp", "fd_alexnet", "kid_alexnet", lambda x: x)
    rs = np.random.RandomState(0)
    out = fid.distances(rs.standard_normal((20, 2)), rs.standard_normal((15, 2)), ext, kid_subsets=3,
                        kid_subset_size=10)
    assert {"fd_alexnet", "kid_alexnet", "kid_alexnet_std", "n_real", "n_fake", "feature_network"} <= set(out)
    assert "fid" not in out and "kid" not in out
    assert (out["n_real"], out["n_fake"], out["kid_subset_size"]) == (20, 15, 10)
