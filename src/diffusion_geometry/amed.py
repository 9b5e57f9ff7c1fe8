r"""Choosing the AMED intermediate levels and scales on a warm-up batch (Zhou et al. 2024, CVPR).

The exact step of the probability-flow ODE is :math:`x_{n+1} = x_n + \int_{\sigma_n}^{\sigma_{n+1}}
\varepsilon(x_\sigma;\sigma)\,d\sigma`. Because each trajectory nearly lies in a plane, AMED assumes a
mean value: one level :math:`s_n = \sigma_n^{1-r_n}\sigma_{n+1}^{r_n}` and a scale :math:`c_n` with

.. math:: x_{n+1} \approx x_n + c_n(\sigma_{n+1} - \sigma_n)\,\varepsilon(x_{s_n}; s_n)

(AMED Eqs. 8-9; the step is :func:`diffusion_geometry.samplers.amed`). The paper learns
:math:`(r_n, c_n)` with a 9k-parameter network from U-Net features; on the book's toy problems one
pair per step, shared by all samples, is enough, and it is chosen here by distillation on a warm-up
batch: a *teacher* (Heun with ``teacher_substeps`` sub-steps per interval) gives the points
:math:`y_n` on the coarse grid, and for each step, starting from the teacher point :math:`y_n` (as the
official ``AMED_loss`` does),

.. math:: (r_n, c_n) = \arg\min_{r, c}\ \operatorname{mean}_b
          \lVert y_n + c\,g_n(r) - y_{n+1} \rVert^2, \qquad g_n(r) = (\sigma_{n+1}-\sigma_n)\,\varepsilon(x_{s};s).

For fixed :math:`r` the best :math:`c` is the least-squares ratio
:math:`c^*(r) = \langle y_{n+1} - y_n, g_n\rangle / \lVert g_n\rVert^2` (sums over the batch), clipped to
``c_bounds``; :math:`r` is found by a grid search refined with a bounded scalar minimisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .samplers import _check_afs, afs_denoised, to_d
from .schedules import check_sigmas
from .trajectory import sample

__all__ = ["AMEDParams", "fit_amed", "refine_sigmas"]


@dataclass
class AMEDParams:
    """Per-step AMED parameters for the grid ``sigmas``: ``r`` and ``c`` (``(n_steps,)`` each),
    ``loss`` (the warm-up mean squared error of each fitted step), ``loss_dpm2`` (the same for
    DPM-Solver-2's choice r = 1/2, c = 1, for comparison). Pass as ``amed(..., r=p.r, c=p.c)``."""

    sigmas: torch.Tensor
    r: torch.Tensor
    c: torch.Tensor
    loss: torch.Tensor
    loss_dpm2: torch.Tensor


def refine_sigmas(sigmas, substeps: int) -> torch.Tensor:
    """``sigmas`` with ``substeps - 1`` levels inserted in each interval, uniformly in log sigma (an
    interval ending at 0 is split uniformly in sigma). The coarse levels sit at every ``substeps``-th index.
    Computed and returned in float64 whatever the input dtype, strictly decreasing (``ValueError``
    otherwise, e.g. for a ``substeps`` so large that float64 repeats levels)."""
    sigmas = check_sigmas(sigmas).to(torch.float64)
    if not isinstance(substeps, int) or isinstance(substeps, bool) or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
    out = []
    ramp = torch.linspace(0, 1, substeps + 1, dtype=torch.float64)[:-1]
    for a, b in zip(sigmas[:-1], sigmas[1:]):
        if b > 0:
            piece = torch.exp(torch.log(a) + ramp * (torch.log(b) - torch.log(a)))
        else:
            piece = a + ramp * (b - a)
        piece[0] = a  # the coarse level exactly, despite round-off in exp(log(a))
        out.append(piece)
    out.append(sigmas[-1:])
    return check_sigmas(torch.cat(out))  # float64 holds the inserted levels apart; checked all the same


def fit_amed(denoiser, x_warmup: torch.Tensor, sigmas, *, sampler: str = "heun", teacher_substeps: int = 8,
             r_grid=None, fit_c: bool = True, c_bounds: tuple[float, float] | None = None,
             refine: bool = True, afs: bool = False) -> AMEDParams:
    r"""Fit one :math:`(r_n, c_n)` per step of ``sigmas`` on the warm-up start points ``x_warmup``.

    ``sampler`` (the *teacher*, a name in :data:`~diffusion_geometry.samplers.SAMPLERS`) runs on
    :func:`refine_sigmas` ``(sigmas, teacher_substeps)``. ``r_grid`` (default 20
    values in (0, 1]) is searched, then refined by ``scipy.optimize.minimize_scalar`` in the bracket
    around the best grid value when ``refine``. ``fit_c=False`` keeps :math:`c_n = 1` (only the level is
    chosen); ``c_bounds=(lo, hi)`` clips :math:`c_n` (the paper uses :math:`1 \pm 0.01`). A step to 0 keeps
    ``r = 1/2, c = 1`` (it is an Euler step). ``afs=True`` fits the steps that the sampler will take
    with the analytical first step. Cost: one teacher run plus, per step, one evaluation for the
    direction and one per tried ``r``.
    """
    afs = _check_afs(afs)
    sigmas = check_sigmas(sigmas).to(torch.float64)
    if not isinstance(x_warmup, torch.Tensor) or x_warmup.ndim < 2:
        raise ValueError("x_warmup must be a tensor of shape (batch, ...)")
    if sigmas[0] == 0:
        raise ValueError("the grid must start above 0")
    if r_grid is None:
        r_grid = torch.linspace(0.05, 1.0, 20, dtype=torch.float64)
    r_grid = sorted(float(r) for r in torch.as_tensor(r_grid).reshape(-1))
    if not r_grid or any(not 0 < r <= 1 for r in r_grid):
        raise ValueError("r_grid must be non-empty with values in (0, 1]")
    if c_bounds is not None:
        lo, hi = (float(v) for v in c_bounds)
        if not 0 < lo <= hi:
            raise ValueError(f"c_bounds must satisfy 0 < lo <= hi, got {c_bounds}")
    fine = refine_sigmas(sigmas, teacher_substeps)
    y = sample(denoiser, x_warmup, fine, sampler=sampler).x[::teacher_substeps]  # teacher on the coarse grid
    n = sigmas.numel() - 1
    r_out, c_out = torch.full((n,), 0.5, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    loss, loss_dpm2 = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    B = x_warmup.shape[0]
    for i in range(n):
        sig, sig_next = float(sigmas[i]), float(sigmas[i + 1])
        start, target = y[i], y[i + 1]
        den = afs_denoised(start, sig) if (afs and i == 0) else denoiser(start, sig)
        if sig_next == 0:
            loss[i] = loss_dpm2[i] = ((den - target) ** 2).reshape(B, -1).sum(1).mean()
            continue
        d = to_d(start, sig, den)
        delta = (target - start).reshape(B, -1)

        def evaluate(r: float):
            s = sig ** (1 - r) * sig_next**r
            x_s = start + (s - sig) * d
            g = ((sig_next - sig) * to_d(x_s, s, denoiser(x_s, s))).reshape(B, -1)
            c = float((delta * g).sum() / (g * g).sum()) if fit_c else 1.0
            if c_bounds is not None:
                c = min(max(c, lo), hi)
            return float(((delta - c * g) ** 2).sum(1).mean()), c

        tried = {r: evaluate(r) for r in r_grid}
        best = min(tried, key=lambda r: tried[r][0])
        if refine and len(r_grid) > 1:
            from scipy.optimize import minimize_scalar

            k = r_grid.index(best)
            a, b = r_grid[max(k - 1, 0)], r_grid[min(k + 1, len(r_grid) - 1)]
            res = minimize_scalar(lambda r: evaluate(r)[0], bounds=(a, b), method="bounded",
                                  options={"xatol": 1e-4, "maxiter": 25})
            if res.success and res.fun < tried[best][0]:
                tried[float(res.x)] = evaluate(float(res.x))
                best = float(res.x)
        r_out[i], c_out[i], loss[i] = best, tried[best][1], tried[best][0]
        s_half = math.sqrt(sig * sig_next)
        x_s = start + (s_half - sig) * d
        g = ((sig_next - sig) * to_d(x_s, s_half, denoiser(x_s, s_half))).reshape(B, -1)
        loss_dpm2[i] = ((delta - g) ** 2).sum(1).mean()
    return AMEDParams(sigmas=sigmas, r=r_out, c=c_out, loss=loss, loss_dpm2=loss_dpm2)
