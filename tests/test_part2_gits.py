"""GITS: the dynamic programme against brute force, the cost matrix against naive loops, the schedule."""
import itertools

import numpy as np
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import gits

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def _brute_force(C, K, coeff):
    """Every path 0 < i_1 < ... < i_{K-1} < N-1, scored with the weights coeff**m."""
    N = C.shape[0]
    best, best_path = np.inf, None
    for inner in itertools.combinations(range(1, N - 1), K - 1):
        path = (0, *inner, N - 1)
        cost = sum(coeff**m * C[a, b] for m, (a, b) in enumerate(zip(path[:-1], path[1:])))
        if cost < best:
            best, best_path = cost, list(path)
    return best, best_path


@pytest.mark.parametrize("coeff", [0.8, 1.0, 1.15])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dp_equals_brute_force(coeff, seed):
    N = 10
    rng = np.random.default_rng(seed)
    gap = np.maximum(np.arange(N)[None, :] - np.arange(N)[:, None], 0)
    C = rng.uniform(0.0, 1.0, size=(N, N)) * (1 + gap) ** 1.5  # longer jumps cost more, as in GITS
    C[np.tril_indices(N)] = np.inf
    for K in range(1, N):
        best, path = _brute_force(C, K, coeff)
        got = gits.gits_dp(torch.as_tensor(C), K, coeff=coeff)
        assert got == path, (K, got, path)
        assert abs(gits.path_cost(torch.as_tensor(C), got, coeff) - best) < 1e-12


def test_dp_with_signed_costs_equals_brute_force():
    """The 'dev' metric can give negative costs; the programme must still be exact."""
    N = 9
    C = np.random.default_rng(5).normal(size=(N, N))
    for K in range(1, N):
        best, path = _brute_force(C, K, 1.15)
        assert gits.gits_dp(torch.as_tensor(C), K, coeff=1.15) == path


def _teacher(n=6, levels=12):
    gm = dg.datasets.mixture_2d()
    x = 80 * torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    return gm, x, dg.sample(gm, x, dg.edm_sigmas(levels - 1), sampler="ipndm")


def test_l2_cost_matrix_equals_naive_loops():
    _, _, tr = _teacher()
    C = gits.gits_cost_matrix(tr.sigmas, tr.x, tr.directions, metric="l2")
    N = tr.sigmas.numel()
    for i in range(N):
        for j in range(N):
            if j <= i:
                assert C[i, j] == float("inf")
                continue
            jump = tr.x[i] + (tr.sigmas[j] - tr.sigmas[i]) * tr.directions[i]
            want = np.mean([float(torch.linalg.norm(jump[b] - tr.x[j][b])) for b in range(jump.shape[0])])
            assert abs(float(C[i, j]) - want) < 1e-12 * max(1.0, want)


def test_dev_cost_matrix_equals_chord_deviation_of_geometry_module():
    _, _, tr = _teacher()
    C = gits.gits_cost_matrix(tr.sigmas, tr.x, tr.directions, metric="dev")
    dev_teacher = dg.geometry.chord_deviation(tr.x)  # (N, B), chord from x_T to the teacher's end
    N = tr.sigmas.numel()
    for i in range(N - 1):
        for j in range(i + 1, N):
            jump = tr.x[i] + (tr.sigmas[j] - tr.sigmas[i]) * tr.directions[i]
            dev_jump = dg.geometry.chord_deviation(torch.stack([tr.x[0], jump, tr.x[-1]]))[1]
            want = float((dev_jump - dev_teacher[j]).mean())
            assert abs(float(C[i, j]) - want) < 1e-10 * max(1.0, abs(want))


def test_cost_of_consecutive_levels_is_small_and_grows_with_the_jump():
    """Jumping one fine level is nearly free; jumping the whole grid in one Euler step is not."""
    _, _, tr = _teacher(levels=21)
    C = gits.gits_cost_matrix(tr.sigmas, tr.x, tr.directions)
    assert float(torch.diagonal(C, 1).max()) < float(C[0, -1])
    assert float(C[0, -1]) > 0


def test_gits_sigmas_is_a_sub_grid_and_details_agree():
    gm, x, _ = _teacher()
    fine = dg.edm_sigmas(20)
    res = gits.gits_fit(gm, x, 5, fine_grid=fine)
    assert res.sigmas.numel() == 6 and res.indices[0] == 0 and res.indices[-1] == 20
    assert torch.equal(res.sigmas, fine[res.indices])
    assert torch.equal(gits.gits_sigmas(gm, x, 5, fine_grid=fine), res.sigmas)
    assert torch.equal(res.schedule(5), res.sigmas)
    assert res.schedule(3).numel() == 4
    assert res.indices == gits.gits_dp(res.cost, 5, coeff=1.15)


def test_gits_beats_rho_7_for_euler_on_a_digits_subset():
    """The GITS claim on a small problem: optimal denoiser of 400 digits, Euler at 6 NFE."""
    imgs, _ = dg.datasets.digits(F64)
    D = dg.EmpiricalDenoiser(imgs[:400])
    g = torch.Generator().manual_seed(0)
    x_warm = 80 * torch.randn(64, 1, 8, 8, generator=g, dtype=F64)
    x_test = 80 * torch.randn(64, 1, 8, 8, generator=g, dtype=F64)
    ref = dg.samplers.heun(D, x_test, dg.edm_sigmas(200))
    sched = gits.gits_sigmas(D, x_warm, 6)
    err_gits = dg.benchmarking.sample_error(dg.samplers.euler(D, x_test, sched), ref).mean()
    err_edm = dg.benchmarking.sample_error(dg.samplers.euler(D, x_test, dg.edm_sigmas(6)), ref).mean()
    print(f"Euler, 6 NFE: rho=7 {err_edm:.3f}, GITS {err_gits:.3f}; schedule {sched.tolist()}")
    assert err_gits < 0.8 * err_edm


def test_gits_bad_input():
    gm, x, tr = _teacher()
    with pytest.raises(ValueError, match="metric must be one of"):
        gits.gits_cost_matrix(tr.sigmas, tr.x, tr.directions, metric="l3")
    with pytest.raises(ValueError, match="points must have shape"):
        gits.gits_cost_matrix(tr.sigmas, tr.x[:-1], tr.directions)
    with pytest.raises(ValueError, match="directions must have shape"):
        gits.gits_cost_matrix(tr.sigmas, tr.x, tr.directions[:-2])
    with pytest.raises(ValueError, match="must be positive"):
        gits.gits_cost_matrix(dg.append_zero(tr.sigmas[:-1]), tr.x, tr.directions)
    with pytest.raises(ValueError, match="square matrix"):
        gits.gits_dp(torch.zeros(3, 4), 1)
    with pytest.raises(ValueError, match=r"n_steps must be an integer in \[1, 2\]"):
        gits.gits_dp(torch.zeros(3, 3), 3)
    with pytest.raises(ValueError, match="coeff must be positive"):
        gits.gits_dp(torch.zeros(3, 3), 1, coeff=0.0)
    with pytest.raises(ValueError, match="finite above the diagonal"):
        gits.gits_dp(torch.full((3, 3), float("nan")), 1)
    with pytest.raises(ValueError, match="n_steps must be an integer"):
        gits.gits_sigmas(gm, x, 0)
    with pytest.raises(ValueError, match="x_warmup must be a tensor"):
        gits.gits_sigmas(gm, x[0], 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_gits_on_cuda_matches_cpu():
    gm, x, _ = _teacher()
    gm_cuda = dg.GaussianMixture(gm.means.cuda(), gm.covariances.cuda())
    fine = dg.edm_sigmas(20)
    cpu = gits.gits_fit(gm, x, 5, fine_grid=fine)
    gpu = gits.gits_fit(gm_cuda, x.cuda(), 5, fine_grid=fine)
    assert gpu.cost.device.type == "cpu"
    assert torch.allclose(gpu.cost, cpu.cost, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert gpu.indices == cpu.indices


def test_gits_refuses_a_predictor_corrector_sampler():
    """UniPC records D at its predicted points, so its (x_i - D_i)/sigma_i are not the directions GITS costs."""
    gm, x, _ = _teacher()
    with pytest.raises(ValueError, match="predicted points"):
        gits.gits_fit(gm, x, 3, fine_grid=dg.edm_sigmas(10), sampler="unipc")
