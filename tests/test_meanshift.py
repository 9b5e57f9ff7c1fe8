"""Tests of diffusion_geometry.meanshift: mean-shift steps, annealing, the likelihood theorem, landing.

Truth comes from naive float64 computations (numpy KDE and softmax), closed forms for one and two
training points, and a root finder for the modes of a two-point KDE.
"""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

import diffusion_geometry as dg
from diffusion_geometry import meanshift as ms


def _data(n=12, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _naive_mean_shift(x, y, h):
    """Gaussian-kernel mean shift, written out in numpy float64 (Comaniciu & Meer 2002, Eq. 20)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d2 = ((x[:, None, :] - y[None]) ** 2).sum(-1)
    logk = -d2 / (2 * h**2)
    k = np.exp(logk - logk.max(1, keepdims=True))
    return (k @ y) / k.sum(1, keepdims=True)


def _naive_log_kde(x, y, h):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = x.shape[1]
    d2 = ((x[:, None, :] - y[None]) ** 2).sum(-1)
    a = -d2 / (2 * h**2)
    mx = a.max(1, keepdims=True)
    return (mx[:, 0] + np.log(np.exp(a - mx).sum(1)) - math.log(len(y))
            - d * (math.log(h) + 0.5 * math.log(2 * math.pi)))


# --- mean-shift steps ----------------------------------------------------------------------------


def test_full_step_is_naive_mean_shift():
    y = _data(30, 3)
    kde = dg.EmpiricalDenoiser(y)
    x = _data(7, 3, seed=1) * 2
    for h in (0.05, 0.7, 5.0):
        got = ms.mean_shift_step(kde, x, h)
        np.testing.assert_allclose(got.numpy(), _naive_mean_shift(x, y, h), rtol=0, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 1.7])
def test_partial_step_is_on_the_segment(lam):
    y = _data(20, 2)
    kde = dg.EmpiricalDenoiser(y)
    x = _data(5, 2, seed=3) * 3
    m = _naive_mean_shift(x, y, 0.8)
    got = ms.mean_shift_step(kde, x, 0.8, lam)
    np.testing.assert_allclose(got.numpy(), x.numpy() + lam * (m - x.numpy()), atol=1e-12)


def test_euler_step_is_partial_mean_shift_step():
    """x_{n+1} = x_n + (1 - s_{n+1}/s_n)(m(x_n) - x_n): the Euler sampler's own iterates."""
    y = _data(25, 2)
    kde = dg.EmpiricalDenoiser(y)
    sig = dg.edm_sigmas(12, sigma_max=10.0)
    g = torch.Generator().manual_seed(4)
    x0 = 10 * torch.randn(9, 2, generator=g, dtype=torch.float64)
    traj = dg.sample(kde, x0, sig, sampler="euler")
    lam = ms.step_fractions(sig)
    for n in range(12):
        step = ms.mean_shift_step(kde, traj.x[n], float(sig[n]), float(lam[n]))
        torch.testing.assert_close(step, traj.x[n + 1], rtol=0, atol=1e-12)


def test_step_fractions_closed_form():
    sig = torch.tensor([4.0, 2.0, 1.0, 0.25, 0.0], dtype=torch.float64)
    torch.testing.assert_close(ms.step_fractions(sig), torch.tensor([0.5, 0.5, 0.75, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("a, h", [(0.5, 1.0), (2.0, 1.0), (1.5, 0.6)])
def test_fixed_bandwidth_converges_to_kde_mode_of_two_points(a, h):
    """Two points at -a, +a: the stationary points solve x = a tanh(a x / h^2); one mode (0) iff a <= h."""
    kde = dg.EmpiricalDenoiser(torch.tensor([[-a], [a]], dtype=torch.float64))
    x0 = torch.tensor([[0.3], [-0.2]], dtype=torch.float64)
    path = ms.mean_shift(kde, x0, h, max_iter=5000, tol=1e-13)
    end = path[-1, :, 0].numpy()
    if a <= h:
        np.testing.assert_allclose(end, [0.0, 0.0], atol=1e-5)
    else:
        root = brentq(lambda u: u - a * math.tanh(a * u / h**2), 1e-6, a + 1)
        np.testing.assert_allclose(end, [root, -root], atol=1e-8)
    # the density never decreases along a mean-shift path (Comaniciu & Meer 2002, Thm. 1)
    logp = torch.stack([kde.log_prob(p, h) for p in path])
    assert (logp[1:] - logp[:-1]).min() >= -1e-12


def test_mean_shift_stops_early_and_returns_path():
    kde = dg.EmpiricalDenoiser(torch.zeros(1, 2, dtype=torch.float64))
    path = ms.mean_shift(kde, torch.ones(3, 2, dtype=torch.float64), 1.0, max_iter=50)
    assert path.shape == (3, 3, 2)  # start, the jump onto the single point, the step that did not move
    assert torch.equal(path[-1], torch.zeros(3, 2, dtype=torch.float64))


def test_annealed_mean_shift_shapes_and_steps():
    y = _data(10, 2)
    kde = dg.EmpiricalDenoiser(y)
    h = torch.tensor([3.0, 1.0, 0.3], dtype=torch.float64)
    x = _data(4, 2, seed=5)
    path = ms.annealed_mean_shift(kde, x, h, n_iter=2)
    assert path.shape == (7, 4, 2)
    np.testing.assert_allclose(path[1].numpy(), _naive_mean_shift(x, y, 3.0), atol=1e-12)
    np.testing.assert_allclose(path[2].numpy(), _naive_mean_shift(path[1], y, 3.0), atol=1e-12)
    np.testing.assert_allclose(path[6].numpy(), _naive_mean_shift(path[5], y, 0.3), atol=1e-12)


def test_annealed_mean_shift_ends_on_training_points():
    """With the bandwidth annealed to 1e-3, every point ends (to round-off) on a training point."""
    y = _data(8, 2)
    kde = dg.EmpiricalDenoiser(y)
    x = 4 * _data(50, 2, seed=6)
    end = ms.annealed_mean_shift(kde, x, dg.edm_sigmas(30, sigma_min=1e-3, sigma_max=5.0))[-1]
    dist, _ = kde.nearest(end)
    assert dist.max() < 1e-9


# --- the likelihood theorem ----------------------------------------------------------------------


def test_gain_single_point_closed_form():
    """One training point: log p(x') - log p(x) = lam (2 - lam) ||x - y||^2 / (2 sigma^2), exactly."""
    y = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    kde = dg.EmpiricalDenoiser(y)
    x = _data(6, 3, seed=7) * 2
    sigma = 0.9
    lams = torch.linspace(0, 3.5, 15, dtype=torch.float64)
    gains = ms.log_likelihood_gain(kde, x, sigma, lams)
    r2 = ((x - y) ** 2).sum(1)
    expect = lams[:, None] * (2 - lams[:, None]) * r2[None] / (2 * sigma**2)
    torch.testing.assert_close(gains, expect, rtol=1e-10, atol=1e-10)
    assert (gains[lams > 2] < 0).all()  # the theorem's range lam <= 2 is sharp


def test_gain_matches_naive_kde():
    y = _data(40, 2)
    kde = dg.EmpiricalDenoiser(y)
    x = _data(8, 2, seed=8) * 1.5
    sigma, lam = 0.4, 0.6
    m = _naive_mean_shift(x, y, sigma)
    new = x.numpy() + lam * (m - x.numpy())
    expect = _naive_log_kde(new, y, sigma) - _naive_log_kde(x, y, sigma)
    np.testing.assert_allclose(ms.log_likelihood_gain(kde, x, sigma, lam).numpy(), expect, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem_gain_at_least_bound_at_least_zero(seed):
    """p(x + lam (m - x)) / p(x) >= 1 + lam (2 - lam) ||m - x||^2 / (2 sigma^2) for lam in [0, 2]."""
    y = _data(30, 4, seed=seed)
    kde = dg.EmpiricalDenoiser(y)
    g = torch.Generator().manual_seed(100 + seed)
    lams = torch.linspace(0, 2, 21, dtype=torch.float64)
    for sigma in (0.05, 0.3, 1.0, 4.0):
        x = 2 * torch.randn(64, 4, generator=g, dtype=torch.float64)
        gain = ms.log_likelihood_gain(kde, x, sigma, lams)
        bound = ms.likelihood_gain_bound(kde, x, sigma, lams)
        assert (bound >= 0).all()
        assert (gain - bound).min() >= -1e-9


def test_bound_is_zero_only_at_the_ends():
    y = _data(5, 2)
    kde = dg.EmpiricalDenoiser(y)
    x = _data(3, 2, seed=9) + 3
    b = ms.likelihood_gain_bound(kde, x, 1.0, [0.0, 1.0, 2.0])
    assert torch.equal(b[0], torch.zeros(3, dtype=torch.float64))
    assert (b[1] > 0).all()
    torch.testing.assert_close(b[2], torch.zeros(3, dtype=torch.float64), atol=1e-15, rtol=0)


def test_likelihood_along_an_euler_trajectory():
    y = _data(20, 2)
    kde = dg.EmpiricalDenoiser(y)
    sig = dg.edm_sigmas(15, sigma_max=20.0)
    g = torch.Generator().manual_seed(10)
    traj = dg.sample(kde, 20 * torch.randn(16, 2, generator=g, dtype=torch.float64), sig, sampler="euler")
    steps = ms.likelihood_along(kde, traj)
    assert steps.same_bandwidth.shape == steps.bound.shape == steps.next_bandwidth.shape == (15, 16)
    assert steps.step_residual.max() < 1e-12  # Euler = partial mean shift
    assert (steps.same_bandwidth - steps.bound).min() >= -1e-9
    assert steps.bound.min() >= 0
    n = 7
    torch.testing.assert_close(
        steps.same_bandwidth[n], ms.log_likelihood_gain(kde, traj.x[n], float(sig[n]), float(steps.lam[n])))
    expect_next = (_naive_log_kde(traj.x[n + 1], y, float(sig[n + 1])) - _naive_log_kde(traj.x[n], y, float(sig[n])))
    np.testing.assert_allclose(steps.next_bandwidth[n].numpy(), expect_next, atol=1e-10)


def test_likelihood_along_heun_is_not_a_mean_shift_step():
    y = _data(20, 2)
    kde = dg.EmpiricalDenoiser(y)
    sig = dg.edm_sigmas(10, sigma_max=20.0)
    g = torch.Generator().manual_seed(11)
    traj = dg.sample(kde, 20 * torch.randn(8, 2, generator=g, dtype=torch.float64), sig, sampler="heun")
    assert ms.likelihood_along(kde, traj).step_residual.max() > 1e-3


# --- landing and clustering ----------------------------------------------------------------------


def test_landing_single_point_closed_form():
    """One training point: each Euler step scales x - y by s'/s, so the end is (s_min/s_max)(x0 - y) from y."""
    y = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    kde = dg.EmpiricalDenoiser(y)
    x0 = _data(5, 2, seed=12) * 30
    sig = dg.edm_sigmas(8, sigma_min=0.01, sigma_max=30.0)
    dist, idx, end = ms.landing(kde, x0, sig)
    assert torch.equal(idx, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(dist, (0.01 / 30.0) * (x0 - y).norm(dim=1), rtol=1e-10, atol=0)
    assert end.shape == x0.shape


def test_landing_at_small_sigma_is_the_voronoi_cell():
    """Started at a small sigma, each point lands on its nearest training point."""
    y = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    kde = dg.EmpiricalDenoiser(y)
    g = torch.Generator().manual_seed(13)
    x = torch.rand(200, 2, generator=g, dtype=torch.float64) * 2
    d0, nearest = kde.nearest(x)
    margin = (x - 1).abs().min(1).values > 0.1  # away from the cell boundaries
    dist, idx, _ = ms.landing(kde, x, dg.edm_sigmas(20, sigma_max=0.05), sampler="heun")
    assert torch.equal(idx[margin], nearest[margin, 0])
    # once the weights are one-hot, x - y shrinks in proportion to sigma: |x_end - y| = (0.002/0.05) |x0 - y|
    ratio = dist[margin] / ((0.002 / 0.05) * d0[margin, 0])
    assert (ratio - 1).abs().max() < 0.02


def test_landing_with_another_denoiser():
    """``denoiser=`` samples with a different denoiser and still reports the nearest training point."""
    gm = dg.datasets.mixture_2d()
    y = gm.sample(10, generator=torch.Generator().manual_seed(14))
    kde = dg.EmpiricalDenoiser(y)
    x = 5 * _data(20, 2, seed=15)
    sig = dg.edm_sigmas(10, sigma_max=5.0)
    dist, idx, end = ms.landing(kde, x, sig, sampler="heun", denoiser=gm)
    expect = dg.samplers.heun(gm, x, sig)
    torch.testing.assert_close(end, expect)
    d, i = kde.nearest(expect)
    assert torch.equal(idx, i[:, 0])
    torch.testing.assert_close(dist, d[:, 0])


def test_cluster_points():
    pts = torch.tensor([[0.0, 0.0], [1e-4, 0.0], [1.0, 1.0], [0.0, 1e-4], [1.0, 1.00001]], dtype=torch.float64)
    labels, centers = ms.cluster_points(pts, 1e-3)
    assert labels.tolist() == [0, 0, 1, 0, 1]
    assert torch.equal(centers, pts[[0, 2]])


# --- bad input -----------------------------------------------------------------------------------


def test_errors():
    kde = dg.EmpiricalDenoiser(_data(5, 2))
    x = _data(3, 2, seed=1)
    with pytest.raises(TypeError, match="callable"):
        ms.mean_shift_step(3, x, 1.0)
    with pytest.raises(ValueError, match="batch"):
        ms.mean_shift_step(kde, torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="positive"):
        ms.mean_shift_step(kde, x, 0.0)
    with pytest.raises(ValueError, match="positive"):
        ms.mean_shift(kde, x, -1.0)
    with pytest.raises(TypeError, match="number"):
        ms.mean_shift(kde, x, "wide")
    with pytest.raises(ValueError, match="non-negative"):
        ms.mean_shift_step(kde, x, 1.0, lam=-0.5)
    with pytest.raises(ValueError, match="one step fraction"):
        ms.mean_shift_step(kde, x, 1.0, lam=[0.5, 1.0])
    with pytest.raises(ValueError, match="max_iter"):
        ms.mean_shift(kde, x, 1.0, max_iter=0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ms.annealed_mean_shift(kde, x, [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        ms.annealed_mean_shift(kde, x, [1.0, 0.0])
    with pytest.raises(ValueError, match="n_iter"):
        ms.annealed_mean_shift(kde, x, [1.0, 0.5], n_iter=0)
    with pytest.raises(ValueError, match="two levels"):
        ms.step_fractions(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="EmpiricalDenoiser"):
        ms.log_likelihood_gain(dg.datasets.mixture_2d(), x, 1.0, 0.5)
    with pytest.raises(ValueError, match="lam"):
        ms.log_likelihood_gain(kde, x, 1.0, [[0.5]])
    with pytest.raises(ValueError, match="empty"):
        ms.log_likelihood_gain(kde, x, 1.0, [])
    with pytest.raises(ValueError, match="lam <= 2"):
        ms.likelihood_gain_bound(kde, x, 1.0, [1.0, 2.5])
    with pytest.raises(TypeError, match="Trajectory"):
        ms.likelihood_along(kde, x)
    traj = dg.sample(kde, x, dg.append_zero(dg.edm_sigmas(3, sigma_max=2.0)), sampler="euler")
    with pytest.raises(ValueError, match="end above 0"):
        ms.likelihood_along(kde, traj)
    with pytest.raises(TypeError, match="EmpiricalDenoiser"):
        ms.landing(None, x, [1.0, 0.5])
    with pytest.raises(ValueError, match="tol"):
        ms.cluster_points(x, 0.0)
