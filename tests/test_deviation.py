"""Tests of diffusion_geometry.deviation: the four score-deviation curves, the memorisation count and r^2."""
import math

import numpy as np
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry.deviation import ScoreDeviation, memorized_fraction, score_deviation


def _setup(n_train=200, batch=12, seed=0):
    gm = dg.datasets.mixture_2d()
    g = torch.Generator().manual_seed(seed)
    y = gm.sample(n_train, generator=g)
    x = 20 * torch.randn(batch, 2, generator=g, dtype=torch.float64)
    return gm, dg.EmpiricalDenoiser(y), x, dg.edm_sigmas(16, sigma_max=20.0)


def test_identical_denoisers_give_zero_curves():
    _, kde, x, sig = _setup()
    dev = score_deviation(kde, kde, x, sig)
    for curve in (dev.sampling, dev.denoising, dev.on_learned, dev.on_optimal):
        assert curve.abs().max() == 0


def test_curves_against_independent_runs():
    """Each curve equals the norm computed from separately run Euler trajectories."""
    gm, kde, x, sig = _setup()
    dev = score_deviation(gm, kde, x, sig)
    assert isinstance(dev, ScoreDeviation)
    xs_l, xs_o, dl, do = [x], [x], [], []
    a = b = x
    for s, s_next in zip(sig[:-1].tolist(), sig[1:].tolist()):
        da, db = gm(a, s), kde(b, s)
        dl.append(da)
        do.append(db)
        a = a + (s_next - s) * (a - da) / s
        b = b + (s_next - s) * (b - db) / s
        xs_l.append(a)
        xs_o.append(b)
    xs_l, xs_o, dl, do = map(torch.stack, (xs_l, xs_o, dl, do))
    levels = sig[:-1].tolist()
    torch.testing.assert_close(dev.sampling, (xs_l - xs_o).norm(dim=-1))
    torch.testing.assert_close(dev.denoising, (dl - do).norm(dim=-1))
    opt_on_l = torch.stack([kde(xs_l[i], s) for i, s in enumerate(levels)])
    lrn_on_o = torch.stack([gm(xs_o[i], s) for i, s in enumerate(levels)])
    torch.testing.assert_close(dev.on_learned, (dl - opt_on_l).norm(dim=-1))
    torch.testing.assert_close(dev.on_optimal, (lrn_on_o - do).norm(dim=-1))
    torch.testing.assert_close(dev.optimal_on_learned, opt_on_l)
    torch.testing.assert_close(dev.learned_on_optimal, lrn_on_o)
    assert dev.sampling.shape == (17, 12) and dev.on_learned.shape == (16, 12)
    assert dev.sampling[0].abs().max() == 0  # same start


def test_large_sigma_limit_is_the_difference_of_means():
    """As sigma -> inf both denoisers return their data mean: deviation -> ||mean(train) - E[x0]|| = O(1/sigma^2) close."""
    gm, kde, x, _ = _setup(n_train=50)
    sig = torch.tensor([1e4, 5e3], dtype=torch.float64)
    dev = score_deviation(gm, kde, x, sig)
    gap = (kde.training_points(torch.arange(50)).mean(0) - (gm.weights[:, None] * gm.means).sum(0)).norm()
    torch.testing.assert_close(dev.on_learned[0], gap.expand(12), rtol=1e-4, atol=0)


def test_population_and_centres_agree_at_large_and_part_at_small_sigma():
    """The exact denoiser of the 8-mode ring (mode std 0.15) against the optimal denoiser of the 8 mode
    centres (same mean): at sigma = 20 they differ only through the O(1/sigma^2) covariance term
    (0.15^2 |x| / sigma^2); near the data the optimal one snaps to a centre while the population
    denoiser keeps the spread within a mode (of order 0.15)."""
    gm, _, x, sig = _setup()
    kde = dg.EmpiricalDenoiser(gm.means)
    dev = score_deviation(gm, kde, x, sig)
    curve = dev.curves()["on_learned"]
    assert curve[0] < 0.15**2 * x.norm(dim=1).max() / 20.0**2 * 1.5
    near = sig[:-1] < 0.3
    assert curve[near].min() > 0.05


def test_curves_dict_shapes():
    gm, kde, x, sig = _setup(batch=4)
    c = score_deviation(gm, kde, x, sig, sampler="heun").curves()
    assert set(c) == {"sampling", "denoising", "on_learned", "on_optimal"}
    assert all(v.shape == (16,) for v in c.values())


def test_memorized_fraction():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(30, 3, generator=g, dtype=torch.float64)
    kde = dg.EmpiricalDenoiser(y)
    copies = y[:10] + 1e-3 * torch.randn(10, 3, generator=g, dtype=torch.float64)
    assert memorized_fraction(kde, copies) == 1.0
    mids = 0.5 * (y[:10] + y[10:20])  # equidistant from two training points: d1/d2 <= 1 but not < 1/3
    d, _ = kde.nearest(mids, k=2)
    assert memorized_fraction(kde, mids) == float((d[:, 0] < d[:, 1] / 3).double().mean())
    assert memorized_fraction(kde, torch.cat([copies, y[:10] + 10.0])) == pytest.approx(0.5)


def test_errors():
    gm, kde, x, sig = _setup(batch=2)
    with pytest.raises(TypeError, match="learned"):
        score_deviation(None, kde, x, sig)
    with pytest.raises(TypeError, match="optimal"):
        score_deviation(gm, 1.0, x, sig)
    with pytest.raises(ValueError, match="batch"):
        score_deviation(gm, kde, torch.zeros(2), sig)
    with pytest.raises(ValueError, match="end above 0"):
        score_deviation(gm, kde, x, dg.append_zero(sig))
    with pytest.raises(ValueError, match="decreasing"):
        score_deviation(gm, kde, x, sig.flip(0))
    with pytest.raises(TypeError, match="EmpiricalDenoiser"):
        memorized_fraction(gm, x)
    with pytest.raises(ValueError, match="two training points"):
        memorized_fraction(dg.EmpiricalDenoiser(torch.zeros(1, 2)), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="ratio"):
        memorized_fraction(kde, x, ratio=0.0)
    with pytest.raises(ValueError, match="shape"):
        memorized_fraction(kde, torch.zeros(3, 5, dtype=torch.float64))
    assert math.isfinite(memorized_fraction(kde, x))


def test_r_squared_is_sklearns_per_sample():
    from sklearn.metrics import r2_score

    from diffusion_geometry.deviation import r_squared
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 1, 4, 3, generator=g, dtype=torch.float64)
    for pred in (target + 0.3 * torch.randn(target.shape, generator=g, dtype=torch.float64),
                 torch.zeros_like(target), target.clone(), -target):
        ours = r_squared(pred, target)
        ref = [r2_score(t.flatten().numpy(), p.flatten().numpy()) for p, t in zip(pred, target)]
        assert ours.dtype == torch.float64 and ours.shape == (5,)
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(r_squared(target, target), torch.ones(5, dtype=torch.float64))
    # the target's own mean pixel scores 0
    mean = target.mean(dim=(1, 2, 3), keepdim=True).expand_as(target)
    assert r_squared(mean, target).abs().max().item() < 1e-14


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_r_squared_low_precision_inputs_are_summed_exactly(dtype):
    from diffusion_geometry.deviation import r_squared
    g = torch.Generator().manual_seed(1)
    target = (1000 + torch.randn(3, 64, generator=g)).to(dtype)  # a large offset: float16 sums would cancel
    pred = (target.double() + 0.1 * torch.randn(3, 64, generator=g, dtype=torch.float64)).to(dtype)
    exact = r_squared(pred.double(), target.double())
    assert torch.equal(r_squared(pred, target), exact)


def test_r_squared_bad_input():
    from diffusion_geometry.deviation import r_squared
    t = torch.randn(3, 4)
    for p, tt, match in ((t[:, :3], t, "one shape"), (t[0], t[0], "at least 2 entries"),
                         (t[:, :1], t[:, :1], "at least 2 entries"), (t[:0], t[:0], "batch >= 1")):
        with pytest.raises(ValueError, match=match):
            r_squared(p, tt)
    bad = t.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        r_squared(bad, t)
    flat = t.clone()
    flat[2] = 5.0
    with pytest.raises(ValueError, match=r"sample\(s\) \[2\] have no variation"):
        r_squared(t, flat)
    with pytest.raises(ValueError, match="tensors"):
        r_squared(t.numpy(), t)
