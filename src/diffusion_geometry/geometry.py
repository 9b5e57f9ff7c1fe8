r"""Measurements on trajectories (Chen et al. 2023, §3; Zhou et al. 2024, §3.1; Chen et al. 2024/2025).

Every function takes points of shape ``(T, batch, ...)`` -- ``T`` points along each of ``batch``
trajectories, any trailing shape, flattened to ``d`` dimensions -- and returns per-point or
per-trajectory numbers. The chord of a trajectory is the segment from its first point to its last.
"""
from __future__ import annotations

import numbers

import torch

__all__ = [
    "norms",
    "chord_deviation",
    "distance_to_end",
    "cosine_to_end",
    "trajectory_pca",
    "boomerang_projection",
]


def _flat(points: torch.Tensor, name: str = "points", min_t: int = 2) -> torch.Tensor:
    if not isinstance(points, torch.Tensor) or points.ndim < 3:
        raise ValueError(f"{name} must have shape (T, batch, ...), got "
                         f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    if points.shape[0] < min_t:
        raise ValueError(f"{name} needs at least {min_t} points along each trajectory, got {points.shape[0]}")
    return points.reshape(points.shape[0], points.shape[1], -1)


def norms(points: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert x_t\rVert_2` for every point, ``(T, batch)``."""
    return _flat(points, min_t=1).norm(dim=-1)


def chord_deviation(points: torch.Tensor) -> torch.Tensor:
    r"""Perpendicular distance of each point from its trajectory's chord, ``(T, batch)``.

    With :math:`u = (x_\text{end} - x_\text{start})/\lVert\cdot\rVert` and :math:`a = x_\text{end} - x_t`:
    :math:`\lVert a - \langle a, u\rangle u\rVert_2` (``cal_deviation`` of the paper's code). Zero at
    both ends; divide by the chord length for the relative deviation.
    """
    p = _flat(points)
    chord = p[-1] - p[0]
    length = chord.norm(dim=-1, keepdim=True)
    if (length == 0).any():
        raise ValueError("a trajectory has zero chord length (start equals end)")
    u = chord / length
    a = p[-1][None] - p
    return (a - (a * u).sum(-1, keepdim=True) * u).norm(dim=-1)


def chord_length(points: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert x_\text{end} - x_\text{start}\rVert`, ``(batch,)``."""
    p = _flat(points)
    return (p[-1] - p[0]).norm(dim=-1)


__all__.append("chord_length")


def relative_chord_deviation(points: torch.Tensor) -> torch.Tensor:
    r"""Largest deviation of each trajectory from its chord, relative to the chord's length, ``(batch,)``:
    :math:`\max_t \operatorname{dev}(x_t) / \lVert x_\text{end} - x_\text{start}\rVert` -- the number behind
    "the sampling trajectory is almost straight" (Chen et al. 2023, Observation 1)."""
    return chord_deviation(points).max(dim=0).values / chord_length(points)


__all__.append("relative_chord_deviation")


def distance_to_end(points: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert x_t - x_\text{end}\rVert_2`, ``(T, batch)``."""
    p = _flat(points)
    return (p - p[-1][None]).norm(dim=-1)


def cosine_to_end(points: torch.Tensor, directions: torch.Tensor, end: torch.Tensor | None = None) -> torch.Tensor:
    r"""Cosine between each direction and the vector from its point to the end,
    :math:`\cos(\varepsilon(x_t), x_t - x_\text{end})`, ``(T', batch)``.

    ``directions`` has shape ``(T', batch, ...)`` with ``T' <= T`` (a trajectory has one direction
    per step); ``end`` defaults to ``points[-1]``. Points that coincide with the end give NaN-free 0.
    """
    p = _flat(points, min_t=1)
    e = _flat(directions, "directions", min_t=1)
    if e.shape[1:] != p.shape[1:] or e.shape[0] > p.shape[0]:
        raise ValueError(f"directions {tuple(directions.shape)} do not match points {tuple(points.shape)}")
    end_f = p[-1] if end is None else end.reshape(p.shape[1], -1)
    to_end = p[: e.shape[0]] - end_f[None]
    denom = (e.norm(dim=-1) * to_end.norm(dim=-1)).clamp_min(torch.finfo(p.dtype).tiny)
    return (e * to_end).sum(-1) / denom


def trajectory_pca(points: torch.Tensor, n_components: int = 2):
    r"""PCA of each trajectory on its own (Zhou et al. 2024, AMED Fig. 4).

    Returns ``(explained, rel_error)``: ``explained`` ``(batch, min(T, d))`` is the cumulative fraction
    of the trajectory's variance explained by the first k principal components (k = 1, 2, ...);
    ``rel_error`` ``(T, batch)`` is :math:`\lVert x_t - \tilde x_t\rVert/\lVert x_t\rVert` with
    :math:`\tilde x_t` the projection on the mean plus the top ``n_components`` directions.
    """
    p = _flat(points)
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    x = p.transpose(0, 1)  # (batch, T, d)
    mean = x.mean(1, keepdim=True)
    xc = x - mean
    _, S, Vh = torch.linalg.svd(xc, full_matrices=False)  # S: (batch, min(T, d))
    var = S**2
    explained = var.cumsum(-1) / var.sum(-1, keepdim=True)
    V = Vh[:, :n_components]  # (batch, k, d)
    proj = mean + (xc @ V.transpose(1, 2)) @ V
    rel = (x - proj).norm(dim=-1) / x.norm(dim=-1).clamp_min(torch.finfo(p.dtype).tiny)
    return explained, rel.transpose(0, 1)


def boomerang_projection(points: torch.Tensor) -> torch.Tensor:
    r"""The 3-D view of each trajectory (Chen et al. 2024, GITS Fig. 4; the JSTAT "boomerang").

    Axes: :math:`u_1` the unit chord direction (start to end); :math:`u_2, u_3` the top two principal
    directions of the points after their :math:`u_1` component is removed. Coordinates are
    :math:`\langle x_t - x_\text{end}, u_k\rangle`, so every trajectory ends at the origin and starts
    near :math:`(-\lVert\text{chord}\rVert, 0, 0)`. Signs of :math:`u_2, u_3` are fixed so that the
    largest excursion is positive. Returns ``(T, batch, 3)``.
    """
    p = _flat(points)
    x = p.transpose(0, 1)  # (batch, T, d)
    rel = x - x[:, -1:]
    chord = x[:, -1] - x[:, 0]
    u1 = chord / chord.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    along = (rel * u1[:, None]).sum(-1)  # (batch, T)
    perp = rel - along[..., None] * u1[:, None]
    centred = perp - perp.mean(1, keepdim=True)
    _, _, Vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(2, Vh.shape[1])
    coords = [along]
    for j in range(2):
        if j < k:
            c = (perp * Vh[:, j][:, None]).sum(-1)
            sign = torch.sign(torch.gather(c, 1, c.abs().argmax(1, keepdim=True)))
            coords.append(c * torch.where(sign == 0, torch.ones_like(sign), sign))
        else:
            coords.append(torch.zeros_like(along))
    return torch.stack(coords, -1).transpose(0, 1)


# --- helpers for Part I (trajectories in 2-D and in high dimension) --------------------------------


def segment_coordinates(points: torch.Tensor, start: torch.Tensor, end: torch.Tensor):
    r"""Where ``points`` sit relative to the segments ``[start, end]``: ``(lam, perp)``, each ``(batch,)``.

    With :math:`v = b - a`, :math:`\lambda = \langle p - a, v\rangle / \lVert v\rVert^2` is the position
    along the line (0 at ``start``, 1 at ``end``) and :math:`\lVert p - a - \lambda v\rVert_2` the
    perpendicular distance from it. A point lies on the segment when ``perp == 0`` and
    :math:`0 \le \lambda \le 1`. Used to check that an Euler step
    :math:`x_{n+1} = \frac{\sigma_{n+1}}{\sigma_n}x_n + (1 - \frac{\sigma_{n+1}}{\sigma_n})D_n` lands on
    :math:`[x_n, D_n]` at :math:`\lambda = 1 - \sigma_{n+1}/\sigma_n` (Chen et al. 2023, §3).
    All three inputs have shape ``(batch, ...)``.
    """
    for name, t in (("points", points), ("start", start), ("end", end)):
        if not isinstance(t, torch.Tensor) or t.ndim < 2:
            raise ValueError(f"{name} must be a tensor of shape (batch, ...)")
    if not (points.shape == start.shape == end.shape):
        raise ValueError(f"shapes differ: points {tuple(points.shape)}, start {tuple(start.shape)}, "
                         f"end {tuple(end.shape)}")
    p, a, b = (t.reshape(t.shape[0], -1) for t in (points, start, end))
    v = b - a
    vv = (v * v).sum(-1)
    if (vv == 0).any():
        raise ValueError("a segment has zero length (start equals end)")
    lam = ((p - a) * v).sum(-1) / vv
    perp = (p - a - lam[:, None] * v).norm(dim=-1)
    return lam, perp


def settling_sigma(distances: torch.Tensor, sigmas, threshold: float) -> torch.Tensor:
    r"""The noise level from which each distance curve stays below ``threshold``, ``(batch,)``.

    ``distances`` ``(T, batch)`` are measured at the levels ``sigmas`` ``(T,)``, walked from large to
    small sigma (e.g. :math:`\lVert D_i - x_\text{end}\rVert` against :math:`\sigma_i`). Let ``k`` be
    the last index with ``distances[k] > threshold``; the curve is interpolated linearly in distance
    between :math:`\sigma_k` and :math:`\sigma_{k+1}` (geometrically in sigma, linearly if
    :math:`\sigma_{k+1} = 0`) to find where it crosses ``threshold``. A curve that never exceeds the
    threshold gives ``sigmas[0]``; one still above it at the last level gives NaN ("not settled").
    A larger settling sigma means the curve reaches its end point earlier in the run.
    """
    if not isinstance(distances, torch.Tensor) or distances.ndim != 2:
        raise ValueError("distances must be a tensor of shape (T, batch)")
    s = torch.as_tensor(sigmas, dtype=distances.dtype, device=distances.device)
    if s.ndim != 1 or s.shape[0] != distances.shape[0]:
        raise ValueError(f"sigmas must have shape ({distances.shape[0]},), got {tuple(s.shape)}")
    if (s < 0).any() or not (s[1:] < s[:-1]).all():
        raise ValueError("sigmas must be non-negative and strictly decreasing")
    if isinstance(threshold, bool) or not (isinstance(threshold, numbers.Real) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    above = distances > threshold
    T, B = distances.shape
    idx = torch.arange(T, device=distances.device)[:, None].expand(T, B)
    last = torch.where(above, idx, torch.full_like(idx, -1)).max(0).values  # (batch,)
    out = torch.full((B,), float("nan"), dtype=distances.dtype, device=distances.device)
    out[last < 0] = s[0]
    inside = (last >= 0) & (last < T - 1)
    if inside.any():
        k = last[inside]
        cols = torch.nonzero(inside)[:, 0]
        d0, d1 = distances[k, cols], distances[k + 1, cols]
        frac = (d0 - threshold) / (d0 - d1)
        s0, s1 = s[k], s[k + 1]
        geo = torch.exp(torch.log(s0) + frac * (torch.log(s1.clamp_min(torch.finfo(s.dtype).tiny)) - torch.log(s0)))
        out[inside] = torch.where(s1 > 0, geo, s0 + frac * (s1 - s0))
    return out


__all__ += ["segment_coordinates", "settling_sigma"]


# --- plane and curvature tests (Part I and Part IV) -----------------------------------------------


def pca_residual_shares(points: torch.Tensor, n: int = 3) -> torch.Tensor:
    r"""How much of what the first :math:`k-1` principal components leave the :math:`k`-th one captures,
    per trajectory: ``(batch, n)`` with column ``k - 1`` equal to

    .. math:: r_k = \frac{\lambda_k}{\sum_{j \ge k} \lambda_j},

    :math:`\lambda_1 \ge \lambda_2 \ge \dots` the variances of the PCA of the trajectory's own points
    (Zhou et al. 2024, §3.1, AMED Fig. 4). :math:`r_1` is the share of the first component; :math:`r_2`
    the share of the residual after the first component that the second one captures. The claim "the
    trajectory lies in a plane" (and not merely "near a line") is :math:`r_2 \approx 1`: what is left
    after two components is :math:`(1/r_2 - 1)\,\lambda_2`, small against the in-plane bend
    :math:`\lambda_2`. A cumulative explained variance cannot say this, since the chord alone already
    explains nearly all of it.

    ``points``: ``(T, batch, ...)``, any floating dtype (computed in float64). Singular values below the
    rank tolerance :math:`\max(T, d)\,\epsilon\,s_1` (:math:`\epsilon` of the input dtype) count as 0;
    where nothing is left (:math:`\sum_{j\ge k}\lambda_j = 0`, e.g. :math:`k = 2` for an exact line), the
    share is 1 by convention (nothing is left unexplained). Raises ``ValueError`` for bad shapes, fewer
    than two points, ``n`` not a positive integer, or non-finite points.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    p = _flat(points)
    if not torch.isfinite(p).all():
        raise ValueError("points contain NaN or infinite values")
    eps = torch.finfo(p.dtype).eps
    x = p.transpose(0, 1).to(torch.float64)  # (batch, T, d)
    S = torch.linalg.svdvals(x - x.mean(1, keepdim=True))  # (batch, min(T, d)), descending
    S = torch.where(S > max(p.shape[0], p.shape[2]) * eps * S[:, :1], S, torch.zeros_like(S))
    var = S**2
    if var.shape[1] < n:
        var = torch.cat([var, var.new_zeros(var.shape[0], n - var.shape[1])], dim=1)
    tail = var.flip(-1).cumsum(-1).flip(-1)  # sum_{j >= k} lambda_j
    share = torch.where(tail > 0, var / tail.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(var))
    return share[:, :n].to(p.dtype)


def turning_angles(points: torch.Tensor) -> torch.Tensor:
    r"""Turning angle of each trajectory, as a polyline, at its interior points, ``(T - 2, batch)`` in
    radians, in :math:`[0, \pi]`: the angle between the incoming step :math:`x_i - x_{i-1}` and the
    outgoing step :math:`x_{i+1} - x_i`. Row ``i - 1`` belongs to point ``i``.

    Computed as :math:`2\operatorname{atan2}(\lVert \hat u - \hat v\rVert, \lVert \hat u + \hat v\rVert)`
    with unit steps :math:`\hat u, \hat v` (Kahan's formula), which stays accurate for tiny angles where
    :math:`\arccos\langle\hat u, \hat v\rangle` loses all digits; the result has the input's dtype.
    Raises ``ValueError`` for bad shapes, fewer than three points, non-finite points, or a step of
    length 0 (a repeated point has no direction).
    """
    p = _flat(points, min_t=3)
    if not torch.isfinite(p).all():
        raise ValueError("points contain NaN or infinite values")
    steps = p[1:] - p[:-1]
    length = steps.norm(dim=-1, keepdim=True)
    if (length == 0).any():
        raise ValueError("a trajectory repeats a point (a step of length 0 has no direction)")
    unit = steps / length
    u, v = unit[:-1], unit[1:]
    return 2 * torch.atan2((u - v).norm(dim=-1), (u + v).norm(dim=-1))


def discrete_curvature(points: torch.Tensor) -> torch.Tensor:
    r"""Curvature of each trajectory, as a polyline, at its interior points, ``(T - 2, batch)``: the
    turning angle (:func:`turning_angles`) divided by the mean length of the two adjacent steps,

    .. math:: \kappa_i = \frac{\theta_i}{\tfrac12(\lVert x_i - x_{i-1}\rVert + \lVert x_{i+1} - x_i\rVert)} ,

    in units of 1/length. For points sampled densely from a smooth curve this converges to the
    geometric curvature :math:`\kappa = \lVert \ddot x_\perp\rVert/\lVert\dot x\rVert^2` of
    :func:`geometric_curvature` (for a circle of radius :math:`R` sampled every angle :math:`\Delta`,
    :math:`\kappa_i = \Delta/(2R\sin(\Delta/2)) = (1 + \Delta^2/24 + \dots)/R`); unlike the second
    derivative :math:`d^2x/d\sigma^2`, it does not depend on how fast the curve is traversed, so a
    straight trajectory has curvature 0 however it decelerates. Errors as :func:`turning_angles`.
    """
    theta = turning_angles(points)
    p = _flat(points, min_t=3)
    length = (p[1:] - p[:-1]).norm(dim=-1)
    return theta / (0.5 * (length[:-1] + length[1:]))


def geometric_curvature(velocity: torch.Tensor, acceleration: torch.Tensor) -> torch.Tensor:
    r"""Curvature of a curve from its first and second derivatives in any parameter,
    :math:`\kappa = \lVert a - \langle a, \hat v\rangle \hat v\rVert / \lVert v\rVert^2`, ``(batch,)``.

    ``velocity`` and ``acceleration``: ``(batch, ...)`` of the same shape, e.g. the ODE direction
    :math:`dx/d\sigma = \varepsilon(x;\sigma)` and :math:`d^2x/d\sigma^2 = -\frac1\sigma\frac{dD}{d\sigma}` from
    :func:`diffusion_geometry.finite_differences.curvature` (Chen et al. 2023, the curvature identity).
    Only the part of the acceleration perpendicular to the velocity bends the curve; the parallel part
    changes the speed. Raises ``ValueError`` for mismatched shapes, non-finite input or a zero velocity.
    """
    for name, t in (("velocity", velocity), ("acceleration", acceleration)):
        if not isinstance(t, torch.Tensor) or t.ndim < 2:
            raise ValueError(f"{name} must be a tensor of shape (batch, ...)")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    if velocity.shape != acceleration.shape:
        raise ValueError(f"shapes differ: velocity {tuple(velocity.shape)}, acceleration {tuple(acceleration.shape)}")
    v = velocity.reshape(velocity.shape[0], -1)
    a = acceleration.reshape(acceleration.shape[0], -1)
    speed = v.norm(dim=-1, keepdim=True)
    if (speed == 0).any():
        raise ValueError("a velocity is zero: the curvature is undefined there")
    u = v / speed
    return (a - (a * u).sum(-1, keepdim=True) * u).norm(dim=-1) / speed[:, 0] ** 2


__all__ += ["pca_residual_shares", "turning_angles", "discrete_curvature", "geometric_curvature"]


def boomerang_profile_correlations(coords: torch.Tensor) -> torch.Tensor:
    r"""Pairwise correlations of the trajectories' bending profiles, ``(batch, batch)``.

    ``coords`` ``(T, batch, 3)`` from :func:`boomerang_projection`; the profile of a trajectory is its
    first orthogonal coordinate :math:`\langle x_t - x_\text{end}, u_2\rangle` against the step index ``t``.
    Entry ``(a, b)`` is the Pearson correlation over ``t`` of the profiles of trajectories ``a`` and ``b``
    (scale-free, so a wide and a narrow boomerang of the same shape correlate at 1). "All trajectories
    share one boomerang shape" (Chen et al. 2024/2025) means off-diagonal entries near 1. Computed in
    float64, returned in the input's dtype. Raises ``ValueError`` for a wrong shape, fewer than three
    points, non-finite values, or a profile that is constant to within round-off of the chord length
    (a straight trajectory has no bend to compare).
    """
    if not isinstance(coords, torch.Tensor) or coords.ndim != 3 or coords.shape[-1] != 3:
        raise ValueError("coords must have shape (T, batch, 3), as returned by boomerang_projection")
    if coords.shape[0] < 3:
        raise ValueError(f"need at least 3 points along each trajectory, got {coords.shape[0]}")
    if not torch.isfinite(coords).all():
        raise ValueError("coords contain NaN or infinite values")
    prof = coords[..., 1].to(torch.float64)  # (T, batch)
    centred = prof - prof.mean(0, keepdim=True)
    scale = centred.norm(dim=0)
    # a bend at the round-off level of the input's dtype, relative to the chord, is no bend
    chord = coords[..., 0].to(torch.float64).abs().amax(0)
    tol = 100 * torch.finfo(coords.dtype).eps * chord * prof.shape[0] ** 0.5
    if (scale <= tol).any() or (scale == 0).any():
        raise ValueError("a trajectory's profile is constant (no bend): its correlation is undefined")
    unit = centred / scale
    return (unit.T @ unit).to(coords.dtype)


__all__ += ["boomerang_profile_correlations"]
