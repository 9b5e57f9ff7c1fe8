r"""Error against NFE: the measurement behind Part II's comparison of samplers and schedules.

The error of a sampler is the mean L2 distance between its final samples and those of a reference
solution started from the same noise :math:`x_T`:

* :func:`ode_reference` -- an adaptive high-order solve (scipy ``solve_ivp``, DOP853, tight tolerances)
  of :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma` in float64: the "exact" solution where the denoiser
  is known in closed form (Gaussian mixtures);
* :func:`sampler_reference` -- a many-step run of a second-order sampler (500 Heun steps by default),
  cheaper when each evaluation is expensive (the optimal denoiser of a data set).

:func:`error_vs_nfe` runs every (sampler, schedule, NFE) combination and returns table rows;
:func:`format_table` prints them; :func:`fit_order` measures a convergence order.
``benchmarks/samplers_vs_nfe.py`` and the Part II chapters call these functions.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from .budget import BudgetError, grid_for_nfe, sample_at_nfe
from .samplers import get_sampler
from .schedules import edm_sigmas

__all__ = [
    "ode_solution",
    "ode_reference",
    "sampler_reference",
    "sample_error",
    "error_vs_nfe",
    "format_table",
    "fit_order",
    "labelled",
]

def labelled(*samplers: str, **opts) -> dict[str, tuple[str, dict]]:
    """``{label: (name, opts)}`` for :func:`error_vs_nfe`, the labels read from the registry:
    ``labelled("euler", "heun")`` is ``{"Euler": ("euler", {}), "Heun": ("heun", {})}``; ``opts`` go
    to every one of them (e.g. ``afs=True``). Raises ``ValueError`` for an unknown name."""
    return {get_sampler(name).label: (name, dict(opts)) for name in samplers}


def ode_solution(denoiser, x: torch.Tensor, sigma_start: float = 80.0, sigma_end: float = 0.002, *,
                 rtol: float = 1e-10, atol: float = 1e-10, method: str = "DOP853"):
    r"""Solve the probability-flow ODE from ``x`` at ``sigma_start`` to ``sigma_end`` with scipy and
    return a function ``sigma -> x(sigma)`` (dense output, float64, the shape of ``x``).

    All samples are integrated as one system (the step size adapts to the hardest one)."""
    from scipy.integrate import solve_ivp

    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (batch, ...)")
    if not (sigma_start > sigma_end > 0):
        raise ValueError(f"need sigma_start > sigma_end > 0, got {sigma_start}, {sigma_end}")
    shape, dtype, device = x.shape, x.dtype, x.device

    def rhs(sigma, y):
        xx = torch.as_tensor(y, dtype=torch.float64).reshape(shape).to(device=device, dtype=dtype)
        with torch.no_grad():
            d = (xx - denoiser(xx, float(sigma))) / sigma
        return d.reshape(-1).to(torch.float64).cpu().numpy()

    y0 = x.detach().reshape(-1).to(torch.float64).cpu().numpy()
    sol = solve_ivp(rhs, (float(sigma_start), float(sigma_end)), y0, method=method, rtol=rtol, atol=atol,
                    dense_output=True)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")

    def at(sigma: float) -> torch.Tensor:
        if not min(sigma_start, sigma_end) <= sigma <= max(sigma_start, sigma_end):
            raise ValueError(f"sigma={sigma} is outside the solved range [{sigma_end}, {sigma_start}]")
        return torch.as_tensor(sol.sol(float(sigma)), dtype=torch.float64).reshape(shape).to(device)

    at.nfev = sol.nfev
    return at


def ode_reference(denoiser, x: torch.Tensor, sigma_start: float = 80.0, sigma_end: float = 0.002, **kw) -> torch.Tensor:
    """The solution of the ODE at ``sigma_end`` (see :func:`ode_solution`), float64."""
    return ode_solution(denoiser, x, sigma_start, sigma_end, **kw)(sigma_end)


def sampler_reference(denoiser, x: torch.Tensor, sigmas=None, *, n_steps: int = 500, sampler: str = "heun",
                      **opts) -> torch.Tensor:
    """A fine-grid reference: ``sampler`` with ``n_steps`` steps of ``edm_sigmas`` (or the given grid)."""
    if sigmas is None:
        sigmas = edm_sigmas(n_steps)
    return get_sampler(sampler)(denoiser, x, sigmas, **opts)


def sample_error(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    r"""Per-sample L2 distance :math:`\lVert x - x_\text{ref}\rVert_2`, ``(batch,)``."""
    if samples.shape != reference.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
    return (samples.to(torch.float64) - reference.to(torch.float64)).reshape(samples.shape[0], -1).norm(dim=1)


def error_vs_nfe(denoiser, x: torch.Tensor, reference: torch.Tensor, *, methods: Mapping[str, tuple[str, dict]],
                 schedules: Mapping[str, Callable[[int], torch.Tensor] | str], nfes=range(4, 11)) -> list[dict]:
    """Mean error of every (method, schedule, NFE) combination that can hit the NFE exactly.

    ``methods``: label -> (sampler name, options) (:func:`labelled` makes it from names), options may
    include ``afs=True``; options may also be a function ``sigmas -> dict`` (e.g. AMED parameters
    fitted for each grid; without AFS); ``schedules``: label -> a schedule name of
    :data:`~diffusion_geometry.schedules.SCHEDULES` or a function ``n_steps -> sigmas``. The grids and
    the runs are those of :mod:`diffusion_geometry.budget` (combinations that cannot spend an NFE
    exactly are skipped; each run's NFE is counted, not assumed). Returns rows ``{"method" (the label),
    "schedule", "nfe", "steps", "error", "error_median"}``.
    """
    if reference.shape != x.shape:
        raise ValueError(f"reference {tuple(reference.shape)} must have the shape of x {tuple(x.shape)}")
    rows = []
    for mlabel, (name, opts) in methods.items():
        get_sampler(name)
        for slabel, make in schedules.items():
            for nfe in nfes:
                afs = False if callable(opts) else bool(opts.get("afs", False))  # callables: no AFS
                try:
                    sigmas = grid_for_nfe(name, int(nfe), make, afs=afs)
                except BudgetError:
                    continue  # no whole number of steps spends this NFE
                run_opts = dict(opts(sigmas) if callable(opts) else opts)
                run_opts.pop("afs", None)
                run = sample_at_nfe(denoiser, x, name, int(nfe), schedule=lambda n, g=sigmas: g, afs=afs,
                                    **run_opts)
                err = sample_error(run.samples, reference)
                rows.append({"method": mlabel, "schedule": slabel, "nfe": int(nfe), "steps": run.sigmas.numel() - 1,
                             "error": float(err.mean()), "error_median": float(err.median())})
    return rows


def format_table(rows: list[dict], value: str = "error", fmt: str = "{:.3g}") -> str:
    """A plain-text table: one line per (method, schedule), one column per NFE ('-' where absent)."""
    if not rows:
        raise ValueError("no rows to format")
    nfes = sorted({r["nfe"] for r in rows})
    keys = list(dict.fromkeys((r["method"], r["schedule"]) for r in rows))
    cell = {(r["method"], r["schedule"], r["nfe"]): r[value] for r in rows}
    w0 = max(len(f"{m} / {s}") for m, s in keys)
    lines = [f"{'method / schedule':<{w0}} | " + " ".join(f"{n:>8d}" for n in nfes)]
    lines.append("-" * len(lines[0]))
    for m, s in keys:
        vals = [cell.get((m, s, n)) for n in nfes]
        lines.append(f"{f'{m} / {s}':<{w0}} | " + " ".join(f"{fmt.format(v):>8}" if v is not None else f"{'-':>8}" for v in vals))
    return "\n".join(lines)


def fit_order(n, errors) -> float:
    r"""The convergence order :math:`p` of :math:`\text{error} \approx C n^{-p}`: minus the least-squares
    slope of :math:`\log(\text{error})` against :math:`\log n`."""
    n = np.asarray(n, dtype=float)
    e = np.asarray(errors, dtype=float)
    if n.shape != e.shape or n.size < 2:
        raise ValueError("need at least two (n, error) pairs of equal length")
    if (n <= 0).any() or (e <= 0).any() or not np.isfinite(e).all():
        raise ValueError("n and errors must be positive and finite")
    return float(-np.polyfit(np.log(n), np.log(e), 1)[0])
