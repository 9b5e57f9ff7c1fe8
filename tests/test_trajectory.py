"""The Trajectory record: the sampling trajectory, the exact denoising trajectory, the NFE count."""
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import samplers
from diffusion_geometry.trajectory import CountingDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64
GM = dg.datasets.mixture_2d()
X_T = 80 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
OPTS = {"dpm_solver_2": {"r": 0.4}, "ipndm": {"order": 3}}


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_solver_2", "dpm_solver_pp_2m", "ipndm"])
@pytest.mark.parametrize("zero", [False, True])
def test_trajectory_records_both_curves(name, zero):
    sig = dg.edm_sigmas(7)
    if zero:
        sig = dg.append_zero(sig)
    opts = OPTS.get(name, {})
    traj = dg.sample(GM, X_T, sig, sampler=name, **opts)
    n = len(sig) - 1
    assert traj.sampler == name
    assert torch.equal(traj.sigmas, sig)
    assert traj.x.shape == (n + 1, 5, 2) and traj.denoised.shape == (n, 5, 2)
    assert torch.equal(traj.x[0], X_T)
    # the final sample is exactly the sampler's output
    assert torch.equal(traj.sample, samplers.SAMPLERS[name](GM, X_T, sig, **opts))
    assert torch.equal(traj.sample, traj.x[-1])
    # the denoising trajectory is exactly the denoiser at the recorded grid points
    for i in range(n):
        assert torch.equal(traj.denoised[i], GM(traj.x[i], sig[i].item())), i
    # intermediate points equal the sampler run to that level (a prefix of the grid): no step looks ahead
    for i in (1, n // 2):
        assert torch.equal(traj.x[i], samplers.SAMPLERS[name](GM, X_T, sig[: i + 1], **opts)), i
    # the directions are (x_i - D_i) / sigma_i
    expect = (traj.x[:-1] - traj.denoised) / sig[:-1].reshape(-1, 1, 1)
    assert torch.allclose(traj.directions, expect, rtol=1e-15, atol=0)


def test_sampling_trajectory_of_euler_is_the_euler_recursion():
    sig = dg.edm_sigmas(5)
    traj = dg.sample(GM, X_T, sig, sampler="euler")
    for i in range(5):
        s, sn = sig[i].item(), sig[i + 1].item()
        assert torch.allclose(traj.x[i + 1], (sn / s) * traj.x[i] + (1 - sn / s) * traj.denoised[i],
                              rtol=1e-14, atol=1e-14)


def test_user_callback_and_custom_method():
    seen = []
    traj = dg.sample(GM, X_T, dg.edm_sigmas(3), sampler="heun", callback=seen.append)
    assert [s["i"] for s in seen] == [0, 1, 2]
    assert traj.nfe == 6

    def my_euler(denoiser, x, sigmas, *, callback=None):
        return samplers.euler(denoiser, x, sigmas, callback=callback)

    t2 = dg.sample(GM, X_T, dg.edm_sigmas(3), sampler=my_euler)
    assert t2.sampler == "my_euler" and t2.nfe == 3
    assert torch.equal(t2.sample, samplers.euler(GM, X_T, dg.edm_sigmas(3)))


def test_image_shaped_trajectory_keeps_dtype_and_shape():
    data = torch.rand(30, 1, 3, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    den = dg.EmpiricalDenoiser(data)
    x = 80 * torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    traj = dg.sample(den, x, dg.append_zero(dg.edm_sigmas(4)), sampler="heun")
    assert traj.x.shape == (6, 2, 1, 3, 3) and traj.denoised.shape == (5, 2, 1, 3, 3)
    assert traj.x.dtype == torch.float32 and traj.denoised.dtype == torch.float32
    assert traj.directions.shape == (5, 2, 1, 3, 3) and traj.directions.dtype == torch.float32
    assert traj.nfe == 9


def test_counting_denoiser():
    c = CountingDenoiser(GM)
    x = X_T[:2]
    assert torch.equal(c(x, 1.0), GM(x, 1.0)) and c.nfe == 1
    c(x, 2.0)
    assert c.nfe == 2


def test_sample_bad_input():
    with pytest.raises(ValueError, match="unknown sampler 'rk4'"):
        dg.sample(GM, X_T, dg.edm_sigmas(3), sampler="rk4")
    with pytest.raises(ValueError, match="strictly decreasing"):
        dg.sample(GM, X_T, dg.edm_sigmas(3).flip(0))
    with pytest.raises(ValueError, match="non-negative"):
        dg.sample(GM, X_T, [1.0, -0.5])
    with pytest.raises(TypeError, match="unexpected keyword"):
        dg.sample(GM, X_T, dg.edm_sigmas(3), sampler="euler", r=0.5)
