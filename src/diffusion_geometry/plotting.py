"""Pure drawing functions behind the book's figures and widgets.

Convention: ``draw_something(*, fig=None, **params) -> matplotlib.figure.Figure``; with ``fig`` given
the function clears it and draws into it (so :func:`diffusion_geometry.widgets.animate` and
:func:`~diffusion_geometry.widgets.interact` can reuse one figure). No function here computes a
claim; they only draw what the package computes. Colours: the colour-blind-safe Okabe-Ito palette.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

__all__ = ["OKABE_ITO", "new_figure"]

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def new_figure(fig=None, figsize=(6.4, 4.0)):
    """``fig`` cleared, or a new figure of ``figsize`` (not shown until returned to Jupyter)."""
    if fig is None:
        fig = plt.figure(figsize=figsize)
    else:
        fig.clear()
    return fig


# --- chapter drawing functions are appended below, one section per chapter ----------------------


# --------------------------------------------------------------------------------------------------
# Part I, chapters 1-2: the variance-exploding SDE and the denoiser
# --------------------------------------------------------------------------------------------------


def _check_sigma(sigma) -> float:
    """A noise level as a float; a clear error for anything that is not a finite number >= 0."""
    import math

    if isinstance(sigma, (bool, str, bytes)):
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__}")
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sigma must be finite and non-negative, got {value}")
    return value


def _check_mixture(mixture, dim: int, name: str):
    from .denoisers import GaussianMixture

    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"{name} must be a dg.GaussianMixture, got {type(mixture).__name__}")
    if mixture.dim != dim:
        raise ValueError(f"{name} must be {dim}-D, got a {mixture.dim}-D mixture")
    return mixture


def _check_points(points, dim: int, name: str):
    import torch

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


def draw_marginal_1d(*, fig=None, sigma=1.0, mixture=None, xlim=(-6.0, 6.0), score_ylim=8.0,
                     n_points: int = 801):
    r"""The noised marginal :math:`p_\sigma = p_0 * N(0, \sigma^2)` of a 1-D Gaussian mixture (top)
    and its score :math:`\partial_x \log p_\sigma` (bottom), with :math:`p_0` dashed for reference.

    The curves come from :meth:`GaussianMixture.log_prob` and :meth:`GaussianMixture.score` (the
    closed forms; Chen et al. 2023, §2; Song et al. 2021). ``mixture`` defaults to
    :func:`diffusion_geometry.datasets.mixture_1d`; the score panel is clipped to ``±score_ylim``.
    """
    import torch

    from .datasets import mixture_1d

    sigma = _check_sigma(sigma)
    mixture = _check_mixture(mixture_1d() if mixture is None else mixture, 1, "mixture")
    lo, hi = _check_xlim(xlim)
    if not (isinstance(score_ylim, (int, float)) and score_ylim > 0):
        raise ValueError(f"score_ylim must be a positive number, got {score_ylim!r}")
    if not isinstance(n_points, int) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    xs = torch.linspace(lo, hi, n_points, dtype=mixture.means.dtype)[:, None]
    p0 = mixture.log_prob(xs, 0.0).exp()
    p = mixture.log_prob(xs, sigma).exp()
    score = mixture.score(xs, sigma)[:, 0]
    x = xs[:, 0].numpy()

    fig = new_figure(fig, figsize=(7.0, 5.2))
    fig.set_size_inches(7.0, 5.2)  # also when drawing into a widget's figure
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
    for the 2-D mixture ``mixture_2d`` and for the finite set ``points_2d``.
    Defaults: :func:`~diffusion_geometry.datasets.mixture_1d`, 8 of its samples,
    :func:`~diffusion_geometry.datasets.mixture_2d` and 12 of its samples (fixed seeds).
    """
    import torch

    from .datasets import mixture_1d as _m1
    from .datasets import mixture_2d as _m2
    from .denoisers import EmpiricalDenoiser

    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma must be positive: the optimal denoiser of a finite set is undefined at 0")
    mixture = _check_mixture(_m1() if mixture is None else mixture, 1, "mixture")
    mixture_2d = _check_mixture(_m2() if mixture_2d is None else mixture_2d, 2, "mixture_2d")
    if points is None:
        points = mixture.sample(8, generator=torch.Generator().manual_seed(0))
    if points_2d is None:
        points_2d = mixture_2d.sample(12, generator=torch.Generator().manual_seed(1))
    points = _check_points(points, 1, "points")
    points_2d = _check_points(points_2d, 2, "points_2d")
    lo, hi = _check_xlim(xlim)
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid!r}")

    xs = torch.linspace(lo, hi, 601, dtype=torch.float64)[:, None]
    d_mix = mixture.denoise(xs, sigma)[:, 0]
    d_emp = EmpiricalDenoiser(points).denoise(xs, sigma)[:, 0]

    fig = new_figure(fig, figsize=(13.0, 4.4))
    fig.set_size_inches(13.0, 4.4)  # also when drawing into a widget's figure
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
    for ax, den, data, colour, title in (
        (ax2, mixture_2d.denoise, mixture_2d.sample(400, generator=torch.Generator().manual_seed(2)),
         OKABE_ITO[0], "2-D mixture (exact)"),
        (ax3, EmpiricalDenoiser(points_2d).denoise, points_2d, OKABE_ITO[1],
         f"{len(points_2d)} points (optimal)"),
    ):
        arrow = (den(q, sigma) - q).numpy()
        ax.scatter(data[:, 0].numpy(), data[:, 1].numpy(), s=6 if len(data) > 50 else 30,
                   color=OKABE_ITO[7], alpha=0.35 if len(data) > 50 else 0.9, zorder=3)
        ax.quiver(q[:, 0].numpy(), q[:, 1].numpy(), arrow[:, 0], arrow[:, 1], color=colour,
                  angles="xy", scale_units="xy", scale=1, width=0.004, alpha=0.8)
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$ (data units)")
        ax.set_ylabel("$x_2$ (data units)")
        ax.set_title(rf"{title}: $x \to D(x;\sigma)$")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.91, wspace=0.28)  # fixed: cheap per frame
    return fig


__all__ += ["draw_marginal_1d", "draw_denoiser"]


# --- Part IV: image-scale trajectories (chapter 09) and samplers (chapter 10) ---------------------


def _p4_np(v):
    """A tensor or array-like as a float64 numpy array (detached, on the CPU)."""
    import numpy as np
    import torch

    if isinstance(v, torch.Tensor):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


def _p4_check(curves, name="curves"):
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"{name} must be a non-empty dict of label -> values")
    return curves


def _p4_band(ax, xs, vals, color, label, *, alpha=0.2):
    """Mean over the batch axis with a +-1 std band; ``vals`` is ``(T, batch)``."""
    v = _p4_np(vals)
    if v.ndim == 1:
        v = v[:, None]
    if v.shape[0] != len(xs):
        raise ValueError(f"{label}: {v.shape[0]} values for {len(xs)} noise levels")
    mean, std = v.mean(1), v.std(1)
    ax.plot(xs, mean, color=color, label=label, lw=1.8)
    if v.shape[1] > 1:
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=alpha, lw=0)


def draw_norms_vs_sigma(*, fig=None, sigmas, curves, dim):
    r"""Mean (+-1 std) norms against sigma, log-log, with the shell radius :math:`\sigma\sqrt d` dashed.

    ``curves``: label -> ``(T, batch)`` norms at the first ``T`` levels of ``sigmas``.
    """
    import numpy as np

    curves = _p4_check(curves)
    if not dim >= 1:
        raise ValueError(f"dim must be positive, got {dim}")
    s = _p4_np(sigmas)
    fig = new_figure(fig, (6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, vals) in enumerate(curves.items()):
        t = _p4_np(vals).shape[0]
        _p4_band(ax, s[:t], vals, OKABE_ITO[k % len(OKABE_ITO)], label)
    pos = s[s > 0]
    ax.plot(pos, pos * np.sqrt(dim), ls="--", color="0.4", lw=1, label=r"$\sigma\sqrt{d}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"noise level $\sigma$ (decreasing to the right)")
    ax.set_ylabel(r"$\ell_2$ norm (pixel units, images in $[-1, 1]$)")
    ax.set_title(f"Norms along trajectories, d = {dim}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_chord_statistics(*, fig=None, panels):
    r"""Deviation from the chord (left axis) and distance to the end point (right axis) against sigma,
    mean +-1 std over trajectories, one panel per entry (Chen et al. 2023, Fig. 2b).

    ``panels``: title -> dict with ``sigmas`` ``(T,)``, ``deviation`` and ``distance`` ``(T, batch)``.
    """
    panels = _p4_check(panels, "panels")
    fig = new_figure(fig, (5.2 * len(panels), 3.8))
    for k, (title, p) in enumerate(panels.items()):
        missing = {"sigmas", "deviation", "distance"} - set(p)
        if missing:
            raise ValueError(f"panel {title!r} lacks {sorted(missing)}")
        s = _p4_np(p["sigmas"])
        ax = fig.add_subplot(1, len(panels), k + 1)
        _p4_band(ax, s, p["deviation"], OKABE_ITO[3], "deviation from the chord")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel("deviation from the chord (L2)", color=OKABE_ITO[3])
        ax2 = ax.twinx()
        _p4_band(ax2, s, p["distance"], OKABE_ITO[0], "distance to the end point")
        ax2.set_ylabel("distance to the end point (L2)", color=OKABE_ITO[0])
        ax.set_title(title)
        lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def draw_cosine_to_end(*, fig=None, sigmas, curves):
    r"""Cosine between the ODE direction and the direction to the end point against sigma.

    ``curves``: label -> ``(T', batch)`` cosines at the first ``T'`` levels of ``sigmas``.
    """
    curves = _p4_check(curves)
    s = _p4_np(sigmas)
    fig = new_figure(fig, (6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, vals) in enumerate(curves.items()):
        _p4_band(ax, s[: _p4_np(vals).shape[0]], vals, OKABE_ITO[k % len(OKABE_ITO)], label)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel(r"$\cos(\varepsilon(x_\sigma), x_\sigma - x_\mathrm{end})$")
    ax.set_title("Does each step point at the final sample?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_trajectory_pca(*, fig=None, sigmas, explained, rel_error, n_show=6):
    r"""Per-trajectory PCA (Zhou et al. 2024, AMED Fig. 4): left, the variance *not* explained by the
    first k components (log scale) for each trajectory set; right, the relative 2-component projection
    error :math:`\lVert x_t - \tilde x_t\rVert/\lVert x_t\rVert` against sigma.

    ``explained``: label -> ``(batch, K)`` cumulative explained fractions; ``rel_error``: label ->
    ``(T, batch)``.
    """
    import numpy as np

    explained, rel_error = _p4_check(explained, "explained"), _p4_check(rel_error, "rel_error")
    s = _p4_np(sigmas)
    fig = new_figure(fig, (10.0, 3.8))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for k, (label, ev) in enumerate(explained.items()):
        e = _p4_np(ev)[:, :n_show]
        ks = np.arange(1, e.shape[1] + 1)
        un = np.clip(1 - e, 1e-12, None)
        c = OKABE_ITO[k % len(OKABE_ITO)]
        ax1.plot(ks, np.median(un, 0), "o-", color=c, label=f"{label} (median)")
        ax1.fill_between(ks, un.min(0), un.max(0), color=c, alpha=0.2, lw=0)
    ax1.set_yscale("log")
    ax1.set_xlabel("number of principal components k")
    ax1.set_ylabel("fraction of variance not explained")
    ax1.set_title("Each trajectory is nearly 2-D")
    ax1.legend(fontsize=8)
    for k, (label, re) in enumerate(rel_error.items()):
        _p4_band(ax2, s[: _p4_np(re).shape[0]], re, OKABE_ITO[k % len(OKABE_ITO)], label)
    ax2.set_xscale("log")
    ax2.invert_xaxis()
    ax2.set_xlabel(r"noise level $\sigma$")
    ax2.set_ylabel("relative 2-PC projection error")
    ax2.set_title("Error of the 2-D approximation")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_boomerang(*, fig=None, coords, elev=20.0, azim=-60.0, title="The boomerang"):
    r"""The 3-D projection of trajectories (Chen et al. 2024, GITS Fig. 4): the chord direction
    against the top two principal directions orthogonal to it; every trajectory ends at the origin.

    ``coords``: label -> ``(T, batch, 3)`` from :func:`diffusion_geometry.geometry.boomerang_projection`
    (one 3-D panel per label). ``elev``, ``azim``: the viewing angles in degrees.
    """
    coords = _p4_check(coords, "coords")
    fig = new_figure(fig, (5.0 * len(coords), 4.4))
    for k, (label, c) in enumerate(coords.items()):
        a = _p4_np(c)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{label}: coords must have shape (T, batch, 3), got {a.shape}")
        ax = fig.add_subplot(1, len(coords), k + 1, projection="3d")
        for b in range(a.shape[1]):
            ax.plot(a[:, b, 0], a[:, b, 1], a[:, b, 2], color=OKABE_ITO[k % len(OKABE_ITO)], lw=0.8, alpha=0.7)
        ax.scatter([0], [0], [0], color="k", s=12)
        ax.set_xlabel("along the chord")
        ax.set_ylabel("PC 1 (orthogonal)")
        ax.set_zlabel("PC 2 (orthogonal)")
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(f"{title}: {label}\n({a.shape[1]} trajectories, L2 units)", fontsize=10)
    fig.tight_layout()
    return fig


def draw_image_rows(*, fig=None, rows, col_labels=None, title=None):
    """Rows of images with a label each (e.g. the sampling and the denoising trajectory of one run).

    ``rows``: label -> images ``(n, C, H, W)`` in ``[-1, 1]``; all rows have the same ``n``.
    ``col_labels``: ``n`` strings written under the columns (e.g. the noise levels).
    """
    from .imaging import image_grid

    rows = _p4_check(rows, "rows")
    ns = {int(v.shape[0]) for v in rows.values()}
    if len(ns) != 1:
        raise ValueError(f"rows must have the same number of images, got {sorted(ns)}")
    n = ns.pop()
    if col_labels is not None and len(col_labels) != n:
        raise ValueError(f"col_labels needs {n} entries, got {len(col_labels)}")
    fig = new_figure(fig, (max(6.0, 0.9 * n + 1.5), 0.95 * len(rows) + 0.8))
    for k, (label, imgs) in enumerate(rows.items()):
        ax = fig.add_subplot(len(rows), 1, k + 1)
        ax.imshow(image_grid(imgs, nrow=n, pad=1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        if col_labels is not None and k == len(rows) - 1:
            h, w = imgs.shape[-2:]
            ax.set_xticks([1 + j * (w + 1) + w / 2 for j in range(n)])
            ax.set_xticklabels(col_labels, fontsize=8)
            ax.set_xlabel(r"noise level $\sigma$ of the step")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def draw_fd_per_step(*, fig=None, sigmas, curves, target=None):
    r"""FD to the test set of the points of each trajectory at every step (log scale), against sigma.

    ``curves``: label -> ``(T,)`` FD values at the first ``T`` levels of ``sigmas``; ``target``: an
    FD level drawn as a horizontal line (e.g. the level both trajectories must reach).
    """
    curves = _p4_check(curves)
    s = _p4_np(sigmas)
    fig = new_figure(fig, (6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, v) in enumerate(curves.items()):
        v = _p4_np(v)
        ax.plot(s[: len(v)], v, "o-", ms=3, color=OKABE_ITO[k % len(OKABE_ITO)], label=label)
    if target is not None:
        ax.axhline(target, ls="--", color="0.4", lw=1, label=f"target FD {target:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.invert_xaxis()
    ax.set_xlabel(r"noise level $\sigma$ of the step")
    ax.set_ylabel("FD to the test set (classifier features)")
    ax.set_title("Which trajectory looks like data first?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_nn_distances(*, fig=None, groups, reference=None, reference_label="reference"):
    """Distances from samples to their nearest training image, one horizontal strip per group (log x).

    ``groups``: label -> ``(N,)`` distances; ``reference``: a distance drawn as a vertical line.
    """
    import numpy as np

    groups = _p4_check(groups, "groups")
    fig = new_figure(fig, (6.4, 0.7 * len(groups) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)
    for k, (label, d) in enumerate(groups.items()):
        d = _p4_np(d).ravel()
        if (d <= 0).any():
            raise ValueError(f"{label}: distances must be positive for a log axis")
        ax.scatter(d, k + rng.uniform(-0.2, 0.2, size=d.shape), s=8, color=OKABE_ITO[k % len(OKABE_ITO)],
                   alpha=0.7)
        ax.plot([np.median(d)] * 2, [k - 0.3, k + 0.3], color="k", lw=1.5)
    if reference is not None:
        ax.axvline(reference, ls="--", color="0.3", lw=1, label=reference_label)
        ax.legend(fontsize=8, loc="upper left")
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(list(groups), fontsize=9)
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_xscale("log")
    ax.set_xlabel("L2 distance to the nearest training image (black bar: median)")
    ax.set_title("How far are samples from the training set?")
    fig.tight_layout()
    return fig


def draw_trajectory_step(*, fig=None, step, sigmas, x, denoised, coords, label="trajectory"):
    r"""One step of one image trajectory: :math:`x_\sigma`, :math:`D(x_\sigma;\sigma)`, and where the
    step sits on the trajectory's 2-D projection (chord coordinate against the first orthogonal PC).

    ``x``: ``(T, C, H, W)`` the sampling trajectory; ``denoised``: ``(T - 1, C, H, W)`` its denoiser
    outputs; ``coords``: ``(T, 3)`` its :func:`~diffusion_geometry.geometry.boomerang_projection`;
    ``step`` in ``[0, T - 2]`` (the steps where the denoiser was evaluated).
    """
    from .imaging import to_unit

    s = _p4_np(sigmas)
    c = _p4_np(coords)
    if x.ndim != 4 or denoised.ndim != 4 or c.ndim != 2 or c.shape[1] != 3:
        raise ValueError("x, denoised must be (T, C, H, W) and coords (T, 3)")
    if not (isinstance(step, int) and 0 <= step < denoised.shape[0]):
        raise ValueError(f"step must be an integer in [0, {denoised.shape[0] - 1}], got {step!r}")
    fig = new_figure(fig, (10.0, 3.3))
    gs = fig.add_gridspec(1, 4)
    for j, (img, name) in enumerate(((x[step], r"$x_\sigma$ (sampling)"), (denoised[step], r"$D(x_\sigma;\sigma)$ (denoising)"))):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(to_unit(img)[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    ax = fig.add_subplot(gs[0, 2:])
    ax.plot(c[:, 0], c[:, 1], "-", color=OKABE_ITO[0], lw=1.2, label=label)
    ax.plot(c[step, 0], c[step, 1], "o", color=OKABE_ITO[3], ms=8, label=fr"step {step}: $\sigma$ = {s[step]:.3g}")
    ax.set_xlabel(r"coordinate along the chord (L2 units; end at 0)")
    ax.set_ylabel("first orthogonal PC (L2 units)")
    ax.set_title("Position on the trajectory", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _p4_nfe_axes(ax, all_nfe, floor, floor_label):
    """Log-log FD-against-NFE axes with plain-number ticks at the budgets used."""
    import numpy as np
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    if floor is not None:
        ax.axhline(floor, ls=":", color="0.3", lw=1.2, label=f"{floor_label} ({floor:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = np.unique(np.concatenate(all_nfe))
    if len(ticks) > 12:
        nice = np.array([1, 2, 3, 5, 7, 10, 15, 20, 35, 50, 100])
        ticks = nice[(nice >= ticks.min()) & (nice <= ticks.max())]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    for axis in (ax.yaxis,):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("NFE (denoiser evaluations per sample)")
    ax.set_ylabel("FD to the test set (classifier features)")


def draw_fd_vs_nfe(*, fig=None, results, floor=None, floor_label="train vs test", title="Sample quality against NFE"):
    """FD against NFE (log-log), one line per sampler/schedule.

    ``results``: label -> ``(nfe values, FD values)``; ``floor``: a reference FD drawn as a
    horizontal line (e.g. real training images against the test set at the same sample size).
    """
    results = _p4_check(results, "results")
    fig = new_figure(fig, (7.2, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    markers = "os^vD<>ph*"
    all_nfe = []
    for k, (label, (nfe, vals)) in enumerate(results.items()):
        nfe, vals = _p4_np(nfe), _p4_np(vals)
        if nfe.shape != vals.shape:
            raise ValueError(f"{label}: {nfe.shape} NFE values but {vals.shape} FD values")
        all_nfe.append(nfe)
        ls = "-" if k < len(OKABE_ITO) else "--"
        ax.plot(nfe, vals, ls, marker=markers[k % len(markers)], ms=4,
                color=OKABE_ITO[k % len(OKABE_ITO)], label=label)
    _p4_nfe_axes(ax, all_nfe, floor, floor_label)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def draw_schedule_comparison(*, fig=None, results, floor=None, floor_label="train vs test"):
    """FD against NFE for several samplers and schedules: one panel per sampler, one colour per schedule.

    ``results``: ``(sampler, schedule)`` -> ``(nfe values, FD values)``; all panels share the y axis.
    """
    results = _p4_check(results, "results")
    if not all(isinstance(k, tuple) and len(k) == 2 for k in results):
        raise ValueError("results keys must be (sampler, schedule) pairs")
    samplers = list(dict.fromkeys(k[0] for k in results))
    schedules = list(dict.fromkeys(k[1] for k in results))
    fig = new_figure(fig, (4.0 * len(samplers), 3.8))
    axes = fig.subplots(1, len(samplers), sharey=True, squeeze=False)[0]
    markers = "os^vD<>ph*"
    for ax, sampler in zip(axes, samplers):
        all_nfe = []
        for j, sched in enumerate(schedules):
            if (sampler, sched) not in results:
                continue
            nfe, vals = (_p4_np(v) for v in results[(sampler, sched)])
            if nfe.shape != vals.shape:
                raise ValueError(f"{sampler}, {sched}: {nfe.shape} NFE values but {vals.shape} FD values")
            all_nfe.append(nfe)
            ax.plot(nfe, vals, "-", marker=markers[j % len(markers)], ms=4, color=OKABE_ITO[j % len(OKABE_ITO)],
                    label=sched)
        _p4_nfe_axes(ax, all_nfe, floor, floor_label)
        ax.set_title(sampler)
        if ax is not axes[0]:
            ax.set_ylabel("")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_samples_at_nfe(*, fig=None, nfe, samples, n_show=8):
    """The first ``n_show`` samples of every sampler at one NFE, one row per sampler (same noise).

    ``samples``: label -> {nfe: images ``(n, C, H, W)``}; samplers without a run at ``nfe`` are skipped.
    """
    rows = {}
    for label, by_nfe in _p4_check(samples, "samples").items():
        if nfe in by_nfe:
            rows[label] = by_nfe[nfe][:n_show]
    if not rows:
        raise ValueError(f"no sampler has samples at NFE {nfe}")
    return draw_image_rows(fig=fig, rows=rows, title=f"Samples at NFE = {nfe} (same initial noise in every row)")


def draw_schedules(*, fig=None, grids):
    """Noise levels of several grids against the step index (log y): where each spends its steps.

    ``grids``: label -> 1-D tensor of levels (a trailing 0 is not drawn).
    """
    grids = _p4_check(grids, "grids")
    fig = new_figure(fig, (6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, g) in enumerate(grids.items()):
        g = _p4_np(g)
        g = g[g > 0]
        ax.plot(range(len(g)), g, "o-", ms=4, color=OKABE_ITO[k % len(OKABE_ITO)], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step index i")
    ax.set_ylabel(r"noise level $\sigma_i$")
    ax.set_title("Time schedules")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ += [
    "draw_norms_vs_sigma", "draw_chord_statistics", "draw_cosine_to_end", "draw_trajectory_pca",
    "draw_boomerang", "draw_image_rows", "draw_fd_per_step", "draw_nn_distances",
    "draw_trajectory_step", "draw_fd_vs_nfe", "draw_samples_at_nfe", "draw_schedules",
    "draw_schedule_comparison",
]


# --------------------------------------------------------------------------------------------------
# Part I, chapters 3-4: sampling and denoising trajectories in 2-D; high-dimensional geometry
# --------------------------------------------------------------------------------------------------


def _p1b_array(v, name: str, ndim: int | None = None, last: int | None = None):
    """``v`` (tensor or array-like) as a float64 numpy array, with a clear error on a wrong shape."""
    import numpy as np
    import torch

    if isinstance(v, torch.Tensor):
        a = v.detach().cpu().double().numpy()
    else:
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a tensor or an array of numbers") from None
    if (ndim is not None and a.ndim != ndim) or (last is not None and a.shape[-1] != last) or a.size == 0:
        want = f"{ndim}-D" + (f" with last axis {last}" if last is not None else "")
        raise ValueError(f"{name} must be a non-empty {want} array, got shape {a.shape}")
    return a


def _p1b_pair(x, denoised):
    """Sampling ``(T, B, 2)`` and denoising ``(T - 1, B, 2)`` trajectories, checked against each other."""
    xs = _p1b_array(x, "x", 3, 2)
    ds = _p1b_array(denoised, "denoised", 3, 2)
    if ds.shape[0] != xs.shape[0] - 1 or ds.shape[1] != xs.shape[1]:
        raise ValueError(f"denoised must have shape (T - 1, B, 2) = ({xs.shape[0] - 1}, {xs.shape[1]}, 2) "
                         f"for x of shape {xs.shape}, got {ds.shape}")
    return xs, ds


def _p1b_zoom(zoom) -> float:
    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not zoom > 0:
        raise ValueError(f"zoom must be a positive number (half-width of the zoomed view), got {zoom!r}")
    return float(zoom)


def _p1b_data(ax, data):
    if data is not None:
        d = _p1b_array(data, "data", 2, 2)
        ax.scatter(d[:, 0], d[:, 1], s=3, color="0.75", zorder=0, label="data samples")


def draw_trajectories_2d(*, fig=None, x, denoised, data=None, zoom=3.0):
    r"""Sampling and denoising trajectories of a 2-D run side by side (Chen et al. 2023, Fig. 1).

    Left: the sampling trajectories :math:`\{x_i\}` at full scale (they start on the circle of radius
    about :math:`\sigma_{\max}\sqrt2`); middle: the same, zoomed to ``[-zoom, zoom]^2`` around the
    data; right: the denoising trajectories :math:`\{D_i = D(x_i;\sigma_i)\}` in the same window.
    ``x``: ``(T, B, 2)``; ``denoised``: ``(T - 1, B, 2)``; ``data``: optional ``(n, 2)`` backdrop.
    """
    xs, ds = _p1b_pair(x, denoised)
    zoom = _p1b_zoom(zoom)
    fig = new_figure(fig, (12.0, 4.2))
    axes = fig.subplots(1, 3)
    for b in range(xs.shape[1]):
        c = OKABE_ITO[b % 6]
        axes[0].plot(xs[:, b, 0], xs[:, b, 1], "-", color=c, lw=0.8, alpha=0.8)
        axes[1].plot(xs[:, b, 0], xs[:, b, 1], ".-", color=c, lw=0.8, ms=3, alpha=0.8)
        axes[2].plot(ds[:, b, 0], ds[:, b, 1], ".-", color=c, lw=0.8, ms=3, alpha=0.8)
    for ax in axes[1:]:
        _p1b_data(ax, data)
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
    fig.tight_layout()
    return fig


def draw_euler_step_2d(*, fig=None, step=0, sigmas, x, denoised, data=None, zoom=3.0):
    r"""One Euler step of a 2-D run, drawn as a convex combination (Chen et al. 2023, §3):
    :math:`x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}x_i + \big(1-\frac{\sigma_{i+1}}{\sigma_i}\big)D_i`
    lies on the segment from :math:`x_i` to its denoising output :math:`D_i`.

    Left: full view; right: zoom to ``[-zoom, zoom]^2``. The trajectories so far are drawn solid and
    the rest faint; the segments :math:`[x_i, D_i]` dashed, with :math:`x_i` (circle), :math:`D_i`
    (square) and :math:`x_{i+1}` (cross). ``sigmas`` ``(T,)``, ``x`` ``(T, B, 2)``, ``denoised``
    ``(T - 1, B, 2)`` from an Euler run; ``step`` in ``[0, T - 2]``.
    """
    xs, ds = _p1b_pair(x, denoised)
    s = _p1b_array(sigmas, "sigmas", 1)
    if s.shape[0] != xs.shape[0]:
        raise ValueError(f"sigmas must have {xs.shape[0]} levels (one per point of x), got {s.shape[0]}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < ds.shape[0]:
        raise ValueError(f"step must be an integer in [0, {ds.shape[0] - 1}], got {step!r}")
    zoom = _p1b_zoom(zoom)
    lam = 1 - s[step + 1] / s[step]
    fig = new_figure(fig, (10.0, 4.6))
    axes = fig.subplots(1, 2)
    for k, ax in enumerate(axes):
        if k == 1:
            _p1b_data(ax, data)
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
    fig.tight_layout()
    return fig


def draw_distance_to_end(*, fig=None, sigmas, distances, threshold=None, settle=None, unit="data units"):
    r"""Distance of each trajectory to the final sample against sigma (log-log): median and the
    10-90 % band over trajectories, one curve per entry of ``distances`` (label -> ``(T, B)``,
    measured at the first ``T`` levels of ``sigmas``). ``threshold``: a horizontal line;
    ``settle``: label -> a noise level marked with a vertical line (e.g. the median settling sigma
    from :func:`diffusion_geometry.geometry.settling_sigma`).
    """
    import numpy as np

    if not isinstance(distances, dict) or not distances:
        raise ValueError("distances must be a non-empty dict of label -> (T, B) values")
    s = _p1b_array(sigmas, "sigmas", 1)
    fig = new_figure(fig, (6.8, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, vals) in enumerate(distances.items()):
        v = _p1b_array(vals, label, 2)
        if v.shape[0] > s.shape[0]:
            raise ValueError(f"{label}: {v.shape[0]} rows for {s.shape[0]} noise levels")
        t = s[: v.shape[0]]
        keep = t > 0
        c = OKABE_ITO[k % len(OKABE_ITO)]
        lo, med, hi = np.quantile(v, [0.1, 0.5, 0.9], axis=1)
        ax.plot(t[keep], med[keep], "-", color=c, lw=2, label=f"{label} (median)")
        ax.fill_between(t[keep], lo[keep], hi[keep], color=c, alpha=0.2, lw=0)
        if settle is not None and label in settle:
            ax.axvline(settle[label], color=c, ls=":", lw=1.5,
                       label=f"{label} settles at $\\sigma$ = {settle[label]:.3g}")
    if threshold is not None:
        ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"noise level $\sigma$ (decreasing to the right)")
    ax.set_ylabel(f"distance to the final sample ({unit})")
    ax.set_title("Which trajectory reaches the final sample first?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_norm_shell(*, fig=None, sigmas, ratios, expected=None):
    r"""Norm concentration of :math:`x_\sigma = x_0 + \sigma\varepsilon`: the ratio
    :math:`\lVert x_\sigma\rVert/(\sigma\sqrt d)` against sigma (left; mean and +-1 std band) and its
    histogram at the largest sigma (right), one colour per dimension.

    ``ratios``: dimension d -> ``(S, n)`` ratios for ``n`` samples at the ``S`` levels ``sigmas``;
    ``expected``: optional dimension d -> ``(S,)`` predicted values, drawn dashed (e.g. the root mean
    square :math:`\sqrt{1 + \mathbb{E}\lVert x_0\rVert^2/(\sigma^2 d)}`).
    """
    import numpy as np

    if not isinstance(ratios, dict) or not ratios:
        raise ValueError("ratios must be a non-empty dict of dimension -> (S, n) values")
    s = _p1b_array(sigmas, "sigmas", 1)
    top = int(np.argmax(s))
    fig = new_figure(fig, (11.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2)
    for k, (d, vals) in enumerate(ratios.items()):
        v = _p1b_array(vals, f"ratios[{d}]", 2)
        if v.shape[0] != s.shape[0]:
            raise ValueError(f"ratios[{d}] has {v.shape[0]} rows for {s.shape[0]} noise levels")
        c = OKABE_ITO[k % len(OKABE_ITO)]
        m, sd = v.mean(1), v.std(1)
        ax1.plot(s, m, "o-", ms=3, color=c, label=f"d = {d}")
        ax1.fill_between(s, m - sd, m + sd, color=c, alpha=0.2, lw=0)
        if expected is not None and d in expected:
            e = _p1b_array(expected[d], f"expected[{d}]", 1)
            if e.shape[0] != s.shape[0]:
                raise ValueError(f"expected[{d}] has {e.shape[0]} values for {s.shape[0]} noise levels")
            ax1.plot(s, e, "--", color=c, lw=1)
        ax2.hist(v[top], bins=40, density=True, histtype="stepfilled", alpha=0.45, color=c,
                 label=f"d = {d}")
    ax1.axhline(1.0, color="0.3", ls="--", lw=1)
    ax1.set_xscale("log")
    ax1.set_xlabel(r"noise level $\sigma$")
    ax1.set_ylabel(r"$\| x_\sigma\| / (\sigma\sqrt{d})$ (dimensionless)")
    ax1.set_title(r"Noisy samples sit on a shell of radius $\sigma\sqrt{d}$")
    ax1.legend(fontsize=8)
    ax2.axvline(1.0, color="0.3", ls="--", lw=1)
    ax2.set_xlabel(rf"$\| x_\sigma\| / (\sigma\sqrt{{d}})$ at $\sigma$ = {s[top]:.3g}")
    ax2.set_ylabel("probability density")
    ax2.set_title("The shell gets thinner as d grows")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_chord_vs_length(*, fig=None, groups, levels=(0.01, 0.001)):
    r"""Largest deviation of each trajectory from its chord against the chord length (log-log), one
    marker colour per group (label -> ``(chord_lengths (B,), max_deviations (B,))``), with lines of
    constant relative deviation at ``levels`` (fractions of the chord length).
    """
    import numpy as np

    if not isinstance(groups, dict) or not groups:
        raise ValueError("groups must be a non-empty dict of label -> (chord lengths, max deviations)")
    fig = new_figure(fig, (6.8, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.inf, 0.0
    markers = "os^vD<>p"
    for k, (label, pair) in enumerate(groups.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{label}: expected a pair (chord lengths, max deviations)")
        L = _p1b_array(pair[0], f"{label} chord lengths", 1)
        dev = _p1b_array(pair[1], f"{label} deviations", 1)
        if L.shape != dev.shape:
            raise ValueError(f"{label}: {L.shape[0]} chord lengths but {dev.shape[0]} deviations")
        ax.scatter(L, dev, s=10, alpha=0.6, marker=markers[k % len(markers)], color=OKABE_ITO[k % len(OKABE_ITO)],
                   label=label)
        lo, hi = min(lo, L.min()), max(hi, L.max())
    xs = np.array([lo / 1.3, hi * 1.3])
    for j, lev in enumerate(levels):
        ax.plot(xs, lev * xs, ls=["--", ":", "-."][j % 3], color="0.3", lw=1,
                label=f"{100 * lev:g}% of the chord length")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"chord length $\| x_\mathrm{end} - x_T\|$ (L2, data units)")
    ax.set_ylabel("largest deviation from the chord (L2, data units)")
    ax.set_title("Sampling trajectories are almost straight")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def draw_latent_interpolation(*, fig=None, alpha=0.5, alphas, norms, images):
    r"""Linear against spherical interpolation of two latents at one ``alpha``.

    Left: the norm ratio :math:`\lVert z_\alpha\rVert/(T\sqrt d)` against :math:`\alpha` (mean and
    +-1 std over pairs) for each method, with the closed form :math:`\sqrt{(1-\alpha)^2+\alpha^2}` of
    lerp dashed and the current ``alpha`` marked; right: the decoded image of one pair for each
    method at the grid value nearest to ``alpha``.
    ``alphas`` ``(A,)``; ``norms``: method -> ``(A, P)``; ``images``: method -> ``(A, C, H, W)`` or
    ``(A, H, W)`` in [-1, 1].
    """
    import numpy as np

    a = _p1b_array(alphas, "alphas", 1)
    if not isinstance(norms, dict) or not norms or not isinstance(images, dict) or not images:
        raise ValueError("norms and images must be non-empty dicts keyed by method")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    j = int(np.argmin(np.abs(a - alpha)))
    fig = new_figure(fig, (11.0, 3.8))
    gs = fig.add_gridspec(1, 2 + len(images), width_ratios=[2.2, 0.2] + [1.0] * len(images))
    ax = fig.add_subplot(gs[0, 0])
    for k, (name, v) in enumerate(norms.items()):
        v = _p1b_array(v, f"norms[{name}]", 2)
        if v.shape[0] != a.shape[0]:
            raise ValueError(f"norms[{name}] has {v.shape[0]} rows for {a.shape[0]} values of alpha")
        c = OKABE_ITO[k % len(OKABE_ITO)]
        m, sd = v.mean(1), v.std(1)
        ax.plot(a, m, "o-", ms=3, color=c, label=name)
        ax.fill_between(a, m - sd, m + sd, color=c, alpha=0.2, lw=0)
    fine = np.linspace(a.min(), a.max(), 200)
    ax.plot(fine, np.sqrt((1 - fine) ** 2 + fine**2), "--", color="0.3", lw=1,
            label=r"$\sqrt{(1-\alpha)^2+\alpha^2}$")
    ax.axvline(a[j], color=OKABE_ITO[3], lw=1.2)
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel(r"interpolation weight $\alpha$")
    ax.set_ylabel(r"$\| z_\alpha\| / (T\sqrt{d})$ (dimensionless)")
    ax.set_title("Does the latent stay on the shell?", fontsize=10)
    ax.legend(fontsize=8)
    for k, (name, imgs) in enumerate(images.items()):
        im = _p1b_array(imgs, f"images[{name}]")
        if im.shape[0] != a.shape[0] or im.ndim not in (3, 4):
            raise ValueError(f"images[{name}] must be (A, [C,] H, W) with A = {a.shape[0]}, got {im.shape}")
        pic = im[j] if im.ndim == 3 else im[j].mean(0) if im.shape[1] != 3 else np.moveaxis(im[j], 0, -1)
        axi = fig.add_subplot(gs[0, 2 + k])
        axi.imshow(np.clip((pic + 1) / 2, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axi.set_xticks([])
        axi.set_yticks([])
        axi.set_title(f"{name}, decoded", fontsize=10)
    fig.suptitle(rf"Interpolating two latents at $\alpha$ = {a[j]:.3g}", fontsize=11)
    fig.tight_layout()
    return fig


def draw_boomerang_profiles(*, fig=None, sigmas, coords, n_show=None):
    r"""Two 2-D views of the boomerang projection (Chen et al. 2024/2025) that show the shared shape.

    Left: the coordinate along the chord against the first orthogonal principal coordinate, one line
    per trajectory (L2 units; every trajectory ends at the origin). Right: that principal coordinate
    divided by its largest magnitude, against sigma, with the median over trajectories: if the
    trajectories share one shape, the normalised curves overlap.
    ``coords``: ``(T, B, 3)`` from :func:`diffusion_geometry.geometry.boomerang_projection`;
    ``sigmas``: ``(T,)``; ``n_show``: how many trajectories to draw (all by default).
    """
    import numpy as np

    c = _p1b_array(coords, "coords", 3, 3)
    s = _p1b_array(sigmas, "sigmas", 1)
    if s.shape[0] != c.shape[0]:
        raise ValueError(f"sigmas must have {c.shape[0]} levels (one per point), got {s.shape[0]}")
    k = c.shape[1] if n_show is None else int(n_show)
    if not 1 <= k <= c.shape[1]:
        raise ValueError(f"n_show must lie in [1, {c.shape[1]}], got {n_show!r}")
    peak = np.abs(c[:, :, 1]).max(0)
    prof = c[:, :, 1] / np.where(peak > 0, peak, 1.0)
    fig = new_figure(fig, (11.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2)
    for b in range(k):
        ax1.plot(c[:, b, 0], c[:, b, 1], "-", color=OKABE_ITO[b % 6], lw=0.8, alpha=0.7)
        ax2.plot(s, prof[:, b], "-", color=OKABE_ITO[0], lw=0.6, alpha=0.3)
    ax2.plot(s, np.median(prof, 1), "-", color=OKABE_ITO[3], lw=2.2, label="median over trajectories")
    ax1.plot([0], [0], "ko", ms=4)
    ax1.set_xlabel(r"coordinate along the chord, $\langle x_i - x_n, u_1\rangle$ (L2 units)")
    ax1.set_ylabel(r"first orthogonal PC, $\langle x_i - x_n, u_2\rangle$ (L2 units)")
    ax1.set_title(f"{k} trajectories seen from the side", fontsize=10)
    pos = s > 0
    ax2.set_xscale("log")
    ax2.invert_xaxis()
    ax2.set_xlim(s[pos].max() * 1.2, s[pos].min() / 1.2)
    ax2.set_xlabel(r"noise level $\sigma_i$ (decreasing to the right)")
    ax2.set_ylabel("first orthogonal PC / its largest magnitude")
    ax2.set_title("The same bump for every trajectory", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ += ["draw_trajectories_2d", "draw_euler_step_2d", "draw_distance_to_end", "draw_norm_shell",
            "draw_chord_vs_length", "draw_latent_interpolation", "draw_boomerang_profiles"]


# --------------------------------------------------------------------------------------------------
# Part III, chapter 07 (mean shift) and chapter 08 (learned against optimal denoisers)
# --------------------------------------------------------------------------------------------------


def _p3_np(v):
    import numpy as np
    import torch

    return v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=float)


def _p3_sigma(sigma, lo: float = 0.0) -> float:
    import math

    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__}") from None
    if not (math.isfinite(s) and s > lo):
        raise ValueError(f"sigma must be finite and greater than {lo}, got {sigma!r}")
    return s


def _p3_grid(points, resolution: int, margin: float):
    """A ``resolution`` x ``resolution`` grid over the bounding box of ``points`` (2-D) plus ``margin``."""
    import torch

    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    lo = points.min(0).values - margin
    hi = points.max(0).values + margin
    gx = torch.linspace(float(lo[0]), float(hi[0]), resolution, dtype=points.dtype)
    gy = torch.linspace(float(lo[1]), float(hi[1]), resolution, dtype=points.dtype)
    X, Y = torch.meshgrid(gx, gy, indexing="xy")
    return gx, gy, torch.stack([X.reshape(-1), Y.reshape(-1)], 1)


_P3_REGION_COLOURS = OKABE_ITO[:7] + ("#999999",)  # no black: training points are drawn in black on top


def draw_basins(*, fig=None, dataset: str = "ring", sigma: float = 0.5, n_points: int = 8, seed: int = 0,
                resolution: int = 64, n_steps: int = 18):
    r"""Basins of attraction of the training points in 2-D, two ways (chapter 07's widget).

    Left: every point of the plane is taken as :math:`x` at noise level ``sigma`` and run through the
    probability-flow ODE with the optimal denoiser (Heun, ``n_steps`` EDM steps down to 0.002), i.e.
    annealed mean shift; it is coloured by the training point it lands on
    (:func:`diffusion_geometry.meanshift.landing`). Right: plain mean shift at the *fixed* bandwidth
    ``sigma`` (:func:`~diffusion_geometry.meanshift.mean_shift`); each point is coloured by the mode of
    :math:`p_\sigma` it climbs to (coloured like the training point nearest that mode; modes are
    crosses). Grey lines: contours of :math:`\log p_\sigma`. ``dataset`` and ``n_points`` choose the
    training set (:func:`~diffusion_geometry.meanshift.training_set_2d`).
    """
    import numpy as np
    from matplotlib.colors import ListedColormap

    from . import meanshift as ms
    from .denoisers import EmpiricalDenoiser
    from .schedules import edm_sigmas

    sigma = _p3_sigma(sigma, lo=0.004)
    if not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer >= 2, got {n_steps!r}")
    y = ms.training_set_2d(dataset, n_points, seed=seed)
    kde = EmpiricalDenoiser(y)
    gx, gy, grid = _p3_grid(y, resolution, 1.0)
    annealed, _, _ = ms.landing(kde, grid, edm_sigmas(n_steps, sigma_max=sigma), method="heun")
    ends = ms.mean_shift(kde, grid, sigma, max_iter=500, tol=1e-7)[-1]
    labels, modes = ms.cluster_points(ends, 0.25 * sigma)
    owner = kde.nearest(modes)[1][:, 0]
    fixed = owner[labels]
    logp = _p3_np(kde.log_prob(grid, sigma)).reshape(resolution, resolution)

    n_col = len(_P3_REGION_COLOURS)
    cmap = ListedColormap([_P3_REGION_COLOURS[k % n_col] for k in range(n_points)])
    fig = new_figure(fig, (10.0, 4.6))
    yn = _p3_np(y)
    n_basins = int(annealed.unique().numel())
    for k, (lab, title) in enumerate([
        (annealed, f"annealed mean shift (ODE from $\\sigma$ = {sigma:.3g})\n{n_basins} basins in view, one per training point"),
        (fixed, f"mean shift at fixed bandwidth $\\sigma$ = {sigma:.3g}\n{modes.shape[0]} mode(s) of $p_\\sigma$"),
    ]):
        ax = fig.add_subplot(1, 2, k + 1)
        grid_lab = _p3_np(lab).reshape(resolution, resolution)
        ax.pcolormesh(_p3_np(gx), _p3_np(gy), grid_lab, cmap=cmap, vmin=-0.5, vmax=n_points - 0.5,
                      alpha=0.55, shading="nearest", rasterized=True)
        ax.contour(_p3_np(gx), _p3_np(gy), logp, levels=8, colors="0.35", linewidths=0.6)
        ax.scatter(yn[:, 0], yn[:, 1], s=28, c="k", edgecolors="white", linewidths=0.8, zorder=3,
                   label="training points")
        if k == 1:
            mn = _p3_np(modes)
            ax.scatter(mn[:, 0], mn[:, 1], marker="x", s=70, c="k", linewidths=2, zorder=4, label=r"modes of $p_\sigma$")
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$ (data units)")
        ax.set_ylabel("$x_2$ (data units)")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    return fig


def draw_score_deviation(*, fig=None, deviation, per_dim: bool = False, title: str | None = None, ax=None):
    r"""The four curves of :func:`diffusion_geometry.deviation.score_deviation` against sigma.

    Mean over the batch (line) and the 10-90 % range (band); the sigma axis is logarithmic and
    reversed, so sampling runs left to right. ``per_dim=True`` divides by :math:`\sqrt d` (RMS per
    coordinate, comparable across data sets). With ``ax`` the curves go into that axes (``fig`` is
    then ignored and the axes' figure is returned).
    """
    import math

    import numpy as np

    from .deviation import ScoreDeviation

    if not isinstance(deviation, ScoreDeviation):
        raise TypeError(f"deviation must be a ScoreDeviation, got {type(deviation).__name__}")
    n = deviation.denoising.shape[0]
    d = deviation.learned.x[0, 0].numel()
    scale = 1 / math.sqrt(d) if per_dim else 1.0
    s = _p3_np(deviation.sigmas[:n])
    curves = [
        (r"(1) sampling  $\Vert x_t - x^*_t\Vert$", deviation.sampling[:n]),
        (r"(2) denoising  $\Vert r_\theta(x_t) - r^*(x^*_t)\Vert$", deviation.denoising),
        (r"(3) on learned  $\Vert r_\theta(x_t) - r^*(x_t)\Vert$", deviation.on_learned),
        (r"(4) on optimal  $\Vert r_\theta(x^*_t) - r^*(x^*_t)\Vert$", deviation.on_optimal),
    ]
    if ax is None:
        fig = new_figure(fig, (6.8, 4.0))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    styles = ["-", "--", "-", ":"]
    for k, (label, v) in enumerate(curves):
        v = _p3_np(v) * scale
        c = OKABE_ITO[k]
        ax.plot(s, v.mean(1), styles[k], color=c, lw=1.8, label=label)
        ax.fill_between(s, np.quantile(v, 0.1, axis=1), np.quantile(v, 0.9, axis=1), color=c, alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"noise level $\sigma$ (sampling runs left to right)")
    ax.set_ylabel("RMS distance per coordinate" if per_dim else "L2 distance (data units)")
    ax.set_title(title or "Learned against optimal, from the same noise", fontsize=10)
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig


def draw_denoiser_fields(*, fig=None, sigma: float = 1.0, learned, kde, resolution: int = 60, n_arrows: int = 13):
    r"""Learned against optimal denoiser on the plane at one noise level (chapter 08's widget).

    Colour: :math:`\Vert D_\theta(x;\sigma) - D^*(x;\sigma)\Vert` over a grid around the training
    set of ``kde`` (an :class:`~diffusion_geometry.EmpiricalDenoiser` of 2-D points); arrows: the two
    displacements :math:`D(x;\sigma) - x` on a coarser grid (the score times :math:`\sigma^2`).
    """
    import numpy as np
    import torch

    from .denoisers import EmpiricalDenoiser

    sigma = _p3_sigma(sigma)
    if not isinstance(kde, EmpiricalDenoiser) or kde.shape != (2,):
        raise TypeError("kde must be an EmpiricalDenoiser of 2-D points")
    if not callable(learned):
        raise TypeError("learned must be a denoiser callable as learned(x, sigma)")
    y = kde.training_points(torch.arange(len(kde)))
    gx, gy, grid = _p3_grid(y, resolution, 1.0)
    with torch.no_grad():
        gap = (learned(grid, sigma).to(grid.dtype) - kde(grid, sigma)).norm(dim=1)
        _, _, coarse = _p3_grid(y, n_arrows, 0.8)
        d_l = _p3_np(learned(coarse, sigma).to(coarse.dtype) - coarse)
        d_o = _p3_np(kde(coarse, sigma) - coarse)
    fig = new_figure(fig, (6.4, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    mesh = ax.pcolormesh(_p3_np(gx), _p3_np(gy), _p3_np(gap).reshape(resolution, resolution), cmap="viridis",
                         shading="nearest", rasterized=True)
    fig.colorbar(mesh, ax=ax, label=r"$\| D_\theta - D^*\|$ (data units)")
    c = _p3_np(coarse)
    span = float(np.ptp(c[:, 0]))
    scale = max(np.abs(d_o).max(), np.abs(d_l).max(), 1e-12) / (0.12 * span)
    ax.quiver(c[:, 0], c[:, 1], d_o[:, 0], d_o[:, 1], color=OKABE_ITO[1], angles="xy", scale_units="xy",
              scale=scale, width=0.004, label=r"optimal $D^* - x$")
    ax.quiver(c[:, 0], c[:, 1], d_l[:, 0], d_l[:, 1], color="white", angles="xy", scale_units="xy",
              scale=scale, width=0.0025, label=r"learned $D_\theta - x$")
    yn = _p3_np(y)
    ax.scatter(yn[:, 0], yn[:, 1], s=6, c=OKABE_ITO[3], zorder=3, label="training points")
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$ (data units)")
    ax.set_ylabel("$x_2$ (data units)")
    ax.set_title(rf"$\sigma$ = {sigma:.3g}: median gap {float(gap.median()):.3g}", fontsize=10)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.85)
    fig.tight_layout()
    return fig


def draw_samples_vs_training(*, fig=None, panels):
    """Small multiples of 2-D point clouds: ``panels`` maps a title to ``(train (N, 2), samples (M, 2))``.

    Training points in black (under the samples when there are 200 or more), samples in blue, on
    shared axes.
    """
    if not isinstance(panels, dict) or not panels:
        raise ValueError("panels must be a non-empty dict title -> (train, samples)")
    fig = new_figure(fig, (3.0 * len(panels) + 0.4, 3.4))
    first = None
    for k, (title, pair) in enumerate(panels.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"panels[{title!r}] must be a pair (train, samples)")
        tr, sm = _p3_np(pair[0]), _p3_np(pair[1])
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
    fig.tight_layout()
    return fig


__all__ += ["draw_basins", "draw_score_deviation", "draw_denoiser_fields", "draw_samples_vs_training"]


# --------------------------------------------------------------------------------------------------
# Part II, chapters 5-6: samplers as finite differences; time schedules and shortcuts
# --------------------------------------------------------------------------------------------------


def _p2_np(v):
    import numpy as np
    import torch

    return v.detach().cpu().to(torch.float64).numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=float)


def draw_fd_step(*, fig=None, r=0.5, cases, data=None):
    r"""One generalised DPM-Solver-2 step in the plane, for the value ``r`` of its intermediate level.

    ``cases`` maps ``r`` to the dict of :func:`diffusion_geometry.finite_differences.step_anatomy`
    (one 2-D trajectory). Drawn: the exact sampling trajectory between the two levels (blue) and its
    denoising trajectory (orange); :math:`x_n`, :math:`D_n`, the intermediate point :math:`x_s` and
    :math:`D_s`; the finite-difference :math:`D_\text{eff}` (the step moves :math:`x_n` towards it) and the
    ideal :math:`D^\star_\text{eff}` that would land on the exact :math:`x(\sigma_{n+1})`. ``data``: optional
    ``(n, 2)`` points drawn in grey.
    """
    if not isinstance(cases, dict) or not cases:
        raise ValueError("cases must be a non-empty dict r -> step_anatomy(...)")
    key = min(cases, key=lambda k: abs(float(k) - float(r)))
    if abs(float(key) - float(r)) > 1e-9:
        raise ValueError(f"no case for r={r}; available: {sorted(cases)}")
    import numpy as np

    c = cases[key]
    flat = {k: _p2_np(c[k]).reshape(-1, 2)[0]  # the first trajectory's point
            for k in ("x", "den", "x_mid", "den_mid", "d_eff", "x_next", "x_exact", "d_eff_exact")}
    for k in ("path_x", "path_den"):  # (n_path, batch, 2) -> the first trajectory's curve
        arr = _p2_np(c[k])
        flat[k] = arr.reshape(arr.shape[0], -1)[:, :2]
    fig = new_figure(fig, (8.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    if data is not None:
        d = _p2_np(data)
        if d.ndim != 2 or d.shape[1] != 2:
            raise ValueError(f"data must have shape (n, 2), got {d.shape}")
        ax.scatter(d[:, 0], d[:, 1], s=4, color="0.75", label="data", zorder=0)
    px, pd = flat["path_x"], flat["path_den"]
    ax.plot(px[:, 0], px[:, 1], "-", color=OKABE_ITO[0], lw=2, label=r"exact $x(\sigma)$, $\sigma_{n+1}\leq\sigma\leq\sigma_n$")
    ax.plot(pd[:, 0], pd[:, 1], "-", color=OKABE_ITO[1], lw=2, label=r"denoising trajectory $D(x(\sigma);\sigma)$")
    x, xe, xn, de = flat["x"], flat["x_exact"], flat["x_next"], flat["d_eff"]
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
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$ (data units)")
    ax.set_ylabel("$x_2$ (data units)")
    ax.set_title(f"DPM-Solver-2 step $\\sigma$ = {c['sigma']:.3g} → {c['sigma_next']:.3g}, r = {c['r']:.2f} "
                 f"(s = {c['s']:.3g})\nerror of $x_{{n+1}}$: {c['error']:.3f}", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def draw_error_vs_nfe(*, fig=None, rows, methods=None, schedules=None, loglog=False, suffix=None,
                      title="Error against NFE", ax=None):
    """Mean error against NFE from the rows of :func:`diffusion_geometry.benchmarking.error_vs_nfe`.

    One colour per method, one line style per schedule; ``methods``/``schedules`` select and order them.
    ``suffix`` maps a method label to extra legend text (e.g. a fitted order). ``ax`` draws into an
    existing axes (then ``fig`` is ignored and the axes' figure is returned).
    """
    if not rows:
        raise ValueError("rows must be a non-empty list of error_vs_nfe rows")
    methods = list(dict.fromkeys(r["method"] for r in rows)) if methods is None else list(methods)
    schedules = list(dict.fromkeys(r["schedule"] for r in rows)) if schedules is None else list(schedules)
    styles = ["-", "--", ":", "-."]
    if ax is None:
        fig = new_figure(fig, (6.4, 4.2))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    drawn = 0
    for i, m in enumerate(methods):
        for j, s in enumerate(schedules):
            pts = sorted((r["nfe"], r["error"]) for r in rows if r["method"] == m and r["schedule"] == s)
            if not pts:
                continue
            lab = m if len(schedules) == 1 else f"{m} / {s}"
            if suffix and m in suffix:
                lab += f" {suffix[m]}"
            marker = "o" if i < len(OKABE_ITO) else "s"  # a ninth method reuses a colour with another marker
            ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[j % len(styles)], marker=marker, ms=3,
                    color=OKABE_ITO[i % len(OKABE_ITO)], label=lab)
            drawn += 1
    if drawn == 0:
        raise ValueError("no rows match the chosen methods and schedules")
    ax.set_yscale("log")
    if loglog:
        from matplotlib.ticker import NullLocator, ScalarFormatter

        ax.set_xscale("log")
        ax.set_xticks(sorted({r["nfe"] for r in rows if r["method"] in methods}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("NFE (denoiser evaluations per sample)")
    ax.set_ylabel("mean L2 error to the reference (data units)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2 if drawn > 6 else 1)
    fig.tight_layout()
    return fig


def draw_gits(*, fig=None, n_steps=6, result, coeff=None, compare=None):
    r"""The GITS dynamic programme: the cost matrix :math:`C_{ij}` on the fine grid (log colour) with the
    chosen path (left) and the chosen levels against the step index (right, log y).

    ``result`` is a :class:`diffusion_geometry.gits.GITSResult`; ``n_steps`` and ``coeff`` re-solve its
    programme; ``compare`` maps labels to functions ``n_steps -> sigmas`` drawn on the right for comparison.
    """
    import numpy as np

    from .gits import path_cost

    coeff = result.coeff if coeff is None else float(coeff)
    sig = result.schedule(int(n_steps), coeff)
    fine = _p2_np(result.fine_grid)
    idx = [int(np.argmin(np.abs(fine - float(s)))) for s in sig]
    C = _p2_np(result.cost).copy()
    N = C.shape[0]
    fig = new_figure(fig, (10.0, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.where(np.isfinite(C) & (C > 0), np.log10(np.where(C > 0, C, 1.0)), np.nan)
    im = ax.imshow(shown, origin="upper", cmap="viridis", extent=(-0.5, N - 0.5, N - 0.5, -0.5))
    fig.colorbar(im, ax=ax, label=r"$\log_{10} C_{ij}$ (data units)")
    ax.plot(idx[1:], idx[:-1], "o-", color=OKABE_ITO[3], ms=5, label="chosen jumps $(i_m, i_{m+1})$")
    ax.set_xlabel("to fine level j")
    ax.set_ylabel("from fine level i")
    ax.set_title(f"cost matrix; path cost {path_cost(result.cost, idx, coeff):.3g} (coeff {coeff:.2f})", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(range(len(sig)), _p2_np(sig), "o-", color=OKABE_ITO[3], label=f"GITS ({n_steps} steps)")
    for k, (lab, make) in enumerate((compare or {}).items()):
        g = _p2_np(make(int(n_steps)))
        g = g[g > 0]
        ax2.plot(range(len(g)), g, "s--", ms=4, color=OKABE_ITO[k % 3], label=lab)
    ax2.set_yscale("log")
    ax2.set_xlabel("step index i")
    ax2.set_ylabel(r"noise level $\sigma_i$")
    ax2.set_title("the schedules", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ += ["draw_fd_step", "draw_error_vs_nfe", "draw_gits"]
