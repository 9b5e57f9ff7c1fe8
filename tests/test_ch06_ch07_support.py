"""Tests of the package functions added for chapters 06 and 07: the posterior covariance trace of the
optimal denoiser, the rate of the KDE log-density along the probability-flow ODE, and the Euler-step
bound across the bandwidth change (``dg.meanshift``). Truth: naive float64 sums, central finite
differences along the ODE, closed forms for one and two training points."""
import math

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import meanshift as ms


def _data(n=9, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _naive_trace(y, x, sigma):
    """tr Cov[y | x] = sum_i w_i ||y_i - m||^2, with the weights and the mean from explicit float64 sums."""
    logits = -((x[:, None, :] - y[None]) ** 2).sum(-1) / (2 * sigma**2)
    w = torch.softmax(logits, dim=1)
    m = w @ y
    return (w * ((y[None] - m[:, None, :]) ** 2).sum(-1)).sum(1)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0, 5.0, 80.0])
def test_posterior_trace_matches_naive_sum(sigma):
    y = _data()
    x = 2 * _data(7, seed=1)
    got = ms.posterior_trace(dg.EmpiricalDenoiser(y), x, sigma)
    want = _naive_trace(y, x, sigma)
    print(sigma, (got - want).abs().max().item())
    assert got.shape == (7,) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_posterior_trace_streams_over_chunks(monkeypatch):
    """Force one training point per chunk: the streaming softmax must give the same answer."""
    y, x = _data(), 2 * _data(5, seed=2)
    kde = dg.EmpiricalDenoiser(y)
    whole = ms.posterior_trace(kde, x, 0.7)
    monkeypatch.setattr(ms, "_pair_chunk", lambda kde, batch: 1)
    torch.testing.assert_close(ms.posterior_trace(kde, x, 0.7), whole, rtol=1e-12, atol=0)


def test_posterior_trace_closed_forms():
    # one training point: the posterior is a point mass, no spread
    y1 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert (ms.posterior_trace(dg.EmpiricalDenoiser(y1), x, 0.4) == 0).all()
    # two points, x on the bisector: weights 1/2 each, trace = ||y1 - y2||^2 / 4 at every sigma
    y2 = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    on_bisector = torch.tensor([[0.0, 0.3], [0.0, -5.0]], dtype=torch.float64)
    for s in (0.01, 1.0, 30.0):
        torch.testing.assert_close(ms.posterior_trace(dg.EmpiricalDenoiser(y2), on_bisector, s),
                                   torch.full((2,), 1.0, dtype=torch.float64), rtol=1e-12, atol=0)


def test_posterior_trace_shapes_and_float32_queries():
    imgs = _data(6, 4).reshape(6, 1, 2, 2)
    kde = dg.EmpiricalDenoiser(imgs)
    x = imgs[:3] + 0.5
    t64 = ms.posterior_trace(kde, x, 0.8)
    t32 = ms.posterior_trace(kde, x.float(), 0.8)  # float64 data: computed in float64
    assert t64.shape == (3,)
    torch.testing.assert_close(t32, t64, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.2, 0.6, 2.0])
def test_log_density_rate_is_the_derivative_along_the_ode(sigma):
    """d/dlog(sigma) log p_sigma(x(sigma)) by a central difference along dx/dsigma = (x - D)/sigma."""
    y = _data(6, 2, seed=4)
    kde = dg.EmpiricalDenoiser(y)
    x = y[:4] + sigma * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    h = 1e-4 * sigma
    direction = (x - kde(x, sigma)) / sigma
    up = kde.log_prob(x + h * direction, sigma + h)
    down = kde.log_prob(x - h * direction, sigma - h)
    fd = (up - down) / (2 * h) * sigma  # per unit of log sigma
    got = ms.log_density_rate(kde, x, sigma)
    print(sigma, got.tolist(), fd.tolist())
    torch.testing.assert_close(got, fd, rtol=1e-5, atol=1e-6)


def test_euler_bandwidth_bound_holds_and_is_tight_for_one_point():
    y = _data(7, 3, seed=6)
    kde = dg.EmpiricalDenoiser(y)
    g = torch.Generator().manual_seed(7)
    worst = -math.inf
    for s, s_next in ((3.0, 2.0), (1.0, 0.4), (0.5, 0.45), (0.3, 0.05)):
        x = y[torch.randint(0, 7, (64,), generator=g)] + s * torch.randn(64, 3, generator=g, dtype=torch.float64)
        x_next = dg.samplers.euler(kde, x, torch.tensor([s, s_next], dtype=torch.float64))
        change = kde.log_prob(x_next, s_next) - kde.log_prob(x, s)
        bound = ms.euler_bandwidth_bound(kde, x, s, s_next)
        worst = max(worst, (bound - change).max().item())
    print("largest bound - change:", worst)
    assert worst <= 1e-12
    # one training point: the change is d log(sigma / sigma'), however far out x is
    one = dg.EmpiricalDenoiser(y[:1])
    x = y[:1] + torch.tensor([[0.01], [1.0], [10.0], [100.0]], dtype=torch.float64) * torch.ones(1, 3, dtype=torch.float64)
    x_next = dg.samplers.euler(one, x, torch.tensor([0.8, 0.5], dtype=torch.float64))
    change = one.log_prob(x_next, 0.5) - one.log_prob(x, 0.8)
    exact = torch.full((4,), 3 * math.log(0.8 / 0.5), dtype=torch.float64)
    torch.testing.assert_close(change, exact, rtol=1e-9, atol=0)
    torch.testing.assert_close(ms.euler_bandwidth_bound(one, x, 0.8, 0.5), exact, rtol=1e-12, atol=0)


def test_bad_input_raises():
    kde = dg.EmpiricalDenoiser(_data())
    x = _data(2, seed=8)
    for fn in (ms.posterior_trace, ms.log_density_rate):
        with pytest.raises(ValueError):
            fn(kde, x, 0.0)
        with pytest.raises(ValueError):
            fn(kde, x, float("nan"))
        with pytest.raises(TypeError):
            fn(lambda x, s: x, x, 1.0)
        with pytest.raises(ValueError):
            fn(kde, torch.zeros(2, 4, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError):
        ms.euler_bandwidth_bound(kde, x, 0.5, 0.5)
    with pytest.raises(ValueError):
        ms.euler_bandwidth_bound(kde, x, 0.5, 0.0)
    with pytest.raises(TypeError):
        ms.euler_bandwidth_bound(None, x, 1.0, 0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_posterior_trace_is_exact_in_every_dtype_and_finite_as_sigma_vanishes(dtype):
    """Against a naive float64 softmax over explicit differences; one-hot (trace about 0) at sigma -> 0."""
    from diffusion_geometry import meanshift as ms

    gen = torch.Generator().manual_seed(3)
    y = (torch.rand(50, 784, generator=gen) * 2 - 1).to(dtype)
    x = (y[:4].double() + 0.01 * torch.randn(4, 784, generator=gen, dtype=torch.float64)).to(dtype)
    kde = dg.EmpiricalDenoiser(y)
    xr, yr = x.double(), y.double()
    for sigma in (10.0, 20.0):
        w = torch.softmax(-((xr[:, None] - yr[None]) ** 2).sum(-1) / (2 * sigma**2), 1)
        m = w @ yr
        ref = (w * ((yr[None] - m[:, None]) ** 2).sum(-1)).sum(1)
        got = ms.posterior_trace(kde, x, sigma)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    for sigma in (1e-3, 1e-200):
        assert ms.posterior_trace(kde, x, sigma).abs().max() < 1e-20
        rate = ms.log_density_rate(kde, x, sigma)
        assert torch.isfinite(rate).all()
        torch.testing.assert_close(rate, torch.full_like(rate, -784.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_mean_shift_step_rounds_once(dtype):
    """x + lam (m - x) formed in float64 from the rounded inputs, cast once; lam = 1 returns m itself."""
    gen = torch.Generator().manual_seed(5)
    y = ((torch.rand(50, 784, generator=gen) * 2 - 1) + 100).to(dtype)
    kde = dg.EmpiricalDenoiser(y)
    x = (y[:3].double() + 0.3 * torch.randn(3, 784, generator=gen, dtype=torch.float64)).to(dtype)
    m = kde(x, 0.5)
    assert torch.equal(ms.mean_shift_step(kde, x, 0.5, 1.0), m)
    ref = (x.double() + 0.3 * (m.double() - x.double())).to(dtype)
    assert torch.equal(ms.mean_shift_step(kde, x, 0.5, 0.3), ref)


def test_likelihood_functions_have_no_nan_or_overflow_as_sigma_vanishes():
    gen = torch.Generator().manual_seed(6)
    y = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    kde = dg.EmpiricalDenoiser(y)
    # the bound log(1 + lam (2 - lam) |m - x|^2 / 2 sigma^2) ~ log(|m - x|^2 / 2) - 2 log sigma: finite
    shift2 = (kde(x, 1e-160) - x).square().sum(1)
    expected = torch.log(shift2 / 2) - 2 * math.log(1e-160)
    torch.testing.assert_close(ms.likelihood_gain_bound(kde, x, 1e-160, 1.0), expected, rtol=1e-12, atol=0)
    # one-hot weights: the Euler step across bandwidths gains exactly d log t
    got = ms.euler_bandwidth_bound(kde, x, 1e-3, 1e-200)
    torch.testing.assert_close(got, torch.full_like(got, 3 * math.log(1e-3 / 1e-200)), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="overflow float64"):
        ms.log_likelihood_gain(kde, x, 1e-170, 1.0)
