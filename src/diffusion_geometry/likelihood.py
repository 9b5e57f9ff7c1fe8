r"""Exact likelihood through the probability-flow ODE (the instantaneous change of variables).

Along a solution :math:`y(\sigma)` of the VE probability-flow ODE
:math:`dy/d\sigma = f(y,\sigma) = (y - D(y;\sigma))/\sigma`, the density of the noised marginal obeys
(continuity equation; Chen et al. 2018, Thm. 1; Song et al. 2021, Eq. 39)

.. math:: \frac{d}{d\sigma}\log p_\sigma(y(\sigma)) = -\nabla\cdot f = -\frac{d - \operatorname{tr} J_D}{\sigma},
   \qquad J_D = \partial D/\partial y .

In :math:`u = \log\sigma` the ODE is :math:`dy/du = y - D(y; e^u)` and the density changes at the rate
:math:`d - \operatorname{tr}J_D`, so integrating from :math:`\sigma_\min` up to :math:`\sigma_\max`

.. math:: \log p_{\sigma_\min}(y_\min) = \log p_{\sigma_\max}(y_\max)
   + \int_{\log\sigma_\min}^{\log\sigma_\max} \big(d - \operatorname{tr} J_D(y(u); e^u)\big)\,du . \qquad (1)

The prior :math:`p_{\sigma_\max}` is taken as :math:`N(0, \sigma_\max^2 I)` unless given: for data of
second moment :math:`m^2` per coordinate its error is of order :math:`d\,m^2/\sigma_\max^2` nats.
The trace is exact (``d`` vector-Jacobian products per evaluation, for small ``d``) or Hutchinson's
estimate :math:`\operatorname{tr} J \approx \frac1K\sum_k \epsilon_k^\top J\epsilon_k` with fixed
Rademacher probes (Hutchinson 1989; FFJORD, Grathwohl et al. 2019). The trajectory :math:`y(u)` does not
depend on the probes, so the ``K`` probes give ``K`` independent unbiased estimates of the integral in
(1) along the same solution; their spread gives the stated standard error.

The ODE is solved by :func:`scipy.integrate.solve_ivp` (adaptive Runge-Kutta) in float64 state; the
denoiser is evaluated in the dtype of ``x``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


__all__ = ["LogLikelihood", "log_likelihood", "gaussian_log_prob", "bits_per_dim"]


@dataclass
class LogLikelihood:
    """The result of :func:`log_likelihood`, in nats.

    Attributes
    ----------
    log_prob : ``(batch,)`` float64 -- :math:`\\log p_{\\sigma_\\min}(x)`, the log-density of the
        ``x`` given, at the smallest sigma of the grid.
    sigmas : ``(n,)`` float64, increasing -- the grid.
    along : ``(n, batch)`` float64 -- :math:`\\log p_\\sigma(y(\\sigma))` along the ODE solution through
        ``x``, at each sigma of the grid (``along[0] == log_prob``).
    trajectory : ``(n, batch, *x.shape[1:])`` -- the solution :math:`y(\\sigma)`, in ``x``'s dtype.
    prior : ``(batch,)`` float64 -- the prior log-density at the end point.
    std_error : ``(batch,)`` float64 or ``None`` -- with Hutchinson's estimator, the standard error of
        ``log_prob`` (sample standard deviation of the per-probe estimates over :math:`\\sqrt K`).
    nfe : int -- denoiser evaluations (each with its vector-Jacobian products).
    """

    log_prob: torch.Tensor
    sigmas: torch.Tensor
    along: torch.Tensor
    trajectory: torch.Tensor
    prior: torch.Tensor
    std_error: torch.Tensor | None
    nfe: int


def gaussian_log_prob(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """``log N(y; 0, sigma^2 I)`` per batch element, float64, for ``y`` of shape ``(batch, ...)``."""
    y = y.to(torch.float64).flatten(1)
    d = y.shape[1]
    return -0.5 * (y * y).sum(1) / sigma ** 2 - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)


def _trace_terms(denoiser, y: torch.Tensor, sigma: float, probes: torch.Tensor | None):
    """``(D(y), traces)``: ``traces`` is ``(batch, 1)`` exact :math:`\\operatorname{tr}J_D` when
    ``probes`` is None, else ``(batch, K)`` with :math:`\\epsilon_k^\\top J_D \\epsilon_k`."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        out = denoiser(y, sigma)
        if not out.requires_grad:
            raise ValueError("the denoiser's output does not depend differentiably on its input "
                             "(it must be built from torch operations that autograd can follow)")
        flat_out = out.flatten(1)
        if probes is None:
            d = flat_out.shape[1]
            tr = torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
            for i in range(d):
                (g,) = torch.autograd.grad(flat_out[:, i].sum(), y, retain_graph=i < d - 1)
                tr += g.flatten(1)[:, i].to(torch.float64)
            traces = tr[:, None]
        else:
            K = probes.shape[0]
            cols = []
            for k in range(K):
                e = probes[k].to(out.dtype)
                (g,) = torch.autograd.grad((flat_out * e).sum(), y, retain_graph=k < K - 1)
                cols.append((g.flatten(1).to(torch.float64) * probes[k].to(torch.float64)).sum(1))
            traces = torch.stack(cols, 1)
    return out.detach(), traces


def log_likelihood(denoiser, x: torch.Tensor, sigmas, *, divergence: str = "exact", n_probes: int = 8,
                   generator: torch.Generator | None = None, prior=None, rtol: float = 1e-8,
                   atol: float = 1e-8, method: str = "DOP853", progress: bool = False) -> LogLikelihood:
    r"""Log-density :math:`\log p_{\sigma_\min}(x)` by integrating the probability-flow ODE from
    :math:`\sigma_\min` to :math:`\sigma_\max` with the instantaneous change of variables, Eq. (1).

    Parameters
    ----------
    denoiser : ``D(y, sigma)``, differentiable in ``y`` (a :class:`~.denoisers.GaussianMixture`'s
        ``denoise``, an :class:`~.denoisers.EDMPrecond` network, a :class:`~.paths.PathDenoiser`).
    x : ``(batch, ...)`` points at noise level :math:`\sigma_\min`; any floating dtype (the denoiser
        sees ``x``'s dtype; the state and the accumulated log-density are float64).
    sigmas : a 1-D grid of at least 2 positive noise levels (either order); the ODE runs from the
        smallest to the largest and the log-density is reported at each (``LogLikelihood.along``).
    divergence : ``"exact"`` (``d`` vector-Jacobian products per evaluation) or ``"hutchinson"``
        (``n_probes`` >= 2 Rademacher probes drawn once from ``generator``; a standard error is reported).
    prior : callable ``prior(y_max) -> (batch,)`` log-density at :math:`\sigma_\max`; default
        :math:`N(0, \sigma_\max^2 I)` (:func:`gaussian_log_prob`).
    rtol, atol, method : passed to :func:`scipy.integrate.solve_ivp` (``method`` one of its explicit
        Runge-Kutta methods: ``"RK45"``, ``"DOP853"``, ``"RK23"``).
    progress : a tqdm bar over :math:`\log\sigma`.

    Returns a :class:`LogLikelihood`. Raises ``ValueError`` for a bad grid (fewer than 2 levels, a zero,
    negative or non-finite sigma), an unknown ``divergence``, ``n_probes < 2`` with Hutchinson, a
    non-finite ``x``, a denoiser that autograd cannot differentiate, or a failed ODE solve.
    """
    from scipy.integrate import solve_ivp

    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise ValueError("x must be a floating tensor of shape (batch, ...)")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite")
    grid = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if grid.numel() < 2 or not torch.isfinite(grid).all() or (grid <= 0).any():
        raise ValueError("sigmas must hold at least 2 finite positive noise levels")
    grid = torch.unique(grid)  # sorted increasing, duplicates dropped
    if grid.numel() < 2:
        raise ValueError("sigmas must hold at least 2 distinct noise levels")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    B, shape = x.shape[0], x.shape[1:]
    d = int(np.prod(shape))
    probes = None
    if divergence == "hutchinson":
        if n_probes < 2:
            raise ValueError("Hutchinson's estimator needs n_probes >= 2 to state its error")
        signs = torch.randint(0, 2, (n_probes, B, d), generator=generator, dtype=torch.int64)
        probes = (2 * signs - 1).to(torch.float64).to(x.device)
    K = 1 if probes is None else n_probes
    u = grid.log().numpy()
    nfe = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=float(u[-1] - u[0]), desc="log-likelihood", unit="log sigma",
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} [{elapsed}<{remaining}]")

    def rhs(uu, state):
        nonlocal nfe
        nfe += 1
        y = torch.from_numpy(state[: B * d]).reshape(B, *shape).to(device=x.device, dtype=x.dtype)
        den, traces = _trace_terms(denoiser, y, math.exp(uu), probes)
        dy = (y.to(torch.float64) - den.to(torch.float64)).flatten()
        dacc = (d - traces).flatten()
        if bar is not None and uu - u[0] > bar.n:
            bar.update(uu - u[0] - bar.n)
        return np.concatenate([dy.cpu().numpy(), dacc.cpu().numpy()])

    y0 = x.detach().to(torch.float64).flatten().cpu().numpy()
    state0 = np.concatenate([y0, np.zeros(B * K)])
    sol = solve_ivp(rhs, (u[0], u[-1]), state0, method=method, t_eval=u, rtol=rtol, atol=atol)
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    if not sol.success:
        raise ValueError(f"the probability-flow ODE solve failed: {sol.message}")
    states = torch.from_numpy(sol.y.T)  # (n, B*d + B*K)
    traj = states[:, : B * d].reshape(len(u), B, *shape)
    acc = states[:, B * d:].reshape(len(u), B, K)  # integral of (d - tr J) from u_min to u_j
    y_max = traj[-1]
    prior_lp = (gaussian_log_prob(y_max, float(grid[-1])) if prior is None
                else torch.as_tensor(prior(y_max.to(x.dtype)), dtype=torch.float64).reshape(B))
    along_k = prior_lp[None, :, None] + acc[-1][None] - acc  # (n, B, K): log p_sigma_j(y_j) per probe
    along = along_k.mean(2)
    std_error = None
    if probes is not None:
        std_error = along_k[0].std(1, unbiased=True) / math.sqrt(K)
    return LogLikelihood(log_prob=along[0], sigmas=grid, along=along, trajectory=traj.to(x.dtype),
                         prior=prior_lp, std_error=std_error, nfe=nfe)


def bits_per_dim(denoiser, images: torch.Tensor, *, levels: int, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, n_probes: int = 4, batch_size: int = 64,
                 generator: torch.Generator | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                 progress: bool = False) -> dict:
    r"""Bits per dimension of quantised images under a denoiser's probability-flow ODE density.

    ``images`` ``(n, c, h, w)`` hold ``levels`` equally spaced values on [-1, 1] (spacing
    :math:`\Delta = 2/(\text{levels}-1)`: 256 levels for Fashion-MNIST, 17 for the 8x8 digits). Each is
    dequantised with uniform noise on :math:`[-\Delta/2, \Delta/2]` (drawn from ``generator``), its
    log-density at ``sigma_min`` is computed by :func:`log_likelihood` (Hutchinson, ``n_probes``
    probes), and

    .. math:: \text{bpd} = -\frac{\log p(x) + d\log\Delta}{d \ln 2},

    an upper bound on the discrete model's code length in bits per pixel (Theis et al. 2016; Ho et al.
    2020, §4.2); a uniform distribution over the levels scores :math:`\log_2(\text{levels})`. Returns
    ``{"bpd": (n,) float64, "mean": float, "std_error": float (over images and probes), "nfe": mean
    evaluations per batch}``; a tqdm bar over batches with ``progress``. Raises ``ValueError`` for
    ``levels < 2`` or images outside [-1, 1].
    """
    if levels < 2:
        raise ValueError("levels must be at least 2")
    if images.ndim < 2 or (images.abs() > 1 + 1e-6).any():
        raise ValueError("images must be a (n, ...) tensor with values in [-1, 1]")
    delta = 2.0 / (levels - 1)
    d = int(np.prod(images.shape[1:]))
    out, nfes = [], []
    starts = range(0, images.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="bits/dim", unit="batch")
    for start in starts:
        batch = images[start:start + batch_size]
        noise = torch.rand(batch.shape, generator=generator, dtype=torch.float64) - 0.5
        x = (batch.to(torch.float64) + delta * noise).to(batch.dtype)
        res = log_likelihood(denoiser, x, [sigma_min, sigma_max], divergence="hutchinson", n_probes=n_probes,
                             generator=generator, rtol=rtol, atol=atol, method="RK45")
        out.append(-(res.log_prob + d * math.log(delta)) / (d * math.log(2)))
        nfes.append(res.nfe)
    bpd = torch.cat(out)
    return {"bpd": bpd, "mean": float(bpd.mean()),
            "std_error": float(bpd.std(unbiased=True) / math.sqrt(len(bpd))) if len(bpd) > 1 else float("nan"),
            "nfe": float(np.mean(nfes))}
