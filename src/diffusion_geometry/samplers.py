r"""Deterministic samplers of the probability-flow ODE in EDM (VE) form,

.. math:: \frac{dx}{d\sigma} = \varepsilon(x;\sigma) = \frac{x - D(x;\sigma)}{\sigma},

integrated from ``sigmas[0]`` down to ``sigmas[-1]``. Every sampler has one signature (after
k-diffusion): ``sampler(denoiser, x, sigmas, *, callback=None, **opts) -> x_final``. The callback
receives a dict with ``i``, ``sigma``, ``sigma_next``, ``x`` (the point at ``sigma``) and
``denoised`` (``D(x; sigma)``) once per grid step, before the step is taken. A step to
``sigma = 0`` is always an Euler step, which outputs ``D(x; sigma)``.

Precision: every sigma-dependent factor (step ratios, step sizes, log-sigma ratios, multistep
weights) is formed in float64 from the grid, the update is computed in float32 at least (in the
dtype of ``x`` and the denoiser output when that is float32 or float64), and only the new point is
cast back to that dtype. So float16 and bfloat16 sampling rounds once per update; ``x`` itself must
be finite (float16 holds ``|x| <= 65504``, which ``sigma_max * N(0, I)`` reaches near
``sigma_max ~ 1e4``: create such start points in float32).

Each update can be written as the Euler step with an *effective* denoiser output (Chen et al. 2023,
§4): :math:`x_{n+1} = \frac{\sigma_{n+1}}{\sigma_n} x_n + \big(1 - \frac{\sigma_{n+1}}{\sigma_n}\big) D_\text{eff}`.

Part II additions: :func:`deis` (DEIS's rho-AB variant: Adams-Bashforth in sigma), :func:`amed` (the AMED step with given
per-step parameters, fitted by :mod:`diffusion_geometry.amed`), ODE-Jump (:func:`jump_sigmas`,
:func:`ode_jump`), and the analytical first step (``afs=True`` on every sampler, :func:`afs_denoised`).
"""
from __future__ import annotations

import math
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
    "IPNDM_COEFFICIENTS",
    "afs_denoised",
    "deis",
    "deis_coefficients",
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
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        out = _out_dtype(x, den)
        d = _direction(x, sig, den)
        x_pred = (x + (sig_next - sig) * d).to(out)
        if sig_next == 0:
            x = x_pred
        else:
            d_next = _direction(x_pred, sig_next, _evaluate(denoiser, x_pred, sig_next))
            x = (x + (sig_next - sig) * 0.5 * (d + d_next)).to(out)
    return x


@torch.no_grad()
def dpm_solver_2(denoiser, x, sigmas, *, r: float = 0.5, callback: Callback = None, afs: bool = False):
    r"""Generalised DPM-Solver-2 in VE form (Lu et al. 2022; the form of Zhou et al. 2024, Table 1).

    Intermediate level :math:`s = \sigma_n^{1-r}\sigma_{n+1}^{r}`, Euler to :math:`x_s`, then
    :math:`x_{n+1} = x_n + h\big[\tfrac{1}{2r}\varepsilon(x_s; s) + (1 - \tfrac{1}{2r})\varepsilon_n\big]`.
    ``r = 1/2`` is DPM-Solver-2 (midpoint in log sigma); ``r = 1`` is Heun.
    """
    if not 0 < r <= 1:
        raise ValueError(f"r must lie in (0, 1], got {r}")
    afs = _check_afs(afs)
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


def _multistep(denoiser, x, sigmas, order, step, callback, afs):
    """The loop shared by the one-evaluation multistep samplers (iPNDM, DEIS): one evaluation per step,
    the last ``order`` directions kept newest first, and ``x_{n+1} = x_n + step(s, n, history)``;
    a step to 0 is an Euler step (it outputs the denoiser's estimate)."""
    afs = _check_afs(afs)
    s = _prepare(denoiser, x, sigmas)
    history: list[torch.Tensor] = []
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        den = _denoise(denoiser, x, sig, afs and i == 0)
        _report(callback, i, sig, sig_next, x, den)
        out = _out_dtype(x, den)
        history.insert(0, _direction(x, sig, den))
        del history[order:]
        x = den.to(out) if sig_next == 0 else (x + step(s, i, history)).to(out)
    return x


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
    nodes = [float(v) for v in nodes]
    sigma_next = float(sigma_next)
    if not 1 <= len(nodes) <= 4:
        raise ValueError(f"DEIS uses 1 to 4 nodes, got {len(nodes)}")
    if any(not math.isfinite(v) or v <= 0 for v in nodes) or not math.isfinite(sigma_next) or sigma_next < 0:
        raise ValueError("nodes must be positive and sigma_next non-negative")
    if any(b <= a for a, b in zip(nodes[:-1], nodes[1:])) or not sigma_next < nodes[0]:
        raise ValueError("need sigma_next < nodes[0] < nodes[1] < ... (current node first, older nodes larger)")
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
def ode_jump(denoiser, x, sigmas, *, k: int, method="euler", callback: Callback = None, **opts):
    r"""ODE-Jump (Chen et al. 2023, §4): run ``method`` for ``k`` steps along ``sigmas``, then output
    :math:`D(x_k;\sigma_k)` instead of continuing. NFE = NFE of the ``k`` steps + 1.

    ``method`` is a name in :data:`SAMPLERS` or a sampler function; ``opts`` go to it. Equivalent to
    ``method(denoiser, x, jump_sigmas(sigmas, k))``.
    """
    if callable(method):
        fn = method
    elif method in SAMPLERS:
        fn = SAMPLERS[method]
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(SAMPLERS)}")
    return fn(denoiser, x, jump_sigmas(sigmas, k), callback=callback, **opts)


SAMPLERS = {
    "euler": euler,
    "heun": heun,
    "dpm_solver_2": dpm_solver_2,
    "dpm_solver_pp_2m": dpm_solver_pp_2m,
    "ipndm": ipndm,
    "deis": deis,
    "amed": amed,
}
"""Samplers by name, for :func:`diffusion_geometry.sample`."""
