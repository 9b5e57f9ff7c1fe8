"""Tests of the Part I helpers: geometry.segment_coordinates / settling_sigma and the interpolation module."""
import math

import numpy as np
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry.geometry import segment_coordinates, settling_sigma
from diffusion_geometry.interpolation import lerp, shell_log_cdf, slerp


# --- segment_coordinates ---------------------------------------------------------------------------


def test_segment_coordinates_recovers_constructed_position_and_offset():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(50, 3, 4, generator=g, dtype=torch.float64)
    lam_true = torch.rand(50, generator=g, dtype=torch.float64) * 3 - 1
    v = (b - a).reshape(50, -1)
    w = torch.randn(50, 12, generator=g, dtype=torch.float64)
    w = w - (w * v).sum(1, keepdim=True) / (v * v).sum(1, keepdim=True) * v  # orthogonal to v
    p = a + (lam_true[:, None] * v + w).reshape(50, 3, 4)
    lam, perp = segment_coordinates(p, a, b)
    torch.testing.assert_close(lam, lam_true, rtol=0, atol=1e-12)
    torch.testing.assert_close(perp, w.norm(dim=1), rtol=1e-12, atol=1e-12)


def test_segment_coordinates_matches_naive_numpy():
    rng = np.random.default_rng(1)
    a, b, p = (rng.normal(size=(7, 5)) for _ in range(3))
    lam, perp = segment_coordinates(*(torch.from_numpy(t) for t in (p, a, b)))
    for i in range(7):
        v = b[i] - a[i]
        l_ref = np.dot(p[i] - a[i], v) / np.dot(v, v)
        assert lam[i].item() == pytest.approx(l_ref, rel=1e-12)
        assert perp[i].item() == pytest.approx(np.linalg.norm(p[i] - a[i] - l_ref * v), rel=1e-10)


def test_euler_step_lands_on_segment_at_one_minus_ratio():
    gm = dg.datasets.mixture_2d()
    x = 10 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    den = gm(x, 10.0)
    nxt = dg.samplers.euler_step(x, 10.0, 7.0, den)
    lam, perp = segment_coordinates(nxt, x, den)
    torch.testing.assert_close(lam, torch.full_like(lam, 0.3), rtol=0, atol=1e-12)
    assert (perp / (den - x).norm(dim=1)).max() < 1e-12


def test_segment_coordinates_rejects_bad_input():
    a = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="zero length"):
        segment_coordinates(torch.ones(3, 2), a, a)
    with pytest.raises(ValueError, match="shapes differ"):
        segment_coordinates(torch.ones(3, 2), a, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\(batch, ...\)"):
        segment_coordinates(torch.ones(2), torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match=r"\(batch, ...\)"):
        segment_coordinates([1.0, 2.0], a, a)


# --- settling_sigma --------------------------------------------------------------------------------


def test_settling_sigma_interpolates_geometrically_between_levels():
    sig = torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)
    dist = torch.tensor([[5.0], [3.0], [1.0], [0.5]], dtype=torch.float64)
    # last exceedance at sigma = 4 (3 > 2); halfway to the next distance 1, halfway in log sigma
    assert settling_sigma(dist, sig, 2.0).item() == pytest.approx(math.sqrt(8.0), rel=1e-12)


def test_settling_sigma_uses_the_last_exceedance_and_edge_cases():
    sig = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    cols = [
        [0.1, 0.1, 0.1, 0.1, 0.1],  # never above the threshold: within from the start
        [3.0, 0.1, 3.0, 0.1, 0.1],  # dips below, rises above again at sigma = 2, then settles
        [0.1, 0.1, 0.1, 3.0, 1.0],  # last exceedance at sigma = 1; the next level is 0
        [3.0, 3.0, 3.0, 3.0, 3.0],  # never settles
    ]
    out = settling_sigma(torch.tensor(cols, dtype=torch.float64).T, sig, 2.0)
    assert out[0].item() == 8.0
    f = (3.0 - 2.0) / (3.0 - 0.1)
    assert out[1].item() == pytest.approx(math.exp(math.log(2) + f * (math.log(1) - math.log(2))), rel=1e-12)
    # linear in sigma when the next level is 0: 1 + 0.5 * (0 - 1)
    assert out[2].item() == pytest.approx(0.5, rel=1e-12)
    assert math.isnan(out[3].item())


def test_settling_sigma_matches_closed_form_on_exact_ode():
    # Single Gaussian N(0, v): along the exact ODE x_sigma = sqrt((v + s^2)/(v + T^2)) x_T, so
    # ||x_sigma - x_end|| = (sqrt(v+s^2) - sqrt(v)) |z| with z = x_T/sqrt(v+T^2): invert for the threshold.
    v, T = 0.25, 80.0
    sig = dg.edm_sigmas(4000, sigma_max=T).double()
    z = torch.tensor([1.3, -0.7], dtype=torch.float64)
    dist = (torch.sqrt(v + sig**2) - math.sqrt(v))[:, None] * z.abs()[None] - (
        (math.sqrt(v + sig[-1].item() ** 2) - math.sqrt(v)) * z.abs()[None])
    thr = 0.05
    s_star = settling_sigma(dist, sig, thr)
    c = (math.sqrt(v + sig[-1].item() ** 2) - math.sqrt(v))
    truth = [math.sqrt((thr / abs(zz) + c + math.sqrt(v)) ** 2 - v) for zz in z.tolist()]
    for got, want in zip(s_star.tolist(), truth):
        assert got == pytest.approx(want, rel=1e-4)


def test_settling_sigma_rejects_bad_input():
    sig = torch.tensor([2.0, 1.0])
    with pytest.raises(ValueError, match=r"\(T, batch\)"):
        settling_sigma(torch.ones(2), sig, 1.0)
    with pytest.raises(ValueError, match="shape"):
        settling_sigma(torch.ones(3, 1), sig, 1.0)
    with pytest.raises(ValueError, match="decreasing"):
        settling_sigma(torch.ones(2, 1), torch.tensor([1.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match="threshold"):
        settling_sigma(torch.ones(2, 1), sig, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        settling_sigma(torch.ones(2, 1), sig, "1")


# --- interpolation ---------------------------------------------------------------------------------


def test_slerp_on_the_unit_circle():
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    for alpha in (0.0, 0.25, 0.5, 1.0):
        angle = alpha * math.pi / 2
        torch.testing.assert_close(slerp(a, b, alpha), torch.tensor([[math.cos(angle), math.sin(angle)]],
                                                                     dtype=torch.float64))


def test_slerp_keeps_norm_and_moves_at_constant_angle():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(20, 64, generator=g, dtype=torch.float64)
    b = torch.randn(20, 64, generator=g, dtype=torch.float64)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal norms
    theta = torch.acos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)))
    alpha = torch.rand(20, generator=g, dtype=torch.float64)
    s = slerp(a, b, alpha)
    torch.testing.assert_close(s.norm(dim=1), a.norm(dim=1), rtol=1e-12, atol=0)
    ang = torch.acos(((s * a).sum(1) / (s.norm(dim=1) * a.norm(dim=1))).clamp(-1, 1))
    torch.testing.assert_close(ang, alpha * theta, rtol=1e-9, atol=1e-9)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    a = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(slerp(a, 3 * a, 0.5), 2 * a)


def test_lerp_endpoints_and_midpoint_norm_of_latents():
    g = torch.Generator().manual_seed(4)
    T, d = 80.0, 4096
    a = T * torch.randn(32, d, generator=g, dtype=torch.float64)
    b = T * torch.randn(32, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(lerp(a, b, 0.0), a)
    torch.testing.assert_close(lerp(a, b, 1.0), b)
    ratio = lerp(a, b, 0.5).norm(dim=1) / (T * math.sqrt(d))
    # independent Gaussians: (a + b)/2 ~ N(0, T^2/2 I), norm ratio 1/sqrt(2) up to O(1/sqrt(d))
    assert abs(ratio.mean().item() - 1 / math.sqrt(2)) < 0.01
    ratio_s = slerp(a, b, 0.5).norm(dim=1) / (T * math.sqrt(d))
    assert abs(ratio_s.mean().item() - 1) < 0.01


def test_interpolation_per_sample_alpha_and_trailing_shape():
    a = torch.zeros(3, 1, 2, 2)
    b = torch.ones(3, 1, 2, 2)
    out = lerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert out.shape == a.shape
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([0.0, 0.5, 1.0]))


def test_interpolation_rejects_bad_input():
    a = torch.ones(2, 3)
    with pytest.raises(TypeError):
        lerp([1.0], a, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        slerp(a, torch.ones(2, 4), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        lerp(a, a, torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        lerp(a, a, float("nan"))
    with pytest.raises(ValueError, match="non-zero"):
        slerp(torch.zeros(2, 3), a, 0.5)


def test_shell_log_cdf_closed_forms():
    # d = 2: ||eps||^2 ~ Exponential(mean 2), P(||eps|| <= r sqrt 2) = 1 - exp(-r^2)
    for r in (0.3, 0.7, 1.0, 1.5):
        assert math.exp(shell_log_cdf(r, 2)) == pytest.approx(1 - math.exp(-r * r), rel=1e-10)
    # d = 1: P(|z| <= r) = erf(r / sqrt 2)
    assert math.exp(shell_log_cdf(0.8, 1)) == pytest.approx(math.erf(0.8 / math.sqrt(2)), rel=1e-10)
    # the lerp midpoint is far in the tail in high dimension (and finite in log space)
    assert shell_log_cdf(1 / math.sqrt(2), 784) < -40


def test_shell_log_cdf_rejects_bad_input():
    with pytest.raises(ValueError, match="positive integer"):
        shell_log_cdf(0.5, 0)
    with pytest.raises(ValueError, match="positive integer"):
        shell_log_cdf(0.5, 2.0)
    with pytest.raises(ValueError, match="non-negative"):
        shell_log_cdf(-0.1, 3)
