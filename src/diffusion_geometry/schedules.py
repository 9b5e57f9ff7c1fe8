"""Noise-level grids for the probability-flow ODE in EDM (VE) form.

A grid is a 1-D tensor of noise levels sigma_0 > sigma_1 > ... > sigma_n >= 0, walked from the first
entry (pure noise) to the last (data). Only the last level may be 0; a step to sigma = 0 is a plain
Euler step that outputs the denoiser's estimate (Karras et al. 2022, "EDM", Alg. 1).

Every generator computes its levels in float64 and casts them to the requested ``dtype`` last; the
cast grid is checked (:func:`_finish`) and a ``dtype`` that cannot hold that many distinct levels
(bfloat16 has 8 significant bits: ``edm_sigmas(1000)`` or ``uniform_sigmas(200)`` would repeat
levels), or that overflows or underflows at the end points, raises ``ValueError`` naming the dtype
and the count instead of returning a grid that is not strictly decreasing.

The named schedules are declared once, in :data:`SCHEDULES` (:class:`ScheduleSpec`: function, label,
shape options); :func:`get_sigmas` makes the grid of a name or of a callable ``n_steps -> sigmas``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = [
    "SCHEDULES",
    "ScheduleSpec",
    "get_sigmas",
    "edm_sigmas",
    "logsnr_sigmas",
    "uniform_sigmas",
    "append_zero",
    "check_sigmas",
]


def _check_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"a noise grid needs a floating-point dtype, got {dtype!r}")


def _finish(sigmas: torch.Tensor, dtype: torch.dtype, device, what: str) -> torch.Tensor:
    """Cast a float64 grid to ``dtype`` and ``device``; raise ``ValueError`` naming the dtype and the
    number of levels unless the cast grid is finite, positive where the float64 one is, and strictly
    decreasing."""
    out = sigmas.to(dtype=dtype, device=device)
    n = sigmas.numel()
    check = out.to(torch.float64) if out.device.type != "mps" else out
    if not torch.isfinite(check).all():
        raise ValueError(f"{what}: sigma_max = {float(sigmas[0]):g} overflows {dtype} "
                         f"(largest {torch.finfo(dtype).max:g}); use float32 or float64")
    if ((check.cpu() == 0) & (sigmas > 0)).any():
        raise ValueError(f"{what}: sigma_min = {float(sigmas[sigmas > 0].min()):g} underflows to 0 in {dtype}; "
                         "use float32 or float64")
    ties = int((check[1:] >= check[:-1]).sum())
    if ties:
        raise ValueError(f"{what}: {dtype} cannot hold {n} distinct levels here ({ties} neighbours become "
                         f"equal after the cast, so the grid is not strictly decreasing); use fewer steps "
                         "or float32/float64")
    return out


def _check_range(n_steps: int, sigma_min: float, sigma_max: float) -> None:
    import numbers

    if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
        raise ValueError(f"sigma_min and sigma_max must be finite, got {sigma_min} and {sigma_max}")
    if not (0 < sigma_min < sigma_max):
        raise ValueError(
            f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )


def edm_sigmas(
    n_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The polynomial ("rho") grid of EDM, ``n_steps + 1`` levels from ``sigma_max`` to ``sigma_min``.

    .. math:: \sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{n}\big(\sigma_{\min}^{1/\rho}
              - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho}, \qquad i = 0, \dots, n.

    Karras et al. 2022, Eq. (5); ``rho = 7`` is their default, ``rho = 1`` is uniform in sigma and
    ``rho -> inf`` is uniform in log sigma (:func:`logsnr_sigmas`).

    Returns a strictly decreasing ``(n_steps + 1,)`` tensor of ``dtype`` on ``device``, computed in
    float64 and cast last. Raises ``ValueError`` for ``n_steps < 1``, ``not 0 < sigma_min < sigma_max``,
    ``rho <= 0``, a non-floating dtype, or a ``dtype`` that cannot hold the grid (repeated levels
    after the cast, overflow, underflow; the message names the dtype and the count).
    """
    _check_dtype(dtype)
    _check_range(n_steps, sigma_min, sigma_max)
    if not (rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a positive finite number, got {rho} (rho -> inf is logsnr_sigmas)")
    ramp = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0], sigmas[-1] = sigma_max, sigma_min  # exact end points despite round-off
    return _finish(sigmas, dtype, device, f"edm_sigmas({n_steps}, rho={rho})")


def logsnr_sigmas(
    n_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Levels uniform in log sigma (equivalently in logSNR = -2 log sigma), ``n_steps + 1`` of them.

    Computed in float64 and cast to ``dtype`` last; raises ``ValueError`` as :func:`edm_sigmas` does."""
    _check_dtype(dtype)
    _check_range(n_steps, sigma_min, sigma_max)
    logs = torch.linspace(math.log(sigma_max), math.log(sigma_min), n_steps + 1, dtype=torch.float64)
    sigmas = logs.exp()
    sigmas[0], sigmas[-1] = sigma_max, sigma_min
    return _finish(sigmas, dtype, device, f"logsnr_sigmas({n_steps})")


def uniform_sigmas(
    n_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Levels uniform in sigma, ``n_steps + 1`` of them (the ``rho = 1`` member of the EDM family).

    Computed in float64 and cast to ``dtype`` last; raises ``ValueError`` as :func:`edm_sigmas` does."""
    _check_dtype(dtype)
    _check_range(n_steps, sigma_min, sigma_max)
    sigmas = torch.linspace(sigma_max, sigma_min, n_steps + 1, dtype=torch.float64)
    return _finish(sigmas, dtype, device, f"uniform_sigmas({n_steps})")


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """The grid with a final level 0 appended (the last step then outputs the denoiser's estimate).

    Keeps the grid's dtype and device; the result is strictly decreasing because the input is
    (checked by :func:`check_sigmas`, which raises ``ValueError`` naming the dtype otherwise)."""
    sigmas = check_sigmas(sigmas)
    if sigmas[-1] == 0:
        raise ValueError("the grid already ends at 0")
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def check_sigmas(sigmas) -> torch.Tensor:
    """Validate a noise grid and return it as a tensor.

    A grid is 1-D, has at least two levels, is finite, strictly decreasing, and non-negative (only the
    last level may be 0). Raises ``ValueError`` with the reason otherwise.
    """
    if not isinstance(sigmas, torch.Tensor):
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    if sigmas.ndim != 1:
        raise ValueError(f"a noise grid must be 1-D, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() < 2:
        raise ValueError("a noise grid needs at least two levels (one step)")
    if not torch.isfinite(sigmas).all():
        raise ValueError("a noise grid must be finite")
    if (sigmas < 0).any():
        raise ValueError(f"noise levels must be non-negative, got min {sigmas.min().item()}")
    bad = (sigmas[1:] >= sigmas[:-1]).nonzero().reshape(-1)
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"a noise grid must be strictly decreasing (from sigma_max to sigma_min); this "
                         f"{sigmas.dtype} grid of {sigmas.numel()} levels has {bad.numel()} non-decreasing "
                         f"neighbours, first sigmas[{i}] = {float(sigmas[i]):g} -> sigmas[{i + 1}] = "
                         f"{float(sigmas[i + 1]):g}")
    return sigmas


# --------------------------------------------------------------------------------------------------
# The registry: every named schedule declared once
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """One named grid family: ``fn(n_steps, sigma_min, sigma_max, **opts)`` returns ``n_steps + 1``
    levels; ``label`` is its name, at its default options, in tables and legends; ``options`` names the
    shape parameters ``fn`` takes besides the range (``edm``: ``rho``)."""

    name: str
    fn: Callable[..., torch.Tensor]
    label: str
    options: tuple[str, ...] = ()


SCHEDULES: dict[str, ScheduleSpec] = {spec.name: spec for spec in (
    ScheduleSpec("edm", edm_sigmas, "rho=7", ("rho",)),
    ScheduleSpec("logsnr", logsnr_sigmas, "logSNR"),
    ScheduleSpec("uniform", uniform_sigmas, "uniform"),
)}
"""The named schedules: the only list of them in the package (data-driven grids, GITS and AMED's,
are fitted by :mod:`diffusion_geometry.gits` and passed as callables or tensors)."""


def get_sigmas(schedule, n_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, **opts) -> torch.Tensor:
    r"""The grid of ``n_steps`` steps (``n_steps + 1`` levels) of ``schedule``.

    ``schedule``: a name in :data:`SCHEDULES` (``opts`` go to its function, e.g. ``rho=5`` or
    ``dtype=``), or a callable ``n_steps -> sigmas`` (a fitted GITS grid per step count; it gets no
    other argument, and its grid is checked with :func:`check_sigmas` and must have ``n_steps + 1``
    levels). Raises ``ValueError`` for an unknown name, a wrong level count or a bad grid.
    """
    if callable(schedule):
        if opts:
            raise ValueError(f"options {sorted(opts)} are for named schedules; a callable takes only n_steps")
        grid = check_sigmas(schedule(n_steps))
        if grid.numel() != n_steps + 1:
            raise ValueError(f"the schedule returned {grid.numel()} levels for {n_steps} steps")
        return grid
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)} or pass a "
                         "callable n_steps -> sigmas")
    return SCHEDULES[schedule].fn(n_steps, sigma_min, sigma_max, **opts)
