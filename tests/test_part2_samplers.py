"""Part II sampler additions: DEIS, the analytical first step (AFS), ODE-Jump and the AMED step."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad, solve_ivp

import diffusion_geometry as dg
from diffusion_geometry import samplers

F64 = torch.float64
GM = dg.datasets.mixture_2d()
X_T = 80 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
ONE_EVAL = ("euler", "dpm_solver_pp_2m", "ipndm", "deis")
TWO_EVAL = ("heun", "dpm_solver_2", "amed")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


@pytest.fixture(scope="module")
def reference():
    """x(0.002) by solve_ivp (DOP853, rtol 1e-12) of dx/dsigma = (x - D)/sigma, written out here."""

    def rhs(s, y):
        x = torch.from_numpy(y.reshape(-1, 2))
        return ((x - GM(x, s)) / s).reshape(-1).numpy()

    sol = solve_ivp(rhs, (80.0, 0.002), X_T.reshape(-1).numpy(), method="DOP853", rtol=1e-12, atol=1e-13)
    assert sol.success
    return torch.from_numpy(sol.y[:, -1].reshape(-1, 2))


# -- DEIS ------------------------------------------------------------------------------------------


def _naive_weights(nodes, sigma_next):
    """c_j = integral over [sigma_n, sigma_next] of the Lagrange basis polynomial, by scipy quad."""
    out = []
    for j, sj in enumerate(nodes):
        def ell(s, j=j, sj=sj):
            return math.prod((s - sm) / (sj - sm) for m, sm in enumerate(nodes) if m != j)
        out.append(quad(ell, nodes[0], sigma_next, epsabs=1e-14, epsrel=1e-13)[0])
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_deis_coefficients_match_quadrature_of_lagrange_basis(k):
    rng = np.random.default_rng(k)
    for _ in range(5):
        levels = np.sort(rng.uniform(0.1, 10.0, size=k + 1))[::-1]  # decreasing: older nodes larger
        nodes = list(levels[:-1][::-1])  # current node levels[-2] first, older (larger) nodes after
        sigma_next = float(levels[-1])
        got = samplers.deis_coefficients(nodes, sigma_next)
        want = _naive_weights(nodes, sigma_next)
        print(k, got, want)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        assert math.isclose(sum(got), sigma_next - nodes[0], rel_tol=1e-12)  # exact for constants


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_deis_coefficients_with_equal_steps_are_adams_bashforth(k):
    h = -0.3
    nodes = [2.0 - j * h for j in range(k)]
    got = samplers.deis_coefficients(nodes, 2.0 + h)
    np.testing.assert_allclose(got, [h * a for a in samplers.IPNDM_COEFFICIENTS[k]], rtol=1e-12)


def test_deis_on_a_grid_uniform_in_sigma_equals_ipndm():
    sig = dg.uniform_sigmas(30, sigma_min=1.0, sigma_max=20.0)
    for order in (1, 2, 3, 4):
        a = samplers.deis(GM, X_T, sig, order=order)
        b = samplers.ipndm(GM, X_T, sig, order=order)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), order


def test_deis_order_one_is_euler():
    sig = dg.edm_sigmas(10)
    assert torch.allclose(samplers.deis(GM, X_T, sig, order=1), samplers.euler(GM, X_T, sig), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("order,low,high", [(2, 1.8, 2.3), (3, 2.6, 3.4), (4, 3.4, 4.4)])
def test_deis_convergence_order(reference, order, low, high):
    steps = (128, 256, 512)  # the asymptotic range: local slopes of DEIS-2 are 1.5, 1.7, 1.8, 1.9 from n = 32
    errs = [(samplers.deis(GM, X_T, dg.edm_sigmas(n), order=order) - reference).norm().item() for n in steps]
    slope = dg.benchmarking.fit_order(steps, errs)
    print(f"DEIS-{order}: errors {['%.2e' % e for e in errs]}, fitted order {slope:.3f}")
    assert all(b < a for a, b in zip(errs, errs[1:]))
    assert low <= slope <= high


def test_deis_bad_input():
    with pytest.raises(ValueError, match="order must be 1, 2, 3 or 4"):
        samplers.deis(GM, X_T, dg.edm_sigmas(3), order=5)
    with pytest.raises(ValueError, match="1 to 4 nodes"):
        samplers.deis_coefficients([], 0.5)
    with pytest.raises(ValueError, match="current node first"):
        samplers.deis_coefficients([1.0, 0.5], 0.1)  # older node must be larger
    with pytest.raises(ValueError, match="current node first"):
        samplers.deis_coefficients([1.0, 2.0], 1.5)  # sigma_next must be below the current node
    with pytest.raises(ValueError, match="positive"):
        samplers.deis_coefficients([-1.0], 0.5)


# -- analytical first step -------------------------------------------------------------------------


def test_afs_denoised_formula():
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    for s in (0.5, 80.0):
        d = (x - samplers.afs_denoised(x, s)) / s
        assert torch.allclose(d, x / math.sqrt(1 + s * s), rtol=1e-14)
    # the Gaussian reading: 1 - s/sqrt(1+s^2) -> 1/(2 s^2) for large s
    ratio = float(samplers.afs_denoised(torch.ones(1, 1, dtype=F64), 80.0))
    assert abs(ratio * 2 * 80.0**2 - 1) < 1e-3


@pytest.mark.parametrize("name", ONE_EVAL + TWO_EVAL)
def test_afs_equals_a_denoiser_that_answers_analytically_once(name):
    """afs=True must equal running the plain sampler with a denoiser whose first answer is the AFS one."""
    sig = dg.edm_sigmas(6)
    calls = []

    def first_analytical(x, s):
        calls.append(s)
        return samplers.afs_denoised(x, s) if len(calls) == 1 else GM(x, s)

    want = samplers.SAMPLERS[name](first_analytical, X_T, sig)
    traj = dg.sample(GM, X_T, sig, sampler=name, afs=True)
    assert torch.allclose(traj.sample, want, rtol=1e-13, atol=1e-13)
    assert traj.nfe == len(calls) - 1  # one evaluation saved
    first = X_T + (float(sig[1]) - 80.0) * X_T / math.sqrt(1 + 80.0**2)
    if name in ONE_EVAL:
        assert torch.allclose(traj.x[1], first, rtol=1e-14)


def test_afs_must_be_bool():
    with pytest.raises(TypeError, match="afs must be True or False"):
        samplers.euler(GM, X_T, dg.edm_sigmas(3), afs="yes")
    with pytest.raises(ValueError, match="sigma > 0"):
        samplers.afs_denoised(X_T, 0.0)
    with pytest.raises(TypeError, match="x must be a tensor"):
        samplers.afs_denoised([1.0], 1.0)


# -- ODE-Jump --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ONE_EVAL + TWO_EVAL)
@pytest.mark.parametrize("k", [0, 1, 4, 10])
def test_ode_jump_is_k_steps_then_the_denoiser(name, k):
    sig = dg.edm_sigmas(10)
    fn = samplers.SAMPLERS[name]
    x_k = fn(GM, X_T, sig[: k + 1]) if k > 0 else X_T
    want = GM(x_k, float(sig[k]))
    got = samplers.ode_jump(GM, X_T, sig, k=k, sampler=name)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    traj = dg.sample(GM, X_T, samplers.jump_sigmas(sig, k), sampler=name)
    per = 2 if name in TWO_EVAL else 1
    assert traj.nfe == per * k + 1
    assert torch.allclose(traj.sample, want, rtol=1e-12, atol=1e-12)


def test_ode_jump_bad_input():
    sig = dg.edm_sigmas(5)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 5\]"):
        samplers.jump_sigmas(sig, 6)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 5\]"):
        samplers.jump_sigmas(dg.append_zero(sig), 6)  # sigma_6 = 0: nothing left to jump from
    with pytest.raises(ValueError, match="k must be an integer"):
        samplers.jump_sigmas(sig, 1.5)
    with pytest.raises(ValueError, match="unknown sampler"):
        samplers.ode_jump(GM, X_T, sig, k=2, sampler="rk45")


# -- AMED step -------------------------------------------------------------------------------------


def test_amed_with_half_and_one_is_dpm_solver_2():
    sig = dg.append_zero(dg.edm_sigmas(7))
    assert torch.allclose(samplers.amed(GM, X_T, sig), samplers.dpm_solver_2(GM, X_T, sig), rtol=1e-14, atol=1e-14)


def test_amed_step_by_hand():
    sig = torch.tensor([5.0, 2.0, 0.7], dtype=F64)
    r, c = [0.3, 0.8], [1.05, 0.97]
    x = X_T / 16
    for i in range(2):
        s0, s1 = float(sig[i]), float(sig[i + 1])
        e0 = (x - GM(x, s0)) / s0
        s = s0 ** (1 - r[i]) * s1 ** r[i]
        xs = x + (s - s0) * e0
        x = x + c[i] * (s1 - s0) * (xs - GM(xs, s)) / s
    assert torch.allclose(samplers.amed(GM, X_T / 16, sig, r=r, c=torch.tensor(c, dtype=F64)), x, rtol=1e-14, atol=1e-14)


def test_amed_bad_input():
    sig = dg.edm_sigmas(3)
    with pytest.raises(ValueError, match="one value per step"):
        samplers.amed(GM, X_T, sig, r=[0.5, 0.5])
    with pytest.raises(ValueError, match="every r must lie in"):
        samplers.amed(GM, X_T, sig, r=0.0)
    with pytest.raises(ValueError, match="every c must be positive"):
        samplers.amed(GM, X_T, sig, c=[1.0, -1.0, 1.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("name", ["deis", "amed"])
def test_new_samplers_on_cuda(name):
    gm_cuda = dg.GaussianMixture(GM.means.cuda(), GM.covariances.cuda())
    sig = dg.edm_sigmas(6)
    out = samplers.SAMPLERS[name](gm_cuda, X_T.cuda(), sig, afs=True)
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), samplers.SAMPLERS[name](GM, X_T, sig, afs=True), atol=1e-9)
    jump = samplers.ode_jump(gm_cuda, X_T.cuda(), sig, k=3, sampler=name)
    assert torch.allclose(jump.cpu(), samplers.ode_jump(GM, X_T, sig, k=3, sampler=name), atol=1e-9)
