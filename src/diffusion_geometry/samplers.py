r"""Deterministic samplers of the probability-flow ODE in EDM (VE) form,

.. math:: \frac{dx}{d\sigma} = \varepsilon(x;\sigma) = \frac{x - D(x;\sigma)}{\sigma},

integrated from ``sigmas[0]`` down to ``sigmas[-1]``. Every sampler has one signature (after
k-diffusion): ``sampler(denoiser, x, sigmas, *, callback=None, **opts) -> x_final``. The callback
receives a dict with ``i``, ``sigma``, ``sigma_next``, ``x`` (the point at ``sigma``) and
``denoised`` (``D(x; sigma)``; UniPC: see below) once per grid step, before the step is taken. A step to
``sigma = 0`` is always an Euler step, which outputs ``D(x; sigma)``.

Precision: every sigma-dependent factor (step ratios, step sizes, log-sigma ratios, multistep
weights) is formed in float64 from the grid, the update is computed in float32 at least (in the
dtype of ``x`` and the denoiser output when that is float32 or float64), and only the new point is
cast back to that dtype. So float16 and bfloat16 sampling rounds once per update; ``x`` itself must
be finite (float16 holds ``|x| <= 65504``, which ``sigma_max * N(0, I)`` reaches near
``sigma_max ~ 1e4``: create such start points in float32).

Each update can be written as the Euler step with an *effective* denoiser output (Chen et al. 2023,
§4): :math:`x_{n+1} = \frac{\sigma_{n+1}}{\sigma_n} x_n + \big(1 - \frac{\sigma_{n+1}}{\sigma_n}\big) D_\text{eff}`.

The samplers: :func:`euler`, :func:`heun`, :func:`dpm_solver_2`, :func:`dpm_solver_pp_2m`,
:func:`ipndm`, :func:`deis` (DEIS's rho-AB variant: Adams-Bashforth in sigma), :func:`unipc`,
:func:`dpm_solver_pp_3m`, :func:`ipndm_v` and :func:`amed` (the AMED step with given per-step
parameters, fitted by :mod:`diffusion_geometry.amed`); ODE-Jump (:func:`jump_sigmas`,
:func:`ode_jump`) and the analytical first step (``afs=True`` on every sampler, :func:`afs_denoised`).
Each is declared once in the registry :data:`SAMPLERS` (:class:`SamplerSpec`: label, evaluations per
step, order, effective-denoiser form), which every other module reads; a sampler is chosen by
``sampler=`` and a registry name wherever the package takes one. UniPC reports, as ``denoised``,
:math:`D` at its predicted point (its ``SamplerSpec.predictor_corrector``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
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
    "SamplerSpec",
    "get_sampler",
    "sampler_fn",
    "IPNDM_COEFFICIENTS",
    "ipndm_coefficients",
    "afs_denoised",
    "deis",
    "deis_coefficients",
    "unipc",
    "unipc_coefficients",
    "dpm_solver_pp_3m",
    "ipndm_v",
    "ipndm_v_coefficients",
    "amed",
    "jump_sigmas",
    "ode_jump",
]

Callback = Callable[[dict], None] | None


def _out_dtype(x: torch.Tensor, denoised: torch.Tensor) -> torch.dtype:
    """The dtype of a new point: that of ``x`` combined with the denoiser output."""
    return torch.result_type(x, denoised)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: ``dtype``, but at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _level(sigma, work: torch.dtype):
    """A noise level for arithmetic in ``work``: a Python float, or a tensor formed in float64 and cast
    to ``work`` (a float16 level tensor would round every factor built from it)."""
    if isinstance(sigma, torch.Tensor):
        exact = torch.float32 if sigma.device.type == "mps" else torch.float64
        return sigma.to(exact).to(work)
    return float(sigma)


def _direction(x: torch.Tensor, sigma, denoised: torch.Tensor) -> torch.Tensor:
    r""":math:`(x - D)/\sigma` in the working dtype (float32 at least), not cast back."""
    work = _work_dtype(_out_dtype(x, denoised))
    return (x.to(work) - denoised.to(work)) / _level(sigma, work)


def to_d(x: torch.Tensor, sigma, denoised: torch.Tensor) -> torch.Tensor:
    r"""The ODE direction :math:`\varepsilon = (x - D)/\sigma` (also the noise prediction).

    ``x`` and ``denoised`` of one shape, ``sigma`` a number or a tensor that broadcasts against them.
    Computed in float32 at least and returned in the dtype of ``x - denoised``."""
    return _direction(x, sigma, denoised).to(_out_dtype(x, denoised))


def euler_step(x: torch.Tensor, sigma, sigma_next, denoised: torch.Tensor) -> torch.Tensor:
    r"""One Euler step as a convex combination (Chen et al. 2023, Prop. 1):
    :math:`x' = \frac{\sigma'}{\sigma} x + (1 - \frac{\sigma'}{\sigma}) D`.

    The ratio is formed in float64 from the levels (numbers or tensors), the combination in float32 at
    least, and the result is returned in the dtype of ``x`` combined with ``denoised``."""
    out = _out_dtype(x, denoised)
    work = _work_dtype(out)
    if isinstance(sigma, torch.Tensor) or isinstance(sigma_next, torch.Tensor):
        exact = torch.float32 if x.device.type == "mps" else torch.float64
        ratio = (torch.as_tensor(sigma_next, dtype=exact, device=x.device)
                 / torch.as_tensor(sigma, dtype=exact, device=x.device)).to(work)
    else:
        ratio = sigma_next / sigma
    return (ratio * x.to(work) + (1 - ratio) * denoised.to(work)).to(out)


def _prepare(denoiser, x, sigmas):
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x, sigma)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (batch, ...)")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"x holds non-finite values; {x.dtype} holds |x| <= {torch.finfo(x.dtype).max:g} "
                         "(start points sigma_max * N(0, I) reach about 5 sigma_max): create x in float32 or float64")
    sigmas = check_sigmas(sigmas)
    if sigmas[0] == 0:
        raise ValueError("the grid must start above 0")
    return [float(s) for s in sigmas]


def _evaluate(denoiser, x, sigma):
    out = denoiser(x, sigma)
    if out.shape != x.shape:
        raise ValueError(f"the denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
    return out


def afs_denoised(x: torch.Tensor, sigma) -> torch.Tensor:
    r"""The denoiser-free estimate behind the *analytical first step* (AFS).

    AFS (Dockhorn et al. 2022, GENIE; used by Zhou et al. 2024, AMED, §3.4) replaces the first network
    call at :math:`\sigma_{\max} = T` by the direction :math:`\varepsilon \approx x_T/\sqrt{1 + T^2}`: at
    :math:`T = 80` the data are invisible and the noise :math:`x_T/T` is nearly all of :math:`x_T`.
    In denoiser form this is

    .. math:: D_\text{AFS}(x;\sigma) = x - \sigma\,\frac{x}{\sqrt{1+\sigma^2}}
              = \Big(1 - \frac{\sigma}{\sqrt{1+\sigma^2}}\Big)\,x \approx \frac{x}{2\sigma^2},

    the posterior mean of a zero-mean Gaussian prior of variance :math:`\approx 1/2` per coordinate. It
    ignores the data mean, an error of order :math:`\lVert\mathbb{E}[x_0]\rVert/T` in the direction.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError("x must be a tensor")
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"the analytical first step needs sigma > 0, got {sigma}")
    # 1 - s/sqrt(1+s^2) without cancellation, formed in float64; only the product is cast
    root = math.sqrt(1 + sigma**2)
    factor = 1 / (root * (root + sigma))
    work = _work_dtype(x.dtype) if x.is_floating_point() else torch.float64
    return (factor * x.to(work)).to(x.dtype if x.is_floating_point() else work)


def _check_afs(afs) -> bool:
    if not isinstance(afs, bool):
        raise TypeError(f"afs must be True or False, got {afs!r}")
    return afs


def _denoise(denoiser, x, sigma, analytical: bool):
    """``D(x; sigma)``, or the AFS estimate (no evaluation) when ``analytical``."""
    return afs_denoised(x, sigma) if analytical else _evaluate(denoiser, x, sigma)


def _report(callback, i, sigma, sigma_next, x, denoised):
    if callback is not None:
        callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})


@torch.no_grad()
def euler(denoiser, x, sigmas, *, callback: Callback = None, afs: bool = False):
    """Euler = DDIM: :math:`D_\\text{eff} = D(x_n;\\sigma_n)`. One evaluation per step
    (``afs=True``: the first step uses :func:`afs_denoised` and saves one evaluation)."""
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        x = euler_step(x, sig, sig_next, den)
    return x


@torch.no_grad()
def heun(denoiser, x, sigmas, *, callback: Callback = None, afs: bool = False):
    r"""EDM's second-order Heun method (Karras et al. 2022, Alg. 1): an Euler predictor
    :math:`\tilde x` at :math:`\sigma_{n+1}` and the trapezoidal corrector
    :math:`x_{n+1} = x_n + h\,\tfrac12(\varepsilon_n + \varepsilon(\tilde x;\sigma_{n+1}))`.
    Two evaluations per step, one for the last step if it goes to 0 (``afs=True``: one fewer)."""
    return _two_stage(denoiser, x, sigmas, 1.0, callback, _check_afs(afs))


@torch.no_grad()
def dpm_solver_2(denoiser, x, sigmas, *, r: float = 0.5, callback: Callback = None, afs: bool = False):
    r"""Generalised DPM-Solver-2 in VE form (Lu et al. 2022; the form of Zhou et al. 2024, Table 1).

    Intermediate level :math:`s = \sigma_n^{1-r}\sigma_{n+1}^{r}`, Euler to :math:`x_s`, then
    :math:`x_{n+1} = x_n + h\big[\tfrac{1}{2r}\varepsilon(x_s; s) + (1 - \tfrac{1}{2r})\varepsilon_n\big]`.
    ``r = 1/2`` is DPM-Solver-2 (midpoint in log sigma); ``r = 1`` is Heun.
    """
    if not 0 < r <= 1:
        raise ValueError(f"r must lie in (0, 1], got {r}")
    return _two_stage(denoiser, x, sigmas, r, callback, _check_afs(afs))


def _two_stage(denoiser, x, sigmas, r, callback, afs):
    """The loop of DPM-Solver-2 (and of Heun, its ``r = 1``: the intermediate level is then
    ``sigma_next`` exactly and the weights 1/2, 1/2, so the arithmetic is Heun's to the bit)."""
    s = _prepare(denoiser, x, sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        out = _out_dtype(x, den)
        d = _direction(x, sig, den)
        if sig_next == 0:
            x = (x + (sig_next - sig) * d).to(out)
            continue
        sig_mid = sig ** (1 - r) * sig_next**r
        x_mid = (x + (sig_mid - sig) * d).to(out)
        d_mid = _direction(x_mid, sig_mid, _evaluate(denoiser, x_mid, sig_mid))
        x = (x + (sig_next - sig) * ((1 / (2 * r)) * d_mid + (1 - 1 / (2 * r)) * d)).to(out)
    return x


@torch.no_grad()
def dpm_solver_pp_2m(denoiser, x, sigmas, *, callback: Callback = None, afs: bool = False):
    r"""DPM-Solver++(2M) (Lu et al. 2022b) in VE form, one evaluation per step.

    With :math:`h_n = \ln(\sigma_n/\sigma_{n+1})` and :math:`r_n = h_{n-1}/h_n`,
    :math:`D_\text{eff} = (1 + \tfrac{1}{2r_n}) D_n - \tfrac{1}{2r_n} D_{n-1}`: a backward difference
    of the denoising trajectory in log sigma. The first step, and a step to 0, are Euler steps.
    ``afs=True`` replaces the first evaluation by :func:`afs_denoised`.
    """
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    old_den = None
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        out = _out_dtype(x, den)
        if old_den is None or sig_next == 0:
            d_eff = den
        else:
            work = _work_dtype(_out_dtype(den, old_den))
            ratio = math.log(s[i - 1] / sig) / math.log(sig / sig_next)
            d_eff = (1 + 1 / (2 * ratio)) * den.to(work) - (1 / (2 * ratio)) * old_den.to(work)
        x = euler_step(x, sig, sig_next, d_eff).to(out)
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
def ipndm(denoiser, x, sigmas, *, order: int = 4, callback: Callback = None, afs: bool = False):
    r"""iPNDM (Zhang & Chen 2023): Adams-Bashforth with fixed coefficients on the directions,
    :math:`x_{n+1} = x_n + h \sum_j a_j \varepsilon_{n-j}`, warming up with lower orders.
    One evaluation per step; a step to 0 is an Euler step. ``afs=True`` replaces the first
    evaluation by :func:`afs_denoised`."""
    if order not in IPNDM_COEFFICIENTS:
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")

    def step(s, i, history):
        return (s[i + 1] - s[i]) * sum(c * e for c, e in zip(IPNDM_COEFFICIENTS[len(history)], history))

    return _multistep(denoiser, x, sigmas, order, step, callback, afs)


def ipndm_coefficients(nodes, sigma_next) -> list[float]:
    r"""iPNDM's step weights in the convention of :func:`deis_coefficients`: :math:`w_j = h\,a_j`,
    :math:`h = \sigma_{n+1} - \sigma_n`, with the fixed Adams-Bashforth :math:`a_j` of
    :data:`IPNDM_COEFFICIENTS` for ``len(nodes)`` (1 to 4) nodes, current first (only ``nodes[0]`` and the
    count matter: the weights ignore the step sizes)."""
    nodes = [float(v) for v in nodes]
    if len(nodes) not in IPNDM_COEFFICIENTS:
        raise ValueError(f"iPNDM uses 1 to 4 nodes, got {len(nodes)}")
    return [(float(sigma_next) - nodes[0]) * a for a in IPNDM_COEFFICIENTS[len(nodes)]]


def _multistep(denoiser, x, sigmas, order, step, callback, afs, keep=_direction):
    """The loop shared by the one-evaluation multistep samplers (iPNDM, iPNDM-v, DEIS, DPM-Solver++(3M)):
    one evaluation per step, the last ``order`` values ``keep(x_n, sigma_n, D_n)`` (by default the
    directions) kept newest first, and ``x_{n+1} = x_n + step(s, n, history)``; a step to 0 is an Euler
    step (it outputs the denoiser's estimate)."""
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    history: list = []
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        out = _out_dtype(x, den)
        history.insert(0, keep(x, sig, den))
        del history[order:]
        x = den.to(out) if sig_next == 0 else (x + step(s, i, history)).to(out)
    return x


def _check_nodes(nodes, sigma_next, method: str) -> tuple[list[float], float]:
    """The levels of a multistep rule as floats, checked: 1 to 4 positive ``nodes``, current first and
    older ones larger, and ``0 <= sigma_next < nodes[0]``; ``ValueError`` otherwise."""
    nodes = [float(v) for v in nodes]
    sigma_next = float(sigma_next)
    if not 1 <= len(nodes) <= 4:
        raise ValueError(f"{method} uses 1 to 4 nodes, got {len(nodes)}")
    if any(not math.isfinite(v) or v <= 0 for v in nodes) or not math.isfinite(sigma_next) or sigma_next < 0:
        raise ValueError("nodes must be positive and sigma_next non-negative")
    if any(b <= a for a, b in zip(nodes[:-1], nodes[1:])) or not sigma_next < nodes[0]:
        raise ValueError("need sigma_next < nodes[0] < nodes[1] < ... (current node first, older nodes larger)")
    return nodes, sigma_next


def deis_coefficients(nodes, sigma_next) -> list[float]:
    r"""Weights of the DEIS step interpolating in sigma (rho-AB): :math:`c_j = \int_{\sigma_n}^{\sigma_{n+1}} \ell_j(s)\,ds`.

    ``nodes = (sigma_n, sigma_{n-1}, ..., sigma_{n-k+1})`` are the levels where the directions
    :math:`\varepsilon_{n-j}` are known (current first); :math:`\ell_j` is the Lagrange basis
    polynomial of node ``j``. The step is then :math:`x_{n+1} = x_n + \sum_j c_j \varepsilon_{n-j}`.

    Derivation (Zhang & Chen 2023, "DEIS", the exponential integrator with polynomial extrapolation):
    for :math:`x_t = \alpha_t (x_0 + \sigma_t\varepsilon)` the exact step is
    :math:`x_{n+1} = \tfrac{\alpha_{n+1}}{\alpha_n} x_n + \alpha_{n+1}\int \varepsilon\, d\sigma`; in the
    VE form used here :math:`\alpha \equiv 1`, the exponential weight is 1, and the only approximation
    left is :math:`\varepsilon(x_\sigma;\sigma) \approx \sum_j \ell_j(\sigma)\,\varepsilon_{n-j}`,
    integrated exactly. Interpolating in sigma, as here, is DEIS's rho-AB variant: the variable-step
    Adams-Bashforth method in sigma; with equal steps it reduces to iPNDM's fixed coefficients. The
    DEIS-tAB numbers of the papers interpolate in the VP time t instead, a different method. The integral is computed
    exactly with the substitution :math:`u = (s - \sigma_n)/(\sigma_{n+1} - \sigma_n)`.
    """
    nodes, sigma_next = _check_nodes(nodes, sigma_next, "DEIS")
    h = sigma_next - nodes[0]
    u = [(v - nodes[0]) / h for v in nodes]  # u_0 = 0, older nodes at negative u
    weights = []
    for j, uj in enumerate(u):
        others = [um for m, um in enumerate(u) if m != j]
        poly = np.polynomial.Polynomial.fromroots(others) / math.prod(uj - um for um in others) if others \
            else np.polynomial.Polynomial([1.0])
        prim = poly.integ()
        weights.append(h * float(prim(1.0) - prim(0.0)))
    return weights


@torch.no_grad()
def deis(denoiser, x, sigmas, *, order: int = 3, callback: Callback = None, afs: bool = False):
    r"""DEIS (Zhang & Chen 2023), rho-AB variant (polynomial in sigma), one evaluation per step:

    .. math:: x_{n+1} = x_n + \sum_{j=0}^{k-1} c_j\,\varepsilon_{n-j}, \qquad
              c_j = \int_{\sigma_n}^{\sigma_{n+1}} \ell_j(s)\, ds,

    with :math:`\ell_j` the Lagrange basis through the last :math:`k = \min(\text{order}, n+1)` levels
    (:func:`deis_coefficients`). As an effective denoiser output,
    :math:`D_\text{eff} = D_n - \tfrac{\sigma_n}{h}\sum_j c_j(\varepsilon_{n-j} - \varepsilon_n)`:
    a polynomial extrapolation of the directions, which the curvature identity ties to the denoising
    trajectory. A step to 0 is an Euler step; ``afs=True`` replaces the first evaluation by
    :func:`afs_denoised`.
    """
    if order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")

    def step(s, i, history):
        return sum(c * e for c, e in zip(deis_coefficients(s[i::-1][: len(history)], s[i + 1]), history))

    return _multistep(denoiser, x, sigmas, order, step, callback, afs)


def _per_step(value, n_steps: int, name: str, fill: float, ends_at_zero: bool) -> list[float]:
    """A float, or one value per step, as a list of ``n_steps`` floats; when the grid ends at 0 the
    final (Euler) step may be left out and gets ``fill``."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)] * n_steps
    value = [float(v) for v in value]
    if ends_at_zero and len(value) == n_steps - 1:
        value.append(fill)
    if len(value) != n_steps:
        raise ValueError(f"{name} needs one value per step ({n_steps}), got {len(value)}")
    return value


@torch.no_grad()
def amed(denoiser, x, sigmas, *, r=0.5, c=1.0, callback: Callback = None, afs: bool = False):
    r"""The AMED-Solver step (Zhou et al. 2024, Eq. 9) with given per-step parameters:

    .. math:: s_n = \sigma_n^{1-r_n}\sigma_{n+1}^{r_n}, \quad
              x_{s_n} = x_n + (s_n - \sigma_n)\,\varepsilon_n, \quad
              x_{n+1} = x_n + c_n(\sigma_{n+1} - \sigma_n)\,\varepsilon(x_{s_n}; s_n).

    The mean-value idea: the integral of the direction over the step is replaced by one direction at
    an intermediate level, rescaled. ``r`` and ``c`` are floats or one value per step (``len(sigmas) - 1``;
    on a grid ending at 0 the last, Euler, step may be left out);
    :func:`diffusion_geometry.amed.fit_amed` chooses them on a warm-up batch. ``r = 1/2, c = 1`` is
    DPM-Solver-2 exactly. Two evaluations per step; a step to 0 is an Euler step; ``afs=True``
    replaces the first evaluation by :func:`afs_denoised`.
    """
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    rs = _per_step(r, len(s) - 1, "r", 0.5, s[-1] == 0)
    cs = _per_step(c, len(s) - 1, "c", 1.0, s[-1] == 0)
    if any(not 0 < v <= 1 for v in rs):
        raise ValueError(f"every r must lie in (0, 1], got {rs}")
    if any(not (math.isfinite(v) and v > 0) for v in cs):
        raise ValueError(f"every c must be positive and finite, got {cs}")
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        out = _out_dtype(x, den)
        if sig_next == 0:
            x = den.to(out)
            continue
        d = _direction(x, sig, den)
        sig_mid = sig ** (1 - rs[i]) * sig_next ** rs[i]
        x_mid = (x + (sig_mid - sig) * d).to(out)
        d_mid = _direction(x_mid, sig_mid, _evaluate(denoiser, x_mid, sig_mid))
        x = (x + cs[i] * (sig_next - sig) * d_mid).to(out)
    return x


def jump_sigmas(sigmas, k: int) -> torch.Tensor:
    r"""The grid of ODE-Jump: the first ``k`` steps of ``sigmas``, then a step to 0.

    ``sigmas[:k+1]`` followed by ``0``; since a step to 0 outputs :math:`D(x_k;\sigma_k)`, any sampler
    run on this grid stops after ``k`` steps and jumps to the denoising trajectory (Chen et al. 2023,
    §4: "ODE-Jump"). Use it with :func:`diffusion_geometry.sample` to record the trajectory.
    """
    sigmas = check_sigmas(sigmas)
    n_pos = int((sigmas > 0).sum())  # levels above 0 where a jump can start
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n_pos:
        raise ValueError(f"k must be an integer in [0, {n_pos - 1}] for this grid, got {k!r}")
    return torch.cat([sigmas[: k + 1], sigmas.new_zeros(1)])


@torch.no_grad()
def ode_jump(denoiser, x, sigmas, *, k: int, sampler="euler", callback: Callback = None, **opts):
    r"""ODE-Jump (Chen et al. 2023, §4): run ``sampler`` for ``k`` steps along ``sigmas``, then output
    :math:`D(x_k;\sigma_k)` instead of continuing. NFE = NFE of the ``k`` steps + 1.

    ``sampler`` is a name in :data:`SAMPLERS`, a :class:`SamplerSpec` or a sampler function; ``opts``
    go to it. Equivalent to ``sampler(denoiser, x, jump_sigmas(sigmas, k))``.
    """
    return sampler_fn(sampler)(denoiser, x, jump_sigmas(sigmas, k), callback=callback, **opts)


def _phi(k: int, z: float) -> float:
    r""":math:`\varphi_k(z) = \sum_{j\ge 0} z^j/(j+k)!` in float64 (:math:`\varphi_0 = e^z`,
    :math:`\varphi_{k+1}(z) = (\varphi_k(z) - 1/k!)/z`): the weights of exponential integrators
    (Hochbruck & Ostermann 2010). The series is summed for :math:`|z| < 1`, where the recurrence cancels."""
    if abs(z) < 1:
        return math.fsum(z**j / math.factorial(j + k) for j in range(30))
    value = math.exp(z)
    for m in range(k):
        value = (value - 1 / math.factorial(m)) / z
    return value


def _solve(rows: list[list[float]], rhs: list[float]) -> list[float]:
    """The solution of a small linear system, float64 (numpy; the matrices here are 1x1 to 3x3 Vandermonde
    matrices of distinct nodes)."""
    return [float(v) for v in np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))]


def unipc_coefficients(h: float, rs, corrector: bool) -> list[float]:
    r"""The weights :math:`\rho` of a UniPC step with :math:`B(h) = e^{-h} - 1` ("bh2"), data prediction,
    in the log-SNR step :math:`h = \ln(\sigma_n/\sigma_{n+1}) > 0` (Zhao et al. 2023, §3: UniC and UniP, and
    the authors' ``multistep_uni_pc_bh_update``).

    ``rs`` holds :math:`r_k = (\lambda_{n-k} - \lambda_n)/h` for the earlier evaluations ``k = 1..p-1``
    (negative, distinct), so the step is of order :math:`p = \text{len(rs)} + 1`. With
    :math:`b_k = k!\,\varphi_{k+1}(-h)/\varphi_1(-h)`, :math:`k = 1..p` (the :math:`g_k(h)/B(h)` of the
    paper for bh2), the predictor UniP-p solves :math:`\sum_j r_j^{\,i-1}\rho_j = b_i`, ``i = 1..p-1``
    (``p - 1`` weights), and the corrector UniC-p the same system over the nodes
    :math:`(r_1, \dots, r_{p-1}, 1)` for ``i = 1..p`` (``p`` weights, the last one for the new evaluation).
    As in the authors' code, UniP-2 uses :math:`\rho = 1/2` and UniC-1 :math:`\rho = 1/2`
    (the leading terms of :math:`b_1 = \varphi_2(-h)/\varphi_1(-h)`). Returns the weights as floats.
    """
    h = float(h)
    rs = [float(r) for r in rs]
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"h must be positive and finite, got {h}")
    if len(rs) > 2 or any(not (math.isfinite(r) and r < 0) for r in rs) or len(set(rs)) != len(rs):
        raise ValueError(f"rs must hold 0 to 2 distinct negative ratios, got {rs}")
    p = len(rs) + 1
    b = [math.factorial(k) * _phi(k + 1, -h) / _phi(1, -h) for k in range(1, p + 1)]
    if corrector:
        nodes = rs + [1.0]
        return [0.5] if p == 1 else _solve([[r**i for r in nodes] for i in range(p)], b)
    if p <= 2:
        return [0.5] * (p - 1)
    return _solve([[r**i for r in rs] for i in range(p - 1)], b[: p - 1])


@torch.no_grad()
def unipc(denoiser, x, sigmas, *, order: int = 3, callback: Callback = None, afs: bool = False):
    r"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
    Diffusion Models", §3), data prediction, :math:`B(h) = e^{-h} - 1` ("bh2"), in VE form.

    With :math:`\lambda = -\ln\sigma`, :math:`h = \ln(\sigma_n/\sigma_{n+1})`, the earlier evaluations
    :math:`D_{n-k}` at :math:`r_k = (\lambda_{n-k} - \lambda_n)/h` and
    :math:`\Delta_k = (D_{n-k} - D_n)/r_k`, the predictor UniP-p and the corrector UniC-p are Euler steps
    (:func:`euler_step`, since :math:`-B(h) = 1 - \sigma_{n+1}/\sigma_n`) with

    .. math:: D_\text{eff}^{P} = D_n + \sum_{k=1}^{p-1}\rho_k\Delta_k, \qquad
              D_\text{eff}^{C} = D_n + \sum_{k=1}^{p-1}\rho^c_k\Delta_k + \rho^c_p\big(D(\tilde x_{n+1};\sigma_{n+1}) - D_n\big),

    the weights from :func:`unipc_coefficients`. The predictor gives :math:`\tilde x_{n+1}`; the one
    evaluation :math:`D(\tilde x_{n+1};\sigma_{n+1})` serves the corrector, which gives
    :math:`x_{n+1}`, and is also the next step's :math:`D_{n+1}` (so every :math:`D` is taken at a
    predicted point). ``order`` ``p`` is 1, 2 or 3 (default 3, the default ``max_order`` of diff-sampler's
    ``unipc_sampler`` and of its ``dpm_pp_sampler``); the first steps warm up with
    ``p = 1, 2``. No corrector after the last step above 0, and a step to 0 is an Euler step from the
    uncorrected point, which outputs its evaluation :math:`D(x_{N-1};\sigma_{N-1})`. NFE = number of
    steps (one evaluation per step, none after the last); ``afs=True`` replaces the first evaluation by
    :func:`afs_denoised`. The callback's ``denoised`` is the evaluation :math:`D(\tilde x_n;\sigma_n)` at
    the predicted point that the step uses; its ``x`` is the corrected :math:`x_n`. Measured global
    order on the EDM grid: 4 with ``order=3`` (the corrector raises the predictor's order by one, as the
    paper states), 3 with ``order=2``, 2 with ``order=1``. Not included: diff-sampler's ``lower_order_final``
    (orders lowered in the last steps) and dynamic thresholding.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    dens: list[torch.Tensor] = []  # D_n, D_{n-1}, ... in the working dtype, newest first
    correct = None  # the pending UniC step: the new evaluation -> the corrected point
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        if correct is not None and sig_next > 0:
            x = correct(den)
        _report(callback, i, sig, sig_next, x, den)
        if sig_next == 0:
            x = den.to(_out_dtype(x, den))
            continue
        work = _work_dtype(_out_dtype(x, den))
        dens.insert(0, den.to(work))
        del dens[order:]
        h = math.log(sig / sig_next)
        rs = [-math.log(s[i - k] / sig) / h for k in range(1, len(dens))]
        deltas = [(dens[k] - dens[0]) / r for k, r in enumerate(rs, start=1)]
        d_pred = dens[0] + sum(rho * d for rho, d in zip(unipc_coefficients(h, rs, False), deltas))

        def correct(den_new, x=x, sig=sig, sig_next=sig_next, h=h, rs=rs, d0=dens[0], deltas=deltas):
            rho = unipc_coefficients(h, rs, True)
            d_eff = d0 + sum(r * d for r, d in zip(rho, deltas)) + rho[-1] * (den_new.to(d0.dtype) - d0)
            return euler_step(x, sig, sig_next, d_eff).to(_out_dtype(x, den_new))

        x = euler_step(x, sig, sig_next, d_pred).to(_out_dtype(x, den))
    return x


@torch.no_grad()
def dpm_solver_pp_3m(denoiser, x, sigmas, *, callback: Callback = None, afs: bool = False):
    r"""DPM-Solver++(3M) (Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
    Probabilistic Models", the multistep third-order solver of the data-prediction ODE), in VE form.

    With :math:`h = \ln(\sigma_n/\sigma_{n+1})`, :math:`r_0 = \ln(\sigma_{n-1}/\sigma_n)/h`,
    :math:`r_1 = \ln(\sigma_{n-2}/\sigma_{n-1})/h`, the backward differences
    :math:`\Delta_0 = (D_n - D_{n-1})/r_0`, :math:`\Delta_1 = (D_{n-1} - D_{n-2})/r_1`,
    :math:`D^{(1)} = \Delta_0 + \tfrac{r_0}{r_0 + r_1}(\Delta_0 - \Delta_1)` and
    :math:`D^{(2)} = \tfrac{1}{r_0 + r_1}(\Delta_0 - \Delta_1)`, the step is

    .. math:: x_{n+1} = \frac{\sigma_{n+1}}{\sigma_n}x_n + h\varphi_1(-h)\,D_n + h\varphi_2(-h)\,D^{(1)}
              + h\varphi_3(-h)\,D^{(2)},

    :math:`\varphi_k` the exponential-integrator functions (:math:`h\varphi_1(-h) = 1 - \sigma_{n+1}/\sigma_n`),
    i.e. :math:`D_\text{eff} = D_n + \frac{\varphi_2(-h)}{\varphi_1(-h)} D^{(1)} + \frac{\varphi_3(-h)}{\varphi_1(-h)} D^{(2)}`.
    This is the update of the authors' code (``multistep_dpm_solver_third_update``, as diff-sampler
    copies it into VE form). The first step is Euler and the second DPM-Solver++(2M)
    (:func:`dpm_solver_pp_2m`). Note: :math:`D^{(2)} \approx \tfrac{h^2}{2} D''(\lambda)`, so the Taylor
    term :math:`h^3\varphi_3(-h) D''` would need :math:`2h\varphi_3(-h) D^{(2)}`; with the published
    weight the step is exact only for data predictions linear in :math:`\lambda`, and the measured
    global order is 2 (see :data:`SAMPLERS`), with a smaller error constant than DPM-Solver++(2M)
    (about a quarter of its error at 512 EDM steps on the test mixture of ``tests/test_samplers_high_order.py``).
    One evaluation per step; a step to 0 is an Euler step; ``afs=True`` replaces the first evaluation
    by :func:`afs_denoised`.
    """

    def keep(x, sig, den):
        return _direction(x, sig, den), den.to(_work_dtype(_out_dtype(x, den)))

    def step(s, i, history):
        sig, sig_next = s[i], s[i + 1]
        euler_part = (sig_next - sig) * history[0][0]
        if len(history) == 1:
            return euler_part
        h = math.log(sig / sig_next)
        r0 = math.log(s[i - 1] / sig) / h
        d1_0 = (history[0][1] - history[1][1]) / r0
        if len(history) == 2:
            return euler_part + (-math.expm1(-h) / 2) * d1_0
        r1 = math.log(s[i - 2] / s[i - 1]) / h
        d1_1 = (history[1][1] - history[2][1]) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        return euler_part + h * _phi(2, -h) * d1 + h * _phi(3, -h) * d2

    return _multistep(denoiser, x, sigmas, 3, step, callback, afs, keep)


def ipndm_v_coefficients(nodes, sigma_next) -> list[float]:
    r"""Weights :math:`c_j` of the iPNDM-v step :math:`x_{n+1} = x_n + \sum_j c_j\varepsilon_{n-j}`, as
    diff-sampler's ``ipndm_v_sampler`` defines them (the code base of Zhou et al. 2024, AMED, and
    Chen et al. 2024, GITS); same convention as :func:`deis_coefficients`.

    ``nodes = (sigma_n, sigma_{n-1}, ..., sigma_{n-k+1})``, ``k = 1..4``. With :math:`h_0 = \sigma_{n+1} - \sigma_n`,
    :math:`h_m = \sigma_{n-m+1} - \sigma_{n-m}`, :math:`c_j = h_0 a_j`:

    - ``k = 1``: :math:`a = (1)` (Euler); ``k = 2``: :math:`a = (1 + \tfrac{\rho}{2}, -\tfrac{\rho}{2})`,
      :math:`\rho = h_0/h_1`: the variable-step Adams-Bashforth rule, identical to DEIS-2 (rho-AB);
    - ``k = 3``: adds :math:`\tau_1\,(\varepsilon_n - (1 + \tfrac{h_1}{h_2})\varepsilon_{n-1} + \tfrac{h_1}{h_2}\varepsilon_{n-2})`
      with :math:`\tau_1 = \tfrac12\big(1 - \tfrac{h_0^2}{3h_1(h_1+h_2)}\big)`;
    - ``k = 4``: adds :math:`\tau_2\,(\varepsilon_n - (1 + \tfrac{h_1}{h_2} + q)\varepsilon_{n-1}
      + (\tfrac{h_1}{h_2} + q(1 + \tfrac{h_2}{h_3}))\varepsilon_{n-2} - q\tfrac{h_1}{h_2}\varepsilon_{n-3})`,
      :math:`q = \tfrac{h_1(h_1+h_2)}{h_2(h_2+h_3)}`,
      :math:`\tau_2 = \big[\tfrac12(1 - \tfrac{h_0}{3(h_0+h_1)}) + (1 - \tfrac{h_0}{2(h_0+h_1)})\tfrac{h_0}{6(h_0+h_1+h_2)}\big]
      \tfrac{h_0(h_0+h_1)(h_0+h_1+h_2)}{h_1(h_1+h_2)(h_1+h_2+h_3)}`.

    Relation to :func:`deis_coefficients` (the exact variable-step Adams-Bashforth rule in sigma, DEIS
    rho-AB): ``k <= 2`` is the same rule on every grid. ``k = 3`` is the same with equal steps (iPNDM's
    :math:`(23, -16, 5)/12`) but not with unequal ones: the exact rule has
    :math:`\tau_1 = \tfrac{h_0(2h_0 + 3h_1)}{6h_1(h_1+h_2)}`, which the formula above becomes if the
    parenthesis after :math:`\tfrac{h_0}{3(h_0+h_1)}` closes before the factor
    :math:`\tfrac{h_0(h_0+h_1)}{h_1(h_1+h_2)}`; its weights still sum to 1, so on a smooth grid the method
    keeps order 3. ``k = 4`` is not Adams-Bashforth even with equal steps: there
    :math:`\tau_2 = 11/24` instead of :math:`3/8`, giving :math:`(57, -65, 43, -11)/24` instead of
    iPNDM's :math:`(55, -59, 37, -9)/24`, and with unequal steps the weights sum to
    :math:`1 + \tau_2 q(\tfrac{h_2}{h_3} - \tfrac{h_1}{h_2})`, not 1 (a defect of :math:`O(h^2)` per step on a
    smooth grid, so the method still converges, at second order).
    """
    nodes, sigma_next = _check_nodes(nodes, sigma_next, "iPNDM-v")
    levels = [sigma_next] + nodes
    h0, *hs = [a - b for a, b in zip(levels[:-1], levels[1:])]  # h0 = sigma_{n+1} - sigma_n, h_m older steps
    a = [1.0]
    if len(hs) >= 1:
        a = [1 + h0 / hs[0] / 2, -h0 / hs[0] / 2]
    if len(hs) >= 2:
        h1, h2 = hs[:2]
        t1 = (1 - h0**2 / (3 * h1 * (h1 + h2))) / 2
        a = [a[0] + t1, a[1] - (1 + h1 / h2) * t1, h1 / h2 * t1]
    if len(hs) == 3:
        h3 = hs[2]
        q = h1 * (h1 + h2) / (h2 * (h2 + h3))
        t2 = (((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2)))
              * (h0 * (h0 + h1) * (h0 + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)))
        a = [a[0] + t2, a[1] - (1 + h1 / h2 + q) * t2, a[2] + (h1 / h2 + q * (1 + h2 / h3)) * t2,
             -q * h1 / h2 * t2]
    return [h0 * v for v in a]


@torch.no_grad()
def ipndm_v(denoiser, x, sigmas, *, order: int = 3, callback: Callback = None, afs: bool = False):
    r"""iPNDM-v: iPNDM with variable step sizes, as diff-sampler defines it (``ipndm_v_sampler``, the
    solver suite of Zhou et al. 2024, AMED, and Chen et al. 2024, GITS; iPNDM: Zhang & Chen 2023, DEIS).

    .. math:: x_{n+1} = x_n + \sum_{j=0}^{k-1} c_j\,\varepsilon_{n-j},\qquad k = \min(\text{order}, n+1),

    the weights from :func:`ipndm_v_coefficients` (Adams-Bashforth weights that follow the step
    ratios in sigma). How it relates to its neighbours: with ``order <= 2`` it is :func:`deis` with the
    same order on every grid (the variable-step AB2 in sigma); with ``order = 3`` it is :func:`ipndm` and
    :func:`deis` on a grid uniform in sigma and differs from both on other grids; ``order = 4`` differs
    from both on every grid (see :func:`ipndm_v_coefficients`). :math:`D_\text{eff} = D_n - \tfrac{\sigma_n}{h}\sum_j c_j(\varepsilon_{n-j} - \varepsilon_n)`,
    :math:`h = \sigma_{n+1} - \sigma_n`. One evaluation per step; a step to 0 is an Euler step;
    ``afs=True`` replaces the first evaluation by :func:`afs_denoised`.

    Default ``order=3`` (diff-sampler's ``max_order`` goes up to 4): on the EDM grid (rho = 7) order 3
    converges at third order, while the order-4 weights, whose sum is not 1 on unequal steps, give a
    global order 2 reached only beyond about 500 steps, with errors that do not fall monotonically
    below that (measured in ``tests/test_samplers_high_order.py``).
    """
    if order not in (1, 2, 3, 4):
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")

    def step(s, i, history):
        return sum(c * e for c, e in zip(ipndm_v_coefficients(s[i::-1][: len(history)], s[i + 1]), history))

    return _multistep(denoiser, x, sigmas, order, step, callback, afs)


# --------------------------------------------------------------------------------------------------
# The registry: every sampler declared once
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerSpec:
    r"""Everything the package needs to know about one sampler, declared once in :data:`SAMPLERS`.
    Calling a spec calls ``fn``.

    * ``name`` -- the registry key (``sampler="dpm_solver_pp_2m"`` wherever the package takes a sampler).
    * ``fn`` -- the function, ``fn(denoiser, x, sigmas, *, callback=None, afs=False, **opts) -> x``.
    * ``label`` -- the name in tables and legends (``"DPM-Solver++(2M)"``).
    * ``evals_per_step`` -- denoiser evaluations of a step to a level above 0 (a step to 0 costs one;
      ``afs=True`` saves the first). :meth:`nfe` counts a run.
    * ``order`` -- the order of accuracy, with the default options, that a fitted slope of the final
      error against the number of steps shows on the EDM grid over a practical range (measured for
      every entry in ``tests/test_samplers.py``). A multistep sampler warms up with lower-order steps,
      whose error decays more slowly and wins in the limit of very many steps (chapter 5 measures it
      for DEIS), so this is not always the asymptotic order.
    * ``d_eff`` -- the effective denoiser output of a step as a finite difference of the denoising
      trajectory (Chen et al. 2023, §4), in LaTeX, or ``None`` when the package does not write the
      sampler in that form; :func:`diffusion_geometry.finite_differences.d_eff` assembles every form
      given here.
    * ``multistep_weights`` -- for the one-evaluation multistep samplers written on the directions,
      :math:`x_{n+1} = x_n + \sum_j w_j\varepsilon_{n-j}`, the function ``(nodes, sigma_next) -> [w_j]``
      (:func:`ipndm_coefficients`, :func:`deis_coefficients`, :func:`ipndm_v_coefficients`); else ``None``.
    * ``fitted`` -- ``True`` when the sampler's options are fitted per model and grid (AMED's per-step
      :math:`r_n, c_n`, :func:`diffusion_geometry.amed.fit_amed`), so that comparisons at default
      options leave it out (with its defaults AMED is DPM-Solver-2).
    * ``predictor_corrector`` -- ``True`` when the point the callback reports is corrected after its
      evaluation (UniPC), so that the reported ``denoised`` is :math:`D` at the predicted point, within
      the corrector's :math:`O(h^{p+1})` of :math:`D(x;\sigma)` but not equal to it.
    """

    name: str
    fn: Callable
    label: str
    evals_per_step: int
    order: int
    d_eff: str | None = None
    multistep_weights: Callable | None = None
    fitted: bool = False
    predictor_corrector: bool = False

    def __call__(self, denoiser, x, sigmas, **opts):
        return self.fn(denoiser, x, sigmas, **opts)

    def nfe(self, n_steps: int, *, to_zero: bool = False, afs: bool = False) -> int:
        """Denoiser evaluations of ``n_steps`` steps of which the last goes to 0 when ``to_zero``."""
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        return self.evals_per_step * (n_steps - int(to_zero)) + int(to_zero) - int(_check_afs(afs))


SAMPLERS: dict[str, SamplerSpec] = {spec.name: spec for spec in (
    SamplerSpec("euler", euler, "Euler", 1, 1, r"D_n"),
    SamplerSpec("heun", heun, "Heun", 2, 2,
                r"D_n + \frac{\sigma_n}{2\sigma_{n+1}}\big(D(\tilde x;\sigma_{n+1}) - D_n\big)"),
    SamplerSpec("dpm_solver_2", dpm_solver_2, "DPM-Solver-2", 2, 2,
                r"D_n + \frac{\sigma_n}{2 r s}\big(D(x_s; s) - D_n\big),\ s = \sigma_n^{1-r}\sigma_{n+1}^r"),
    SamplerSpec("dpm_solver_pp_2m", dpm_solver_pp_2m, "DPM-Solver++(2M)", 1, 2,
                r"D_n + \frac{1}{2r_n}(D_n - D_{n-1}),\ r_n = \ln\frac{\sigma_{n-1}}{\sigma_n}\big/\ln\frac{\sigma_n}{\sigma_{n+1}}"),
    SamplerSpec("ipndm", ipndm, "iPNDM", 1, 2,
                r"D_n - \sigma_n\sum_j a_j(\varepsilon_{n-j} - \varepsilon_n)", ipndm_coefficients),
    SamplerSpec("deis", deis, "DEIS", 1, 3,
                r"D_n - \frac{\sigma_n}{h}\sum_j c_j(\varepsilon_{n-j} - \varepsilon_n)", deis_coefficients),
    SamplerSpec("unipc", unipc, "UniPC", 1, 4, None, predictor_corrector=True),  # D_eff: see unipc
    SamplerSpec("dpm_solver_pp_3m", dpm_solver_pp_3m, "DPM-Solver++(3M)", 1, 2, None),  # D_eff: see its docstring
    SamplerSpec("ipndm_v", ipndm_v, "iPNDM-v", 1, 3,  # order 4's weights need + (1 - sum_j c_j / h) sigma_n eps_n
                r"D_n - \frac{\sigma_n}{h}\sum_j c_j(\varepsilon_{n-j} - \varepsilon_n)\ (\text{order} \le 3)",
                ipndm_v_coefficients),
    SamplerSpec("amed", amed, "AMED", 2, 2,
                r"(1-c)\,x_n + c\,D_n + \frac{c\,\sigma_n}{s}\big(D(x_s;s) - D_n\big)", fitted=True),
)}
"""The samplers by name, one :class:`SamplerSpec` each: the only list of samplers in the package."""


def get_sampler(sampler) -> SamplerSpec:
    """The :class:`SamplerSpec` of ``sampler`` (a name in :data:`SAMPLERS`, or a spec). Raises
    ``ValueError`` naming the choices for an unknown name, ``TypeError`` for anything else."""
    if isinstance(sampler, SamplerSpec):
        return sampler
    if isinstance(sampler, str):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
        return SAMPLERS[sampler]
    raise TypeError(f"sampler must be a name in SAMPLERS, got {type(sampler).__name__}")


def sampler_fn(sampler) -> Callable:
    """The function to call for ``sampler``: a name in :data:`SAMPLERS`, a spec, or a sampler function."""
    if callable(sampler) and not isinstance(sampler, SamplerSpec):
        return sampler
    return get_sampler(sampler).fn
