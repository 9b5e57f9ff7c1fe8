r"""GITS: a time schedule found by dynamic programming on a fine grid (Chen et al. 2024, ICML).

All sampling trajectories share nearly the same shape, so one schedule fitted on a small warm-up
batch serves every sample. The recipe (``gits_utils.get_dp_list`` and ``dp`` of the official code):

1. run a *teacher* sampler (``sampler=``, iPNDM by default) on a fine grid :math:`\sigma_0 > \dots > \sigma_{N-1}` (EDM
   :math:`\rho = 7`, 61 levels) from a warm-up batch; keep its points :math:`x_i` and directions
   :math:`\varepsilon_i = (x_i - D(x_i;\sigma_i))/\sigma_i`;
2. the *cost* of jumping from level :math:`i` to level :math:`j > i` with one Euler step along the
   teacher direction, :math:`\hat x_{i\to j} = x_i + (\sigma_j - \sigma_i)\varepsilon_i`, is
   (``metric="l2"``) :math:`C_{ij} = \operatorname{mean}_b \lVert \hat x_{i\to j} - x_j\rVert_2`, or
   (``metric="dev"``) the mean increase of the perpendicular distance to the teacher's chord,
   :math:`C_{ij} = \operatorname{mean}_b[\operatorname{dev}(\hat x_{i\to j}) - \operatorname{dev}(x_j)]`;
3. a path :math:`0 = i_0 < i_1 < \dots < i_K = N-1` costs
   :math:`\sum_{m=0}^{K-1} \beta^m\, C_{i_m i_{m+1}}` (``coeff`` :math:`\beta = 1.15` weights the later,
   low-noise segments more); the dynamic programme
   :math:`V_k(j) = \min_{i > j} C_{ji} + \beta\, V_{k-1}(i)`, :math:`V_1(j) = C_{j,N-1}`, finds the
   cheapest path with :math:`K` steps in :math:`O(K N^2)`.

The schedule is ``fine_grid[path]``; it can drive any sampler.
"""
from __future__ import annotations

import numpy as np
import torch

from .schedules import check_sigmas, edm_sigmas
from .samplers import get_sampler
from .trajectory import sample

__all__ = ["gits_cost_matrix", "gits_dp", "path_cost", "gits_fit", "gits_sigmas", "GITSResult"]

METRICS = ("l2", "dev")


def _chord_deviation(points: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Perpendicular distance of ``points`` (..., B, d) from the chord start -> end (B, d)."""
    chord = end - start
    length = chord.norm(dim=-1, keepdim=True)
    if (length == 0).any():
        raise ValueError("a teacher trajectory has zero chord length")
    u = chord / length
    a = end - points
    return (a - (a * u).sum(-1, keepdim=True) * u).norm(dim=-1)


def gits_cost_matrix(sigmas, points: torch.Tensor, directions: torch.Tensor, *, metric: str = "l2") -> torch.Tensor:
    r"""The GITS cost matrix :math:`C_{ij}` (upper triangle; ``inf`` on and below the diagonal).

    Parameters
    ----------
    sigmas : ``(N,)`` the fine grid (strictly decreasing, positive).
    points : ``(N, B, ...)`` teacher points :math:`x_i` at those levels.
    directions : ``(N - 1, B, ...)`` (or ``(N, B, ...)``) teacher directions :math:`\varepsilon_i`.
    metric : ``"l2"`` or ``"dev"`` (see the module docstring).

    Returns an ``(N, N)`` float64 tensor on the CPU (the points may live on any device).
    """
    sigmas = check_sigmas(sigmas)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if (sigmas <= 0).any():
        raise ValueError("the fine grid must be positive (a jump to 0 is not a GITS segment)")
    N = sigmas.numel()
    if not isinstance(points, torch.Tensor) or points.ndim < 3 or points.shape[0] != N:
        raise ValueError(f"points must have shape ({N}, batch, ...), got "
                         f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    if (not isinstance(directions, torch.Tensor) or directions.shape[0] not in (N - 1, N)
            or directions.shape[1:] != points.shape[1:]):
        raise ValueError(f"directions must have shape ({N - 1}, {', '.join(map(str, points.shape[1:]))})")
    B = points.shape[1]
    p = points.reshape(N, B, -1).to(torch.float64)
    e = directions.reshape(directions.shape[0], B, -1).to(torch.float64)
    s = sigmas.to(device=p.device, dtype=torch.float64)  # the teacher may run on a GPU
    if metric == "dev":
        dev_teacher = _chord_deviation(p, p[0], p[-1])  # (N, B)
    C = torch.full((N, N), float("inf"), dtype=torch.float64, device=p.device)
    for i in range(N - 1):
        steps = (s[i + 1:] - s[i]).reshape(-1, 1, 1)  # (N-1-i, 1, 1)
        jumps = p[i][None] + steps * e[i][None]  # (N-1-i, B, d)
        if metric == "l2":
            C[i, i + 1:] = (jumps - p[i + 1:]).norm(dim=-1).mean(-1)
        else:
            C[i, i + 1:] = (_chord_deviation(jumps, p[0], p[-1]) - dev_teacher[i + 1:]).mean(-1)
    return C.cpu()


def path_cost(cost: torch.Tensor, path, coeff: float = 1.15) -> float:
    r"""The DP objective of a path: :math:`\sum_m \beta^m C_{i_m i_{m+1}}`."""
    return float(sum(coeff**m * float(cost[a, b]) for m, (a, b) in enumerate(zip(path[:-1], path[1:]))))


def gits_dp(cost, n_steps: int, *, coeff: float = 1.15) -> list[int]:
    r"""The cheapest path :math:`0 = i_0 < \dots < i_K = N-1` with ``K = n_steps`` segments.

    Minimises :func:`path_cost` by the dynamic programme :math:`V_k(j) = \min_{i>j} C_{ji} + \beta V_{k-1}(i)`,
    :math:`V_1(j) = C_{j,N-1}` (Chen et al. 2024; ``dp`` in the official code). Ties go to the
    smallest index. Returns the ``n_steps + 1`` indices.
    """
    C = np.asarray(torch.as_tensor(cost, dtype=torch.float64).cpu())
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 2:
        raise ValueError(f"cost must be a square matrix of size >= 2, got shape {C.shape}")
    N = C.shape[0]
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or not 1 <= n_steps <= N - 1:
        raise ValueError(f"n_steps must be an integer in [1, {N - 1}] for a grid of {N} levels, got {n_steps!r}")
    if not (np.isfinite(coeff) and coeff > 0):
        raise ValueError(f"coeff must be positive, got {coeff}")
    upper = C[np.triu_indices(N, 1)]
    if np.isnan(upper).any() or np.isinf(upper).any():
        raise ValueError("the cost matrix must be finite above the diagonal")
    V = np.full((n_steps + 1, N), np.inf)  # V[k, j]: best cost from j to N-1 in exactly k segments
    nxt = np.full((n_steps + 1, N), -1, dtype=int)
    V[1, : N - 1] = C[: N - 1, N - 1]
    nxt[1, : N - 1] = N - 1
    for k in range(2, n_steps + 1):
        for j in range(N - k):
            cand = C[j, j + 1 : N - 1] + coeff * V[k - 1, j + 1 : N - 1]
            best = int(np.argmin(cand))
            V[k, j], nxt[k, j] = cand[best], j + 1 + best
    path, j = [0], 0
    for k in range(n_steps, 0, -1):
        j = int(nxt[k, j])
        path.append(j)
    return path


class GITSResult:
    """What :func:`gits_fit` found: ``sigmas`` (the schedule), ``indices`` (into ``fine_grid``),
    ``cost`` (the cost matrix), ``fine_grid``, ``coeff`` and ``trajectory`` (the sampler's warm-up
    :class:`~diffusion_geometry.Trajectory` on the fine grid).

    :meth:`schedule` re-solves the dynamic programme on the same cost matrix for another number of
    steps (or ``coeff``) without running the sampler again."""

    def __init__(self, sigmas, indices, cost, fine_grid, trajectory, coeff):
        self.sigmas, self.indices, self.cost, self.fine_grid = sigmas, indices, cost, fine_grid
        self.trajectory, self.coeff = trajectory, coeff

    def schedule(self, n_steps: int, coeff: float | None = None) -> torch.Tensor:
        """The GITS schedule with ``n_steps`` steps from the stored cost matrix."""
        idx = gits_dp(self.cost, n_steps, coeff=self.coeff if coeff is None else coeff)
        return self.fine_grid.to(torch.float64)[idx]

    def __repr__(self) -> str:
        return f"GITSResult(sigmas={[round(float(s), 4) for s in self.sigmas]})"


def gits_fit(denoiser, x_warmup: torch.Tensor, n_steps: int, *, fine_grid=None, sampler: str = "ipndm",
             metric: str = "l2", coeff: float = 1.15, **sampler_opts) -> GITSResult:
    r"""Fit a GITS schedule with ``n_steps`` steps (``n_steps + 1`` levels) on ``x_warmup``; return
    everything found (:class:`GITSResult`: the schedule, the cost matrix, the warm-up trajectory).

    ``x_warmup`` are start points at ``fine_grid[0]`` (e.g. ``80 * randn``). ``sampler`` (the paper's
    *teacher*: a name in :data:`diffusion_geometry.samplers.SAMPLERS`, with ``sampler_opts``) runs along
    ``fine_grid`` (default ``edm_sigmas(60)``: 61 levels, as in the paper's code); then
    :func:`gits_cost_matrix` and :func:`gits_dp`. The schedule starts and ends where ``fine_grid`` does.
    Cost: one sampler run, ``len(fine_grid) - 1`` evaluations per warm-up sample for a one-evaluation
    sampler. Raises ``ValueError`` for an unknown ``metric``, a malformed ``x_warmup`` or ``n_steps``
    outside ``[1, len(fine_grid) - 1]`` or a predictor-corrector sampler (UniPC: its recorded ``D`` is not
    taken at the recorded points).
    """
    fine_grid = edm_sigmas(60) if fine_grid is None else check_sigmas(fine_grid)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not isinstance(x_warmup, torch.Tensor) or x_warmup.ndim < 2 or x_warmup.shape[0] < 1:
        raise ValueError("x_warmup must be a tensor of shape (batch, ...) with batch >= 1")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or not 1 <= n_steps < fine_grid.numel():
        raise ValueError(f"n_steps must be an integer in [1, {fine_grid.numel() - 1}], got {n_steps!r}")
    if not callable(sampler) and get_sampler(sampler).predictor_corrector:
        raise ValueError(f"GITS costs a jump by the directions (x_i - D_i)/sigma_i of the trajectory; {sampler} "
                         "reports D at its predicted points, not at x_i: choose another sampler")
    traj = sample(denoiser, x_warmup, fine_grid, sampler=sampler, **sampler_opts)
    cost = gits_cost_matrix(fine_grid, traj.x, traj.directions, metric=metric)
    idx = gits_dp(cost, n_steps, coeff=coeff)
    return GITSResult(fine_grid.to(torch.float64)[idx], idx, cost, fine_grid, traj, coeff)


def gits_sigmas(denoiser, x_warmup: torch.Tensor, n_steps: int, **kwargs) -> torch.Tensor:
    """The GITS schedule alone (a float64 tensor of ``n_steps + 1`` levels): ``gits_fit(...).sigmas``,
    with the same arguments and errors as :func:`gits_fit`."""
    return gits_fit(denoiser, x_warmup, n_steps, **kwargs).sigmas
