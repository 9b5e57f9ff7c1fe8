r"""Sampling at a fixed budget of denoiser evaluations (NFE), the unit in which the papers compare
samplers (Zhou et al. 2024, AMED, Table 2; Chen et al. 2024, GITS, Table 1).

A sampler's cost is read from the registry (:data:`diffusion_geometry.samplers.SAMPLERS`): on a grid
that ends at :math:`\sigma_\min > 0`, ``n`` steps of a sampler with ``k`` evaluations per step cost

.. math:: \text{NFE} = k\,n - [\text{afs}],

since the analytical first step (``afs=True``) replaces the first evaluation. Heun at 35 NFE with AFS
is 18 steps; Euler at 10 NFE is 10 steps; Heun at an odd NFE without AFS is impossible.

* :func:`steps_for_nfe` -- the number of steps that spends exactly ``nfe`` (raises
  :class:`BudgetError` when no whole number of steps does);
* :func:`grid_for_nfe` -- that many steps of a named schedule or of a callable ``n -> sigmas``;
* :func:`sample_at_nfe` -- runs a sampler on that grid, counts the evaluations (a mismatch raises) and
  returns a :class:`BudgetRun`;
* :func:`first_reaching` -- the first step at which a per-step quality curve reaches a target.

Part II (:func:`diffusion_geometry.benchmarking.error_vs_nfe`), Part IV (chapter 10), the generation
command and ``benchmarks/gpu_profile.py`` all run budgets through this module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .samplers import get_sampler
from .schedules import get_sigmas
from .trajectory import CountingDenoiser

__all__ = ["BudgetError", "steps_for_nfe", "grid_for_nfe", "BudgetRun", "sample_at_nfe", "first_reaching"]


class BudgetError(ValueError):
    """No whole number of steps of this sampler spends exactly this NFE."""


def steps_for_nfe(sampler, nfe: int, *, afs: bool = False) -> int:
    r"""The number of steps ``n`` with which ``sampler`` spends exactly ``nfe`` evaluations on a grid
    that ends above 0: the solution of :math:`\text{NFE} = k\,n - [\text{afs}]`, ``k`` the sampler's
    ``evals_per_step``.

    ``sampler`` is a name in :data:`~diffusion_geometry.samplers.SAMPLERS` or a spec. Raises
    :class:`BudgetError` (a ``ValueError``) when no whole ``n >= 1`` fits, e.g. an odd NFE for Heun
    without the analytical first step, ``ValueError`` for an unknown sampler or a non-positive ``nfe``,
    ``TypeError`` for a non-boolean ``afs``.
    """
    spec = get_sampler(sampler)
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    if not isinstance(afs, bool):
        raise TypeError(f"afs must be True or False, got {afs!r}")
    k = spec.evals_per_step
    n, rem = divmod(nfe + int(afs), k)
    if rem or n < 1:
        raise BudgetError(f"{spec.name} cannot spend exactly {nfe} evaluations (afs={afs}): "
                          f"{k} per step{', one saved by AFS' if afs else ''}")
    return n


def grid_for_nfe(sampler, nfe: int, schedule="edm", *, afs: bool = False, sigma_min: float = 0.002,
                 sigma_max: float = 80.0) -> torch.Tensor:
    """The grid (float64, :func:`steps_for_nfe` steps from ``sigma_max`` to ``sigma_min``, no step to 0) on
    which ``sampler`` spends exactly ``nfe``. ``schedule``: a name in
    :data:`~diffusion_geometry.schedules.SCHEDULES` or a callable ``n_steps -> sigmas``
    (:func:`~diffusion_geometry.schedules.get_sigmas`). Raises :class:`BudgetError` as
    :func:`steps_for_nfe`, ``ValueError`` for a grid that ends at 0."""
    n = steps_for_nfe(sampler, nfe, afs=afs)
    grid = get_sigmas(schedule, n, sigma_min, sigma_max)
    if grid[-1] <= 0:
        raise ValueError("the grid must end above 0 for the NFE count of steps_for_nfe")
    return grid


@dataclass
class BudgetRun:
    """One sampler run at a fixed budget: the ``samples`` ``(batch, ...)``, the ``sigmas`` walked,
    the measured ``nfe`` (evaluations per sample), and the settings that produced them
    (``sampler`` its registry name, ``schedule`` the schedule's name or the callable's ``__name__``)."""

    sampler: str
    schedule: str
    nfe: int
    afs: bool
    sigmas: torch.Tensor
    samples: torch.Tensor


def sample_at_nfe(denoiser, x: torch.Tensor, sampler, nfe: int, *, schedule="edm", afs: bool = False,
                  sigma_min: float = 0.002, sigma_max: float = 80.0, batch_size: int | None = None,
                  **opts) -> BudgetRun:
    r"""Run ``sampler`` from ``x`` (at ``sigma_max``) with exactly ``nfe`` denoiser evaluations per sample.

    ``schedule``: a name in :data:`~diffusion_geometry.schedules.SCHEDULES` (``"edm"`` is
    :math:`\rho = 7`) or a callable ``n_steps -> sigmas`` (e.g. a GITS grid per step count); the grid
    is :func:`grid_for_nfe`. ``batch_size`` splits ``x`` into chunks (the same result, less memory);
    ``opts`` go to the sampler. The evaluations are counted, not assumed: a mismatch raises
    ``RuntimeError``. Raises :class:`BudgetError` when the budget cannot be met exactly.
    """
    spec = get_sampler(sampler)
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x, sigma)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0:
        raise ValueError("x must be a non-empty tensor of shape (batch, ...)")
    grid = grid_for_nfe(spec, nfe, schedule, afs=afs, sigma_min=sigma_min, sigma_max=sigma_max)
    name = schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom")
    if batch_size is None:
        batch_size = x.shape[0]
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out, per_sample = [], None
    for lo in range(0, x.shape[0], batch_size):
        counting = CountingDenoiser(denoiser)
        out.append(spec.fn(counting, x[lo:lo + batch_size], grid, afs=afs, **opts))
        if per_sample is not None and counting.nfe != per_sample:
            raise RuntimeError("chunks spent different numbers of evaluations")
        per_sample = counting.nfe
    if per_sample != nfe:
        raise RuntimeError(f"{spec.name} spent {per_sample} evaluations, expected {nfe}")
    return BudgetRun(spec.name, name, per_sample, afs, grid, torch.cat(out))


def first_reaching(values, target: float) -> int:
    """The first index at which ``values`` (a 1-D sequence, e.g. FD at each step) is ``<= target``;
    ``-1`` if it never is. Raises ``ValueError`` for an empty, multi-dimensional or non-finite input."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or inf")
    hits = np.nonzero(v <= target)[0]
    return int(hits[0]) if hits.size else -1
