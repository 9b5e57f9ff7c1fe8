r"""Mean shift: sampling with the optimal denoiser is annealed Gaussian mean shift.

For a training set :math:`\{y_i\}_{i=1}^N` the noised marginal is the Gaussian kernel density
estimate :math:`p_\sigma(x) = \frac1N\sum_i N(x; y_i, \sigma^2 I)` and its optimal denoiser
(:class:`~diffusion_geometry.EmpiricalDenoiser`) is the Gaussian mean-shift vector's end point
(Fukunaga & Hostetler 1975; Cheng 1995; Comaniciu & Meer 2002) with bandwidth :math:`h = \sigma`:

.. math:: m_\sigma(x) = \frac{\sum_i k_i(x)\, y_i}{\sum_i k_i(x)}, \qquad
          k_i(x) = \exp\!\Big(-\frac{\lVert x - y_i\rVert^2}{2\sigma^2}\Big)  \;=\; D^*(x;\sigma).

One Euler step of the probability-flow ODE from :math:`\sigma_n` to :math:`\sigma_{n+1}` is a *partial*
mean-shift step, :math:`x_{n+1} = x_n + \lambda_n (m_{\sigma_n}(x_n) - x_n)` with
:math:`\lambda_n = 1 - \sigma_{n+1}/\sigma_n`, so optimal sampling is mean shift with an annealed
bandwidth (Shen, Brooks & van den Hengel 2007; Chen et al. 2023, arXiv 2305.19947, §5). Every such
step raises the density it is taken under (:func:`log_likelihood_gain`, :func:`likelihood_gain_bound`):

.. math:: \frac{p_\sigma\big(x + \lambda(m_\sigma(x) - x)\big)}{p_\sigma(x)}
          \;\ge\; 1 + \lambda(2 - \lambda)\,\frac{\lVert m_\sigma(x) - x\rVert^2}{2\sigma^2}
          \;\ge\; 1 \qquad (0 \le \lambda \le 2).

This module holds the steps (:func:`mean_shift_step`, :func:`mean_shift`, :func:`annealed_mean_shift`,
:func:`step_fractions`), the likelihood measurements (:func:`log_likelihood_gain`,
:func:`likelihood_gain_bound`, :func:`likelihood_along`), the density's rate along the ODE
(:func:`posterior_trace`, :func:`log_density_rate`, :func:`euler_bandwidth_bound`), and the end points of
optimal sampling (:func:`landing`, :func:`cluster_points`, :func:`basins` on :func:`plane_grid`). The
optimal denoiser argument is called ``optimal`` throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .denoisers import EmpiricalDenoiser
from .schedules import check_sigmas
from .trajectory import Trajectory, sample

__all__ = [
    "mean_shift_step",
    "mean_shift",
    "annealed_mean_shift",
    "step_fractions",
    "log_likelihood_gain",
    "likelihood_gain_bound",
    "LikelihoodSteps",
    "likelihood_along",
    "Landing",
    "landing",
    "cluster_points",
    "posterior_trace",
    "log_density_rate",
    "euler_bandwidth_bound",
    "Basins",
    "basins",
    "plane_grid",
]


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _check_denoiser(denoiser) -> None:
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x, sigma)")


def _check_optimal(optimal) -> None:
    if not isinstance(optimal, EmpiricalDenoiser):
        raise TypeError(f"optimal must be an EmpiricalDenoiser (the training set), got {type(optimal).__name__}")


def _check_x(x) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (batch, ...)")


def _positive_sigma(sigma) -> float:
    if isinstance(sigma, (bool, str, bytes)):
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__}")
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__}") from None
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"sigma (the bandwidth) must be positive and finite, got {sigma!r}")
    return s


def _lams(lam, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``lam`` as a 1-D float64 tensor of step fractions (never rounded to ``like``'s dtype) and whether
    it was a scalar."""
    t = torch.as_tensor(lam, dtype=torch.float64, device=like.device)
    if t.ndim > 1:
        raise ValueError(f"lam must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError("lam must not be empty")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError("step fractions lam must be finite and non-negative")
    return t.reshape(-1), t.ndim == 0


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _as64(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float64 (exact from any floating dtype), for densities and their differences."""
    return x.to(torch.float64)


# --------------------------------------------------------------------------------------------------
# mean-shift steps
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def mean_shift_step(denoiser, x: torch.Tensor, sigma, lam: float = 1.0) -> torch.Tensor:
    r"""A (partial) mean-shift step :math:`x + \lambda\,(m_\sigma(x) - x)` with :math:`m_\sigma = D(\cdot;\sigma)`.

    ``lam = 1`` is the classic full step (the new point *is* the weighted mean); the Euler step of the
    probability-flow ODE from ``sigma`` to ``sigma_next`` is ``lam = 1 - sigma_next / sigma``
    (Chen et al. 2023, §5). Any denoiser works; with :class:`~diffusion_geometry.EmpiricalDenoiser`
    this is Gaussian mean shift on the training set.
    """
    _check_denoiser(denoiser)
    _check_x(x)
    s = _positive_sigma(sigma)
    t, scalar = _lams(lam, x)
    if not scalar:
        raise ValueError("mean_shift_step takes one step fraction lam (a number)")
    m = denoiser(x, s)
    if float(t) == 1.0:
        return m  # the full step is the weighted mean itself
    x64 = x.to(torch.promote_types(x.dtype, torch.float64))  # one rounding, at the end
    return (x64 + float(t) * (m.to(x64.dtype) - x64)).to(m.dtype)


@torch.no_grad()
def mean_shift(denoiser, x: torch.Tensor, sigma, *, max_iter: int = 500, tol: float = 1e-9) -> torch.Tensor:
    r"""Mean shift with a *fixed* bandwidth: iterate :math:`x \leftarrow m_\sigma(x)`.

    From any start, the iterates climb the kernel density estimate :math:`p_\sigma` and converge to
    one of its stationary points (Comaniciu & Meer 2002, Thm. 1), a mode in practice. Stops when
    every point moved less than ``tol * sigma`` in the last iteration, or after ``max_iter``
    iterations. Returns the path, ``(iterations + 1, batch, ...)``; ``path[-1]`` is the end point.
    """
    _check_denoiser(denoiser)
    _check_x(x)
    s = _positive_sigma(sigma)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol!r}")
    path = [x]
    for _ in range(max_iter):
        new = denoiser(x, s)
        path.append(new)
        moved = _flat(new - x).norm(dim=1).max()
        x = new
        if moved <= tol * s:
            break
    return torch.stack(path)


@torch.no_grad()
def annealed_mean_shift(denoiser, x: torch.Tensor, bandwidths, *, n_iter: int = 1) -> torch.Tensor:
    r"""Annealed mean shift (Shen, Brooks & van den Hengel 2007): ``n_iter`` *full* mean-shift steps
    at each bandwidth of the strictly decreasing, positive grid ``bandwidths``.

    The probability-flow Euler sampler is the same walk with *partial* steps
    :math:`\lambda_n = 1 - \sigma_{n+1}/\sigma_n` (:func:`step_fractions`). Returns the path,
    ``(len(bandwidths) * n_iter + 1, batch, ...)``.
    """
    _check_denoiser(denoiser)
    _check_x(x)
    h = check_sigmas(bandwidths)
    if h[-1] <= 0:
        raise ValueError("bandwidths must be positive (mean shift needs sigma > 0)")
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    path = [x]
    for s in h.tolist():
        for _ in range(n_iter):
            x = denoiser(x, s)
            path.append(x)
    return torch.stack(path)


def step_fractions(sigmas) -> torch.Tensor:
    r"""The mean-shift fraction of each Euler step, :math:`\lambda_n = 1 - \sigma_{n+1}/\sigma_n`, ``(n,)``.

    All lie in ``(0, 1]``; a step to ``sigma = 0`` has :math:`\lambda = 1` (a full mean-shift step).
    """
    s = check_sigmas(sigmas)
    if s[0] <= 0:
        raise ValueError("the grid must start above 0")
    return 1 - s[1:] / s[:-1]


# --------------------------------------------------------------------------------------------------
# the monotone-likelihood theorem
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def log_likelihood_gain(optimal: EmpiricalDenoiser, x: torch.Tensor, sigma, lam) -> torch.Tensor:
    r"""How much a partial mean-shift step raises the log-density it is taken under:

    .. math:: \log p_\sigma\big(x + \lambda(m_\sigma(x) - x)\big) - \log p_\sigma(x),

    with :math:`p_\sigma` the Gaussian KDE of ``optimal``'s training set and :math:`m_\sigma` its mean
    shift. Non-negative for :math:`0 \le \lambda \le 2` (Chen et al. 2023, the monotone-likelihood
    theorem); it can be negative for :math:`\lambda > 2`. ``lam`` is a number (result ``(batch,)``)
    or a 1-D sequence of fractions (result ``(len(lam), batch)``).

    Computed in float64 whatever the dtype of ``x`` (the step, the mean shift and both log-densities:
    at d = 784 a log-density is in the thousands, so float32 would lose the gain); returns float64.
    """
    _check_optimal(optimal)
    _check_x(x)
    s = _positive_sigma(sigma)
    x = _as64(x)
    lams, scalar = _lams(lam, x)
    m = optimal(x, s)
    base = optimal.log_prob(x, s)
    moved = [optimal.log_prob(x + float(l) * (m - x), s) for l in lams]
    if not (torch.isfinite(base).all() and all(torch.isfinite(v).all() for v in moved)):
        raise ValueError(f"the log-densities at sigma = {s:g} overflow float64 (|x - y|^2 / 2 sigma^2 > 1e308): "
                         "their difference is not defined; use a larger sigma")
    gains = torch.stack([v - base for v in moved])
    return gains[0] if scalar else gains


@torch.no_grad()
def likelihood_gain_bound(optimal: EmpiricalDenoiser, x: torch.Tensor, sigma, lam) -> torch.Tensor:
    r"""The theorem's lower bound on :func:`log_likelihood_gain`, for :math:`0 \le \lambda \le 2`:

    .. math:: \log\Big(1 + \lambda(2-\lambda)\,\frac{\lVert m_\sigma(x) - x\rVert^2}{2\sigma^2}\Big) \;\ge\; 0.

    It follows from the convexity of the Gaussian profile :math:`k(u) = e^{-u/2}`; see the proof in the
    mean-shift chapter. Same shapes as :func:`log_likelihood_gain`; computed in float64, returns float64.
    """
    _check_optimal(optimal)
    _check_x(x)
    s = _positive_sigma(sigma)
    x = _as64(x)
    lams, scalar = _lams(lam, x)
    if (lams > 2).any():
        raise ValueError("the bound holds for step fractions 0 <= lam <= 2 only")
    shift2 = _flat(optimal(x, s) - x).pow(2).sum(1)
    # log(1 + c q) with q = |m - x|^2 / 2 sigma^2, as logaddexp(0, log c + log q): q is never formed, so
    # it cannot overflow as sigma -> 0 (c = 0 or a zero shift give log(0) = -inf and a bound of 0)
    log_q = torch.log(shift2) - math.log(2.0) - 2.0 * math.log(s)
    c = lams[:, None] * (2 - lams[:, None])
    out = torch.logaddexp(torch.zeros((), dtype=log_q.dtype), torch.log(c) + log_q[None])
    return out[0] if scalar else out


@dataclass
class LikelihoodSteps:
    r"""The likelihood along each step of sampling trajectories (see :func:`likelihood_along`).

    Attributes (``n`` steps, ``batch`` trajectories)
    ----------
    sigmas : ``(n + 1,)`` the grid.
    lam : ``(n,)`` the Euler steps' mean-shift fractions :math:`1 - \sigma_{n+1}/\sigma_n`.
    same_bandwidth : ``(n, batch)`` :math:`\log p_{\sigma_n}(x_{n+1}) - \log p_{\sigma_n}(x_n)`, the theorem's quantity.
    bound : ``(n, batch)`` the theorem's lower bound :math:`\log(1 + \lambda_n(2-\lambda_n)\lVert m - x_n\rVert^2/2\sigma_n^2)`.
    next_bandwidth : ``(n, batch)`` :math:`\log p_{\sigma_{n+1}}(x_{n+1}) - \log p_{\sigma_n}(x_n)`,
        which also moves the bandwidth (not covered by the theorem).
    step_residual : ``(n,)`` :math:`\max_b \lVert x_{n+1} - x_n - \lambda_n(m_{\sigma_n}(x_n) - x_n)\rVert`:
        0 (to round-off) exactly when the trajectory is Euler with this optimal denoiser, i.e. when
        ``bound`` applies.
    """

    sigmas: torch.Tensor
    lam: torch.Tensor
    same_bandwidth: torch.Tensor
    bound: torch.Tensor
    next_bandwidth: torch.Tensor
    step_residual: torch.Tensor


@torch.no_grad()
def likelihood_along(optimal: EmpiricalDenoiser, traj: Trajectory) -> LikelihoodSteps:
    r"""Measure the likelihood theorem at every step of ``traj`` (a :class:`~diffusion_geometry.Trajectory`).

    For each step ``n`` and trajectory ``b``: the log-density gain under the step's own bandwidth, the
    theorem's bound, the gain across the bandwidth change, and how far the step is from a partial
    mean-shift step of ``optimal`` (see :class:`LikelihoodSteps`). The grid must end above 0 (the density
    :math:`p_0` of a finite data set is not a function). Every quantity is computed in float64 from the
    trajectory's points (exactly converted), whatever their dtype; the fields are float64.
    """
    _check_optimal(optimal)
    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be a Trajectory, got {type(traj).__name__}")
    sig = check_sigmas(traj.sigmas)
    if sig[-1] <= 0:
        raise ValueError("the grid must end above 0 to measure densities; drop the final step to sigma = 0")
    lam = step_fractions(sig)
    same, bound, nxt, resid = [], [], [], []
    for n in range(len(sig) - 1):
        s, s_next = float(sig[n]), float(sig[n + 1])
        x, x_next = _as64(traj.x[n]), _as64(traj.x[n + 1])
        base = optimal.log_prob(x, s)
        same.append(optimal.log_prob(x_next, s) - base)
        nxt.append(optimal.log_prob(x_next, s_next) - base)
        m = optimal(x, s)
        shift2 = _flat(m - x).pow(2).sum(1)
        ln = float(lam[n])
        bound.append(torch.log1p(ln * (2 - ln) * shift2 / (2 * s**2)))
        resid.append(_flat(x_next - x - ln * (m - x)).norm(dim=1).max())
    return LikelihoodSteps(sigmas=sig, lam=lam, same_bandwidth=torch.stack(same), bound=torch.stack(bound),
                           next_bandwidth=torch.stack(nxt), step_residual=torch.stack(resid))


# --------------------------------------------------------------------------------------------------
# where optimal sampling ends
# --------------------------------------------------------------------------------------------------


class Landing(NamedTuple):
    """Where sampled trajectories end: ``distances`` ``(batch,)`` and ``indices`` ``(batch,)`` of the
    nearest training point of each final sample (the fields of
    :class:`~diffusion_geometry.denoisers.Neighbours`, for ``k = 1``), and the ``samples`` themselves."""

    distances: torch.Tensor
    indices: torch.Tensor
    samples: torch.Tensor


@torch.no_grad()
def landing(optimal: EmpiricalDenoiser, x: torch.Tensor, sigmas, *, sampler: str = "euler", denoiser=None,
            **opts) -> Landing:
    r"""Run ``sampler`` from ``x`` (at ``sigmas[0]``) and find the training point each sample lands on.

    The sampler uses ``denoiser`` (default: ``optimal`` itself, the optimal denoiser, so sampling is
    annealed mean shift). Returns a :class:`Landing` ``(distances, indices, samples)``. Colouring the
    starting points by ``indices`` draws the basins of attraction of the training points.
    """
    _check_optimal(optimal)
    _check_x(x)
    den = optimal if denoiser is None else denoiser
    _check_denoiser(den)
    traj = sample(den, x, sigmas, sampler=sampler, **opts)
    near = optimal.nearest(traj.sample, k=1)
    return Landing(near.distances[:, 0], near.indices[:, 0], traj.sample)


def cluster_points(points: torch.Tensor, tol: float):
    r"""Group points that lie within ``tol`` of a group's first member (greedy, in order).

    Used to identify the modes that fixed-bandwidth :func:`mean_shift` converges to. Returns
    ``(labels (batch,), centers (K, ...))`` with ``centers[k]`` the first point of group ``k``.
    """
    _check_x(points)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    flat = _flat(points)
    labels = torch.full((flat.shape[0],), -1, dtype=torch.long, device=points.device)
    centers = []
    while (labels < 0).any():
        first = int(torch.nonzero(labels < 0)[0])
        near = ((flat - flat[first]).norm(dim=1) <= tol) & (labels < 0)
        labels[near] = len(centers)
        centers.append(points[first])
    return labels, torch.stack(centers)


# --------------------------------------------------------------------------------------------------
# the bandwidth change: how the density moves when sigma moves with x
# --------------------------------------------------------------------------------------------------


def _pair_chunk(optimal: EmpiricalDenoiser, batch: int) -> int:
    """Training points per chunk so that one (batch, chunk, d) difference tensor stays below 2**22 numbers."""
    d = math.prod(optimal.shape)
    return max(1, min(len(optimal), (1 << 22) // max(1, batch * d)))


@torch.no_grad()
def _over_sigma2(trace: torch.Tensor, sigma: float) -> torch.Tensor:
    """``trace / sigma**2`` where ``sigma**2`` may underflow: a zero trace (one-hot weights) stays 0."""
    s2 = sigma * sigma
    if s2 > 0:
        return trace / s2
    return torch.where(trace == 0, torch.zeros_like(trace), torch.full_like(trace, math.inf))


def posterior_trace(optimal: EmpiricalDenoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    r"""The trace of the posterior covariance of the training point given ``x`` at noise level ``sigma``:

    .. math:: \operatorname{tr}\operatorname{Cov}[y \mid x] = \sum_i w_i(x)\,\lVert y_i - m_\sigma(x)\rVert^2,
              \qquad w = \operatorname{softmax}_i\big(-\lVert x - y_i\rVert^2/2\sigma^2\big),

    with :math:`m_\sigma(x) = D^*(x;\sigma)` the mean shift (the posterior mean). It is 0 when the
    weights are one-hot (``x`` sees a single training point) and large when ``x`` is torn between
    training points far apart. It decides how the KDE density moves along the probability-flow ODE of
    the optimal denoiser (Chen et al. 2023, §5, for the sampler; the rate is derived in
    :func:`log_density_rate` and in the mean-shift chapter's bandwidth exercise).

    Parameters
    ----------
    optimal : the training set, an :class:`~diffusion_geometry.EmpiricalDenoiser`.
    x : ``(batch, *optimal.shape)`` query points, on the device of the data.
    sigma : a positive number, the bandwidth.

    Returns ``(batch,)`` in float64 whatever the dtypes of ``x`` and the data, computed from explicit
    differences :math:`y_i - m` and :math:`x - y_i` (no cancellation), with the logits shifted by the
    smallest distance (no NaN as sigma -> 0: the limit is one-hot, trace 0), over chunks of the training set with a streaming softmax, so memory
    stays O(batch x chunk x d) with ``batch * chunk * d`` below about 4 million numbers.

    Raises ``TypeError`` if ``optimal`` is not an :class:`~diffusion_geometry.EmpiricalDenoiser` or sigma is
    not a number, ``ValueError`` for a non-positive or non-finite sigma or a wrongly shaped ``x``.
    """
    _check_optimal(optimal)
    _check_x(x)
    s = _positive_sigma(sigma)
    if tuple(x.shape[1:]) != tuple(optimal.shape):
        raise ValueError(f"x must have shape (batch, {', '.join(map(str, optimal.shape))}), got {tuple(x.shape)}")
    xf = _flat(x).to(torch.float64)
    optimal(xf.reshape(x.shape)[:1], s)  # checks the device
    log_two_s2 = math.log(2.0) + 2.0 * math.log(s)  # log(2 sigma^2), finite even where sigma^2 underflows

    def scaled(delta):  # delta / (2 sigma^2) for delta >= 0, without forming sigma^2 (0 stays 0)
        return torch.exp(torch.log(delta) - log_two_s2)

    B, step = xf.shape[0], _pair_chunk(optimal, xf.shape[0])
    chunks = [torch.arange(lo, min(lo + step, len(optimal)), device=xf.device) for lo in range(0, len(optimal), step)]

    def points(idx):  # (chunk, d) in float64
        return optimal.training_points(idx).reshape(len(idx), -1).to(torch.float64)

    # pass 1: the posterior mean m, by a softmax shifted by the smallest distance so far (the nearest
    # point has logit 0: no 0/0, and sigma -> 0 gives exactly the nearest point)
    dmin = torch.full((B,), math.inf, dtype=torch.float64, device=xf.device)
    tot = torch.zeros(B, dtype=torch.float64, device=xf.device)
    acc = torch.zeros_like(xf)
    for idx in chunks:
        y = points(idx)
        d2 = (xf[:, None, :] - y[None]).square().sum(-1)  # ||x - y_i||^2 from differences, (B, chunk)
        new_min = torch.minimum(dmin, d2.min(1).values)
        rescale = torch.exp(-scaled(dmin - new_min))  # 0 on the first chunk (inf - finite)
        w = torch.exp(-scaled(d2 - new_min[:, None]))
        tot = tot * rescale + w.sum(1)
        acc = acc * rescale[:, None] + w @ y
        dmin = new_min
    m = acc / tot[:, None]
    # pass 2: the weighted spread around m, with the final shift
    tot.zero_()
    spread_sum = torch.zeros(B, dtype=torch.float64, device=xf.device)
    for idx in chunks:
        y = points(idx)
        w = torch.exp(-scaled((xf[:, None, :] - y[None]).square().sum(-1) - dmin[:, None]))
        tot += w.sum(1)
        spread_sum += (w * (y[None] - m[:, None, :]).square().sum(-1)).sum(1)
    return spread_sum / tot


@torch.no_grad()
def log_density_rate(optimal: EmpiricalDenoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    r"""How fast the KDE log-density changes along the probability-flow ODE, per unit of :math:`\log\sigma`:

    .. math:: \frac{\mathrm d}{\mathrm d\log\sigma}\,\log p_\sigma\big(x(\sigma)\big)
              = \frac{\operatorname{tr}\operatorname{Cov}[y \mid x]}{\sigma^2} - d,
              \qquad \frac{\mathrm dx}{\mathrm d\sigma} = \frac{x - m_\sigma(x)}{\sigma}.

    Derivation: :math:`\partial_\sigma \log p_\sigma = (\mathbb E_w\lVert x - y\rVert^2 - d\sigma^2)/\sigma^3` and
    :math:`\nabla\log p_\sigma\cdot\mathrm dx/\mathrm d\sigma = -\lVert x - m\rVert^2/\sigma^3`; their sum is
    :math:`(\operatorname{tr}\operatorname{Cov} - d\sigma^2)/\sigma^3` because
    :math:`\mathbb E_w\lVert x - y\rVert^2 = \lVert x - m\rVert^2 + \operatorname{tr}\operatorname{Cov}`. Sampling lowers
    :math:`\sigma`, so the density along the flow *falls* exactly where the rate is positive, i.e. where
    the posterior covariance trace exceeds :math:`d\sigma^2`; with one-hot weights the rate is
    :math:`-d` and the density rises by :math:`d\log(\sigma/\sigma')` from :math:`\sigma` to :math:`\sigma'`.

    Same arguments, shapes and errors as :func:`posterior_trace`; returns ``(batch,)``.
    """
    _check_optimal(optimal)
    s = _positive_sigma(sigma)
    return _over_sigma2(posterior_trace(optimal, x, s), s) - math.prod(optimal.shape)


@torch.no_grad()
def euler_bandwidth_bound(optimal: EmpiricalDenoiser, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    r"""A lower bound on the log-density change of one Euler step *across* the bandwidth change,
    :math:`\log p_{\sigma'}(x') - \log p_\sigma(x)` with :math:`x' = x + \lambda(m_\sigma(x) - x)`,
    :math:`\lambda = 1 - \sigma'/\sigma`, :math:`t = \sigma/\sigma' > 1`:

    .. math:: \log p_{\sigma'}(x') - \log p_\sigma(x) \;\ge\; d\log t
              - \frac{t^2 - 1}{2}\,\frac{\operatorname{tr}\operatorname{Cov}[y\mid x]}{\sigma^2}.

    Proof: with :math:`a = t - 1`, :math:`(x' - y_i)/\sigma' = u_i + a v_i` where :math:`u_i = (x - y_i)/\sigma` and
    :math:`v_i = (m - y_i)/\sigma`, so the change is
    :math:`d\log t + \log\mathbb E_w\exp(-a\,u_i\cdot v_i - a^2\lVert v_i\rVert^2/2)`; Jensen's inequality and
    :math:`\mathbb E_w[u_i\cdot v_i] = \mathbb E_w\lVert v_i\rVert^2 = \operatorname{tr}\operatorname{Cov}/\sigma^2` give the
    bound, since :math:`a + a^2/2 = (t^2 - 1)/2`. It is an equality when the weights at ``x`` are one-hot
    (then the change is exactly :math:`d\log t`, however far ``x`` is from its training point), and it
    shows that a step can lower the density only where
    :math:`\operatorname{tr}\operatorname{Cov} > \eta\, d\sigma^2` with :math:`\eta = 2\log t/(t^2 - 1) < 1/t < 1`
    (:math:`\eta \to 1` for small steps, the ODE limit of :func:`log_density_rate`).

    ``optimal`` and ``x`` as in :func:`posterior_trace`; ``sigma > sigma_next > 0`` are numbers. Returns
    ``(batch,)``. Raises ``ValueError`` unless ``sigma > sigma_next > 0``, and the errors of
    :func:`posterior_trace`.
    """
    _check_optimal(optimal)
    s, s_next = _positive_sigma(sigma), _positive_sigma(sigma_next)
    if not s_next < s:
        raise ValueError(f"need sigma > sigma_next > 0, got sigma={s}, sigma_next={s_next}")
    t = s / s_next
    d = math.prod(optimal.shape)
    ratio = _over_sigma2(posterior_trace(optimal, x, s), s)
    spread = torch.where(ratio == 0, torch.zeros_like(ratio), (t * t - 1) / 2 * ratio)  # one-hot: no inf * 0
    return d * math.log(t) - spread




# --------------------------------------------------------------------------------------------------
# basins of attraction on a grid of the plane (chapter 07's figure and widget)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Basins:
    r"""Basins of attraction of 2-D training points on a grid, two ways (from :func:`basins`).

    Grid point ``(i, j)`` is :math:`(g_x[j], g_y[i])` (rows follow ``gy``, as ``pcolormesh`` expects).

    Attributes: ``points`` ``(N, 2)`` the training points; ``sigma`` the noise level; ``gx`` ``(R,)``,
    ``gy`` ``(R,)`` the grid axes; ``annealed`` ``(R, R)`` int64, the index of the training point that
    the probability-flow ODE with the optimal denoiser (annealed mean shift) started at the grid point
    at ``sigma`` lands on; ``fixed`` ``(R, R)`` int64, for mean shift at the fixed bandwidth ``sigma``,
    the index of the training point nearest the mode of :math:`p_\sigma` it climbs to; ``modes``
    ``(M, 2)`` those modes; ``log_prob`` ``(R, R)`` :math:`\log p_\sigma` on the grid.
    """

    points: torch.Tensor
    sigma: float
    gx: torch.Tensor
    gy: torch.Tensor
    annealed: torch.Tensor
    fixed: torch.Tensor
    modes: torch.Tensor
    log_prob: torch.Tensor

    @property
    def n_basins(self) -> int:
        """How many training points own at least one grid point under the ODE (``annealed``)."""
        return int(self.annealed.unique().numel())


def plane_grid(points: torch.Tensor, resolution: int, margin: float = 1.0):
    """A ``resolution`` x ``resolution`` grid over the bounding box of 2-D ``points`` ``(N, 2)`` widened
    by ``margin``: returns ``(gx (R,), gy (R,), grid (R * R, 2))`` in the dtype of ``points``, with
    ``grid[i * R + j] = (gx[j], gy[i])`` (reshape a per-point value to ``(R, R)`` for ``pcolormesh``).
    Raises ``ValueError`` if ``resolution`` is not an integer >= 2."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    lo, hi = points.min(0).values - margin, points.max(0).values + margin
    gx = torch.linspace(float(lo[0]), float(hi[0]), resolution, dtype=points.dtype)
    gy = torch.linspace(float(lo[1]), float(hi[1]), resolution, dtype=points.dtype)
    X, Y = torch.meshgrid(gx, gy, indexing="xy")
    return gx, gy, torch.stack([X.reshape(-1), Y.reshape(-1)], 1)


def basins(points: torch.Tensor, sigma, *, resolution: int = 64, n_steps: int = 18, margin: float = 1.0,
           sigma_min: float = 0.002) -> Basins:
    r"""Basins of attraction of the training points ``points`` ``(N, 2)`` over a grid of the plane.

    The grid is ``resolution`` x ``resolution`` points over the bounding box of ``points`` widened by
    ``margin``. Each grid point is taken as :math:`x` at noise level ``sigma`` and

    * run through the probability-flow ODE with the optimal denoiser of ``points`` (Heun, ``n_steps``
      EDM steps from ``sigma`` down to ``sigma_min``), i.e. annealed mean shift, and labelled by the
      training point it lands on (:func:`landing`; Chen et al. 2023, §4: every basin carries mass
      :math:`1/N` under :math:`p_\sigma`, and for small ``sigma`` the basins are the Voronoi cells);
    * run through mean shift at the *fixed* bandwidth ``sigma`` (:func:`mean_shift`, 500 iterations,
      tolerance 1e-7), which climbs to a mode of :math:`p_\sigma`; modes closer than ``sigma / 4`` are
      merged (:func:`cluster_points`), and each is labelled by its nearest training point.

    ``points``: a floating tensor ``(N, 2)`` (computation in its dtype; float64 from
    :func:`diffusion_geometry.datasets.training_set_2d`). Returns a :class:`Basins`. Raises
    ``ValueError`` unless ``points`` is ``(N, 2)`` with ``N >= 1`` and finite, ``sigma`` is finite and
    above ``2 * sigma_min`` (``TypeError`` if it is not a number), ``resolution >= 2``, ``n_steps >= 2``
    and ``margin >= 0``.
    """
    from .schedules import edm_sigmas

    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != 2 or len(points) == 0 \
            or not points.is_floating_point():
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must be a floating tensor of shape (N, 2) with N >= 1, got {shape}")
    if not torch.isfinite(points).all():
        raise ValueError("points contain NaN or inf")
    s = _positive_sigma(sigma)
    if not s > 2 * sigma_min:
        raise ValueError(f"sigma must be finite and greater than 2 * sigma_min = {2 * sigma_min:g}, got {sigma!r}")
    for name, value in (("resolution", resolution), ("n_steps", n_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")

    optimal = EmpiricalDenoiser(points)
    gx, gy, grid = plane_grid(points, resolution, margin)
    annealed = landing(optimal, grid, edm_sigmas(n_steps, sigma_min=sigma_min, sigma_max=s), sampler="heun").indices
    ends = mean_shift(optimal, grid, s, max_iter=500, tol=1e-7)[-1]
    labels, modes = cluster_points(ends, 0.25 * s)
    owner = optimal.nearest(modes, k=1).indices[:, 0]
    shape = (resolution, resolution)
    return Basins(points=points, sigma=s, gx=gx, gy=gy, annealed=annealed.reshape(shape),
                  fixed=owner[labels].reshape(shape), modes=modes, log_prob=optimal.log_prob(grid, s).reshape(shape))


