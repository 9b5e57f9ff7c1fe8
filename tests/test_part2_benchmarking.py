"""The error-against-NFE machinery of Part II and the benchmark script."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import diffusion_geometry as dg
from diffusion_geometry import benchmarking as bm

F64 = torch.float64
GM = dg.datasets.mixture_2d()
X_T = 80 * torch.randn(6, 2, generator=torch.Generator().manual_seed(11), dtype=F64)
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def test_ode_reference_agrees_with_a_multistep_solver():
    """DOP853 (explicit Runge-Kutta) through the package against LSODA (multistep) written out here."""
    got = bm.ode_reference(GM, X_T, rtol=1e-11, atol=1e-12)

    def rhs(s, y):
        x = torch.from_numpy(y.reshape(-1, 2))
        return ((x - GM(x, s)) / s).reshape(-1).numpy()

    sol = solve_ivp(rhs, (80.0, 0.002), X_T.reshape(-1).numpy(), method="LSODA", rtol=1e-11, atol=1e-12)
    want = torch.from_numpy(sol.y[:, -1].reshape(-1, 2))
    assert float((got - want).abs().max()) < 1e-7


def test_ode_solution_is_dense_and_rejects_outside_range():
    at = bm.ode_solution(GM, X_T, 80.0, 1.0)
    assert torch.allclose(at(80.0), X_T, rtol=1e-12)
    assert at(5.0).shape == X_T.shape
    with pytest.raises(ValueError, match="outside the solved range"):
        at(0.5)


def test_error_vs_nfe_rows_equal_direct_runs():
    ref = bm.ode_reference(GM, X_T, rtol=1e-6, atol=1e-6)  # any fixed target will do here
    methods = {**bm.labelled("euler", "heun"), "iPNDM+AFS": ("ipndm", {"afs": True})}
    rows = bm.error_vs_nfe(GM, X_T, ref, nfes=[4, 5, 6], methods=methods, schedules={"rho=7": dg.edm_sigmas})
    got = {(r["method"], r["nfe"]): r for r in rows}
    assert ("Heun", 5) not in got and ("Heun", 4) in got  # odd NFE is impossible for Heun without AFS
    direct = (dg.samplers.heun(GM, X_T, dg.edm_sigmas(3)) - ref).norm(dim=1)
    assert got[("Heun", 6)]["steps"] == 3
    assert abs(got[("Heun", 6)]["error"] - float(direct.mean())) < 1e-12
    assert abs(got[("Heun", 6)]["error_median"] - float(direct.median())) < 1e-12
    afs = (dg.samplers.ipndm(GM, X_T, dg.edm_sigmas(6), afs=True) - ref).norm(dim=1).mean()
    assert got[("iPNDM+AFS", 5)]["steps"] == 6 and abs(got[("iPNDM+AFS", 5)]["error"] - float(afs)) < 1e-12
    table = bm.format_table(rows)
    print(table)
    assert "Heun / rho=7" in table and "-" in table.splitlines()[3]


def test_fit_order_recovers_a_power_law():
    n = np.array([8, 16, 32, 64])
    assert abs(bm.fit_order(n, 3.0 * n**-2.5) - 2.5) < 1e-12
    with pytest.raises(ValueError, match="at least two"):
        bm.fit_order([1], [1.0])
    with pytest.raises(ValueError, match="positive and finite"):
        bm.fit_order([1, 2], [1.0, 0.0])


def test_benchmarking_bad_input():
    with pytest.raises(ValueError, match="must have the shape of x"):
        bm.error_vs_nfe(GM, X_T, X_T[:2], methods=bm.labelled("euler"), schedules={"rho=7": "edm"})
    with pytest.raises(ValueError, match="unknown sampler"):
        bm.error_vs_nfe(GM, X_T, X_T, methods={"x": ("rk4", {})}, schedules={"rho=7": "edm"})
    with pytest.raises(ValueError, match="unknown sampler"):
        bm.labelled("euler", "rk4")
    with pytest.raises(ValueError, match="differ in shape"):
        bm.sample_error(X_T, X_T[:3])
    with pytest.raises(ValueError, match="need sigma_start > sigma_end > 0"):
        bm.ode_solution(GM, X_T, 1.0, 2.0)
    with pytest.raises(ValueError, match="no rows"):
        bm.format_table([])


def test_benchmark_script_quick_runs():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "samplers_vs_nfe.py"), "--quick", "--threads", "1"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    print(out.stdout[-3000:], out.stderr[-3000:])
    assert out.returncode == 0
    assert "2-D Gaussian mixture" in out.stdout and "digits" in out.stdout
    for spec in dg.samplers.SAMPLERS.values():  # every registered sampler is in the table
        assert spec.name == "amed" or f"{spec.label} / rho=7" in out.stdout, spec.label
    assert "AMED / rho=7" in out.stdout and "GITS" in out.stdout
