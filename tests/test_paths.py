"""Gaussian paths (VP, cosine, flow matching) against independent truth.

The truth: each path's alpha_t and s_t written naively in time from their papers' definitions, with
mpmath at 50 digits where float64 would cancel; the posterior of x0 under the path's *own* noising
x_t = alpha x0 + s eps of a Gaussian mixture, computed here from the mixture's parameters (a Gaussian
mixture stays one under x_t = alpha x0 + s eps: means alpha mu_k, covariances alpha^2 Sigma_k + s^2 I),
with time derivatives from autograd of the naive formulas. Samplers are compared with the book's
`dg.samplers.euler` on the VE wrapper.
"""
import math

import mpmath
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import paths

mpmath.mp.dps = 50
NAMED = sorted(paths.PATHS)
NOISY = [n for n in NAMED if n != "ve"]


def naive_alpha_s(name, t):
    """alpha_t, s_t as functions of a float64 tensor t, straight from the definitions."""
    if name == "ve":
        return torch.ones_like(t) + 0 * t, t
    if name == "vp":
        B = 0.1 * t + 0.5 * (20 - 0.1) * t ** 2
        a = torch.exp(-B / 2)
        return a, torch.sqrt(1 - a ** 2)
    if name == "cosine":
        c = 0.008
        a = torch.cos(math.pi / 2 * (t + c) / (1 + c)) / math.cos(math.pi / 2 * c / (1 + c))
        return a, torch.sqrt(1 - a ** 2)
    return 1 - t, t


def mp_sigma(name, t):
    """sigma(t) = s_t/alpha_t in 50-digit arithmetic."""
    t = mpmath.mpf(t)
    if name == "ve":
        return t
    if name == "vp":
        return mpmath.sqrt(mpmath.exp(0.1 * t + 0.5 * (20 - mpmath.mpf("0.1")) * t ** 2) - 1)
    if name == "cosine":
        c = mpmath.mpf("0.008")
        return mpmath.sqrt(mpmath.cos(mpmath.pi / 2 * c / (1 + c)) ** 2
                           / mpmath.cos(mpmath.pi / 2 * (t + c) / (1 + c)) ** 2 - 1)
    return t / (1 - t)


TIMES = [1e-9, 1e-6, 1e-3, 0.05, 0.3, 0.7, 0.95, 0.999, 1 - 1e-7]


@pytest.mark.parametrize("name", NAMED)
def test_sigma_of_time_matches_50_digit_values_at_both_ends(name):
    path = paths.get_path(name)
    ts = torch.tensor(TIMES, dtype=torch.float64)
    got = path.sigma(ts)
    want = torch.tensor([float(mp_sigma(name, t)) for t in TIMES], dtype=torch.float64)
    rel = ((got - want).abs() / want).max().item()
    print(f"{name}: worst relative error of sigma(t) over t in [1e-9, 1 - 1e-7]: {rel:.1e}")
    assert rel < 1e-12


@pytest.mark.parametrize("name", NAMED)
def test_time_inverts_sigma_to_round_off(name):
    path = paths.get_path(name)
    ts = torch.tensor(TIMES, dtype=torch.float64)
    ts = ts[path.sigma(ts) <= path.sigma_max]
    back = path.time(path.sigma(ts))
    rel = ((back - ts).abs() / ts).max().item()
    assert rel < 1e-10, rel
    sig = torch.logspace(-6, 3, 40, dtype=torch.float64)
    sig = sig[sig <= path.sigma_max]
    rel_s = ((path.sigma(path.time(sig)) - sig).abs() / sig).max().item()
    assert rel_s < 1e-10, rel_s


@pytest.mark.parametrize("name", NAMED)
def test_alpha_and_rates_match_the_naive_definitions(name):
    path = paths.get_path(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64, requires_grad=True)
    a, s = naive_alpha_s(name, t)
    (da,) = torch.autograd.grad(a.sum(), t, retain_graph=True)
    sig_naive = s / a
    (dsig,) = torch.autograd.grad(sig_naive.sum(), t)
    sig = path.sigma(t.detach())
    torch.testing.assert_close(sig, sig_naive.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(path.alpha(sig), a.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(path.s(sig), s.detach(), rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(path.dlog_alpha_dt(sig), (da / a).detach(), rtol=1e-10, atol=1e-300)
    torch.testing.assert_close(path.dsigma_dt(sig), dsig, rtol=1e-10, atol=0)


def test_vp_default_is_ddpm_betas_in_continuous_time():
    """beta_min = 0.1, beta_max = 20 is DDPM's 1,000 linear betas (1e-4 to 0.02) in continuous time:
    log alpha-bar_i = sum_j log(1 - beta_j) = -sum_j beta_j - sum_j beta_j^2/2 - ..., and the path's
    -B(t = (i + 1)/1000) is the Riemann sum's integral -sum_j beta_j; so the two differ by the second-order
    sum (0.067 at the last step) plus the Riemann sum's error (below 3e-3), and by nothing else."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    log_abar = torch.cumsum(torch.log1p(-betas), 0)
    path = paths.PATHS["vp"]
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    log_cont = 2 * torch.log(path.alpha(path.sigma(t)))
    second_order = torch.cumsum(betas ** 2 / 2, 0)
    gap = (log_abar - log_cont + second_order).abs().max().item()
    assert gap < 3e-3, gap
    assert (log_abar - log_cont).abs().max().item() > 0.06  # the second-order term is really there


# --------------------------------------------------------------------------------------------------
# predictions of a Gaussian mixture in the path's own coordinates
# --------------------------------------------------------------------------------------------------


def path_posterior_mean(mix, x, alpha, s):
    """E[x0 | x_t = x] for x_t = alpha x0 + s eps, x0 from the mixture (isotropic components):
    responsibilities under N(alpha mu_k, (alpha^2 v_k + s^2) I), then the per-component Gaussian
    posterior mean mu_k + alpha v_k (x - alpha mu_k)/(alpha^2 v_k + s^2)."""
    mu, v, w = mix.params  # (K, d), (K,), (K,)
    d = mu.shape[1]
    var = alpha ** 2 * v + s ** 2  # (K,)
    diff = x[:, None, :] - alpha * mu[None]  # (B, K, d)
    logp = w.log() - 0.5 * (diff ** 2).sum(-1) / var - 0.5 * d * torch.log(2 * math.pi * var)
    gamma = torch.softmax(logp, 1)
    comp = mu[None] + (alpha * v / var)[None, :, None] * diff
    return (gamma[..., None] * comp).sum(1)


@pytest.fixture(scope="module")
def mixture():
    angle = torch.arange(5, dtype=torch.float64) * (2 * math.pi / 5)
    means = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    var = torch.full((5,), 0.09, dtype=torch.float64)
    weights = torch.tensor([0.1, 0.15, 0.2, 0.25, 0.3], dtype=torch.float64)
    mix = dg.GaussianMixture(means, var, weights)
    mix.params = (means, var, weights)  # the parameters, for the independent posterior below
    return mix


@pytest.mark.parametrize("name", NOISY)
@pytest.mark.parametrize("t", [0.02, 0.3, 0.8, 0.97])
def test_eps_x0_velocity_and_score_of_a_mixture_are_exact(mixture, name, t):
    path = paths.get_path(name)
    gen = torch.Generator().manual_seed(1)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    a, s = naive_alpha_s(name, tt)
    (da,) = torch.autograd.grad(a, tt, retain_graph=True)
    (ds,) = torch.autograd.grad(s, tt)
    a, s = a.detach(), s.detach()
    x0 = mixture.sample(16, generator=gen)
    x = a * x0 + s * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    x0_hat = path_posterior_mean(mixture, x, a, s)
    eps_hat = (x - a * x0_hat) / s
    truth = {"x0": x0_hat, "eps": eps_hat, "velocity": da * x0_hat + ds * eps_hat}
    for kind in paths.PREDICTIONS:
        got = paths.PathModel(mixture.denoise, path, kind)(x, t)
        torch.testing.assert_close(got, truth[kind], rtol=1e-10, atol=1e-12)
        # and back: the VE wrapper of that model is the mixture's denoiser
        sig = float(path.sigma(t))
        y = x / a
        back = paths.PathDenoiser(paths.PathModel(mixture.denoise, path, kind), path, kind)(y, sig)
        torch.testing.assert_close(back, mixture.denoise(y, sig), rtol=1e-10, atol=1e-12)
    # the score in path coordinates is -eps/s, and the VE score divided by alpha
    sig = float(path.sigma(t))
    torch.testing.assert_close(-eps_hat / s, mixture.score(x / a, sig) / a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind_from", paths.PREDICTIONS)
@pytest.mark.parametrize("kind_to", paths.PREDICTIONS)
def test_convert_prediction_is_consistent_in_a_cycle(mixture, kind_from, kind_to):
    path = paths.PATHS["cosine"]
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.01, 0.1, 0.5, 1, 2, 5, 20, 80], dtype=torch.float64)
    model = paths.PathModel(mixture.denoise, path, kind_from)
    pred = model(x, path.time(sigma))
    there = paths.convert_prediction((kind_from, pred), to=kind_to, x=x, sigma=sigma, path=path)
    back = paths.convert_prediction((kind_to, there), to=kind_from, x=x, sigma=sigma, path=path)
    torch.testing.assert_close(back, pred, rtol=1e-9, atol=1e-12)


def test_flow_matching_velocity_is_eps_minus_x0(mixture):
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = 0.4
    m = lambda kind: paths.PathModel(mixture.denoise, "flow_matching", kind)(x, t)  # noqa: E731
    torch.testing.assert_close(m("velocity"), m("eps") - m("x0"), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# sampling in the path's own time against the book's samplers on the VE wrapper
# --------------------------------------------------------------------------------------------------


class TinyNet(torch.nn.Module):
    """An arbitrary smooth model(x, t) (not a posterior mean of anything), float64."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(3, 32, generator=g, dtype=torch.float64)
        self.w2 = torch.randn(32, 2, generator=g, dtype=torch.float64) / 6

    def forward(self, x, t):
        h = torch.cat([x, t.to(x.dtype)[:, None]], 1)
        return torch.tanh(h @ self.w1) @ self.w2


@pytest.mark.parametrize("name", NOISY)
@pytest.mark.parametrize("kind", paths.PREDICTIONS)
def test_ddim_in_model_time_is_book_euler_on_the_ve_wrapper(name, kind):
    path = paths.get_path(name)
    net = TinyNet()
    sig = dg.append_zero(dg.edm_sigmas(12, 0.01, 50.0, dtype=torch.float64))
    ts = path.time(sig)
    x_T = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 50
    x_path = x_T * path.alpha(sig[0])  # the same start point in the path's coordinates
    out_path = paths.sample_in_time(net, path, kind, ts, x_path, method="ddim")
    out_ve = dg.samplers.euler(paths.PathDenoiser(net, path, kind), x_T, sig)
    torch.testing.assert_close(out_path, out_ve, rtol=1e-10, atol=1e-10)


def test_euler_in_flow_matching_time_is_ddim_but_not_in_vp_time():
    net = TinyNet(1)
    sig = dg.append_zero(dg.edm_sigmas(10, 0.01, 50.0, dtype=torch.float64))
    x_T = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 50
    outs = {}
    for name in ("flow_matching", "vp"):
        path = paths.get_path(name)
        x0 = x_T * path.alpha(sig[0])
        for method in ("euler_t", "ddim"):
            outs[name, method] = paths.sample_in_time(net, path, "velocity", path.time(sig), x0, method=method)
    fm = (outs["flow_matching", "euler_t"] - outs["flow_matching", "ddim"]).abs().max().item()
    vp = (outs["vp", "euler_t"] - outs["vp", "ddim"]).abs().max().item()
    print(f"max |Euler in t - DDIM|: flow matching {fm:.1e}, VP {vp:.1e}")
    assert fm < 1e-10
    assert vp > 1e-3


def test_heun_in_time_converges_at_second_order(mixture):
    """On the exact mixture model, Heun in flow-matching time has global error O(h^2)."""
    path = paths.PATHS["flow_matching"]
    model = paths.PathModel(mixture.denoise, path, "velocity")
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 0.9
    x = x * path.alpha(torch.tensor(10.0, dtype=torch.float64))
    errs = []
    ref = paths.sample_in_time(model, path, "velocity", torch.linspace(10 / 11, 0.2, 2049, dtype=torch.float64),
                               x, method="heun_t")
    for n in (32, 64, 128):
        ts = torch.linspace(10 / 11, 0.2, n + 1, dtype=torch.float64)
        errs.append((paths.sample_in_time(model, path, "velocity", ts, x, method="heun_t") - ref).norm().item())
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    print("errors", errs, "orders", orders)
    assert all(1.8 < o < 2.3 for o in orders), orders


# --------------------------------------------------------------------------------------------------
# dtypes and errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NOISY)
def test_low_precision_inputs_round_once(mixture, dtype, name):
    path = paths.get_path(name)
    net = TinyNet()

    def model(x, t):  # computes in float64 and returns the input's dtype, as a network in that dtype would
        return net(x.to(torch.float64), t.to(torch.float64)).to(x.dtype)

    y = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.05, 0.5, 2.0, 10.0] * 4, dtype=torch.float64)
    ref = paths.PathDenoiser(model, path, "eps")(y * 3, sigma)
    got = paths.PathDenoiser(model, path, "eps")((y * 3).to(dtype), sigma)
    assert got.dtype == dtype and torch.isfinite(got).all()
    tol = 8 * torch.finfo(dtype).eps * (1 + 80)  # a few roundings of |D| <~ |y| + sigma |eps|
    err = ((got.to(torch.float64) - ref).abs() / (ref.abs() + 1)).max().item()
    assert err < tol, (err, tol)


def test_errors_name_the_problem(mixture):
    with pytest.raises(ValueError, match="unknown path"):
        paths.get_path("ddpm-ish")
    with pytest.raises(ValueError, match="prediction must be one of"):
        paths.PathDenoiser(lambda x, t: x, "vp", "score")
    with pytest.raises(ValueError, match=r"times must lie in \[0, 1\]"):
        paths.PATHS["vp"].sigma(1.5)
    with pytest.raises(ValueError, match="sigma must lie in"):
        paths.PATHS["vp"].time(1e3)
    with pytest.raises(ValueError, match="sigma = 0"):
        paths.PathDenoiser(lambda x, t: x, "vp", "eps")(torch.zeros(2, 2), 0.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        paths.sample_in_time(lambda x, t: x, "vp", "eps", [0.1, 0.5], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="method must be one of"):
        paths.sample_in_time(lambda x, t: x, "vp", "eps", [0.5, 0.1], torch.zeros(2, 2), method="rk4")


def test_one_euler_step_from_pure_noise_in_flow_matching_time():
    """t = 1 (sigma infinite) is a valid start for a velocity model: one Euler step gives x - v(x, 1)."""
    net = TinyNet(2)
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    out = paths.sample_in_time(net, "flow_matching", "velocity", [1.0, 0.0], x, method="euler_t")
    torch.testing.assert_close(out, x - net(x, torch.ones(8, dtype=torch.float64)), rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="finite"):
        paths.sample_in_time(net, "flow_matching", "eps", [1.0, 0.0], x)
