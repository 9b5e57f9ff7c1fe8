r"""Deterministic samplers of the probability-flow ODE in EDM (VE) form,

.. math:: \frac{dx}{d\sigma} = \varepsilon(x;\sigma) = \frac{x - D(x;\sigma)}{\sigma},

integrated from ``sigmas[0]`` down to ``sigmas[-1]``. Every sampler has one signature (after
k-diffusion): ``sampler(denoiser, x, sigmas, *, callback=None, **opts) -> x_final``. The callback
receives a dict with ``i``, ``sigma``, ``sigma_next``, ``x`` (the point at ``sigma``) and
``denoised`` (``D(x; sigma)``) once per grid step, before the step is taken. A step to
``sigma = 0`` is always an Euler step, which outputs ``D(x; sigma)``.

Each update can be written as the Euler step with an *effective* denoiser output (Chen et al. 2023,
§4): :math:`x_{n+1} = \frac{\sigma_{n+1}}{\sigma_n} x_n + \big(1 - \frac{\sigma_{n+1}}{\sigma_n}\big) D_\text{eff}`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .schedules import check_sigmas

__all__ = [
    "to_d",
    "euler_step",
    "euler",
    "heun",
    "dpm_solver_2",
    "dpm_solver_pp_2m",
    "ipndm",
    "SAMPLERS",
    "IPNDM_COEFFICIENTS",
]

Callback = Callable[[dict], None] | None


def to_d(x: torch.Tensor, sigma, denoised: torch.Tensor) -> torch.Tensor:
    r"""The ODE direction :math:`\varepsilon = (x - D)/\sigma` (also the noise prediction)."""
    return (x - denoised) / sigma


def euler_step(x: torch.Tensor, sigma, sigma_next, denoised: torch.Tensor) -> torch.Tensor:
    r"""One Euler step as a convex combination (Chen et al. 2023, Prop. 1):
    :math:`x' = \frac{\sigma'}{\sigma} x + (1 - \frac{\sigma'}{\sigma}) D`."""
    ratio = sigma_next / sigma
    return ratio * x + (1 - ratio) * denoised


def _prepare(denoiser, x, sigmas):
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x, sigma)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (batch, ...)")
    sigmas = check_sigmas(sigmas)
    if sigmas[0] == 0:
        raise ValueError("the grid must start above 0")
    return [float(s) for s in sigmas]


def _evaluate(denoiser, x, sigma):
    out = denoiser(x, sigma)
    if out.shape != x.shape:
        raise ValueError(f"the denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
    return out


def _report(callback, i, sigma, sigma_next, x, denoised):
    if callback is not None:
        callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})


@torch.no_grad()
def euler(denoiser, x, sigmas, *, callback: Callback = None):
    """Euler = DDIM: :math:`D_\\text{eff} = D(x_n;\\sigma_n)`. One evaluation per step."""
    s = _prepare(denoiser, x, sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _evaluate(denoiser, x, sig)
        _report(callback, i, sig, sig_next, x, den)
        x = euler_step(x, sig, sig_next, den)
    return x


@torch.no_grad()
def heun(denoiser, x, sigmas, *, callback: Callback = None):
    r"""EDM's second-order Heun method (Karras et al. 2022, Alg. 1): an Euler predictor
    :math:`\tilde x` at :math:`\sigma_{n+1}` and the trapezoidal corrector
    :math:`x_{n+1} = x_n + h\,\tfrac12(\varepsilon_n + \varepsilon(\tilde x;\sigma_{n+1}))`.
    Two evaluations per step, one for the last step if it goes to 0."""
    s = _prepare(denoiser, x, sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _evaluate(denoiser, x, sig)
        _report(callback, i, sig, sig_next, x, den)
        d = to_d(x, sig, den)
        x_pred = x + (sig_next - sig) * d
        if sig_next == 0:
            x = x_pred
        else:
            d_next = to_d(x_pred, sig_next, _evaluate(denoiser, x_pred, sig_next))
            x = x + (sig_next - sig) * 0.5 * (d + d_next)
    return x


@torch.no_grad()
def dpm_solver_2(denoiser, x, sigmas, *, r: float = 0.5, callback: Callback = None):
    r"""Generalised DPM-Solver-2 in VE form (Lu et al. 2022; the form of Zhou et al. 2024, Table 1).

    Intermediate level :math:`s = \sigma_n^{1-r}\sigma_{n+1}^{r}`, Euler to :math:`x_s`, then
    :math:`x_{n+1} = x_n + h\big[\tfrac{1}{2r}\varepsilon(x_s; s) + (1 - \tfrac{1}{2r})\varepsilon_n\big]`.
    ``r = 1/2`` is DPM-Solver-2 (midpoint in log sigma); ``r = 1`` is Heun.
    """
    if not 0 < r <= 1:
        raise ValueError(f"r must lie in (0, 1], got {r}")
    s = _prepare(denoiser, x, sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _evaluate(denoiser, x, sig)
        _report(callback, i, sig, sig_next, x, den)
        d = to_d(x, sig, den)
        if sig_next == 0:
            x = x + (sig_next - sig) * d
            continue
        sig_mid = sig ** (1 - r) * sig_next**r
        x_mid = x + (sig_mid - sig) * d
        d_mid = to_d(x_mid, sig_mid, _evaluate(denoiser, x_mid, sig_mid))
        x = x + (sig_next - sig) * ((1 / (2 * r)) * d_mid + (1 - 1 / (2 * r)) * d)
    return x


@torch.no_grad()
def dpm_solver_pp_2m(denoiser, x, sigmas, *, callback: Callback = None):
    r"""DPM-Solver++(2M) (Lu et al. 2022b) in VE form, one evaluation per step.

    With :math:`h_n = \ln(\sigma_n/\sigma_{n+1})` and :math:`r_n = h_{n-1}/h_n`,
    :math:`D_\text{eff} = (1 + \tfrac{1}{2r_n}) D_n - \tfrac{1}{2r_n} D_{n-1}`: a backward difference
    of the denoising trajectory in log sigma. The first step, and a step to 0, are Euler steps.
    """
    s = _prepare(denoiser, x, sigmas)
    old_den = None
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _evaluate(denoiser, x, sig)
        _report(callback, i, sig, sig_next, x, den)
        if old_den is None or sig_next == 0:
            d_eff = den
        else:
            ratio = math.log(s[i - 1] / sig) / math.log(sig / sig_next)
            d_eff = (1 + 1 / (2 * ratio)) * den - (1 / (2 * ratio)) * old_den
        x = euler_step(x, sig, sig_next, d_eff)
        old_den = den
    return x


IPNDM_COEFFICIENTS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
"""Fixed-step Adams-Bashforth weights on (eps_n, eps_{n-1}, ...), as used by iPNDM (Zhang & Chen 2023)."""


@torch.no_grad()
def ipndm(denoiser, x, sigmas, *, order: int = 4, callback: Callback = None):
    r"""iPNDM (Zhang & Chen 2023): Adams-Bashforth with fixed coefficients on the directions,
    :math:`x_{n+1} = x_n + h \sum_j a_j \varepsilon_{n-j}`, warming up with lower orders.
    One evaluation per step; a step to 0 is an Euler step."""
    if order not in IPNDM_COEFFICIENTS:
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    s = _prepare(denoiser, x, sigmas)
    history: list[torch.Tensor] = []
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _evaluate(denoiser, x, sig)
        _report(callback, i, sig, sig_next, x, den)
        history.insert(0, to_d(x, sig, den))
        del history[order:]
        if sig_next == 0:
            x = den
            continue
        coeffs = IPNDM_COEFFICIENTS[len(history)]
        x = x + (sig_next - sig) * sum(c * e for c, e in zip(coeffs, history))
    return x


SAMPLERS = {
    "euler": euler,
    "heun": heun,
    "dpm_solver_2": dpm_solver_2,
    "dpm_solver_pp_2m": dpm_solver_pp_2m,
    "ipndm": ipndm,
}
"""Samplers by name, for :func:`diffusion_geometry.sample`."""
