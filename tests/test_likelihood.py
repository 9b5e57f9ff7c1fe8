"""log_likelihood against the exact log-density of Gaussian mixtures, and bits per dimension against a
closed-form Gaussian."""
import math

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import likelihood


@pytest.fixture(scope="module")
def ring():
    return dg.datasets.mixture_2d(n_modes=8, radius=2.0, std=0.15)


def test_exact_divergence_matches_the_mixture_log_density_in_2d(ring):
    """Within 1e-4 nats of log p_sigma_min, with the exact prior at sigma_max (so only the ODE errs)."""
    s_min, s_max = 1e-3, 80.0
    x = ring.sample(24, sigma=s_min, generator=torch.Generator().manual_seed(0))
    res = likelihood.log_likelihood(ring.denoise, x, [s_min, 1.0, s_max],
                                    prior=lambda y: ring.log_prob(y, s_max))
    exact = ring.log_prob(x, s_min)
    err = (res.log_prob - exact).abs().max().item()
    print(f"max |error| = {err:.2e} nats over 24 points, {res.nfe} evaluations")
    assert err < 1e-4
    # along the solution: log p_sigma(y(sigma)) at sigma = 1 is the mixture's too
    err_mid = (res.along[1] - ring.log_prob(res.trajectory[1], 1.0)).abs().max().item()
    assert err_mid < 1e-4, err_mid
    torch.testing.assert_close(res.along[0], res.log_prob)


def test_default_gaussian_prior_is_accurate_when_sigma_max_is_large(ring):
    s_min, s_max = 1e-3, 1e3
    x = ring.sample(8, sigma=s_min, generator=torch.Generator().manual_seed(1))
    res = likelihood.log_likelihood(ring.denoise, x, [s_min, s_max])
    err = (res.log_prob - ring.log_prob(x, s_min)).abs().max().item()
    assert err < 1e-4, err  # prior error ~ d m^2 / sigma_max^2 = 2 * 4 / 1e6


def test_hutchinson_is_within_its_stated_error_in_64_dimensions():
    mix = dg.datasets.mixture_nd(64, n_modes=6, std=0.3, seed=2)
    s_min, s_max = 0.01, 80.0
    x = mix.sample(12, sigma=s_min, generator=torch.Generator().manual_seed(2))
    exact = mix.log_prob(x, s_min)
    res = likelihood.log_likelihood(mix.denoise, x, [s_min, s_max], divergence="hutchinson", n_probes=16,
                                    generator=torch.Generator().manual_seed(3),
                                    prior=lambda y: mix.log_prob(y, s_max), rtol=1e-6, atol=1e-6)
    z = (res.log_prob - exact) / res.std_error
    print("z-scores", z, "stated errors", res.std_error)
    # each estimate within 4.5 stated standard errors (t with 15 degrees of freedom: P(|t| > 4.5) < 1e-3),
    assert z.abs().max().item() < 4.5
    # and the stated error is an error, not a bound any estimate passes: its mean square z is near 1
    assert 0.2 < (z ** 2).mean().item() < 3.0


def test_rejects_bad_input(ring):
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least 2"):
        likelihood.log_likelihood(ring.denoise, x, [0.1])
    with pytest.raises(ValueError, match="positive"):
        likelihood.log_likelihood(ring.denoise, x, [0.0, 1.0])
    with pytest.raises(ValueError, match="n_probes >= 2"):
        likelihood.log_likelihood(ring.denoise, x, [0.1, 1.0], divergence="hutchinson", n_probes=1)
    with pytest.raises(ValueError, match="divergence must be"):
        likelihood.log_likelihood(ring.denoise, x, [0.1, 1.0], divergence="skilling")
    with pytest.raises(ValueError, match="differentiabl"):
        likelihood.log_likelihood(lambda y, s: ring.denoise(y, s).detach(), x, [0.1, 1.0])
    with pytest.raises(ValueError, match="finite"):
        likelihood.log_likelihood(ring.denoise, x * float("nan"), [0.1, 1.0])


def test_bits_per_dim_of_a_gaussian_matches_closed_form():
    """Data N(0, v I) in 16 dimensions, quantised to 17 levels; the denoiser is exact, so the bpd of
    each dequantised image is -(log N(x + u; 0, (v + s_min^2) I) + d log Delta)/(d ln 2), whose mean
    over the dequantisation noise u ~ U(-Delta/2, Delta/2)^d is closed form."""
    v, d, levels, s_min = 0.2, 16, 17, 0.002
    gauss = dg.GaussianMixture(torch.zeros(1, d, dtype=torch.float64), v)
    delta = 2 / (levels - 1)
    gen = torch.Generator().manual_seed(0)
    raw = (torch.randn(256, d, generator=gen, dtype=torch.float64) * math.sqrt(v)).clamp(-1, 1)
    images = (torch.round((raw + 1) / delta) * delta - 1).reshape(256, 1, 4, 4)
    out = likelihood.bits_per_dim(lambda y, s: gauss.denoise(y.flatten(1), s).reshape(y.shape), images,
                                  levels=levels, sigma_min=s_min, sigma_max=1e3, n_probes=4,
                                  generator=torch.Generator().manual_seed(1), rtol=1e-7, atol=1e-7)
    w = v + s_min ** 2
    x2 = images.flatten(1) ** 2 + delta ** 2 / 12  # E (x + u)^2
    expected = ((0.5 * x2.sum(1) / w + 0.5 * d * math.log(2 * math.pi * w)) - d * math.log(delta)) / (d * math.log(2))
    diff = out["mean"] - expected.mean().item()
    print(f"bpd {out['mean']:.4f} against {expected.mean().item():.4f} (diff {diff:.1e}), nfe {out['nfe']}")
    assert abs(diff) < 0.01  # the dequantisation noise moves the mean by ~0.003 bits
    assert out["bpd"].shape == (256,)
