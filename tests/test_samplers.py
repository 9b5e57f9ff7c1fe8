"""Samplers: measured convergence orders against a tight scipy reference, exact steps, exact NFE."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import diffusion_geometry as dg
from diffusion_geometry import samplers

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64
GM = dg.datasets.mixture_2d()  # 8 isotropic modes on a circle of radius 2, std 0.15, float64
X_T = 80 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


@pytest.fixture(scope="module")
def reference():
    """x(sigma_min) from x(80) by solve_ivp of dx/dsigma = (x - D(x, sigma))/sigma in float64; an
    explicit Runge-Kutta (DOP853) and a multistep method (LSODA) must agree."""

    def rhs(s, y):
        x = torch.from_numpy(y.reshape(-1, 2))
        return ((x - GM(x, s)) / s).reshape(-1).numpy()

    y0 = X_T.reshape(-1).numpy()
    sols = [solve_ivp(rhs, (SIGMA_MAX, SIGMA_MIN), y0, method=m, rtol=rtol, atol=1e-13)
            for m, rtol in (("DOP853", 1e-12), ("LSODA", 1e-12))]
    assert all(s.success for s in sols)
    gap = np.abs(sols[0].y[:, -1] - sols[1].y[:, -1]).max()
    print(f"DOP853 vs LSODA reference gap: {gap:.1e}")
    assert gap < 1e-9  # far below the smallest sampler error measured below (~1e-5)
    return torch.from_numpy(sols[0].y[:, -1].reshape(-1, 2))


# (name, options, expected order)
CASES = [
    ("euler", {}, 1),
    ("heun", {}, 2),
    ("dpm_solver_2", {"r": 0.5}, 2),
    ("dpm_solver_2", {"r": 0.3}, 2),
    ("dpm_solver_pp_2m", {}, 2),
    ("ipndm", {"order": 2}, 2),
    ("ipndm", {"order": 3}, 2),  # fixed Adams-Bashforth weights on a non-uniform grid: order 2
    ("ipndm", {"order": 4}, 2),
]
STEPS = (32, 64, 128, 256)  # the asymptotic range (local slopes within 0.25 of the order)
STEPS_IPNDM2 = (64, 128, 256, 512)  # iPNDM-2's slope settles later (1.6, 1.8, 1.9, 1.9, 2.0 from n = 32)
ALL = list(samplers.SAMPLERS)  # every registered sampler, at its default options


@pytest.mark.parametrize("name,opts,order", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_convergence_order(reference, name, opts, order):
    errs = []
    steps = STEPS_IPNDM2 if (name, opts) == ("ipndm", {"order": 2}) else STEPS
    for n in steps:
        out = samplers.SAMPLERS[name](GM, X_T, dg.edm_sigmas(n, SIGMA_MIN, SIGMA_MAX), **opts)
        errs.append((out - reference).norm().item())
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    print(f"{name}{opts}: errors {['%.2e' % e for e in errs]}, fitted order {slope:.3f}")
    assert all(b < a for a, b in zip(errs, errs[1:]))
    if order == 1:
        assert 0.8 <= slope <= 1.2
    else:
        assert 1.8 <= slope <= 2.3


@pytest.mark.parametrize("name", ALL)
def test_registry_order_is_the_measured_order(reference, name):
    """Each registry entry's ``order`` is the global order its default options reach on the EDM grid:
    the fitted slope of log(error) against log(steps) lies within 0.3 of it (a first-order method
    registered as second order fails, and so does a third-order one registered as second order)."""
    spec = samplers.SAMPLERS[name]
    steps = STEPS if spec.order <= 2 else (64, 128, 256)  # third order settles later (DEIS: 2.5, 2.75, 2.9)
    errs = []
    for n in steps:
        out = spec(GM, X_T, dg.edm_sigmas(n, SIGMA_MIN, SIGMA_MAX))
        errs.append((out - reference).norm().item())
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    print(f"{name}: errors {['%.2e' % e for e in errs]}, fitted order {slope:.3f}, registered {spec.order}")
    assert min(errs) > 100 * 1e-9  # far above the reference's own error (DOP853 vs LSODA gap < 1e-9)
    assert abs(slope - spec.order) <= 0.3


def test_registry_entries_are_complete():
    """Every entry is callable with the common signature and states its cost and label."""
    import inspect

    for name, spec in samplers.SAMPLERS.items():
        assert spec.name == name and spec.label and spec.evals_per_step in (1, 2) and spec.order >= 1
        params = inspect.signature(spec.fn).parameters
        assert list(params)[:3] == ["denoiser", "x", "sigmas"], name
        assert {"callback", "afs"} <= set(params), name
        assert samplers.get_sampler(name) is spec and samplers.sampler_fn(name) is spec.fn
    with pytest.raises(ValueError, match="unknown sampler"):
        samplers.get_sampler("rk4")
    with pytest.raises(TypeError):
        samplers.get_sampler(3)


# -- every update against its published formula, on an irregular grid --------------------------------
# Written in the papers' own variables (lambda = -log sigma, exponential-integrator form), so that an
# error that keeps the order on smooth grids (e.g. an inverted step ratio) is still caught.

IRREGULAR = torch.tensor([80.0, 31.0, 17.0, 4.2, 3.9, 0.8, 0.11, 0.03, 0.002], dtype=F64)


def _D(x: np.ndarray, s: float) -> np.ndarray:
    return GM(torch.from_numpy(x), s).numpy()


def _ref_heun(x, sig):
    """Karras et al. 2022, Algorithm 1 (deterministic, no churn)."""
    for s, sn in zip(sig[:-1], sig[1:]):
        d = (x - _D(x, s)) / s
        xp = x + (sn - s) * d
        x = xp if sn == 0 else x + (sn - s) * 0.5 * (d + (xp - _D(xp, sn)) / sn)
    return x


def _ref_dpm_solver_2(x, sig, r):
    """Lu et al. 2022, DPM-Solver-2 (Alg. 1, noise prediction) with alpha = 1, lambda = -log sigma."""
    for s, sn in zip(sig[:-1], sig[1:]):
        eps = (x - _D(x, s)) / s
        h = math.log(s) - math.log(sn)
        s_mid = math.exp(-(-math.log(s) + r * h))
        u = x - s_mid * math.expm1(r * h) * eps
        eps_mid = (u - _D(u, s_mid)) / s_mid
        x = x - sn * math.expm1(h) * eps - sn / (2 * r) * math.expm1(h) * (eps_mid - eps)
    return x


def _ref_dpm_solver_pp_2m(x, sig):
    """Lu et al. 2022b, DPM-Solver++(2M) (Alg. 2, data prediction) with alpha = 1, as in k-diffusion."""
    lam = [-math.log(s) for s in sig]
    old = None
    for i, (s, sn) in enumerate(zip(sig[:-1], sig[1:])):
        den = _D(x, s)
        h = lam[i + 1] - lam[i]
        if old is None:
            d_eff = den
        else:
            r = (lam[i] - lam[i - 1]) / h
            d_eff = (1 + 1 / (2 * r)) * den - 1 / (2 * r) * old
        x = (sn / s) * x - math.expm1(-h) * d_eff
        old = den
    return x


def _ref_ipndm(x, sig, order):
    """Zhang & Chen 2023 / zju-pi diff-solvers ``ipndm``: Adams-Bashforth weights, lower orders first."""
    hist = []
    for i, (s, sn) in enumerate(zip(sig[:-1], sig[1:])):
        d = (x - _D(x, s)) / s
        k = min(i + 1, order)
        if k == 1:
            step = d
        elif k == 2:
            step = (3 * d - hist[-1]) / 2
        elif k == 3:
            step = (23 * d - 16 * hist[-1] + 5 * hist[-2]) / 12
        else:
            step = (55 * d - 59 * hist[-1] + 37 * hist[-2] - 9 * hist[-3]) / 24
        x = x + (sn - s) * step
        hist.append(d)
    return x


@pytest.mark.parametrize("case", ["heun", "dpm_solver_2-0.5", "dpm_solver_2-0.3", "dpm_solver_pp_2m",
                                  "ipndm-2", "ipndm-3", "ipndm-4"])
def test_updates_match_the_published_formulas(case):
    sig = IRREGULAR.tolist()
    x0 = X_T.numpy()
    name, _, arg = case.partition("-")
    if name == "heun":
        got, ref = samplers.heun(GM, X_T, IRREGULAR), _ref_heun(x0, sig)
    elif name == "dpm_solver_2":
        got, ref = samplers.dpm_solver_2(GM, X_T, IRREGULAR, r=float(arg)), _ref_dpm_solver_2(x0, sig, float(arg))
    elif name == "dpm_solver_pp_2m":
        got, ref = samplers.dpm_solver_pp_2m(GM, X_T, IRREGULAR), _ref_dpm_solver_pp_2m(x0, sig)
    else:
        got, ref = samplers.ipndm(GM, X_T, IRREGULAR, order=int(arg)), _ref_ipndm(x0, sig, int(arg))
    assert np.allclose(got.numpy(), ref, rtol=1e-11, atol=1e-11), np.abs(got.numpy() - ref).max()


def test_dpm_solver_2_with_r_one_is_heun():
    sig = dg.edm_sigmas(12)
    for grid in (sig, dg.append_zero(sig)):  # the same loop: equal to the bit, with and without AFS
        for afs in (False, True):
            assert torch.equal(samplers.dpm_solver_2(GM, X_T, grid, r=1.0, afs=afs), samplers.heun(GM, X_T, grid, afs=afs))


def test_ipndm_order_one_is_euler():
    sig = dg.append_zero(dg.edm_sigmas(9))
    assert torch.allclose(samplers.ipndm(GM, X_T, sig, order=1), samplers.euler(GM, X_T, sig),
                          rtol=1e-14, atol=1e-14)


def test_euler_step_is_the_convex_combination():
    """x' = (s'/s) x + (1 - s'/s) D(x, s), to round-off, for one Euler step of each grid step."""
    sig = dg.edm_sigmas(6)
    x = X_T
    for s, s_next in zip(sig[:-1].tolist(), sig[1:].tolist()):
        out = samplers.euler(GM, x, torch.tensor([s, s_next], dtype=F64))
        D = GM(x, s)
        expect = (s_next / s) * x + (1 - s_next / s) * D
        assert (out - expect).abs().max() <= 4 * torch.finfo(F64).eps * expect.abs().max()
        # and it is the explicit Euler step x + (s' - s) (x - D)/s
        assert torch.allclose(out, x + (s_next - s) * (x - D) / s, rtol=1e-13, atol=1e-13)
        x = out
    assert torch.equal(samplers.euler_step(x, 2.0, 0.5, torch.zeros_like(x)), 0.25 * x)


def test_step_to_zero_outputs_the_denoiser():
    sig = torch.tensor([5.0, 1.0, 0.0], dtype=F64)
    for name, fn in samplers.SAMPLERS.items():
        seen = []
        out = fn(GM, X_T, sig, callback=seen.append)
        assert torch.allclose(out, GM(seen[-1]["x"], 1.0), rtol=1e-14, atol=1e-14), name


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("afs", [False, True])
def test_nfe_is_exact(name, zero, n, afs):
    sig = dg.edm_sigmas(n)
    if zero:
        sig = dg.append_zero(sig)
    n_steps = len(sig) - 1
    calls = []

    def counted(x, s):
        calls.append(float(s))
        return GM(x, s)

    traj = dg.sample(counted, X_T, sig, sampler=name, afs=afs)
    assert traj.nfe == len(calls) == samplers.SAMPLERS[name].nfe(n_steps, to_zero=zero, afs=afs)
    assert 0.0 not in calls  # sigma = 0 is never evaluated


def test_callbacks_receive_every_step():
    sig = dg.append_zero(dg.edm_sigmas(4))
    for name, fn in samplers.SAMPLERS.items():
        states = []
        final = fn(GM, X_T, sig, callback=states.append)
        assert [s["i"] for s in states] == list(range(5)), name
        assert [s["sigma"] for s in states] == sig[:-1].tolist()
        assert [s["sigma_next"] for s in states] == sig[1:].tolist()
        assert torch.equal(states[0]["x"], X_T)
        for s in states:
            assert set(s) >= {"i", "sigma", "sigma_next", "x", "denoised"}
            if not samplers.SAMPLERS[name].predictor_corrector:  # UniPC: D at the predicted point
                assert torch.allclose(s["denoised"], GM(s["x"], s["sigma"]), rtol=0, atol=0)
        assert final.shape == X_T.shape


def test_trailing_shapes_and_float32_are_preserved():
    """Images (batch, C, H, W) in float32 stay float32 and keep their shape through every sampler."""
    data = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    den = dg.EmpiricalDenoiser(data)
    x = 80 * torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    sig = dg.append_zero(dg.edm_sigmas(5, dtype=torch.float32))
    for name, fn in samplers.SAMPLERS.items():
        out = fn(den, x, sig)
        assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device, name
        assert torch.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_samplers_on_cuda():
    dev = torch.device("cuda")
    data = torch.rand(50, 3, generator=torch.Generator().manual_seed(3), dtype=F64).to(dev)
    den = dg.EmpiricalDenoiser(data)
    x = 80 * torch.randn(4, 3, dtype=F64, device=dev)
    for name in ALL:
        traj = dg.sample(den, x, dg.append_zero(dg.edm_sigmas(6, device=dev)), sampler=name)
        assert traj.x.device.type == "cuda" and traj.denoised.device.type == "cuda"
        cpu = dg.sample(dg.EmpiricalDenoiser(data.cpu()), x.cpu(), dg.append_zero(dg.edm_sigmas(6)), sampler=name)
        assert torch.allclose(traj.sample.cpu(), cpu.sample, atol=1e-9)


# -- bad input: one test per rule ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_sampler_bad_input(name):
    fn = samplers.SAMPLERS[name]
    sig = dg.edm_sigmas(3)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        fn("not a denoiser", X_T, sig)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(batch, ...\)"):
        fn(GM, X_T[0], sig)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape"):
        fn(GM, X_T.numpy(), sig)
    with pytest.raises(ValueError, match="strictly decreasing"):
        fn(GM, X_T, sig.flip(0))
    with pytest.raises(ValueError, match="non-negative"):
        fn(GM, X_T, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="at least two levels"):
        fn(GM, X_T, torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"the denoiser returned shape \(8, 1\)"):
        fn(lambda x, s: x[:, :1], X_T, sig)


@pytest.mark.parametrize("r", [0.0, -0.5, 1.5])
def test_dpm_solver_2_bad_r(r):
    with pytest.raises(ValueError, match=r"r must lie in \(0, 1\]"):
        samplers.dpm_solver_2(GM, X_T, dg.edm_sigmas(3), r=r)


@pytest.mark.parametrize("order", [0, 5, 2.5, "4"])
def test_ipndm_bad_order(order):
    with pytest.raises(ValueError, match="order must be 1, 2, 3 or 4"):
        samplers.ipndm(GM, X_T, dg.edm_sigmas(3), order=order)


def test_ipndm_coefficients_are_adams_bashforth():
    """Each row sums to 1 (consistency) and integrates polynomials of its degree exactly."""
    for k, coeffs in samplers.IPNDM_COEFFICIENTS.items():
        assert math.isclose(sum(coeffs), 1.0, rel_tol=1e-14)
        # int_0^1 t^p dt = sum_j a_j (-j)^p for p < k (steps of size 1, nodes 0, -1, -2, ...)
        for p in range(k):
            assert math.isclose(sum(a * (-j) ** p for j, a in enumerate(coeffs)), 1 / (p + 1), abs_tol=1e-14)
