r"""Images along trajectories: grids, strips and the steps to show (Part IV of the book).

Images are tensors ``(N, C, H, W)`` scaled to ``[-1, 1]`` (the EDM convention of
:mod:`diffusion_geometry.datasets`). A trajectory of images is ``(T, batch, C, H, W)``, as in
:class:`diffusion_geometry.Trajectory`. The functions here only arrange pixels; they compute no claim.

* :func:`to_unit` maps ``[-1, 1]`` to ``[0, 1]`` for display, clipping what a noisy ``x_t`` has outside;
* :func:`image_grid` tiles images into one array for ``imshow``;
* :func:`log_spaced_steps` picks the grid steps whose noise levels are closest to log-spaced targets,
  the natural way to show a trajectory whose noise levels span ``[0.002, 80]``
  (Chen et al. 2023, image rows of the sampling and denoising trajectories);
* :func:`trajectory_rows` stacks the chosen steps of several trajectories into rows of one grid;
* :func:`steps_for_nfe` and :func:`sample_at_nfe` run a sampler at a fixed budget of denoiser
  evaluations (NFE), the unit in which the papers compare samplers (Zhou et al. 2024, AMED, Table 2;
  Chen et al. 2024, GITS): ``n`` steps cost ``n`` evaluations for one-evaluation samplers (Euler,
  DPM-Solver++(2M), iPNDM, DEIS) and ``2n`` for two-evaluation ones (Heun, DPM-Solver-2, AMED), on a
  grid that ends at ``sigma_min > 0``; the analytical first step (``afs=True``) saves one;
* :func:`first_reaching` finds the first step at which a per-step quality curve reaches a target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["to_unit", "image_grid", "log_spaced_steps", "trajectory_rows", "EVALS_PER_STEP",
           "steps_for_nfe", "BudgetRun", "sample_at_nfe", "first_reaching"]


def _check_images(images, name: str = "images") -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or array of shape (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {images.shape[1]}")
    return images


def to_unit(images) -> np.ndarray:
    r"""``(x + 1) / 2`` clipped to ``[0, 1]``, as a float64 numpy array of the same shape."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor or array, got {type(images).__name__}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    return ((images.detach().cpu().double() + 1) / 2).clamp(0, 1).numpy()


def image_grid(images, nrow: int | None = None, *, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``images`` ``(N, C, H, W)`` in ``[-1, 1]`` into one display array in ``[0, 1]``.

    ``nrow`` images per row (default: about ``sqrt(N)``), rows filled left to right, ``pad`` pixels of
    ``pad_value`` between and around tiles. Returns ``(rows*(H+pad)+pad, nrow*(W+pad)+pad)`` for one
    channel, with a trailing channel axis of 3 for colour images (ready for ``plt.imshow``).
    """
    images = _check_images(images)
    n, c, h, w = images.shape
    if nrow is None:
        nrow = max(1, math.ceil(math.sqrt(n)))
    if not isinstance(nrow, int) or isinstance(nrow, bool) or nrow < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow!r}")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    if not 0.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value must lie in [0, 1], got {pad_value}")
    ncol = min(nrow, n)
    rows = math.ceil(n / nrow)
    unit = to_unit(images)
    grid = np.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.float64)
    for k in range(n):
        r, q = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top : top + h, left : left + w] = unit[k]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def log_spaced_steps(sigmas, n: int) -> list[int]:
    """Indices of ``n`` grid levels whose noise levels are closest (in log sigma) to ``n`` targets
    spaced evenly in log sigma between the first and the last positive level.

    ``sigmas`` is a strictly decreasing grid (a trailing 0 is ignored). Always includes the first and
    the last positive level; returns distinct indices in increasing order (fewer than ``n`` only if
    the grid has fewer positive levels).
    """
    from .schedules import check_sigmas

    s = check_sigmas(sigmas).double()
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    pos = s[s > 0]
    logs = pos.log()
    targets = torch.linspace(float(logs[0]), float(logs[-1]), n, dtype=torch.float64)
    chosen: list[int] = []
    for t in targets:
        order = (logs - t).abs().argsort()
        for idx in order.tolist():
            if idx not in chosen:
                chosen.append(idx)
                break
        if len(chosen) == len(pos):
            break
    return sorted(chosen)


def trajectory_rows(*rows, steps) -> torch.Tensor:
    """Pick ``steps`` from each trajectory in ``rows`` and stack them, row after row, for :func:`image_grid`.

    Each row is one trajectory of images ``(T, C, H, W)`` (e.g. ``traj.x[:, k]`` or
    ``traj.denoised[:, k]``); ``steps`` indexes its first axis. Returns
    ``(len(rows) * len(steps), C, H, W)``; use ``image_grid(result, nrow=len(steps))``.
    """
    if not rows:
        raise ValueError("give at least one trajectory")
    steps = list(steps)
    if not steps:
        raise ValueError("steps is empty")
    out = []
    for j, r in enumerate(rows):
        if not isinstance(r, torch.Tensor) or r.ndim != 4:
            raise ValueError(f"row {j} must be one trajectory of images (T, C, H, W), got "
                             f"{tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__}")
        bad = [i for i in steps if not -r.shape[0] <= i < r.shape[0]]
        if bad:
            raise ValueError(f"steps {bad} are outside row {j}, which has {r.shape[0]} points")
        out.append(r[steps])
    shapes = {tuple(o.shape[1:]) for o in out}
    if len(shapes) != 1:
        raise ValueError(f"rows have different image shapes: {sorted(shapes)}")
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------
# Sampling at a fixed budget of denoiser evaluations
# --------------------------------------------------------------------------------------------------

EVALS_PER_STEP = {"euler": 1, "heun": 2, "dpm_solver_2": 2, "dpm_solver_pp_2m": 1, "ipndm": 1, "deis": 1,
                  "amed": 2}
"""Denoiser evaluations per step of each sampler of :data:`diffusion_geometry.samplers.SAMPLERS`
(on a grid that ends above 0)."""

_SCHEDULES = ("edm", "logsnr", "uniform")


def steps_for_nfe(method: str, nfe: int, *, afs: bool = False) -> int:
    r"""The number of steps ``n`` with which ``method`` spends exactly ``nfe`` evaluations.

    On a grid ending at :math:`\sigma_\min > 0`, NFE :math:`= k n - [\text{afs}]` with ``k`` the
    evaluations per step (:data:`EVALS_PER_STEP`). Raises ``ValueError`` when no whole number of steps
    fits (e.g. an odd NFE for Heun without the analytical first step).
    """
    if method not in EVALS_PER_STEP:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(EVALS_PER_STEP)}")
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    if not isinstance(afs, bool):
        raise TypeError(f"afs must be True or False, got {afs!r}")
    k = EVALS_PER_STEP[method]
    n, rem = divmod(nfe + int(afs), k)
    if rem or n < 1:
        raise ValueError(f"{method} cannot spend exactly {nfe} evaluations (afs={afs}): "
                         f"{k} per step{', one saved by AFS' if afs else ''}")
    return n


@dataclass
class BudgetRun:
    """One sampler run at a fixed budget: the ``samples`` ``(batch, ...)``, the ``sigmas`` walked,
    the measured ``nfe`` (evaluations per sample), and the settings that produced them."""

    method: str
    schedule: str
    nfe: int
    afs: bool
    sigmas: torch.Tensor
    samples: torch.Tensor


def sample_at_nfe(denoiser, x: torch.Tensor, method: str, nfe: int, *, schedule="edm", afs: bool = False,
                  sigma_min: float = 0.002, sigma_max: float = 80.0, batch_size: int | None = None,
                  **opts) -> BudgetRun:
    r"""Run ``method`` from ``x`` (at ``sigma_max``) with exactly ``nfe`` denoiser evaluations per sample.

    ``schedule``: ``"edm"`` (:func:`~diffusion_geometry.edm_sigmas`, :math:`\rho = 7`), ``"logsnr"``,
    ``"uniform"``, or a callable ``n_steps -> sigmas`` (e.g. a GITS schedule per step count); the
    grid has :func:`steps_for_nfe` steps from ``sigma_max`` to ``sigma_min`` (no final step to 0).
    ``batch_size`` splits ``x`` into chunks (same result, less memory). ``opts`` go to the sampler.
    The evaluations are counted, not assumed: a mismatch raises ``RuntimeError``.
    """
    from .samplers import SAMPLERS
    from .schedules import check_sigmas, edm_sigmas, logsnr_sigmas, uniform_sigmas
    from .trajectory import CountingDenoiser

    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x, sigma)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0:
        raise ValueError("x must be a non-empty tensor of shape (batch, ...)")
    n = steps_for_nfe(method, nfe, afs=afs)
    if callable(schedule):
        grid, name = check_sigmas(schedule(n)), getattr(schedule, "__name__", "custom")
        if grid.numel() != n + 1:
            raise ValueError(f"the schedule returned {grid.numel()} levels for {n} steps")
    elif schedule in _SCHEDULES:
        make = {"edm": edm_sigmas, "logsnr": logsnr_sigmas, "uniform": uniform_sigmas}[schedule]
        grid, name = make(n, sigma_min, sigma_max), schedule
    else:
        raise ValueError(f"schedule must be one of {_SCHEDULES} or a callable n_steps -> sigmas, got {schedule!r}")
    if grid[-1] <= 0:
        raise ValueError("the grid must end above 0 for the NFE count of steps_for_nfe")
    if batch_size is None:
        batch_size = x.shape[0]
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out, per_sample = [], None
    for lo in range(0, x.shape[0], batch_size):
        counting = CountingDenoiser(denoiser)
        out.append(SAMPLERS[method](counting, x[lo:lo + batch_size], grid, afs=afs, **opts))
        if per_sample is not None and counting.nfe != per_sample:
            raise RuntimeError("chunks spent different numbers of evaluations")
        per_sample = counting.nfe
    if per_sample != nfe:
        raise RuntimeError(f"{method} spent {per_sample} evaluations, expected {nfe}")
    return BudgetRun(method, name, per_sample, afs, grid, torch.cat(out))


def first_reaching(values, target: float) -> int:
    """The first index at which ``values`` (a 1-D sequence, e.g. FD at each step) is ``<= target``;
    ``-1`` if it never is."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or inf")
    hits = np.nonzero(v <= target)[0]
    return int(hits[0]) if hits.size else -1
