r"""Samplers as finite differences of the denoising trajectory (Chen et al. 2023, §4).

Two facts organise the chapter on second-order samplers.

**Curvature identity.** Along an exact solution of :math:`dx/d\sigma = \varepsilon = (x - D(x;\sigma))/\sigma`,

.. math:: \frac{d^2x}{d\sigma^2} = \frac{d\varepsilon}{d\sigma}
          = \frac{1}{\sigma}\Big(\varepsilon - \frac{dD}{d\sigma}\Big) - \frac{x - D}{\sigma^2}
          = -\frac{1}{\sigma}\,\frac{dD}{d\sigma},

so the sampling trajectory bends only where the denoising trajectory moves (:func:`denoiser_derivative`,
:func:`curvature`).

**Effective denoiser output.** Every update of the package's samplers can be written as an Euler step
:math:`x_{n+1} = \frac{\sigma_{n+1}}{\sigma_n} x_n + \big(1 - \frac{\sigma_{n+1}}{\sigma_n}\big) D_\text{eff}`
(:func:`implied_d_eff` recovers :math:`D_\text{eff}` from any step), where :math:`D_\text{eff}` is a finite
difference of the denoiser outputs the sampler has seen (:math:`D_n = D(x_n;\sigma_n)`, :math:`h = \sigma_{n+1} - \sigma_n`).
The form of each sampler is its registry entry's ``d_eff`` (``dg.samplers.SAMPLERS[name].d_eff``, LaTeX;
chapter 5 prints them): Euler :math:`D_n`; Heun and DPM-Solver-2 a difference of :math:`D` between the
start and the intermediate point; AMED the same with its factor :math:`c`; DPM-Solver++(2M) a backward
difference in :math:`\log\sigma`; iPNDM, DEIS and iPNDM-v differences of the directions
:math:`\varepsilon`. UniPC and DPM-Solver++(3M) are not assembled here (their registry ``d_eff`` is
``None``; their docstrings give the form).

The multistep ones are differences of the directions :math:`\varepsilon`, which the curvature identity turns
into differences of the denoising trajectory to first order. :func:`d_eff` evaluates these formulas
from a log of the denoiser calls a sampler made (:class:`RecordingDenoiser`); the chapter checks them
against the samplers' own steps to round-off.
"""
from __future__ import annotations

import inspect
import math

import torch

from .denoisers import sigma_like
from .samplers import _per_step, get_sampler
from .schedules import check_sigmas

__all__ = [
    "implied_d_eff",
    "heun_d_eff",
    "dpm_solver_2_d_eff",
    "amed_d_eff",
    "dpm_solver_pp_2m_d_eff",
    "multistep_d_eff",
    "RecordingDenoiser",
    "d_eff",
    "denoiser_derivative",
    "curvature",
    "step_anatomy",
]


def _ratio(sigma, sigma_next) -> float:
    sigma, sigma_next = float(sigma), float(sigma_next)
    if not (sigma > 0 and 0 <= sigma_next < sigma):
        raise ValueError(f"need sigma > sigma_next >= 0, got sigma={sigma}, sigma_next={sigma_next}")
    return sigma_next / sigma


def implied_d_eff(x: torch.Tensor, x_next: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    r"""The :math:`D_\text{eff}` that makes a step an Euler step:
    :math:`D_\text{eff} = \big(x_{n+1} - \tfrac{\sigma_{n+1}}{\sigma_n}x_n\big)/\big(1 - \tfrac{\sigma_{n+1}}{\sigma_n}\big)`."""
    if x.shape != x_next.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_next {tuple(x_next.shape)} differ in shape")
    q = _ratio(sigma, sigma_next)
    return (x_next - q * x) / (1 - q)


def heun_d_eff(den: torch.Tensor, den_pred: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    r"""Heun: :math:`D_n + \frac{\sigma_n}{2\sigma_{n+1}}(\tilde D - D_n)`, :math:`\tilde D = D(\tilde x;\sigma_{n+1})`
    at the Euler point: a forward difference of the denoising trajectory."""
    q = _ratio(sigma, sigma_next)
    if q == 0:
        raise ValueError("a step to 0 is an Euler step; it has no Heun correction")
    return den + (den_pred - den) / (2 * q)


def dpm_solver_2_d_eff(den: torch.Tensor, den_mid: torch.Tensor, sigma, sigma_next, r: float = 0.5) -> torch.Tensor:
    r"""Generalised DPM-Solver-2: :math:`D_n + \frac{\sigma_n}{2 r s}(D_s - D_n)` with :math:`s = \sigma_n^{1-r}\sigma_{n+1}^r`."""
    _ratio(sigma, sigma_next)
    if not 0 < r <= 1:
        raise ValueError(f"r must lie in (0, 1], got {r}")
    s = float(sigma) ** (1 - r) * float(sigma_next) ** r
    return den + float(sigma) / (2 * r * s) * (den_mid - den)


def amed_d_eff(x: torch.Tensor, den: torch.Tensor, den_mid: torch.Tensor, sigma, sigma_next,
               r: float = 0.5, c: float = 1.0) -> torch.Tensor:
    r"""AMED: :math:`(1-c)x_n + c D_n + \frac{c\,\sigma_n}{s}(D_s - D_n)`, :math:`s = \sigma_n^{1-r}\sigma_{n+1}^r`."""
    _ratio(sigma, sigma_next)
    if not 0 < r <= 1:
        raise ValueError(f"r must lie in (0, 1], got {r}")
    s = float(sigma) ** (1 - r) * float(sigma_next) ** r
    return (1 - c) * x + c * den + c * float(sigma) / s * (den_mid - den)


def dpm_solver_pp_2m_d_eff(den: torch.Tensor, den_prev: torch.Tensor, sigma_prev, sigma, sigma_next) -> torch.Tensor:
    r"""DPM-Solver++(2M): :math:`D_n + \frac{1}{2r_n}(D_n - D_{n-1})`, a backward difference in
    :math:`\log\sigma` with the step ratio :math:`r_n = \ln(\sigma_{n-1}/\sigma_n)/\ln(\sigma_n/\sigma_{n+1})`."""
    _ratio(sigma, sigma_next)
    _ratio(sigma_prev, sigma)
    if float(sigma_next) == 0:
        raise ValueError("a step to 0 is an Euler step (D_eff = D_n)")
    r_n = math.log(float(sigma_prev) / float(sigma)) / math.log(float(sigma) / float(sigma_next))
    return den + (den - den_prev) / (2 * r_n)


def multistep_d_eff(den: torch.Tensor, eps_history, sigma_history, sigma_next, *, sampler: str = "deis") -> torch.Tensor:
    r"""The multistep samplers written on the directions (registry ``multistep_weights``: iPNDM, DEIS, iPNDM-v): :math:`D_n - \frac{\sigma_n}{h}\sum_j w_j(\varepsilon_{n-j} - \varepsilon_n)` where
    :math:`w_j = h\,a_j` (iPNDM), :math:`w_j = c_j` (DEIS) or the weights of
    :func:`~diffusion_geometry.samplers.ipndm_v_coefficients` (iPNDM-v). Where :math:`\sum_j w_j \ne h`
    (iPNDM-v of order 4 on unequal steps) the remainder :math:`-\frac{\sigma_n}{h}(\sum_j w_j - h)\,\varepsilon_n`
    is added; for the others it is zero and left out (so their values are those of the formula as written).

    ``eps_history`` and ``sigma_history`` list the directions and levels, current first.
    """
    weights = get_sampler(sampler).multistep_weights
    if weights is None:
        raise ValueError(f"sampler must be a one-evaluation multistep sampler written on the directions "
                         f"(its registry entry has multistep_weights), got {sampler!r}")
    if len(eps_history) != len(sigma_history) or not 1 <= len(eps_history) <= 4:
        raise ValueError("eps_history and sigma_history must have the same length, 1 to 4")
    sigma = float(sigma_history[0])
    _ratio(sigma, sigma_next)
    h = float(sigma_next) - sigma
    w = weights([float(v) for v in sigma_history], float(sigma_next))
    out = den.clone()
    for wj, ej in zip(w[1:], eps_history[1:]):
        out = out - (sigma / h) * wj * (ej - eps_history[0])
    # the j = 0 term vanishes identically; where the weights sum to h, D_n carries the rest. iPNDM-v's
    # order-4 weights do not (they sum to h only on equal steps), and the remainder is a multiple of eps_n
    if abs(sum(w) - h) > 1e-12 * abs(h):
        out = out - (sigma / h) * (sum(w) - h) * eps_history[0]
    return out


class RecordingDenoiser:
    """Wraps a denoiser and logs every call as ``(x, sigma, D(x; sigma))`` in ``calls``."""

    def __init__(self, denoiser):
        if not callable(denoiser):
            raise TypeError("denoiser must be callable as denoiser(x, sigma)")
        self.denoiser, self.calls = denoiser, []

    def __call__(self, x, sigma):
        out = self.denoiser(x, sigma)
        self.calls.append((x, float(sigma), out))
        return out


def d_eff(sampler: str, calls, sigmas, *, r: float = 0.5, c=1.0, order: int | None = None) -> torch.Tensor:
    r"""The effective denoiser output of every step, ``(n_steps, batch, ...)``, from the finite-difference
    formulas of the registry's ``d_eff`` forms, evaluated on the log ``calls`` of a :class:`RecordingDenoiser` that
    ``sampler`` (a name in :data:`~diffusion_geometry.samplers.SAMPLERS` with a ``d_eff`` form) used along ``sigmas``
    (without ``afs``). ``r``, ``c`` and ``order`` are the sampler's options (``order`` defaults to the
    sampler's own default; ``c`` may be per step for AMED). A step to 0 has :math:`D_\text{eff} = D_n`.
    Raises ``ValueError`` for another sampler, or a log that does not match the grid.
    """
    spec = get_sampler(sampler)
    if spec.d_eff is None:
        raise ValueError(f"{spec.name} has no finite-difference form in the registry (its SamplerSpec.d_eff is None)")
    s = [float(v) for v in check_sigmas(sigmas)]
    n = len(s) - 1
    expected = spec.nfe(n, to_zero=s[-1] == 0)
    if len(calls) != expected:
        raise ValueError(f"{spec.name} on this grid makes {expected} denoiser calls, the log has {len(calls)}")
    if order is None and spec.multistep_weights is not None:
        order = inspect.signature(spec.fn).parameters["order"].default  # the sampler's own default
    rs = _per_step(r, n, "r", 0.5, s[-1] == 0)
    cs = _per_step(c, n, "c", 1.0, s[-1] == 0)
    out, k = [], 0
    xs, dens, epss = [], [], []
    for i in range(n):
        x, sig, den = calls[k]
        if abs(sig - s[i]) > 1e-12 * s[i]:
            raise ValueError(f"call {k} was at sigma={sig}, expected {s[i]}")
        k += 1
        xs.append(x), dens.append(den), epss.append((x - den) / sig)
        sig_next = s[i + 1]
        if sig_next == 0 or spec.name == "euler" or (spec.name == "dpm_solver_pp_2m" and i == 0):
            out.append(den)
            continue
        if spec.evals_per_step == 2:
            den2 = calls[k][2]
            k += 1
            if spec.name == "heun":
                out.append(heun_d_eff(den, den2, sig, sig_next))
            elif spec.name == "dpm_solver_2":
                out.append(dpm_solver_2_d_eff(den, den2, sig, sig_next, rs[i]))
            elif spec.name == "amed":
                out.append(amed_d_eff(x, den, den2, sig, sig_next, rs[i], cs[i]))
            else:
                raise ValueError(f"{spec.name} states a D_eff form in the registry, but d_eff has no assembly "
                                 "for it: add one here")
        elif spec.name == "dpm_solver_pp_2m":
            out.append(dpm_solver_pp_2m_d_eff(den, dens[i - 1], s[i - 1], sig, sig_next))
        else:
            m = min(order, i + 1)
            out.append(multistep_d_eff(den, epss[i::-1][:m], s[i::-1][:m], sig_next, sampler=spec.name))
    return torch.stack(out)


def denoiser_derivative(denoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    r"""The rate of change of the denoising trajectory along the ODE,
    :math:`\frac{dD}{d\sigma} = \partial_x D\,\varepsilon + \partial_\sigma D`: one Jacobian-vector product
    of the denoiser in ``(x, sigma)`` along :math:`(\varepsilon, 1)`. ``torch.autograd.functional.jvp``
    computes it; that is not forward-mode differentiation: it uses two reverse-mode passes (the
    double-backward trick) and never forms the Jacobian. The denoiser must be differentiable in ``x``
    and ``sigma``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor")
    sig = sigma_like(sigma, x).reshape(-1).detach()
    if (sig <= 0).any():
        raise ValueError("sigma must be positive")
    with torch.no_grad():
        eps = (x - denoiser(x, sig)) / sig.reshape(-1, *([1] * (x.ndim - 1)))
    _, tangent = torch.autograd.functional.jvp(lambda xx, ss: denoiser(xx, ss), (x.detach(), sig),
                                               (eps, torch.ones_like(sig)))
    return tangent


def curvature(denoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    r""":math:`\frac{d^2x}{d\sigma^2} = -\frac{1}{\sigma}\frac{dD}{d\sigma}` at ``(x, sigma)`` (the curvature identity)."""
    sig = sigma_like(sigma, x)
    return -denoiser_derivative(denoiser, x, sigma) / sig


def step_anatomy(denoiser, x: torch.Tensor, sigma: float, sigma_next: float, *, r: float = 0.5,
                 n_path: int = 48, rtol: float = 1e-10) -> dict:
    r"""Everything about one generalised DPM-Solver-2 step from ``x`` at ``sigma`` to ``sigma_next``,
    for pictures: the exact sampling trajectory between the two levels and its denoising trajectory,
    the intermediate point :math:`x_s` and :math:`D_s`, the finite-difference :math:`D_\text{eff}`, the
    step's result, and the *ideal* :math:`D_\text{eff}` that would land on the exact solution,
    :math:`D^\star_\text{eff} = x_n - \frac{\sigma_n}{h}\int \varepsilon\,d\sigma` (the denoising trajectory
    averaged over the step with weight proportional to :math:`\sigma^{-2}`, because
    :math:`d(x/\sigma)/d\sigma = -D/\sigma^2` along the ODE).

    Returns a dict of float64 tensors: ``x``, ``den``, ``x_mid``, ``den_mid``, ``d_eff``, ``x_next``,
    ``x_exact``, ``d_eff_exact``, ``path_x`` and ``path_den`` (``(n_path, batch, ...)``), and floats
    ``sigma``, ``sigma_next``, ``s``, ``r``, ``error`` (mean distance of ``x_next`` to ``x_exact``).
    """
    from .benchmarking import ode_solution
    from .samplers import dpm_solver_2

    _ratio(sigma, sigma_next)
    if float(sigma_next) == 0:
        raise ValueError("sigma_next must be positive (a step to 0 has no intermediate point)")
    if not 0 < r <= 1:
        raise ValueError(f"r must lie in (0, 1], got {r}")
    sigma, sigma_next = float(sigma), float(sigma_next)
    x = x.to(torch.float64)
    with torch.no_grad():
        den = denoiser(x, sigma)
        s = sigma ** (1 - r) * sigma_next**r
        x_mid = x + (s - sigma) * (x - den) / sigma
        den_mid = denoiser(x_mid, s)
        d_eff_fd = dpm_solver_2_d_eff(den, den_mid, sigma, sigma_next, r)
        x_next = dpm_solver_2(denoiser, x, torch.tensor([sigma, sigma_next], dtype=torch.float64), r=r)
    at = ode_solution(denoiser, x, sigma, sigma_next, rtol=rtol, atol=rtol)
    levels = torch.logspace(math.log10(sigma), math.log10(sigma_next), n_path, dtype=torch.float64)
    path_x = torch.stack([at(float(v)) for v in levels])
    with torch.no_grad():
        path_den = torch.stack([denoiser(p, float(v)) for p, v in zip(path_x, levels)])
    x_exact = at(sigma_next)
    flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
    return {
        "x": x, "den": den, "x_mid": x_mid, "den_mid": den_mid, "d_eff": d_eff_fd, "x_next": x_next,
        "x_exact": x_exact, "d_eff_exact": implied_d_eff(x, x_exact, sigma, sigma_next),
        "path_sigmas": levels, "path_x": path_x, "path_den": path_den,
        "sigma": sigma, "sigma_next": sigma_next, "s": s, "r": float(r),
        "error": float((flat(x_next) - flat(x_exact)).norm(dim=1).mean()),
    }
