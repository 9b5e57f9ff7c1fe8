r"""Measurements on trajectories (Chen et al. 2023, §3; Zhou et al. 2024, §3.1; Chen et al. 2024/2025).

Every function takes points of shape ``(T, batch, ...)`` -- ``T`` points along each of ``batch``
trajectories, any trailing shape, flattened to ``d`` dimensions -- and returns per-point or
per-trajectory numbers. The chord of a trajectory is the segment from its first point to its last.
"""
from __future__ import annotations

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
