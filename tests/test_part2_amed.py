"""AMED: fitting the intermediate level and scale of each step on a warm-up batch."""
import math

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import amed, samplers

F64 = torch.float64
GM = dg.datasets.mixture_2d()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def test_refine_sigmas_keeps_the_coarse_levels_and_splits_geometrically():
    coarse = dg.append_zero(dg.edm_sigmas(4))
    fine = amed.refine_sigmas(coarse, 3)
    assert fine.numel() == 3 * 5 + 1
    assert torch.equal(fine[::3], coarse)
    ratios = fine[1:4] / fine[0:3]
    assert torch.allclose(ratios, ratios[0].expand(3), rtol=1e-12)  # uniform in log sigma
    assert torch.allclose(fine[-4:], torch.linspace(float(coarse[-2]), 0.0, 4, dtype=F64))  # last interval: uniform


def _brute_force_step(denoiser, y0, y1, s0, s1, rs, cs):
    """min over a (r, c) grid of mean ||one AMED step from y0 - y1||^2, with the sampler itself."""
    best = math.inf
    grid = torch.tensor([s0, s1], dtype=F64)
    for r in rs:
        for c in cs:
            out = samplers.amed(denoiser, y0, grid, r=r, c=c)
            best = min(best, float(((out - y1) ** 2).sum(1).mean()))
    return best


def test_fit_is_at_least_as_good_as_a_brute_force_grid_and_reproduces_its_loss():
    x = 80 * torch.randn(32, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    sig = dg.edm_sigmas(3)
    p = amed.fit_amed(GM, x, sig, teacher_substeps=10)
    y = dg.sample(GM, x, amed.refine_sigmas(sig, 10), sampler="heun").x[::10]  # the same teacher, run here
    rs = [0.1 * k for k in range(1, 11)]
    cs = [0.9 + 0.01 * k for k in range(21)]
    for i in range(3):
        s0, s1 = float(sig[i]), float(sig[i + 1])
        brute = _brute_force_step(GM, y[i], y[i + 1], s0, s1, rs, cs)
        out = samplers.amed(GM, y[i], sig[i: i + 2], r=float(p.r[i]), c=float(p.c[i]))
        mine = float(((out - y[i + 1]) ** 2).sum(1).mean())
        print(f"step {i}: r={float(p.r[i]):.3f} c={float(p.c[i]):.4f} loss {mine:.3e} brute {brute:.3e} "
              f"dpm2 {float(p.loss_dpm2[i]):.3e}")
        assert math.isclose(mine, float(p.loss[i]), rel_tol=1e-9, abs_tol=1e-15)
        assert mine <= brute * (1 + 1e-9)
        assert mine <= float(p.loss_dpm2[i]) * (1 + 1e-9)


def test_fitted_amed_beats_dpm_solver_2_against_the_exact_ode():
    g = torch.Generator().manual_seed(5)
    x_warm = 80 * torch.randn(64, 2, generator=g, dtype=F64)
    x_test = 80 * torch.randn(64, 2, generator=g, dtype=F64)
    ref = dg.benchmarking.ode_reference(GM, x_test, rtol=1e-11, atol=1e-11)
    for steps in (3, 4):
        sig = dg.edm_sigmas(steps)
        p = amed.fit_amed(GM, x_warm, sig)
        e_amed = dg.benchmarking.sample_error(samplers.amed(GM, x_test, sig, r=p.r, c=p.c), ref).mean()
        e_dpm2 = dg.benchmarking.sample_error(samplers.dpm_solver_2(GM, x_test, sig), ref).mean()
        print(f"{steps} steps ({2 * steps} NFE): AMED {e_amed:.4f}, DPM-Solver-2 {e_dpm2:.4f}, r {p.r.tolist()}")
        assert e_amed < e_dpm2


def test_fit_without_c_keeps_c_one_and_bounds_clip():
    x = 80 * torch.randn(16, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    sig = dg.append_zero(dg.edm_sigmas(2))
    p = amed.fit_amed(GM, x, sig, fit_c=False)
    assert torch.equal(p.c, torch.ones(3, dtype=F64))
    assert float(p.r[-1]) == 0.5  # the step to 0 is an Euler step
    q = amed.fit_amed(GM, x, sig, c_bounds=(0.99, 1.01))
    assert bool(((q.c >= 0.99) & (q.c <= 1.01)).all())


def test_fit_amed_bad_input():
    x = torch.zeros(4, 2, dtype=F64)
    sig = dg.edm_sigmas(2)
    with pytest.raises(ValueError, match="r_grid must be non-empty"):
        amed.fit_amed(GM, x, sig, r_grid=[0.0, 0.5])
    with pytest.raises(ValueError, match="c_bounds must satisfy"):
        amed.fit_amed(GM, x, sig, c_bounds=(1.1, 0.9))
    with pytest.raises(ValueError, match="x_warmup must be a tensor"):
        amed.fit_amed(GM, x[0], sig)
    with pytest.raises(ValueError, match="substeps must be a positive integer"):
        amed.refine_sigmas(sig, 0)
    with pytest.raises(TypeError, match="afs must be True or False"):
        amed.fit_amed(GM, x, sig, afs=1)
