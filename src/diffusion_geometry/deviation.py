r"""Score deviation: a learned denoiser against the optimal one, from the same noise.

A network :math:`r_\theta` trained on a finite set :math:`\{y_i\}` approximates the optimal denoiser
:math:`r^*` of that set (:class:`~diffusion_geometry.EmpiricalDenoiser`), whose sampler only
reproduces training points. Chen et al. (2023, arXiv 2305.19947, §6 and the official
``diff-analyzer`` notebook) run both samplers from the same :math:`x_T` -- the learned trajectory
:math:`\{x_t\}` and the optimal trajectory :math:`\{x^*_t\}` -- and compare, at every noise level:

.. math::
   \text{(1)}\ \lVert x_t - x^*_t\rVert_2, \quad
   \text{(2)}\ \lVert r_\theta(x_t) - r^*(x^*_t)\rVert_2, \quad
   \text{(3)}\ \lVert r_\theta(x_t) - r^*(x_t)\rVert_2, \quad
   \text{(4)}\ \lVert r_\theta(x^*_t) - r^*(x^*_t)\rVert_2 .

(1) compares the sampling trajectories, (2) the denoising trajectories, and (3), (4) the two
denoisers at the same point -- the *score deviation*, since
:math:`\lVert s_\theta - s^*\rVert = \lVert r_\theta - r^*\rVert/\sigma^2` -- on the learned and on the
optimal trajectory. :func:`score_deviation` computes all four; :func:`memorized_fraction` counts the
samples that copy a training point (Yoon et al. 2023; Gu et al. 2023). :func:`r_squared` says how much
of one denoiser's output another explains, image by image (Kamb & Ganguli 2024, arXiv 2412.20292).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .denoisers import EmpiricalDenoiser, _exact_dtype
from .schedules import check_sigmas
from .trajectory import Trajectory, sample

__all__ = ["ScoreDeviation", "score_deviation", "memorized_fraction", "r_squared"]


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L2 distance over all but the first two axes: ``(T, batch, ...) -> (T, batch)``."""
    return (a - b).reshape(a.shape[0], a.shape[1], -1).norm(dim=-1)


@dataclass
class ScoreDeviation:
    r"""The four curves of :func:`score_deviation` and the runs behind them.

    Attributes (``n`` steps, ``batch`` trajectories)
    ----------
    sigmas : ``(n + 1,)`` the grid both samplers walked.
    learned, optimal : the two :class:`~diffusion_geometry.Trajectory` records (same start).
    sampling : ``(n + 1, batch)`` curve (1), :math:`\lVert x_t - x^*_t\rVert`.
    denoising : ``(n, batch)`` curve (2), :math:`\lVert r_\theta(x_t) - r^*(x^*_t)\rVert`.
    on_learned : ``(n, batch)`` curve (3), :math:`\lVert r_\theta(x_t) - r^*(x_t)\rVert`.
    on_optimal : ``(n, batch)`` curve (4), :math:`\lVert r_\theta(x^*_t) - r^*(x^*_t)\rVert`.
    optimal_on_learned : ``(n, batch, ...)`` :math:`r^*(x_t)`, the learned trajectory denoised optimally.
    learned_on_optimal : ``(n, batch, ...)`` :math:`r_\theta(x^*_t)`, the optimal trajectory denoised by the network.
    """

    sigmas: torch.Tensor
    learned: Trajectory
    optimal: Trajectory
    sampling: torch.Tensor
    denoising: torch.Tensor
    on_learned: torch.Tensor
    on_optimal: torch.Tensor
    optimal_on_learned: torch.Tensor
    learned_on_optimal: torch.Tensor

    def curves(self) -> dict[str, torch.Tensor]:
        """The four curves averaged over the batch, each against ``sigmas[:n]`` (curve 1 is cut to
        the same ``n`` levels)."""
        n = self.denoising.shape[0]
        return {
            "sampling": self.sampling[:n].mean(1),
            "denoising": self.denoising.mean(1),
            "on_learned": self.on_learned.mean(1),
            "on_optimal": self.on_optimal.mean(1),
        }


@torch.no_grad()
def score_deviation(learned, optimal, x: torch.Tensor, sigmas, *, sampler: str = "euler", **opts) -> ScoreDeviation:
    r"""Run ``learned`` (:math:`r_\theta`) and ``optimal`` (:math:`r^*`) from the same ``x`` along ``sigmas``
    with ``sampler``, then evaluate each denoiser on the other's trajectory.

    Both are denoisers ``D(x, sigma)``; ``optimal`` is usually an
    :class:`~diffusion_geometry.EmpiricalDenoiser` of the network's training set. The grid must end
    above 0 (at 0 the sampler outputs a denoiser value, not a point on the ODE). Returns a
    :class:`ScoreDeviation` with the four curves of Chen et al. (2023) (see the module docstring).
    """
    for name, den in (("learned", learned), ("optimal", optimal)):
        if not callable(den):
            raise TypeError(f"{name} must be a denoiser callable as {name}(x, sigma)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (batch, ...)")
    grid = check_sigmas(sigmas)
    if grid[-1] <= 0:
        raise ValueError("the grid must end above 0: drop the final step to sigma = 0")
    run_l = sample(learned, x, grid, sampler=sampler, **opts)
    run_o = sample(optimal, x, grid, sampler=sampler, **opts)
    n = run_l.denoised.shape[0]
    levels = grid[:n].tolist()
    opt_on_l = torch.stack([optimal(run_l.x[i], s) for i, s in enumerate(levels)])
    lrn_on_o = torch.stack([learned(run_o.x[i], s) for i, s in enumerate(levels)])
    return ScoreDeviation(
        sigmas=grid,
        learned=run_l,
        optimal=run_o,
        sampling=_dist(run_l.x, run_o.x),
        denoising=_dist(run_l.denoised, run_o.denoised),
        on_learned=_dist(run_l.denoised, opt_on_l),
        on_optimal=_dist(lrn_on_o, run_o.denoised),
        optimal_on_learned=opt_on_l,
        learned_on_optimal=lrn_on_o,
    )


@torch.no_grad()
def memorized_fraction(optimal: EmpiricalDenoiser, samples: torch.Tensor, ratio: float = 1 / 3) -> float:
    r"""The fraction of ``samples`` that copy a training point of ``optimal``.

    A sample counts as memorised when its nearest training point is much closer than the second
    nearest, :math:`d_1 / d_2 < \text{ratio}` (Yoon et al. 2023; Gu et al. 2023 use ratio 1/3). Needs at
    least two training points.
    """
    if not isinstance(optimal, EmpiricalDenoiser):
        raise TypeError(f"optimal must be an EmpiricalDenoiser (the training set), got {type(optimal).__name__}")
    if len(optimal) < 2:
        raise ValueError("memorized_fraction needs at least two training points")
    if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise ValueError(f"ratio must lie in (0, 1], got {ratio!r}")
    dist, _ = optimal.nearest(samples, k=2)
    return float((dist[:, 0] < ratio * dist[:, 1]).double().mean())


def r_squared(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""The coefficient of determination of ``prediction`` for ``target``, one per sample.

    .. math:: r^2_b = 1 - \frac{\sum_k (p_{b,k} - t_{b,k})^2}{\sum_k (t_{b,k} - \bar t_b)^2},
              \qquad \bar t_b = \frac1K \sum_k t_{b,k},

    over the K entries of sample b (all axes but the first): the share of the target's variation
    across its pixels that the prediction explains. 1 is a perfect prediction, 0 is no better than
    the target's own mean pixel, and it is negative for a worse one. Kamb & Ganguli (2024, arXiv
    2412.20292) compare a model of a network with the network this way, on its outputs; chapter 12
    compares denoisers' outputs :math:`D(x;\sigma)` at the same noisy image.

    Parameters
    ----------
    prediction, target : ``(batch, ...)`` real tensors of one shape, at least 2 entries per sample,
        any floating dtype (the sums are formed in float64: exact for float16 and bfloat16 inputs too).

    Returns ``(batch,)`` float64. Raises ``ValueError`` for shapes that differ, no batch axis, fewer
    than 2 entries per sample, NaN or inf, or a target sample with no variation (every entry equal:
    the ratio is 0/0).
    """
    if not isinstance(prediction, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError("prediction and target must be tensors")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have one shape, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")
    if target.ndim < 2 or target.shape[0] == 0 or target[0].numel() < 2:
        raise ValueError(f"expected (batch, ...) with batch >= 1 and at least 2 entries per sample, got "
                         f"{tuple(target.shape)}")
    f64 = _exact_dtype(target.device)
    p = prediction.reshape(len(prediction), -1).to(f64)
    t = target.reshape(len(target), -1).to(f64)
    if not (torch.isfinite(p).all() and torch.isfinite(t).all()):
        raise ValueError("prediction and target must be finite (no NaN or inf)")
    spread = (t - t.mean(1, keepdim=True)).square().sum(1)
    if (spread == 0).any():
        raise ValueError(f"target sample(s) {torch.nonzero(spread == 0).flatten().tolist()} have no variation: "
                         "r^2 is 0/0 there")
    return 1 - (p - t).square().sum(1) / spread
