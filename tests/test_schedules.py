"""Noise grids: end points, monotonicity, limits of the EDM family, the paper's worked example."""
import math

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry.schedules import check_sigmas

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

# paper-notes §1.3: EDM rho = 7, 21 timestamps (20 steps), sigma 80 -> 0.002 (official notebook output)
PAPER_21 = [80, 60.56, 45.31, 33.49, 24.41, 17.53, 12.38, 8.589, 5.839, 3.881, 2.515, 1.584, 0.9654,
            0.5666, 0.3183, 0.1698, 0.08509, 0.03954, 0.01672, 0.006266, 0.002]


def _sig4(v: float) -> float:
    """Round to 4 significant figures."""
    return float(f"{v:.4g}")


def test_edm_reproduces_paper_example_to_4_significant_figures():
    sig = dg.edm_sigmas(20)
    assert sig.shape == (21,)
    assert [_sig4(v) for v in sig.tolist()] == PAPER_21


def test_edm_matches_formula_in_float64():
    n, lo, hi, rho = 13, 0.01, 50.0, 5.0
    sig = dg.edm_sigmas(n, lo, hi, rho)
    expect = [(hi ** (1 / rho) + i / n * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for i in range(n + 1)]
    assert torch.allclose(sig, torch.tensor(expect, dtype=torch.float64), rtol=1e-13, atol=0)


@pytest.mark.parametrize("fn", [dg.edm_sigmas, dg.logsnr_sigmas, dg.uniform_sigmas])
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_grids_have_exact_end_points_and_decrease(fn, n):
    sig = fn(n, 0.002, 80.0)
    assert sig.shape == (n + 1,) and sig.dtype == torch.float64
    assert sig[0].item() == 80.0 and sig[-1].item() == 0.002
    assert (sig[1:] < sig[:-1]).all()
    check_sigmas(sig)  # a valid grid by the package's own definition


def test_logsnr_is_uniform_in_log_sigma():
    sig = dg.logsnr_sigmas(9, 0.002, 80.0)
    steps = sig.log().diff()
    assert torch.allclose(steps, torch.full_like(steps, (math.log(0.002) - math.log(80)) / 9), rtol=1e-12)


def test_uniform_is_uniform_in_sigma_and_equals_rho_one():
    sig = dg.uniform_sigmas(8, 0.5, 4.5)
    assert torch.allclose(sig.diff(), torch.full((8,), -0.5, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(dg.edm_sigmas(8, 0.5, 4.5, rho=1.0), sig, atol=1e-13)


def test_large_rho_approaches_logsnr_at_rate_one_over_rho():
    ref = dg.logsnr_sigmas(10)
    errs = [(dg.edm_sigmas(10, rho=rho) / ref - 1).abs().max().item() for rho in (1e2, 1e3, 1e4, 1e5)]
    print("max relative gap to logSNR grid for rho = 1e2..1e5:", errs)
    assert errs[-1] < 1e-3
    for a, b in zip(errs, errs[1:]):  # each 10x in rho shrinks the gap about 10x (O(1/rho))
        assert 7 < a / b < 13


def test_dtype_and_device_are_respected():
    sig = dg.edm_sigmas(5, dtype=torch.float32, device="cpu")
    assert sig.dtype == torch.float32 and sig.device.type == "cpu"
    assert dg.logsnr_sigmas(5, dtype=torch.float32).dtype == torch.float32
    assert dg.uniform_sigmas(5, dtype=torch.float32).dtype == torch.float32


def test_append_zero():
    sig = dg.edm_sigmas(4)
    z = dg.append_zero(sig)
    assert z.shape == (6,) and z[-1].item() == 0.0 and torch.equal(z[:-1], sig)
    assert z.dtype == sig.dtype
    check_sigmas(z)  # a grid may end at 0
    with pytest.raises(ValueError, match="already ends at 0"):
        dg.append_zero(z)


# -- bad input: one test per rule ------------------------------------------------------------------


@pytest.mark.parametrize("fn", [dg.edm_sigmas, dg.logsnr_sigmas, dg.uniform_sigmas])
@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n_steps(fn, n):
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        fn(n)


@pytest.mark.parametrize("fn", [dg.edm_sigmas, dg.logsnr_sigmas, dg.uniform_sigmas])
@pytest.mark.parametrize("lo,hi", [(0.0, 80.0), (-1.0, 80.0), (80.0, 0.002), (1.0, 1.0)])
def test_bad_sigma_range(fn, lo, hi):
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        fn(10, lo, hi)


@pytest.mark.parametrize("rho", [0.0, -7.0, float("inf"), float("nan")])
def test_bad_rho(rho):
    with pytest.raises(ValueError, match="rho must be a positive finite number"):
        dg.edm_sigmas(10, rho=rho)


def test_check_sigmas_rejects_bad_grids():
    with pytest.raises(ValueError, match="must be 1-D"):
        check_sigmas(torch.ones(2, 2))
    with pytest.raises(ValueError, match="at least two levels"):
        check_sigmas(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="finite"):
        check_sigmas(torch.tensor([float("inf"), 1.0]))
    with pytest.raises(ValueError, match="finite"):
        check_sigmas(torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        check_sigmas(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_sigmas(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_sigmas(torch.tensor([2.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        dg.append_zero(torch.tensor([1.0, 2.0]))
    # lists are accepted and converted
    assert torch.equal(check_sigmas([2.0, 1.0, 0.0]), torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64))
