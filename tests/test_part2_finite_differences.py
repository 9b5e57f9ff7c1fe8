"""Samplers as finite differences of the denoising trajectory; the curvature identity."""
import math

import pytest
import torch
from scipy.integrate import solve_ivp

import diffusion_geometry as dg
from diffusion_geometry import finite_differences as fd
from diffusion_geometry import samplers

F64 = torch.float64
GM = dg.datasets.mixture_2d()
X_T = 80 * torch.randn(16, 2, generator=torch.Generator().manual_seed(7), dtype=F64)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

CASES = [
    ("euler", {}),
    ("heun", {}),
    ("dpm_solver_2", {"r": 0.5}),
    ("dpm_solver_2", {"r": 0.27}),
    ("amed", {"r": [0.3, 0.6, 0.45, 0.2, 0.8, 0.5, 0.35, 0.9, 0.1], "c": [1.02, 0.98, 1.0, 1.1, 0.9, 1.0, 1.01, 0.99, 1.05]}),
    ("dpm_solver_pp_2m", {}),
    ("ipndm", {"order": 2}),
    ("ipndm", {"order": 3}),
    ("ipndm", {"order": 4}),
    ("deis", {"order": 2}),
    ("deis", {"order": 3}),
    ("deis", {"order": 4}),
    ("ipndm_v", {"order": 2}),
    ("ipndm_v", {"order": 3}),
    ("ipndm_v", {"order": 4}),
]
# and every sampler of the registry that states a finite-difference form, at its default options
CASES += [(name, {}) for name, spec in samplers.SAMPLERS.items() if spec.d_eff is not None]


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("name,opts", CASES, ids=[f"{c[0]}{c[1].get('order', c[1].get('r', ''))}" for c in CASES])
def test_d_eff_formulas_reproduce_the_samplers(name, opts, zero):
    """The finite-difference D_eff, put into the Euler convex combination, gives the sampler's own step."""
    sig = dg.edm_sigmas(9)
    if zero:
        sig = dg.append_zero(sig)
    rec = fd.RecordingDenoiser(GM)
    traj = dg.sample(rec, X_T, sig, sampler=name, **opts)
    d_eff = fd.d_eff(name, rec.calls, sig, **opts)
    assert d_eff.shape == (len(sig) - 1, *X_T.shape)
    for i in range(len(sig) - 1):
        s0, s1 = float(sig[i]), float(sig[i + 1])
        x_next = samplers.euler_step(traj.x[i], s0, s1, d_eff[i])
        rel = float((x_next - traj.x[i + 1]).norm() / traj.x[i + 1].norm())
        assert rel < 1e-12, (i, rel)
        if s1 > 0:  # and the D_eff implied by the sampler's step is the formula's
            implied = fd.implied_d_eff(traj.x[i], traj.x[i + 1], s0, s1)
            assert float((implied - d_eff[i]).norm() / d_eff[i].norm()) < 1e-10


def test_heun_d_eff_by_hand():
    """Heun written out in epsilon form, then D_eff = x - sigma * (mean direction)."""
    x, s0, s1 = X_T / 10, 3.0, 1.7
    d0 = (x - GM(x, s0)) / s0
    xp = x + (s1 - s0) * d0
    d1 = (xp - GM(xp, s1)) / s1
    want = x - s0 * 0.5 * (d0 + d1)
    got = fd.heun_d_eff(GM(x, s0), GM(xp, s1), s0, s1)
    assert torch.allclose(got, want, rtol=1e-13, atol=1e-13)


def test_dpm_solver_pp_2m_d_eff_is_lu_et_al_in_lambda_form():
    """DPM-Solver++(2M) of Lu et al.: x' = (s'/s) x - (e^{-h} - 1) [(1 + 1/2r) D_n - 1/2r D_{n-1}],
    lambda = -log sigma, h = lambda' - lambda, r = h_prev / h (alpha = 1 in VE form)."""
    sp, s0, s1 = 5.0, 2.0, 0.9
    den_prev, den = torch.randn(2, 4, 3, dtype=F64, generator=torch.Generator().manual_seed(8))
    x = torch.randn(4, 3, dtype=F64)
    h, h_prev = math.log(s0 / s1), math.log(sp / s0)
    r = h_prev / h
    want = (s1 / s0) * x - math.expm1(-h) * ((1 + 1 / (2 * r)) * den - den_prev / (2 * r))
    got = samplers.euler_step(x, s0, s1, fd.dpm_solver_pp_2m_d_eff(den, den_prev, sp, s0, s1))
    assert torch.allclose(got, want, rtol=1e-13, atol=1e-13)


def test_amed_d_eff_with_c_one_and_r_half_is_dpm_solver_2():
    x, den, den_mid = torch.randn(3, 5, 2, dtype=F64, generator=torch.Generator().manual_seed(9))
    a = fd.amed_d_eff(x, den, den_mid, 4.0, 1.0, r=0.5, c=1.0)
    b = fd.dpm_solver_2_d_eff(den, den_mid, 4.0, 1.0, r=0.5)
    assert torch.allclose(a, b, rtol=1e-14)


@pytest.fixture(scope="module")
def dense_solution():
    x0 = X_T[:4]

    def rhs(s, y):
        x = torch.from_numpy(y.reshape(-1, 2))
        return ((x - GM(x, s)) / s).reshape(-1).numpy()

    sol = solve_ivp(rhs, (80.0, 0.002), x0.reshape(-1).numpy(), method="DOP853", rtol=1e-12, atol=1e-12,
                    dense_output=True)
    assert sol.success
    return lambda s: torch.from_numpy(sol.sol(s).reshape(-1, 2))


@pytest.mark.parametrize("sigma", [20.0, 3.0, 1.0, 0.3, 0.05])
def test_curvature_identity_against_second_differences_of_the_exact_trajectory(dense_solution, sigma):
    h = 1e-3 * sigma
    a, b, c = (dense_solution(s) for s in (sigma - h, sigma, sigma + h))
    second = (a - 2 * b + c) / h**2
    ident = fd.curvature(GM, b, sigma)
    rel = float((second - ident).norm() / ident.norm())
    print(f"sigma={sigma}: |d2x/dsigma2| = {float(ident.norm()):.3e}, relative gap {rel:.1e}")
    assert rel < 1e-4


@pytest.mark.parametrize("sigma", [10.0, 1.0, 0.1])
def test_denoiser_derivative_against_central_difference_along_the_trajectory(dense_solution, sigma):
    h = 1e-4 * sigma
    lo, hi = dense_solution(sigma - h), dense_solution(sigma + h)
    fdiff = (GM(hi, sigma + h) - GM(lo, sigma - h)) / (2 * h)
    got = fd.denoiser_derivative(GM, dense_solution(sigma), sigma)
    assert float((got - fdiff).norm() / got.norm()) < 1e-6


def test_implied_d_eff_of_an_euler_step_is_the_denoiser():
    x = X_T / 4
    den = GM(x, 2.0)
    x1 = samplers.euler(GM, x, torch.tensor([2.0, 0.5], dtype=F64))
    assert torch.allclose(fd.implied_d_eff(x, x1, 2.0, 0.5), den, rtol=1e-13, atol=1e-13)


def test_finite_difference_bad_input():
    sig = dg.edm_sigmas(3)
    rec = fd.RecordingDenoiser(GM)
    samplers.heun(rec, X_T, sig)
    with pytest.raises(ValueError, match="unknown sampler 'rk4'"):
        fd.d_eff("rk4", rec.calls, sig)
    with pytest.raises(ValueError, match="no finite-difference form"):
        fd.d_eff("unipc", rec.calls, sig)
    with pytest.raises(ValueError, match="makes 3 denoiser calls, the log has 6"):
        fd.d_eff("euler", rec.calls, sig)
    with pytest.raises(ValueError, match="need sigma > sigma_next >= 0"):
        fd.implied_d_eff(X_T, X_T, 1.0, 2.0)
    with pytest.raises(ValueError, match="differ in shape"):
        fd.implied_d_eff(X_T, X_T[:2], 2.0, 1.0)
    with pytest.raises(ValueError, match="no Heun correction"):
        fd.heun_d_eff(X_T, X_T, 1.0, 0.0)
    with pytest.raises(ValueError, match="r must lie in"):
        fd.dpm_solver_2_d_eff(X_T, X_T, 2.0, 1.0, r=1.5)
    with pytest.raises(ValueError, match="one-evaluation multistep sampler"):
        fd.multistep_d_eff(X_T, [X_T], [1.0], 0.5, sampler="heun")
    with pytest.raises(TypeError, match="denoiser must be callable"):
        fd.RecordingDenoiser(3)
    with pytest.raises(ValueError, match="sigma must be positive"):
        fd.denoiser_derivative(GM, X_T, 0.0)
