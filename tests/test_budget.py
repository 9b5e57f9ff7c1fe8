"""Sampling at a fixed NFE (diffusion_geometry.budget), for every sampler of the registry: the step count
solves NFE = k n - [afs], the run spends exactly that (counted), and equals the sampler on that grid."""
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import budget, samplers

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

GM = dg.datasets.mixture_2d()


# independent truth: the step counts worked out by hand from the papers' NFE accounting
@pytest.mark.parametrize("sampler, nfe, afs, steps", [
    ("euler", 7, False, 7), ("euler", 7, True, 8), ("ipndm", 5, True, 6), ("deis", 4, False, 4),
    ("dpm_solver_pp_2m", 6, False, 6), ("heun", 8, False, 4), ("heun", 9, True, 5), ("heun", 35, True, 18),
    ("dpm_solver_2", 3, True, 2), ("amed", 6, False, 3),
])
def test_steps_for_nfe(sampler, nfe, afs, steps):
    assert budget.steps_for_nfe(sampler, nfe, afs=afs) == steps


@pytest.mark.parametrize("args, kwargs, err", [
    (("heun", 7), {}, budget.BudgetError),             # odd NFE needs AFS
    (("heun", 8), {"afs": True}, budget.BudgetError),  # even NFE with AFS does not fit
    (("amed", 1), {}, budget.BudgetError),
    (("rk4", 8), {}, ValueError),
    (("euler", 0), {}, ValueError),
    (("euler", 2.0), {}, ValueError),
    (("euler", True), {}, ValueError),
    (("euler", 3), {"afs": 1}, TypeError),
])
def test_steps_for_nfe_rejects_impossible_budgets(args, kwargs, err):
    with pytest.raises(err):
        budget.steps_for_nfe(*args, **kwargs)


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
@pytest.mark.parametrize("afs", [False, True])
def test_every_sampler_spends_exactly_its_budget(name, afs):
    """For each reachable NFE from 2 to 9: the evaluations counted in the run are the budget, the grid
    has steps_for_nfe steps of the schedule, and the samples are the sampler's on that grid."""
    x = 80 * torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    reached = 0
    for nfe in range(2, 10):
        try:
            n = budget.steps_for_nfe(name, nfe, afs=afs)
        except budget.BudgetError:
            assert (nfe + afs) % samplers.SAMPLERS[name].evals_per_step != 0
            continue
        calls = []

        def counted(z, s):
            calls.append(float(s))
            return GM(z, s)

        run = budget.sample_at_nfe(counted, x, name, nfe, afs=afs, schedule="logsnr")
        assert run.nfe == nfe == len(calls) and run.sampler == name and run.schedule == "logsnr"
        assert torch.equal(run.sigmas, dg.logsnr_sigmas(n))
        assert torch.equal(run.samples, samplers.SAMPLERS[name](GM, x, dg.logsnr_sigmas(n), afs=afs))
        reached += 1
    assert reached >= 4


@pytest.mark.parametrize("name", ["heun", "ipndm"])
def test_sample_at_nfe_in_chunks_is_the_same_run(name):
    x = 80 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    whole = budget.sample_at_nfe(GM, x, name, 8, afs=False)
    chunked = budget.sample_at_nfe(GM, x, name, 8, afs=False, batch_size=5)
    assert torch.allclose(chunked.samples, whole.samples, rtol=0, atol=1e-12)


def test_sample_at_nfe_accepts_a_schedule_function():
    x = torch.randn(4, 2, dtype=torch.float64) * 80

    def rho3(n):
        return dg.edm_sigmas(n, rho=3.0)

    run = budget.sample_at_nfe(GM, x, "euler", 5, schedule=rho3)
    assert run.schedule == "rho3" and torch.equal(run.sigmas, dg.edm_sigmas(5, rho=3.0))
    assert torch.equal(run.samples, samplers.euler(GM, x, dg.edm_sigmas(5, rho=3.0)))


def test_sample_at_nfe_rejects_bad_input():
    x = torch.randn(4, 2, dtype=torch.float64) * 80
    with pytest.raises(ValueError, match="schedule"):
        budget.sample_at_nfe(GM, x, "euler", 5, schedule="cosine")
    with pytest.raises(ValueError, match="levels"):
        budget.sample_at_nfe(GM, x, "euler", 5, schedule=lambda n: dg.edm_sigmas(n + 1))
    with pytest.raises(ValueError, match="above 0"):
        budget.sample_at_nfe(GM, x, "euler", 5, schedule=lambda n: dg.append_zero(dg.edm_sigmas(n - 1)))
    with pytest.raises(TypeError):
        budget.sample_at_nfe("not a denoiser", x, "euler", 5)
    with pytest.raises(ValueError):
        budget.sample_at_nfe(GM, torch.zeros(0, 2), "euler", 5)
    with pytest.raises(ValueError):
        budget.sample_at_nfe(GM, x, "euler", 5, batch_size=0)
    with pytest.raises(budget.BudgetError):
        budget.sample_at_nfe(GM, x, "heun", 5)


def test_first_reaching():
    assert budget.first_reaching([5.0, 3.0, 2.0, 1.0], 2.5) == 2
    assert budget.first_reaching(torch.tensor([5.0, 3.0]), 1.0) == -1
    assert budget.first_reaching([1.0, 9.0], 1.0) == 0
    with pytest.raises(ValueError):
        budget.first_reaching([], 1.0)
    with pytest.raises(ValueError):
        budget.first_reaching([1.0, float("nan")], 1.0)
