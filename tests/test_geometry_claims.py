"""The measurements behind the book's geometric claims: "lies in a plane" (pca_residual_shares),
"linear - nonlinear - linear" (turning_angles, discrete_curvature, geometric_curvature) and "one
boomerang shape" (boomerang_profile_correlations), checked on curves with known answers."""
import math

import numpy as np
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import geometry as geo

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64


def _frame(d: int, k: int, seed: int) -> torch.Tensor:
    """k orthonormal vectors in R^d as rows (k, d)."""
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=F64))
    return q.T


def _helix(r=2.0, c=0.5, n=400, turns=1.0, d=5, seed=0, reparam=False):
    """A helix (r cos t, r sin t, c t) in a random 3-D subspace of R^d; curvature r / (r^2 + c^2)."""
    u = torch.linspace(0, 1, n, dtype=F64)
    t = 2 * math.pi * turns * (u**2 if reparam else u)
    E = _frame(d, 3, seed)
    pts = r * t.cos()[:, None] * E[0] + r * t.sin()[:, None] * E[1] + c * t[:, None] * E[2]
    return pts[:, None, :]


# --- pca_residual_shares ---------------------------------------------------------------------------


def _three_directions(amps, T=24, d=9, seed=3):
    """Points A_k f_k(t) along orthonormal directions, with f_k orthogonal, centred sequences of equal norm:
    the PCA variances are exactly proportional to A_k^2."""
    t = torch.arange(T, dtype=F64)
    f = torch.stack([torch.cos(2 * math.pi * (k + 1) * t / T) for k in range(len(amps))])  # orthogonal, mean 0
    E = _frame(d, len(amps), seed)
    pts = sum(a * f[k][:, None] * E[k] for k, a in enumerate(amps)) + torch.randn(d, dtype=F64)
    return pts[:, None, :]


def test_residual_shares_match_their_definition_on_known_variances():
    amps = torch.tensor([5.0, 2.0, 0.5], dtype=F64)
    lam = amps**2
    shares = geo.pca_residual_shares(_three_directions(amps.tolist()), n=4)[0]
    expect = [lam[0] / lam.sum(), lam[1] / lam[1:].sum(), 1.0, 1.0]   # nothing left after 3: share 1
    torch.testing.assert_close(shares, torch.tensor(expect, dtype=F64), rtol=1e-12, atol=1e-12)


def test_residual_shares_match_naive_numpy():
    rng = np.random.default_rng(4)
    pts = np.cumsum(rng.normal(size=(15, 3, 7)), axis=0)            # random walks: no plane
    shares = geo.pca_residual_shares(torch.from_numpy(pts), n=5)
    for b in range(3):
        x = pts[:, b] - pts[:, b].mean(0)
        lam = np.sort(np.linalg.eigvalsh(x.T @ x))[::-1]
        for k in range(5):
            assert shares[b, k].item() == pytest.approx(lam[k] / lam[k:].sum(), rel=1e-10)


def test_a_line_and_a_planar_arc():
    t = torch.linspace(0, 1, 11, dtype=F64) ** 2
    a, b = torch.randn(2, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    line = (a + t[:, None] * (b - a))[:, None]
    torch.testing.assert_close(geo.pca_residual_shares(line, n=3)[0], torch.ones(3, dtype=F64), rtol=0, atol=1e-12)
    phi = torch.linspace(-1.0, 1.0, 31, dtype=F64)
    E = _frame(6, 2, 5)
    arc = (3 * phi.cos()[:, None] * E[0] + 3 * phi.sin()[:, None] * E[1])[:, None]
    assert geo.pca_residual_shares(arc, n=2)[0, 1].item() == pytest.approx(1.0, abs=1e-12)


def test_residual_share_separates_a_plane_from_a_line_where_cumulative_variance_cannot():
    """Both curves are a long chord plus a small off-chord part; the top-2 cumulative variance is above
    99.9% for both, but only the planar bend has its residual in one direction."""
    g = torch.Generator().manual_seed(6)
    T, d = 41, 50
    s = torch.linspace(0, 1, T, dtype=F64)
    E = _frame(d, 2, 7)
    chord = 100 * s[:, None] * E[0]
    planar = chord + (torch.sin(math.pi * s))[:, None] * E[1]             # bend in one direction
    wobble = torch.randn(T, d, generator=g, dtype=F64)
    wobble -= (wobble @ E[0])[:, None] * E[0]
    spread = chord + 0.1 * wobble                                          # off-chord part in all directions
    pts = torch.stack([planar, spread], 1)
    explained, _ = geo.trajectory_pca(pts)
    assert (explained[:, 1] > 0.999).all()
    r2 = geo.pca_residual_shares(pts, n=2)[:, 1]
    assert r2[0] > 1 - 1e-12
    assert r2[1] < 0.2                                  # about 1 / (number of directions the wobble uses)


def test_residual_shares_float32_and_errors():
    pts = _three_directions([4.0, 1.0, 0.3])
    s64 = geo.pca_residual_shares(pts)
    s32 = geo.pca_residual_shares(pts.float())
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), s64, rtol=1e-5, atol=1e-6)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            geo.pca_residual_shares(pts, n=bad)
    nan = pts.clone()
    nan[3, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        geo.pca_residual_shares(nan)
    with pytest.raises(ValueError, match=r"\(T, batch, ...\)"):
        geo.pca_residual_shares(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        geo.pca_residual_shares(torch.zeros(1, 2, 3))


# --- turning angles and curvature ------------------------------------------------------------------


def test_regular_polygon_turns_by_its_step_angle():
    R, step = 2.5, 0.2
    phi = torch.arange(12, dtype=F64) * step
    E = _frame(4, 2, 8)
    pts = (R * phi.cos()[:, None] * E[0] + R * phi.sin()[:, None] * E[1])[:, None]
    torch.testing.assert_close(geo.turning_angles(pts), torch.full((10, 1), step, dtype=F64), rtol=1e-12, atol=0)
    expect = step / (2 * R * math.sin(step / 2))
    torch.testing.assert_close(geo.discrete_curvature(pts), torch.full((10, 1), expect, dtype=F64), rtol=1e-12, atol=0)


def test_straight_line_and_reversal():
    t = torch.tensor([0.0, 0.1, 0.5, 0.6, 2.0], dtype=F64)
    a, b = torch.randn(2, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    line = (a + t[:, None] * (b - a))[:, None]
    assert geo.turning_angles(line).abs().max() < 1e-7       # sqrt(eps): cancellation in the steps themselves
    back = torch.stack([a, b, a])[:, None]
    assert geo.turning_angles(back).item() == pytest.approx(math.pi, abs=1e-12)


def test_tiny_angles_survive_float32():
    """arccos(<u, v>) returns 0 in float32 for an angle of 1e-5; Kahan's formula keeps it."""
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 1e-5]])[:, None]
    angle = geo.turning_angles(pts)
    assert angle.dtype == torch.float32
    assert angle.item() == pytest.approx(math.atan(1e-5), rel=1e-3)
    u = torch.tensor([1.0, 0.0])
    v = torch.tensor([1.0, 1e-5]) / torch.tensor([1.0, 1e-5]).norm()
    assert torch.arccos((u * v).sum().clamp(-1, 1)).item() == 0.0     # the naive formula loses it


def test_turning_angles_match_naive_numpy():
    rng = np.random.default_rng(10)
    pts = rng.normal(size=(9, 4, 6))
    got = geo.turning_angles(torch.from_numpy(pts)).numpy()
    steps = pts[1:] - pts[:-1]
    unit = steps / np.linalg.norm(steps, axis=-1, keepdims=True)
    ref = np.arccos(np.clip((unit[:-1] * unit[1:]).sum(-1), -1, 1))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_discrete_curvature_of_a_helix_converges_at_second_order_whatever_the_speed():
    r, c = 2.0, 0.5
    kappa = r / (r**2 + c**2)
    errors = []
    for n in (100, 200, 400):
        k = geo.discrete_curvature(_helix(r, c, n=n))
        errors.append((k - kappa).abs().max().item())
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(o - 2) < 0.1 for o in orders), orders
    # a non-uniform parametrization samples the same curve unevenly: still the same curvature
    k_uneven = geo.discrete_curvature(_helix(r, c, n=4000, reparam=True))[50:-50]  # away from the slow start
    assert (k_uneven - kappa).abs().max() / kappa < 1e-3


def test_geometric_curvature_of_a_helix_in_any_parametrization():
    r, c = 1.5, 0.7
    E = _frame(5, 3, 11)
    for speed in (1.0, 3.0):
        t = torch.linspace(0, 6, 17, dtype=F64)
        # x(t) = helix(speed * t^2): velocity and acceleration by the chain rule
        s, ds, dds = speed * t**2, 2 * speed * t, torch.full_like(t, 2 * speed)
        d1 = torch.stack([-r * s.sin(), r * s.cos(), torch.full_like(s, c)], 1)   # d helix / ds
        d2 = torch.stack([-r * s.cos(), -r * s.sin(), torch.zeros_like(s)], 1)
        vel = (ds[:, None] * d1) @ E
        acc = (dds[:, None] * d1 + ds[:, None] ** 2 * d2) @ E
        k = geo.geometric_curvature(vel[1:], acc[1:])          # t = 0 has zero velocity
        torch.testing.assert_close(k, torch.full_like(k, r / (r**2 + c**2)), rtol=1e-12, atol=0)


def test_a_single_gaussian_accelerates_without_turning():
    """For N(mu, v I) the curvature identity gives d2x/dsigma2 = v (x - mu) / (v + sigma^2)^2, parallel
    to the ODE direction: kappa = 0 (chapter 3)."""
    mu = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    v = 0.3
    one = dg.GaussianMixture(mu, torch.tensor([v], dtype=F64))
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(12), dtype=F64) * 2
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 40.0], dtype=F64)
    acc = dg.finite_differences.curvature(one, x, sigma)
    torch.testing.assert_close(acc, v * (x - mu) / (v + sigma[:, None] ** 2) ** 2, rtol=1e-10, atol=1e-14)
    eps = (x - one(x, sigma)) / sigma[:, None]
    # kappa against the curve's own scale 1 / |x - mu|; at sigma = 0.01 x - D cancels to ~1e-3 of x
    assert (geo.geometric_curvature(eps, acc) * (x - mu).norm(dim=1)).max() < 1e-9


def test_discrete_curvature_of_an_exact_flow_matches_the_curvature_identity():
    """For N(mu, diag(v)) the flow is x_j(sigma) = mu_j + sqrt(v_j + sigma^2) c_j, which bends where
    sigma passes the sqrt(v_j). Sampled densely, its polyline curvature is the identity's."""
    v = torch.tensor([0.04, 1.0, 9.0], dtype=F64)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    gauss = dg.GaussianMixture(mu[None], v[None])
    c = torch.tensor([[1.0, 2.0, -1.0], [-0.5, 1.0, 0.3]], dtype=F64)
    sig = torch.logspace(1, -1.5, 3000, dtype=F64)
    pts = mu + (v + sig[:, None, None] ** 2).sqrt() * c[None]                  # (L, 2, 3)
    k_poly = geo.discrete_curvature(pts)
    inner = pts[1:-1].reshape(-1, 3)
    s_in = sig[1:-1].repeat_interleave(2)
    eps = (inner - gauss(inner, s_in)) / s_in[:, None]
    acc = dg.finite_differences.curvature(gauss, inner, s_in)
    k_exact = geo.geometric_curvature(eps, acc).reshape(-1, 2)
    assert k_exact.max() > 0.1                                                  # it does bend
    torch.testing.assert_close(k_poly, k_exact, rtol=2e-3, atol=1e-9)


def test_curvature_errors():
    with pytest.raises(ValueError, match="repeats a point"):
        geo.turning_angles(torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])[:, None])
    with pytest.raises(ValueError, match="at least 3"):
        geo.discrete_curvature(torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="NaN"):
        geo.turning_angles(torch.tensor([[0.0, 0.0], [1.0, float("nan")], [2.0, 0.0]])[:, None])
    with pytest.raises(ValueError, match="velocity is zero"):
        geo.geometric_curvature(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        geo.geometric_curvature(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        geo.geometric_curvature(torch.ones(2, 3), torch.full((2, 3), float("inf")))
    with pytest.raises(ValueError, match=r"\(batch, ...\)"):
        geo.geometric_curvature(torch.ones(3), torch.ones(3))


# --- boomerang_profile_correlations ----------------------------------------------------------------


def test_profile_correlations_of_scaled_bends_and_naive_numpy():
    T, d = 30, 8
    s = torch.linspace(0, 1, T, dtype=F64)
    E = _frame(d, 3, 13)
    bends = [s * (1 - s), 5 * s * (1 - s), s**3 * (1 - s)]          # two of the same shape, one skewed
    pts = torch.stack([200 * s[:, None] * E[0] + b[:, None] * E[1] for b in bends], 1)
    coords = geo.boomerang_projection(pts)
    C = geo.boomerang_profile_correlations(coords)
    assert C.shape == (3, 3)
    assert C[0, 1].item() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(C.numpy(), np.corrcoef(coords[..., 1].T.numpy()), rtol=1e-12, atol=1e-12)
    assert C[0, 2].item() < 0.95


def test_profile_correlations_errors():
    t = torch.linspace(0, 1, 6, dtype=F64)
    line = (t[:, None] * torch.tensor([1.0, 2.0, 0.0], dtype=F64))[:, None]
    with pytest.raises(ValueError, match="constant"):
        geo.boomerang_profile_correlations(geo.boomerang_projection(line))
    with pytest.raises(ValueError, match=r"\(T, batch, 3\)"):
        geo.boomerang_profile_correlations(torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match="at least 3"):
        geo.boomerang_profile_correlations(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="NaN"):
        geo.boomerang_profile_correlations(torch.full((4, 2, 3), float("nan")))
