"""Denoisers against independent truth: Tweedie by autograd, scipy densities, quadrature, naive softmax."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

import diffusion_geometry as dg
from diffusion_geometry.denoisers import EDMPrecond, EmpiricalDenoiser, GaussianMixture, sigma_like

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64
SIGMAS = [0.002, 0.02, 0.2, 1.0, 5.0, 80.0]


def _mixtures() -> dict[str, GaussianMixture]:
    """One mixture per covariance kind, d = 3, K = 3, unequal weights (seeded)."""
    g = torch.Generator().manual_seed(0)
    K, d = 3, 3
    means = torch.randn(K, d, generator=g, dtype=F64) * 2
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    A = torch.randn(K, d, d, generator=g, dtype=F64)
    full = A @ A.transpose(-1, -2) * 0.3 + 0.05 * torch.eye(d, dtype=F64)
    U = torch.randn(K, d, 1, generator=g, dtype=F64)
    return {
        "iso": GaussianMixture(means, torch.tensor([0.1, 0.4, 0.02], dtype=F64), weights),
        "diag": GaussianMixture(means, torch.rand(K, d, generator=g, dtype=F64) * 0.5 + 0.01, weights),
        "full": GaussianMixture(means, full, weights),
        "low_rank": GaussianMixture.low_rank(means, U, 0.01, weights),
    }


MIXTURES = _mixtures()


def _queries(gm: GaussianMixture, sigma: float, n: int = 16, seed: int = 1) -> torch.Tensor:
    return gm.sample(n, sigma, generator=torch.Generator().manual_seed(seed))


# ================================================================================================
# GaussianMixture
# ================================================================================================


@pytest.mark.parametrize("kind", list(MIXTURES))
@pytest.mark.parametrize("sigma", SIGMAS)
def test_tweedie_by_autograd(kind, sigma):
    """D(x; s) = x + s^2 grad_x log p_s(x), with the gradient from autograd through log_prob."""
    gm = MIXTURES[kind]
    x = _queries(gm, sigma).requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
    x = x.detach()
    D = gm.denoise(x, sigma)
    tweedie = x + sigma**2 * grad
    err = (D - tweedie).abs().max().item()
    print(f"{kind} sigma={sigma}: max |D - Tweedie| = {err:.2e}")
    assert err < 1e-10
    assert torch.allclose(gm.score(x, sigma), grad, rtol=1e-10, atol=1e-10 / sigma**2)


@pytest.mark.parametrize("kind", list(MIXTURES))
@pytest.mark.parametrize("sigma", [0.0, 0.05, 1.0, 80.0])
def test_log_prob_matches_scipy(kind, sigma):
    gm = MIXTURES[kind]
    x = _queries(gm, sigma, seed=2)
    cov = gm.covariances.numpy()
    K, d = gm.means.shape
    if gm.kind == "iso":
        covs = [c * np.eye(d) for c in cov]
    elif gm.kind == "diag":
        covs = [np.diag(c) for c in cov]
    else:
        covs = list(cov)
    comps = [stats.multivariate_normal(gm.means[k].numpy(), covs[k] + sigma**2 * np.eye(d)).logpdf(x.numpy())
             for k in range(K)]
    expect = logsumexp(np.stack(comps, 1) + np.log(gm.weights.numpy()), axis=1)
    got = gm.log_prob(x, sigma).numpy()
    assert np.allclose(got, expect, rtol=1e-12, atol=1e-10)


def test_responsibilities_are_a_posterior():
    gm = MIXTURES["full"]
    x = _queries(gm, 0.5)
    r = gm.responsibilities(x, 0.5)
    assert r.shape == (16, 3) and (r >= 0).all()
    assert torch.allclose(r.sum(1), torch.ones(16, dtype=F64), atol=1e-14)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_1d_denoiser_equals_quadrature(sigma):
    """Posterior mean by numerical integration over the clean value y (trapezoid rule on a fine grid,
    spectrally accurate for these smooth, fast-decaying integrands):
    D(x) = int y p0(y) N(x; y, s^2) dy / int p0(y) N(x; y, s^2) dy."""
    gm = dg.datasets.mixture_1d()
    mu, sd, w = gm.means[:, 0].numpy(), np.sqrt(gm.covariances.numpy()), gm.weights.numpy()
    y = np.linspace(-12.0, 14.0, 400_001)
    p0 = sum(w[k] * np.exp(-0.5 * ((y - mu[k]) / sd[k]) ** 2) / sd[k] for k in range(3))
    xs = np.array([-2.5, -0.3, 0.7, 1.6, 3.9])
    kern = p0[None] * np.exp(-0.5 * ((xs[:, None] - y[None]) / sigma) ** 2)  # (5, grid)
    expect = np.trapezoid(y[None] * kern, y, axis=1) / np.trapezoid(kern, y, axis=1)
    got = gm.denoise(torch.tensor(xs[:, None], dtype=F64), sigma)[:, 0].numpy()
    print(f"sigma={sigma}: max |D - quadrature| = {np.abs(got - expect).max():.2e}")
    assert np.allclose(got, expect, rtol=0, atol=1e-10)


def _mixture_moments(gm: GaussianMixture, sigma: float):
    K, d = gm.means.shape
    if gm.kind == "iso":
        covs = gm.covariances[:, None, None] * torch.eye(d, dtype=F64)
    elif gm.kind == "diag":
        covs = torch.diag_embed(gm.covariances)
    else:
        covs = gm.covariances
    w = gm.weights
    mean = (w[:, None] * gm.means).sum(0)
    second = (w[:, None, None] * (covs + gm.means[:, :, None] * gm.means[:, None, :])).sum(0)
    return mean, second - torch.outer(mean, mean) + sigma**2 * torch.eye(d, dtype=F64)


@pytest.mark.parametrize("kind", list(MIXTURES))
@pytest.mark.parametrize("sigma", [0.0, 0.7])
def test_sample_moments(kind, sigma):
    """Sample mean and covariance within 5 standard errors of the exact mixture moments."""
    gm = MIXTURES[kind]
    n = 200_000
    x = gm.sample(n, sigma, generator=torch.Generator().manual_seed(3))
    assert x.shape == (n, gm.dim) and x.dtype == F64
    mean, cov = _mixture_moments(gm, sigma)
    se_mean = (cov.diagonal() / n).sqrt()
    z_mean = ((x.mean(0) - mean) / se_mean).abs().max().item()
    # Gaussian approximation of the standard error of a covariance entry, inflated 2x for the mixture
    se_cov = 2 * ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    z_cov = ((torch.cov(x.T) - cov) / se_cov).abs().max().item()
    print(f"{kind}: max z of mean {z_mean:.2f}, of covariance {z_cov:.2f}")
    assert z_mean < 5 and z_cov < 5


def test_sample_component_frequencies_follow_weights():
    gm = GaussianMixture(torch.tensor([[-10.0], [0.0], [10.0]], dtype=F64), 0.01, [1.0, 2.0, 7.0])
    x = gm.sample(50_000, generator=torch.Generator().manual_seed(4))[:, 0]
    freq = torch.stack([(x < -5).double().mean(), ((x > -5) & (x < 5)).double().mean(), (x > 5).double().mean()])
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7], dtype=F64), atol=5 * math.sqrt(0.25 / 50_000))


def test_singular_low_rank_samples_lie_on_the_affine_subspace():
    g = torch.Generator().manual_seed(5)
    means = torch.randn(2, 4, generator=g, dtype=F64)
    U = torch.randn(2, 4, 2, generator=g, dtype=F64)
    gm = GaussianMixture.low_rank(means, U, 0.0)
    x = gm.sample(500, generator=g)
    # each sample minus its nearest mean is in the span of that component's U
    resid = []
    for k in range(2):
        P = U[k] @ torch.linalg.pinv(U[k])
        r = (x - means[k]) - (x - means[k]) @ P.T
        resid.append(r.norm(dim=1))
    assert torch.stack(resid).min(0).values.max() < 1e-10
    # and the denoiser at sigma > 0 is still exact (Tweedie)
    q = gm.sample(8, 0.3, generator=g).requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(q, 0.3).sum(), q)
    assert torch.allclose(gm(q.detach(), 0.3), q.detach() + 0.09 * grad, atol=1e-10)


def test_per_sample_sigma_equals_one_at_a_time():
    gm = MIXTURES["full"]
    x = _queries(gm, 1.0, n=5)
    s = torch.tensor([0.01, 0.1, 1.0, 10.0, 80.0], dtype=F64)
    batched = gm.denoise(x, s)
    single = torch.cat([gm.denoise(x[i : i + 1], s[i].item()) for i in range(5)])
    assert torch.allclose(batched, single, rtol=1e-13, atol=1e-13)
    assert torch.allclose(gm.log_prob(x, s), torch.cat([gm.log_prob(x[i : i + 1], s[i]) for i in range(5)]))


def test_float32_mixture_keeps_float32():
    gm = GaussianMixture(torch.zeros(2, 3), torch.tensor([0.5, 1.0]))
    x = torch.randn(4, 3)
    for out in (gm(x, 0.5), gm.score(x, 0.5), gm.log_prob(x, 0.5), gm.sample(3)):
        assert out.dtype == torch.float32


def test_gaussian_mixture_bad_input():
    m = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"means must have shape \(K, d\)"):
        GaussianMixture(torch.zeros(3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match=r"means must have shape \(K, d\)"):
        GaussianMixture(torch.zeros(0, 3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="covariances must have shape"):
        GaussianMixture(m, torch.ones(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="isotropic variances must be non-negative"):
        GaussianMixture(m, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="diagonal variances must be non-negative"):
        GaussianMixture(m, -torch.ones(2, 3))
    asym = torch.eye(3, dtype=F64).repeat(2, 1, 1)
    asym[0, 0, 1] = 0.5
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixture(m, asym)
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianMixture(m, -torch.eye(3, dtype=F64).repeat(2, 1, 1))
    with pytest.raises(ValueError, match="weights must be 2 positive numbers"):
        GaussianMixture(m, 1.0, [1.0, 0.0])
    with pytest.raises(ValueError, match="weights must be 2 positive numbers"):
        GaussianMixture(m, 1.0, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"factors must have shape \(K, d, r\)"):
        GaussianMixture.low_rank(m, torch.ones(2, 4, 1, dtype=F64), 0.1)


def test_gaussian_mixture_bad_queries():
    gm = MIXTURES["iso"]
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\)"):
        gm(torch.zeros(4, 2, dtype=F64), 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\)"):
        gm.log_prob(torch.zeros(3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\)"):
        gm.score([[0.0, 0.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match="finite and non-negative"):
        gm(torch.zeros(4, 3, dtype=F64), -1.0)
    with pytest.raises(ValueError, match="finite and non-negative"):
        gm(torch.zeros(4, 3, dtype=F64), float("nan"))
    with pytest.raises(ValueError, match=r"sigma must be a scalar or have shape \(batch,\)"):
        gm(torch.zeros(4, 3, dtype=F64), torch.ones(3))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        gm.sample(0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        gm.sample(2.5)
    with pytest.raises(ValueError, match="sigma must be non-negative"):
        gm.sample(3, -0.1)


@pytest.mark.parametrize("cov", [torch.tensor([0.0, 1.0]), torch.zeros(2, 2), torch.zeros(2, 2, 2)])
def test_degenerate_component_at_sigma_zero_is_an_error_not_nan(cov):
    """Regression: a zero-variance component at sigma = 0 gave silent NaN (now a clear ValueError)."""
    gm = GaussianMixture(torch.zeros(2, 2, dtype=F64), cov.to(F64))
    x = torch.ones(3, 2, dtype=F64)
    for fn in (gm.denoise, gm.log_prob, gm.score):
        with pytest.raises(ValueError, match="singular"):
            fn(x, 0.0)
        assert torch.isfinite(fn(x, 0.1)).all()


# -- 1-D distribution function and quantiles ---------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 0.8])
def test_one_component_cdf_and_quantile_are_scipy_norm(sigma):
    """One component: F = scipy.stats.norm.cdf to round-off in both tails (the naive
    (1 + erf) / 2 is 0 below about -8.3 standard deviations), and the quantile is norm.ppf exactly."""
    gm = GaussianMixture(torch.tensor([[0.7]], dtype=F64), [2.25])
    ref = stats.norm(0.7, math.sqrt(2.25 + sigma**2))
    x = np.linspace(-60, 60, 4001)
    got, want = gm.cdf(x, sigma).numpy(), ref.cdf(x)
    t = (x - 0.7) / math.sqrt(2.25 + sigma**2)
    tail = want > 0  # scipy underflows to 0 below about -38.5 standard deviations
    rel = np.abs(got - want)[tail] / want[tail]
    print("largest error: absolute", np.abs(got - want).max(), "relative", rel.max())
    assert np.abs(got - want).max() <= 2.3e-16  # one ulp of a value in [0.5, 1)
    # relative error of a rounded argument t: about t^2 eps in the lower tail
    assert (rel <= 4 * (1 + t[tail] ** 2) * np.finfo(np.float64).eps).all()
    assert np.all(got[~tail] < 1e-300)
    p = np.concatenate([[1e-300, 1e-100, 1e-20, 1e-9], np.linspace(1e-6, 1 - 1e-6, 999), [1 - 1e-12]])
    assert np.array_equal(gm.quantile(p, sigma).numpy(), ref.ppf(p))
    assert gm.cdf(0.7, sigma).shape == () and gm.cdf(0.7, sigma).item() == 0.5


def _two_components() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[-1.0], [2.0]], dtype=F64), torch.tensor([0.2, 1.0], dtype=F64), [0.3, 0.7])


def test_two_component_quantile_inverts_cdf():
    gm = _two_components()
    p = np.concatenate([[1e-200, 1e-20, 1e-9], np.linspace(1e-6, 1 - 1e-6, 501), [1 - 1e-9, 1 - 1e-13]])
    sig = torch.tensor([0.0, 0.05, 0.5, 3.0, 80.0], dtype=F64)[:, None]
    q = gm.quantile(torch.from_numpy(p)[None, :], sig)  # (5, 507): sigma broadcasts with p
    assert q.shape == (5, len(p)) and q.dtype == F64
    back = gm.cdf(q, sig).numpy()
    err = np.abs(back - p)
    print("max |F(F^-1(p)) - p|", err.max(), "max relative below p = 1e-6", (err / p)[:, :4].max())
    assert err.max() <= 1e-12
    assert (err / p)[:, :4].max() <= 1e-12  # the lower tail to relative accuracy too
    assert (np.diff(q.numpy(), axis=1) > 0).all()  # increasing in p
    one = torch.stack([gm.quantile(p[7], s.item()) for s in sig[:, 0]])  # one at a time = vectorised
    assert torch.equal(one, q[:, 7])
    # the median of a symmetric pair of components is their midpoint
    sym = GaussianMixture(torch.tensor([[-3.0], [5.0]], dtype=F64), [0.5, 0.5])
    assert sym.quantile(0.5, 1.0).item() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 2.0])
def test_two_component_cdf_is_the_integral_of_the_density(sigma):
    from scipy.integrate import quad

    gm = _two_components()

    def density(t):
        return gm.log_prob(torch.tensor([[t]], dtype=F64), sigma).exp().item()

    xs = [-4.0, -1.0, 0.3, 2.0, 5.5]
    got = gm.cdf(torch.tensor(xs, dtype=F64), sigma)
    for x, g in zip(xs, got.tolist()):
        want, abserr = quad(density, -np.inf, x, epsabs=1e-14, epsrel=1e-13, limit=200)
        assert g == pytest.approx(want, abs=1e-12 + 10 * abserr), x


def test_cdf_and_quantile_bad_input():
    gm = _two_components()
    with pytest.raises(ValueError, match="1-D mixtures only"):
        MIXTURES["iso"].cdf(0.0)
    with pytest.raises(ValueError, match="1-D mixtures only"):
        MIXTURES["full"].quantile(0.5)
    for p in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
            gm.quantile(torch.tensor([0.5, p], dtype=F64))
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma must be finite and non-negative"):
            gm.cdf(0.0, bad)
        with pytest.raises(ValueError, match="sigma must be finite and non-negative"):
            gm.quantile(0.5, bad)
    with pytest.raises(ValueError, match="does not broadcast"):
        gm.cdf(torch.zeros(3), torch.ones(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        gm.cdf(torch.tensor([0.0, float("nan")]))
    with pytest.raises(TypeError, match="x must be a number"):
        gm.cdf("0.5")
    point = GaussianMixture(torch.tensor([[0.0], [1.0]], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="zero variance"):
        point.cdf(0.5)
    assert 0 < point.cdf(0.5, 0.1).item() < 1


# ================================================================================================
# EmpiricalDenoiser
# ================================================================================================


def _naive(data: torch.Tensor, x: torch.Tensor, sigma):
    """Float64 reference: explicit differences, softmax over all N points, KDE log-density."""
    y = data.reshape(len(data), -1).to(F64)
    q = x.reshape(len(x), -1).to(F64)
    s = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1)
    logits = -((q[:, None, :] - y[None]) ** 2).sum(-1) / (2 * s**2)  # (B, N)
    w = torch.softmax(logits, dim=1)
    d = y.shape[1]
    logp = torch.logsumexp(logits, 1) - math.log(len(y)) - d * (torch.log(s[:, 0]) + 0.5 * math.log(2 * math.pi))
    return (w @ y).reshape(x.shape), logp


@pytest.fixture(scope="module")
def toy_data():
    g = torch.Generator().manual_seed(10)
    return torch.rand(500, 2, 3, 2, generator=g, dtype=F64) * 2 - 1  # N = 500 points of shape (2, 3, 2)


@pytest.mark.parametrize("sigma", np.geomspace(0.002, 80, 9).tolist())
@pytest.mark.parametrize("chunk", [37, 4096])
def test_empirical_denoiser_equals_naive_softmax(toy_data, sigma, chunk):
    den = EmpiricalDenoiser(toy_data, chunk_size=chunk)
    g = torch.Generator().manual_seed(11)
    idx = torch.randint(0, len(toy_data), (12,), generator=g)
    # noisy training points (the sampling situation) plus far-away and in-between queries
    x = torch.cat([toy_data[idx] + sigma * torch.randn(12, 2, 3, 2, generator=g, dtype=F64),
                   3 * torch.randn(4, 2, 3, 2, generator=g, dtype=F64)])
    D_ref, logp_ref = _naive(toy_data, x, sigma)
    D = den(x, sigma)
    assert D.shape == x.shape and D.dtype == F64
    err = (D - D_ref).abs().max().item()
    print(f"sigma={sigma:.4g} chunk={chunk}: max |D - naive| = {err:.2e}")
    assert err < 1e-10
    logp = den.log_prob(x, sigma)
    assert torch.allclose(logp, logp_ref, rtol=1e-12, atol=1e-9)


def test_empirical_denoiser_per_sample_sigma(toy_data):
    den = EmpiricalDenoiser(toy_data, chunk_size=64)
    s = torch.tensor(np.geomspace(0.002, 80, 7), dtype=F64)
    x = toy_data[:7] + s.reshape(-1, 1, 1, 1) * torch.randn(7, 2, 3, 2, generator=torch.Generator().manual_seed(12), dtype=F64)
    D_ref, logp_ref = _naive(toy_data, x, s)
    assert (den(x, s) - D_ref).abs().max() < 1e-10
    assert torch.allclose(den.log_prob(x, s), logp_ref, rtol=1e-12, atol=1e-9)


def test_empirical_denoiser_limits(toy_data):
    """Large sigma: the data mean. Small sigma at a training point: that point."""
    den = EmpiricalDenoiser(toy_data)
    x = toy_data[:5]
    assert torch.allclose(den(x, 1e4), toy_data.mean(0).expand_as(x), atol=1e-6)
    assert torch.allclose(den(x, 1e-3), x, atol=1e-12)


@pytest.mark.parametrize("k", [1, 5])
def test_nearest_equals_brute_force(toy_data, k):
    den = EmpiricalDenoiser(toy_data, chunk_size=33)
    x = torch.randn(9, 2, 3, 2, generator=torch.Generator().manual_seed(13), dtype=F64)
    dist, idx = den.nearest(x, k)
    full = torch.cdist(x.reshape(9, -1), toy_data.reshape(500, -1))
    bd, bi = torch.topk(full, k, dim=1, largest=False)
    assert dist.shape == idx.shape == (9, k)
    assert torch.equal(idx, bi)
    assert torch.allclose(dist, bd, atol=1e-12)
    pts = den.training_points(idx)
    assert pts.shape == (9, k, 2, 3, 2)
    assert torch.allclose(pts, toy_data[idx], atol=1e-15)


def test_integer_data_default_to_float32():
    den = EmpiricalDenoiser(torch.arange(12).reshape(4, 3))
    assert den.data.dtype == torch.float32 and len(den) == 4
    assert "N=4" in repr(den)


def test_float32_small_sigma_d784_is_finite(fashion_train_or_none):
    """float32 at sigma = 0.002 on d = 784 (real Fashion-MNIST rows when installed): no NaN or inf."""
    if fashion_train_or_none is not None:
        data = fashion_train_or_none[:3000]
    else:
        data = torch.rand(3000, 1, 28, 28, generator=torch.Generator().manual_seed(14)) * 2 - 1
    den = EmpiricalDenoiser(data)
    g = torch.Generator().manual_seed(15)
    near = data[:8] + 0.002 * torch.randn(8, 1, 28, 28, generator=g)
    far = 80 * torch.randn(8, 1, 28, 28, generator=g)
    x = torch.cat([near, far])
    for sigma in (0.002, 0.01, 80.0):
        out = den(x, sigma)
        assert out.dtype == torch.float32 and torch.isfinite(out).all(), sigma
        assert torch.isfinite(den.log_prob(x, sigma)).all(), sigma
    # at 0.002 the noisy training points are denoised to themselves
    assert (den(near, 0.002) - data[:8]).abs().max() < 1e-4
    # and the far queries to their nearest training point (float32 one-hot softmax)
    _, nn_idx = den.nearest(far)
    assert (den(far, 0.002) - data[nn_idx[:, 0]]).abs().max() < 1e-4


MEMORY_SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, torch
    import diffusion_geometry as dg
    torch.set_num_threads(1)

    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    def reset_peak():
        gc.collect()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM (peak RSS) to the current RSS

    g = torch.Generator().manual_seed(0)
    N, d, B = 60_000, 784, 256
    data = torch.rand(N, d, generator=g) * 2 - 1
    den = dg.EmpiricalDenoiser(data)
    x = data[:B] + 0.5 * torch.randn(B, d, generator=g)
    den(x[:4], 1.0)  # warm up the matmul workspace
    from torch.profiler import ProfilerActivity, profile

    # one call of batch 256: peak RSS above the baseline (data loaded) and the largest allocation
    reset_peak(); base = status("VmRSS")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = den(x, 1.0)
    extra = status("VmHWM") - base
    largest = max(e.cpu_memory_usage for e in prof.events())

    # positive control: the same measurement sees a 256 MiB allocation
    reset_peak(); base = status("VmRSS")
    big = torch.ones(64 * 2**20)
    control = status("VmHWM") - base
    del big
    print("RESULT" + json.dumps(dict(extra=extra, control=control, largest=largest,
                                     finite=bool(torch.isfinite(out).all()))))
    """
)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs the Linux /proc peak-RSS reset")
def test_empirical_denoiser_memory_batch256_vs_60000x784():
    """No (batch, N, d) tensor (48 GB) and no (batch, N) one: extra peak RSS < 1 GiB, largest block small."""
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(l for l in res.stdout.splitlines() if l.startswith("RESULT"))
    r = json.loads(line[len("RESULT"):])
    MiB = 2**20
    print(f"extra peak RSS {r['extra'] / MiB:.1f} MiB, control {r['control'] / MiB:.1f} MiB, "
          f"largest allocation {r['largest'] / MiB:.1f} MiB")
    assert r["finite"]
    assert r["control"] > 200 * MiB  # the measurement is able to see big allocations
    assert r["extra"] < 1024 * MiB
    assert r["largest"] < 256 * 60_000 * 4  # not even a full (batch, N) float32 matrix


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_denoisers_on_cuda(toy_data):
    """Tensors stay on the caller's device, and the results equal the CPU ones."""
    dev = torch.device("cuda")
    den_cpu, den_gpu = EmpiricalDenoiser(toy_data, chunk_size=64), EmpiricalDenoiser(toy_data.to(dev), chunk_size=64)
    x = toy_data[:6] + 0.3 * torch.randn(6, 2, 3, 2, generator=torch.Generator().manual_seed(16), dtype=F64)
    out = den_gpu(x.to(dev), 0.3)
    assert out.device.type == "cuda" and out.dtype == F64
    assert torch.allclose(out.cpu(), den_cpu(x, 0.3), atol=1e-12)
    assert torch.allclose(den_gpu.log_prob(x.to(dev), 0.3).cpu(), den_cpu.log_prob(x, 0.3), rtol=1e-12)
    assert torch.equal(den_gpu.nearest(x.to(dev), 3)[1].cpu(), den_cpu.nearest(x, 3)[1])
    for kind, gm in MIXTURES.items():
        gm_gpu = GaussianMixture(gm.means.to(dev), gm.covariances.to(dev), gm.weights.to(dev))
        q = _queries(gm, 0.5)
        assert gm_gpu(q.to(dev), 0.5).device.type == "cuda", kind
        assert torch.allclose(gm_gpu(q.to(dev), 0.5).cpu(), gm(q, 0.5), atol=1e-12), kind
        assert gm_gpu.sample(4, 0.5).device.type == "cuda", kind


def test_empirical_denoiser_bad_input(toy_data):
    with pytest.raises(ValueError, match=r"data must have shape \(N, ...\)"):
        EmpiricalDenoiser(torch.zeros(5))
    with pytest.raises(ValueError, match=r"data must have shape \(N, ...\)"):
        EmpiricalDenoiser(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        EmpiricalDenoiser(torch.zeros(4, 3), chunk_size=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        EmpiricalDenoiser(torch.tensor([[0.0, float("nan")]]))
    den = EmpiricalDenoiser(toy_data)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2, 3, 2\)"):
        den(torch.zeros(4, 12, dtype=F64), 1.0)
    with pytest.raises(ValueError, match=r"x must have shape"):
        den.nearest(np.zeros((4, 2, 3, 2)))
    with pytest.raises(ValueError, match="x is on meta but the data are on cpu"):
        den(torch.zeros(4, 2, 3, 2, device="meta"), 1.0)
    with pytest.raises(ValueError, match="sigma must be positive for the optimal denoiser"):
        den(toy_data[:2], 0.0)
    with pytest.raises(ValueError, match="sigma must be positive for the optimal denoiser"):
        den.log_prob(toy_data[:2], torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="finite and non-negative"):
        den(toy_data[:2], -1.0)
    for k in (0, 501, 1.5):
        with pytest.raises(ValueError, match="k must be an integer between 1 and N=500"):
            den.nearest(toy_data[:2], k)


# ================================================================================================
# EDMPrecond and sigma_like
# ================================================================================================


class _Recorder(torch.nn.Module):
    """F(x, c) = a * x + c (broadcast), remembering its inputs."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.7, dtype=F64))

    def forward(self, x, c_noise):
        self.seen = (x, c_noise)
        return self.a * x + c_noise.reshape(-1, *([1] * (x.ndim - 1)))


def test_edm_precond_coefficients_and_forward():
    net = _Recorder()
    D = EDMPrecond(net, sigma_data=0.5)
    x = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(20), dtype=F64)
    s = torch.tensor([0.002, 1.0, 80.0], dtype=F64)
    out = D(x, s)
    sd = 0.5
    sb = s.reshape(-1, 1, 1)
    c_skip, c_out, c_in = sd**2 / (sb**2 + sd**2), sb * sd / (sb**2 + sd**2).sqrt(), 1 / (sb**2 + sd**2).sqrt()
    assert torch.allclose(net.seen[0], c_in * x, rtol=1e-14)
    assert torch.allclose(net.seen[1], s.log() / 4, rtol=1e-14)
    assert torch.allclose(out, c_skip * x + c_out * (0.7 * c_in * x + (s.log() / 4).reshape(-1, 1, 1)), rtol=1e-13)
    # EDM's design rules (Karras et al. 2022, App. B.6): unit-variance network input, c_in^2 (sd^2 + s^2) = 1,
    # and unit-variance training target, ((1 - c_skip)^2 sd^2 + c_skip^2 s^2) / c_out^2 = 1
    cs, co, ci, cn = D.coefficients(s)
    assert torch.allclose(ci**2 * (sd**2 + s**2), torch.ones(3, dtype=F64), rtol=1e-14)
    assert torch.allclose(((1 - cs) ** 2 * sd**2 + cs**2 * s**2) / co**2, torch.ones(3, dtype=F64), rtol=1e-12)
    assert torch.allclose(cn, s.log() / 4, rtol=1e-15)


def test_edm_precond_zero_net_is_the_exact_gaussian_denoiser():
    """For data N(0, sd^2 I) the exact denoiser is c_skip x, so F = 0 is optimal (Karras et al. 2022, B.6)."""

    class Zero(torch.nn.Module):
        def forward(self, x, c):
            return torch.zeros_like(x)

    D = EDMPrecond(Zero(), sigma_data=0.5)
    gm = GaussianMixture(torch.zeros(1, 4, dtype=F64), 0.25)
    x = gm.sample(10, 3.0, generator=torch.Generator().manual_seed(21))
    for s in (0.01, 0.5, 3.0, 80.0):
        assert torch.allclose(D(x, s), gm(x, s), rtol=1e-13, atol=1e-15)


def test_edm_precond_bad_input():
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma_data must be a positive finite number"):
            EDMPrecond(_Recorder(), sigma_data=bad)
    D = EDMPrecond(_Recorder())
    with pytest.raises(ValueError, match="sigma must be positive for a preconditioned network"):
        D(torch.zeros(2, 3, dtype=F64), 0.0)

    class Bad(torch.nn.Module):
        def forward(self, x, c):
            return x[:, :1]

    with pytest.raises(ValueError, match=r"the network returned shape \(2, 1\)"):
        EDMPrecond(Bad())(torch.zeros(2, 3, dtype=F64), 1.0)


def test_sigma_like():
    x = torch.zeros(3, 2, 5, dtype=torch.float32)
    s = sigma_like(2.0, x)
    assert s.shape == (3, 1, 1) and s.dtype == torch.float32 and (s == 2).all()
    s = sigma_like(torch.tensor([1.0, 2.0, 3.0], dtype=F64), x)
    assert s.shape == (3, 1, 1) and s.dtype == torch.float32
    with pytest.raises(ValueError, match="leading batch dimension"):
        sigma_like(1.0, torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(3,\)"):
        sigma_like(torch.ones(2), x)
    with pytest.raises(ValueError, match="finite and non-negative"):
        sigma_like(float("inf"), x)


def test_protocol():
    assert isinstance(MIXTURES["iso"], dg.denoisers.Denoiser)
    assert isinstance(EmpiricalDenoiser(torch.zeros(2, 2)), dg.denoisers.Denoiser)
