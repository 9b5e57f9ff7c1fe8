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

from . import samplers as _samplers
from .schedules import check_sigmas, edm_sigmas, logsnr_sigmas
from .trajectory import CountingDenoiser

__all__ = [
    "ode_solution",
    "ode_reference",
    "sampler_reference",
    "evaluations_per_step",
    "steps_for_nfe",
    "sample_error",
    "error_vs_nfe",
    "format_table",
    "fit_order",
    "DEFAULT_METHODS",
    "DEFAULT_SCHEDULES",
]

DEFAULT_METHODS: dict[str, tuple[str, dict]] = {
    "Euler": ("euler", {}),
    "Heun": ("heun", {}),
    "DPM-Solver-2": ("dpm_solver_2", {}),
    "DPM-Solver++(2M)": ("dpm_solver_pp_2m", {}),
    "iPNDM": ("ipndm", {}),
    "DEIS-3": ("deis", {"order": 3}),
}
"""Label -> (sampler name, options); the samplers compared in Part II."""

DEFAULT_SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "rho=7": edm_sigmas,
    "logSNR": logsnr_sigmas,
}
"""Label -> function of the number of steps returning a grid."""


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


def sampler_reference(denoiser, x: torch.Tensor, sigmas=None, *, n_steps: int = 500, method: str = "heun",
                      **opts) -> torch.Tensor:
    """A fine-grid reference: ``method`` with ``n_steps`` steps of ``edm_sigmas`` (or the given grid)."""
    if sigmas is None:
        sigmas = edm_sigmas(n_steps)
    return _samplers.SAMPLERS[method](denoiser, x, sigmas, **opts)


def evaluations_per_step(method: str) -> int:
    """Denoiser evaluations per step (to a level above 0) of a sampler in :data:`SAMPLERS`."""
    if method not in _samplers.SAMPLERS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(_samplers.SAMPLERS)}")
    return 2 if method in ("heun", "dpm_solver_2", "amed") else 1


def steps_for_nfe(method: str, nfe: int, *, afs: bool = False) -> int | None:
    """Steps that make ``method`` use exactly ``nfe`` evaluations (``None`` if impossible, e.g. odd NFE
    for a two-evaluation sampler without AFS)."""
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    per = evaluations_per_step(method)
    total = nfe + int(afs)
    return total // per if total % per == 0 and total // per >= 1 else None


def sample_error(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    r"""Per-sample L2 distance :math:`\lVert x - x_\text{ref}\rVert_2`, ``(batch,)``."""
    if samples.shape != reference.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
    return (samples.to(torch.float64) - reference.to(torch.float64)).reshape(samples.shape[0], -1).norm(dim=1)


def error_vs_nfe(denoiser, x: torch.Tensor, reference: torch.Tensor, *, nfes=range(4, 11),
                 methods: Mapping[str, tuple[str, dict]] | None = None,
                 schedules: Mapping[str, Callable[[int], torch.Tensor]] | None = None) -> list[dict]:
    """Mean error of every (method, schedule, NFE) combination that can hit the NFE exactly.

    ``methods``: label -> (sampler name, options), options may include ``afs=True``; options may also
    be a function ``sigmas -> dict`` (e.g. AMED parameters fitted for each grid; without AFS);
    ``schedules``: label -> function ``n_steps -> sigmas``. Each run's NFE is counted, not assumed.
    Returns rows ``{"method", "schedule", "nfe", "steps", "error", "error_median"}``.
    """
    methods = DEFAULT_METHODS if methods is None else methods
    schedules = DEFAULT_SCHEDULES if schedules is None else schedules
    if reference.shape != x.shape:
        raise ValueError(f"reference {tuple(reference.shape)} must have the shape of x {tuple(x.shape)}")
    rows = []
    for mlabel, (name, opts) in methods.items():
        fn = _samplers.SAMPLERS.get(name)
        if fn is None:
            raise ValueError(f"unknown method {name!r}; choose one of {sorted(_samplers.SAMPLERS)}")
        for slabel, make in schedules.items():
            for nfe in nfes:
                afs = False if callable(opts) else bool(opts.get("afs", False))  # callables: no AFS
                steps = steps_for_nfe(name, int(nfe), afs=afs)
                if steps is None:
                    continue
                sigmas = check_sigmas(make(steps))
                run_opts = opts(sigmas) if callable(opts) else opts
                counting = CountingDenoiser(denoiser)
                out = fn(counting, x, sigmas, **run_opts)
                if counting.nfe != nfe:
                    raise RuntimeError(f"{mlabel} on {slabel} with {steps} steps used {counting.nfe} NFE, expected {nfe}")
                err = sample_error(out, reference)
                rows.append({"method": mlabel, "schedule": slabel, "nfe": int(nfe), "steps": steps,
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
