r"""Pictures of the line and the plane: densities, scores and denoiser fields, 2-D trajectories and
single steps, basins of attraction, point clouds.

The 1-D noised marginal and its score (chapter 01), what a denoiser does in 1-D and 2-D (02),
sampling and denoising trajectories in the plane and one Euler step (03, 05), one finite-difference
(DPM-Solver-2) step (05), basins of attraction (07), learned against optimal denoiser fields and
samples against the training set (08).
"""
from __future__ import annotations

import numpy as np
import torch

from ._common import OKABE_ITO, as_array, check_dict, check_sigma, finish, new_figure

__all__ = ["draw_marginal_1d", "draw_denoiser", "draw_trajectories_2d", "draw_euler_step_2d",
           "draw_finite_difference_step", "draw_basins", "draw_denoiser_fields", "draw_samples_vs_training"]


def _set_size(fig, size):
    """A widget redraws into one figure: keep its size (a sub-figure's size is its parent's)."""
    from matplotlib.figure import Figure

    if isinstance(fig, Figure):
        fig.set_size_inches(*size)


def _plane_axes(ax, title=None, fontsize=10):
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$ (data units)")
    ax.set_ylabel("$x_2$ (data units)")
    if title is not None:
        ax.set_title(title, **({} if fontsize is None else {"fontsize": fontsize}))


def _check_mixture(mixture, dim: int, name: str):
    from ..denoisers import GaussianMixture

    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"{name} must be a dg.GaussianMixture, got {type(mixture).__name__}")
    if mixture.dim != dim:
        raise ValueError(f"{name} must be {dim}-D, got a {mixture.dim}-D mixture")
    return mixture


def _check_points(points, dim: int, name: str):
    """Data points for an :class:`~diffusion_geometry.EmpiricalDenoiser`: a float64 tensor ``(n, dim)``."""
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != dim or len(points) == 0:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"{name} must be a tensor of shape (n, {dim}) with n >= 1, got {shape}")
    return points.to(torch.float64)


def _check_xlim(xlim):
    try:
        lo, hi = (float(v) for v in xlim)
    except (TypeError, ValueError):
        raise ValueError(f"xlim must be a pair of numbers (lo, hi), got {xlim!r}") from None
    if not lo < hi:
        raise ValueError(f"xlim must satisfy lo < hi, got {xlim!r}")
    return lo, hi


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def draw_marginal_1d(*, fig=None, sigma=1.0, mixture=None, xlim=(-6.0, 6.0), score_ylim=8.0,
                     n_points: int = 801):
    r"""The noised marginal :math:`p_\sigma = p_0 * N(0, \sigma^2)` of a 1-D Gaussian mixture (top)
    and its score :math:`\partial_x \log p_\sigma` (bottom), with :math:`p_0` dashed for reference.

    The curves come from :meth:`GaussianMixture.log_prob` and :meth:`GaussianMixture.score` (the
    closed forms; Chen et al. 2023, §2; Song et al. 2021), evaluated at ``n_points`` points of
    ``xlim``. ``mixture`` defaults to :func:`diffusion_geometry.datasets.mixture_1d`; the score panel
    is clipped to ``±score_ylim``. Raises ``TypeError``/``ValueError`` on a bad ``sigma`` (must be
    >= 0), a mixture that is not 1-D, a bad ``xlim``, ``score_ylim <= 0`` or ``n_points < 2``.
    """
    from ..datasets import mixture_1d

    sigma = check_sigma(sigma)
    mixture = _check_mixture(mixture_1d() if mixture is None else mixture, 1, "mixture")
    lo, hi = _check_xlim(xlim)
    if not (isinstance(score_ylim, (int, float)) and score_ylim > 0):
        raise ValueError(f"score_ylim must be a positive number, got {score_ylim!r}")
    _check_int(n_points, "n_points", 2)
    xs = torch.linspace(lo, hi, n_points, dtype=mixture.means.dtype)[:, None]
    p0 = mixture.log_prob(xs, 0.0).exp()
    p = mixture.log_prob(xs, sigma).exp()
    score = mixture.score(xs, sigma)[:, 0]
    x = xs[:, 0].numpy()

    fig = new_figure(fig, figsize=(7.0, 5.2))
    _set_size(fig, (7.0, 5.2))
    ax_p, ax_s = fig.subplots(2, 1, sharex=True)
    ax_p.plot(x, p0.numpy(), "--", color=OKABE_ITO[7], lw=1, label=r"$p_0$ (data)")
    ax_p.fill_between(x, p.numpy(), color=OKABE_ITO[0], alpha=0.25)
    ax_p.plot(x, p.numpy(), color=OKABE_ITO[0], lw=2, label=rf"$p_\sigma$, $\sigma = {sigma:.3g}$")
    ax_p.set_ylim(0, 1.05 * float(p0.max()))
    ax_p.set_ylabel("density (1 / unit of x)")
    ax_p.set_title(rf"Noised marginal $p_\sigma = p_0 * \mathcal{{N}}(0, \sigma^2)$ at $\sigma = {sigma:.3g}$")
    ax_p.legend(loc="upper left", fontsize=9)
    ax_s.axhline(0, color=OKABE_ITO[7], lw=0.6)
    ax_s.plot(x, score.clamp(-score_ylim * 1.5, score_ylim * 1.5).numpy(), color=OKABE_ITO[3], lw=2,
              label=r"score $\partial_x \log p_\sigma(x)$")
    ax_s.set_ylim(-score_ylim, score_ylim)
    ax_s.set_xlim(lo, hi)
    ax_s.set_xlabel("x (data units)")
    ax_s.set_ylabel("score (1 / unit of x)")
    ax_s.legend(loc="upper left", fontsize=9)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.10, top=0.93, hspace=0.12)  # fixed: cheap per frame
    return fig


def draw_denoiser(*, fig=None, sigma=1.0, mixture=None, points=None, mixture_2d=None, points_2d=None,
                  xlim=(-5.0, 5.0), grid: int = 13):
    r"""What a denoiser does at noise level ``sigma``, in three panels.

    Left: 1-D curves :math:`x \mapsto D(x;\sigma)` of the exact mixture denoiser
    (:meth:`GaussianMixture.denoise`) and of the optimal denoiser of the finite set ``points``
    (:class:`EmpiricalDenoiser`, a softmax-weighted mean; Karras et al. 2022, App. B.3), with the
    identity for reference. Middle and right: arrows from grid points :math:`x` to :math:`D(x;\sigma)`
    (drawn to scale, so an arrow is the displacement :math:`D - x = \sigma^2 \nabla \log p_\sigma`)
    for the 2-D mixture ``mixture_2d`` and for the finite set ``points_2d`` (tensors ``(n, 1)`` and
    ``(n, 2)``), on a ``grid`` x ``grid`` lattice.
    Defaults: :func:`~diffusion_geometry.datasets.mixture_1d`, 8 of its samples,
    :func:`~diffusion_geometry.datasets.mixture_2d` and 12 of its samples (fixed seeds).
    Raises ``TypeError``/``ValueError`` on ``sigma <= 0``, mixtures of the wrong dimension, points of
    the wrong shape, a bad ``xlim`` or ``grid < 2``.
    """
    from ..datasets import mixture_1d as _m1
    from ..datasets import mixture_2d as _m2
    from ..denoisers import EmpiricalDenoiser

    sigma = check_sigma(sigma, positive=True)  # the optimal denoiser of a finite set is undefined at 0
    mixture = _check_mixture(_m1() if mixture is None else mixture, 1, "mixture")
    mixture_2d = _check_mixture(_m2() if mixture_2d is None else mixture_2d, 2, "mixture_2d")
    if points is None:
        points = mixture.sample(8, generator=torch.Generator().manual_seed(0))
    if points_2d is None:
        points_2d = mixture_2d.sample(12, generator=torch.Generator().manual_seed(1))
    points = _check_points(points, 1, "points")
    points_2d = _check_points(points_2d, 2, "points_2d")
    lo, hi = _check_xlim(xlim)
    _check_int(grid, "grid", 2)

    xs = torch.linspace(lo, hi, 601, dtype=torch.float64)[:, None]
    d_mix = mixture.denoise(xs, sigma)[:, 0]
    d_emp = EmpiricalDenoiser(points).denoise(xs, sigma)[:, 0]

    fig = new_figure(fig, figsize=(13.0, 4.4))
    _set_size(fig, (13.0, 4.4))
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1, 1]})
    x = xs[:, 0].numpy()
    ax1.plot(x, x, ":", color=OKABE_ITO[7], lw=1, label="identity $D = x$")
    ax1.plot(x, d_mix.numpy(), color=OKABE_ITO[0], lw=2, label="mixture (exact)")
    ax1.plot(x, d_emp.numpy(), color=OKABE_ITO[1], lw=2, label=f"{len(points)} points (optimal)")
    ax1.plot(points[:, 0].numpy(), [lo] * len(points), "|", color=OKABE_ITO[1], ms=14, mew=2)
    ax1.set_xlim(lo, hi)
    ax1.set_ylim(lo, hi)
    ax1.set_xlabel("noisy input x (data units)")
    ax1.set_ylabel(r"$D(x;\sigma)$ (data units)")
    ax1.set_title(rf"1-D denoisers at $\sigma = {sigma:.3g}$")
    ax1.legend(loc="upper left", fontsize=8)

    g = torch.linspace(-3.2, 3.2, grid, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    q = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    for ax, den, data, colour_, title in (
        (ax2, mixture_2d.denoise, mixture_2d.sample(400, generator=torch.Generator().manual_seed(2)),
         OKABE_ITO[0], "2-D mixture (exact)"),
        (ax3, EmpiricalDenoiser(points_2d).denoise, points_2d, OKABE_ITO[1],
         f"{len(points_2d)} points (optimal)"),
    ):
        arrow = (den(q, sigma) - q).numpy()
        ax.scatter(data[:, 0].numpy(), data[:, 1].numpy(), s=6 if len(data) > 50 else 30,
                   color=OKABE_ITO[7], alpha=0.35 if len(data) > 50 else 0.9, zorder=3)
        ax.quiver(q[:, 0].numpy(), q[:, 1].numpy(), arrow[:, 0], arrow[:, 1], color=colour_,
                  angles="xy", scale_units="xy", scale=1, width=0.004, alpha=0.8)
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        _plane_axes(ax, rf"{title}: $x \to D(x;\sigma)$", fontsize=None)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.91, wspace=0.28)  # fixed: cheap per frame
    return fig


def _trajectory_pair(x, denoised):
    """Sampling ``(T, B, 2)`` and denoising ``(T - 1, B, 2)`` trajectories, checked against each other."""
    xs = as_array(x, "x", 3, 2)
    ds = as_array(denoised, "denoised", 3, 2)
    if ds.shape[0] != xs.shape[0] - 1 or ds.shape[1] != xs.shape[1]:
        raise ValueError(f"denoised must have shape (T - 1, B, 2) = ({xs.shape[0] - 1}, {xs.shape[1]}, 2) "
                         f"for x of shape {xs.shape}, got {ds.shape}")
    return xs, ds


def _check_zoom(zoom) -> float:
    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not zoom > 0:
        raise ValueError(f"zoom must be a positive number (half-width of the zoomed view), got {zoom!r}")
    return float(zoom)


def _backdrop(ax, data):
    if data is not None:
        d = as_array(data, "data", 2, 2)
        ax.scatter(d[:, 0], d[:, 1], s=3, color="0.75", zorder=0, label="data samples")


def draw_trajectories_2d(*, fig=None, x, denoised, data=None, zoom=3.0):
    r"""Sampling and denoising trajectories of a 2-D run side by side (Chen et al. 2023, Fig. 1).

    Left: the sampling trajectories :math:`\{x_i\}` at full scale (they start on the circle of radius
    about :math:`\sigma_{\max}\sqrt2`); middle: the same, zoomed to ``[-zoom, zoom]^2`` around the
    data; right: the denoising trajectories :math:`\{D_i = D(x_i;\sigma_i)\}` in the same window.
    ``x``: ``(T, B, 2)``; ``denoised``: ``(T - 1, B, 2)``; ``data``: optional ``(n, 2)`` backdrop.
    Raises ``TypeError`` on non-numeric input and ``ValueError`` on other shapes or ``zoom <= 0``.
    """
    xs, ds = _trajectory_pair(x, denoised)
    zoom = _check_zoom(zoom)
    fig = new_figure(fig, (12.0, 4.2))
    axes = fig.subplots(1, 3)
    for b in range(xs.shape[1]):
        c = OKABE_ITO[b % 6]
        axes[0].plot(xs[:, b, 0], xs[:, b, 1], "-", color=c, lw=0.8, alpha=0.8)
        axes[1].plot(xs[:, b, 0], xs[:, b, 1], ".-", color=c, lw=0.8, ms=3, alpha=0.8)
        axes[2].plot(ds[:, b, 0], ds[:, b, 1], ".-", color=c, lw=0.8, ms=3, alpha=0.8)
    for ax in axes[1:]:
        _backdrop(ax, data)
        ax.set_xlim(-zoom, zoom)
        ax.set_ylim(-zoom, zoom)
    axes[0].plot(xs[-1, :, 0], xs[-1, :, 1], "k.", ms=2)
    axes[1].plot(xs[-1, :, 0], xs[-1, :, 1], "k.", ms=5, label="final samples")
    axes[2].plot(xs[-1, :, 0], xs[-1, :, 1], "k.", ms=5, label="final samples")
    titles = ("sampling trajectories $\\{x_i\\}$ (full view)",
              f"sampling trajectories (zoom to $\\pm${zoom:g})",
              "denoising trajectories $\\{D(x_i;\\sigma_i)\\}$ (same zoom)")
    for ax, t in zip(axes, titles):
        ax.set_aspect("equal")
        ax.set_xlabel("$x^{(1)}$ (data units)")
        ax.set_ylabel("$x^{(2)}$ (data units)")
        ax.set_title(t, fontsize=10)
    axes[2].legend(fontsize=8, loc="upper right")
    return finish(fig)


def draw_euler_step_2d(*, fig=None, step=0, sigmas, x, denoised, data=None, zoom=3.0):
    r"""One Euler step of a 2-D run, drawn as a convex combination (Chen et al. 2023, §3):
    :math:`x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}x_i + \big(1-\frac{\sigma_{i+1}}{\sigma_i}\big)D_i`
    lies on the segment from :math:`x_i` to its denoising output :math:`D_i`.

    Left: full view; right: zoom to ``[-zoom, zoom]^2``. The trajectories so far are drawn solid and
    the rest faint; the segments :math:`[x_i, D_i]` dashed, with :math:`x_i` (circle), :math:`D_i`
    (square) and :math:`x_{i+1}` (cross). ``sigmas`` ``(T,)``, ``x`` ``(T, B, 2)``, ``denoised``
    ``(T - 1, B, 2)`` from an Euler run; ``step`` in ``[0, T - 2]``. Raises ``ValueError`` otherwise.
    """
    xs, ds = _trajectory_pair(x, denoised)
    s = as_array(sigmas, "sigmas", 1)
    if s.shape[0] != xs.shape[0]:
        raise ValueError(f"sigmas must have {xs.shape[0]} levels (one per point of x), got {s.shape[0]}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < ds.shape[0]:
        raise ValueError(f"step must be an integer in [0, {ds.shape[0] - 1}], got {step!r}")
    zoom = _check_zoom(zoom)
    lam = 1 - s[step + 1] / s[step]
    fig = new_figure(fig, (10.0, 4.6))
    axes = fig.subplots(1, 2)
    for k, ax in enumerate(axes):
        if k == 1:
            _backdrop(ax, data)
        for b in range(xs.shape[1]):
            c = OKABE_ITO[b % 6]
            ax.plot(xs[:, b, 0], xs[:, b, 1], "-", color=c, lw=0.6, alpha=0.25)
            ax.plot(xs[: step + 1, b, 0], xs[: step + 1, b, 1], "-", color=c, lw=1.2)
            ax.plot([xs[step, b, 0], ds[step, b, 0]], [xs[step, b, 1], ds[step, b, 1]], "--", color=c, lw=1)
            ax.plot(*xs[step, b], "o", color=c, ms=6, mfc="none")
            ax.plot(*ds[step, b], "s", color=c, ms=6)
            ax.plot(*xs[step + 1, b], "x", color="k", ms=7)
        ax.set_aspect("equal")
        ax.set_xlabel("$x^{(1)}$ (data units)")
        ax.set_ylabel("$x^{(2)}$ (data units)")
    axes[1].set_xlim(-zoom, zoom)
    axes[1].set_ylim(-zoom, zoom)
    axes[0].set_title("full view: $x_i$ (o), $D_i$ (square), $x_{i+1}$ (x)", fontsize=10)
    axes[1].set_title(f"zoom to $\\pm${zoom:g} around the data", fontsize=10)
    fig.suptitle(f"Euler step {step}: $\\sigma_i$ = {s[step]:.3g} $\\to$ $\\sigma_{{i+1}}$ = {s[step + 1]:.3g}; "
                 f"$x_{{i+1}}$ lies {lam:.3f} of the way from $x_i$ to $D_i$", fontsize=11)
    return finish(fig)


def draw_finite_difference_step(*, fig=None, r=0.5, cases, data=None):
    r"""One generalised DPM-Solver-2 step in the plane, for the value ``r`` of its intermediate level.

    ``cases`` maps ``r`` to the dict of :func:`diffusion_geometry.finite_differences.step_anatomy`
    (one 2-D trajectory). Drawn: the exact sampling trajectory between the two levels (blue) and its
    denoising trajectory (orange); :math:`x_n`, :math:`D_n`, the intermediate point :math:`x_s` and
    :math:`D_s`; the finite-difference :math:`D_\text{eff}` (the step moves :math:`x_n` towards it) and the
    ideal :math:`D^\star_\text{eff}` that would land on the exact :math:`x(\sigma_{n+1})`. ``data``: optional
    ``(n, 2)`` points drawn in grey. Raises ``ValueError`` if ``cases`` is empty or has no entry ``r``.
    """
    cases = check_dict(cases, "cases", "r -> step_anatomy(...)")
    key = min(cases, key=lambda k: abs(float(k) - float(r)))
    if abs(float(key) - float(r)) > 1e-9:
        raise ValueError(f"no case for r={r}; available: {sorted(cases)}")
    c = cases[key]
    flat = {k: as_array(c[k], k).reshape(-1, 2)[0]  # the first trajectory's point
            for k in ("x", "den", "x_mid", "den_mid", "d_eff", "x_next", "x_exact", "d_eff_exact")}
    for k in ("path_x", "path_den"):  # (n_path, batch, 2) -> the first trajectory's curve
        arr = as_array(c[k], k)
        flat[k] = arr.reshape(arr.shape[0], -1)[:, :2]
    fig = new_figure(fig, (8.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    if data is not None:
        d = as_array(data, "data")
        if d.ndim != 2 or d.shape[1] != 2:
            raise ValueError(f"data must have shape (n, 2), got {d.shape}")
        ax.scatter(d[:, 0], d[:, 1], s=4, color="0.75", label="data", zorder=0)
    px, pd = flat["path_x"], flat["path_den"]
    ax.plot(px[:, 0], px[:, 1], "-", color=OKABE_ITO[0], lw=2, label=r"exact $x(\sigma)$, $\sigma_{n+1}\leq\sigma\leq\sigma_n$")
    ax.plot(pd[:, 0], pd[:, 1], "-", color=OKABE_ITO[1], lw=2, label=r"denoising trajectory $D(x(\sigma);\sigma)$")
    x, de = flat["x"], flat["d_eff"]
    ax.plot([x[0], de[0]], [x[1], de[1]], ":", color="k", lw=1)
    pts = [
        ("x", "o", OKABE_ITO[0], r"$x_n$"), ("den", "o", OKABE_ITO[1], r"$D_n$"),
        ("x_mid", "s", OKABE_ITO[5], r"$x_s$ (Euler to $s$)"), ("den_mid", "s", OKABE_ITO[3], r"$D_s = D(x_s; s)$"),
        ("d_eff", "*", OKABE_ITO[4], r"$D_\mathrm{eff}$ (finite difference)"),
        ("d_eff_exact", "*", "k", r"ideal $D^\star_\mathrm{eff}$"),
        ("x_next", "D", OKABE_ITO[4], r"$x_{n+1}$ (DPM-Solver-2)"), ("x_exact", "D", "k", r"exact $x(\sigma_{n+1})$"),
    ]
    for k, m, col, lab in pts:
        face = "none" if k in ("d_eff_exact", "x_exact") else col
        ax.plot(*flat[k], m, ms=11 if m == "*" else 7, mfc=face, mec=col, mew=1.5, ls="none", label=lab)
    allpts = np.concatenate([px, pd] + [flat[k][None] for k, *_ in pts])
    lo, hi = allpts.min(0), allpts.max(0)
    centre, half = (lo + hi) / 2, 0.6 * max(hi - lo) + 1e-9
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    _plane_axes(ax, f"DPM-Solver-2 step $\\sigma$ = {c['sigma']:.3g} → {c['sigma_next']:.3g}, r = {c['r']:.2f} "
                    f"(s = {c['s']:.3g})\nerror of $x_{{n+1}}$: {c['error']:.3f}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish(fig)


_REGION_COLOURS = OKABE_ITO[:7] + ("#999999",)  # no black: training points are drawn in black on top


def draw_basins(*, fig=None, basins):
    r"""Basins of attraction of the training points in 2-D, two ways (chapter 07).

    ``basins``: a :class:`diffusion_geometry.meanshift.Basins` from
    :func:`diffusion_geometry.meanshift.basins`, which computes everything drawn here. Left: each grid
    point coloured by the training point the probability-flow ODE with the optimal denoiser
    (annealed mean shift) started there at ``basins.sigma`` lands on. Right: coloured by the mode of
    :math:`p_\sigma` that mean shift at the fixed bandwidth ``basins.sigma`` climbs to (coloured like
    the training point nearest that mode; modes are crosses). Grey lines: contours of
    :math:`\log p_\sigma`. Raises ``TypeError`` unless ``basins`` is a ``Basins``.
    """
    from matplotlib.colors import ListedColormap

    from ..meanshift import Basins

    if not isinstance(basins, Basins):
        raise TypeError(f"basins must be a dg.meanshift.Basins (from dg.meanshift.basins), got {type(basins).__name__}")
    n_points = basins.points.shape[0]
    sigma = basins.sigma
    cmap = ListedColormap([_REGION_COLOURS[k % len(_REGION_COLOURS)] for k in range(n_points)])
    gx, gy = as_array(basins.gx, "gx", 1), as_array(basins.gy, "gy", 1)
    logp = as_array(basins.log_prob, "log_prob", 2)
    yn = as_array(basins.points, "points", 2, 2)
    fig = new_figure(fig, (10.0, 4.6))
    for k, (lab, title) in enumerate([
        (basins.annealed, f"annealed mean shift (ODE from $\\sigma$ = {sigma:.3g})\n"
                          f"{basins.n_basins} basins in view, one per training point"),
        (basins.fixed, f"mean shift at fixed bandwidth $\\sigma$ = {sigma:.3g}\n{basins.modes.shape[0]} mode(s) of $p_\\sigma$"),
    ]):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.pcolormesh(gx, gy, as_array(lab, "labels", 2), cmap=cmap, vmin=-0.5, vmax=n_points - 0.5,
                      alpha=0.55, shading="nearest", rasterized=True)
        ax.contour(gx, gy, logp, levels=8, colors="0.35", linewidths=0.6)
        ax.scatter(yn[:, 0], yn[:, 1], s=28, c="k", edgecolors="white", linewidths=0.8, zorder=3,
                   label="training points")
        if k == 1:
            mn = as_array(basins.modes, "modes", 2, 2)
            ax.scatter(mn[:, 0], mn[:, 1], marker="x", s=70, c="k", linewidths=2, zorder=4, label=r"modes of $p_\sigma$")
        _plane_axes(ax, title)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    return finish(fig)


def draw_denoiser_fields(*, fig=None, sigma: float = 1.0, learned, optimal, resolution: int = 60, n_arrows: int = 13):
    r"""Learned against optimal denoiser on the plane at one noise level (chapter 08's widget).

    Colour: :math:`\Vert D_\theta(x;\sigma) - D^*(x;\sigma)\Vert` over a ``resolution`` x
    ``resolution`` grid around the training set of ``optimal`` (an
    :class:`~diffusion_geometry.EmpiricalDenoiser` of 2-D points); arrows: the two displacements
    :math:`D(x;\sigma) - x` on an ``n_arrows`` x ``n_arrows`` grid (the score times :math:`\sigma^2`).
    ``learned``: any denoiser callable as ``learned(x, sigma)`` on ``(n, 2)`` float64 tensors. The two
    denoisers are evaluated here (one forward pass each per redraw, what a widget needs); the figure
    states no number that the chapter's prose claims. Raises ``TypeError`` on a ``optimal`` that is not
    2-D or a ``learned`` that is not callable, ``ValueError`` on ``sigma <= 0``.
    """
    from ..denoisers import EmpiricalDenoiser
    from ..meanshift import plane_grid

    sigma = check_sigma(sigma, positive=True)
    if not isinstance(optimal, EmpiricalDenoiser) or optimal.shape != (2,):
        raise TypeError("optimal must be an EmpiricalDenoiser of 2-D points")
    if not callable(learned):
        raise TypeError("learned must be a denoiser callable as learned(x, sigma)")
    y = optimal.training_points(torch.arange(len(optimal)))
    gx, gy, grid = plane_grid(y, resolution, 1.0)
    with torch.no_grad():
        gap = (learned(grid, sigma).to(grid.dtype) - optimal(grid, sigma)).norm(dim=1)
        _, _, coarse = plane_grid(y, n_arrows, 0.8)
        d_l = as_array(learned(coarse, sigma).to(coarse.dtype) - coarse, "learned displacement", 2)
        d_o = as_array(optimal(coarse, sigma) - coarse, "optimal displacement", 2)
    fig = new_figure(fig, (6.4, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    mesh = ax.pcolormesh(as_array(gx, "gx"), as_array(gy, "gy"), as_array(gap, "gap").reshape(resolution, resolution),
                         cmap="viridis", shading="nearest", rasterized=True)
    fig.colorbar(mesh, ax=ax, label=r"$\| D_\theta - D^*\|$ (data units)")
    c = as_array(coarse, "grid")
    span = float(np.ptp(c[:, 0]))
    scale = max(np.abs(d_o).max(), np.abs(d_l).max(), 1e-12) / (0.12 * span)
    ax.quiver(c[:, 0], c[:, 1], d_o[:, 0], d_o[:, 1], color=OKABE_ITO[1], angles="xy", scale_units="xy",
              scale=scale, width=0.004, label=r"optimal $D^* - x$")
    ax.quiver(c[:, 0], c[:, 1], d_l[:, 0], d_l[:, 1], color="white", angles="xy", scale_units="xy",
              scale=scale, width=0.0025, label=r"learned $D_\theta - x$")
    yn = as_array(y, "training points")
    ax.scatter(yn[:, 0], yn[:, 1], s=6, c=OKABE_ITO[3], zorder=3, label="training points")
    _plane_axes(ax, rf"$\sigma$ = {sigma:.3g}: median gap {float(gap.median()):.3g}")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.85)
    return finish(fig)


def draw_samples_vs_training(*, fig=None, panels):
    """Small multiples of 2-D point clouds: ``panels`` maps a title to ``(train (N, 2), samples (M, 2))``.

    Training points in black (under the samples when there are 200 or more), samples in blue, on
    shared axes. Raises ``ValueError`` if a panel is not a pair of ``(n, 2)`` arrays.
    """
    panels = check_dict(panels, "panels", "title -> (train, samples)")
    fig = new_figure(fig, (3.0 * len(panels) + 0.4, 3.4))
    first = None
    for k, (title, pair) in enumerate(panels.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"panels[{title!r}] must be a pair (train, samples)")
        tr = as_array(pair[0], f"panels[{title!r}] train")
        sm = as_array(pair[1], f"panels[{title!r}] samples")
        for name, arr in (("train", tr), ("samples", sm)):
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise ValueError(f"panels[{title!r}] {name} must have shape (n, 2), got {arr.shape}")
        ax = fig.add_subplot(1, len(panels), k + 1, sharex=first, sharey=first)
        first = first or ax
        big = len(tr) >= 200  # a large training set goes under the samples, a small one on top
        ax.scatter(sm[:, 0], sm[:, 1], s=4, color=OKABE_ITO[0], alpha=0.5, zorder=2, label="samples")
        ax.scatter(tr[:, 0], tr[:, 1], s=1.5 if big else 10, color="k", alpha=0.6 if big else 1.0,
                   zorder=1 if big else 3, label="training set")
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("$x_1$ (data units)")
        if k == 0:
            ax.set_ylabel("$x_2$ (data units)")
            ax.legend(fontsize=7, loc="lower left", markerscale=2)
    return finish(fig)
