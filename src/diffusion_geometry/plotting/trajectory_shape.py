r"""The shape of sampling trajectories: how straight, how low-dimensional, and the shared "boomerang".

The largest deviation from the chord against the chord length (chapter 04), per-trajectory PCA
(04, 09), the 3-D boomerang projection and its 2-D profiles (04, 09; Chen et al. 2024/2025), and one
step of an image trajectory located on that projection (09). The projections themselves are computed
by :mod:`diffusion_geometry.geometry` and passed in.
"""
from __future__ import annotations

import numpy as np

from ._common import OKABE_ITO, as_array, check_dict, colour, finish, mean_band, new_figure

__all__ = ["draw_chord_vs_length", "draw_trajectory_pca", "draw_boomerang", "draw_boomerang_profiles",
           "draw_trajectory_step"]


def draw_chord_vs_length(*, fig=None, groups, levels=(0.01, 0.001)):
    r"""Largest deviation of each trajectory from its chord against the chord length (log-log), one
    marker colour per group (label -> ``(chord_lengths (B,), max_deviations (B,))``), with lines of
    constant relative deviation at ``levels`` (fractions of the chord length).
    Raises ``ValueError`` if a group is not a pair of equally long 1-D arrays.
    """
    groups = check_dict(groups, "groups", "label -> (chord lengths, max deviations)")
    fig = new_figure(fig, (6.8, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.inf, 0.0
    markers = "os^vD<>p"
    for k, (label, pair) in enumerate(groups.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{label}: expected a pair (chord lengths, max deviations)")
        L = as_array(pair[0], f"{label} chord lengths", 1)
        dev = as_array(pair[1], f"{label} deviations", 1)
        if L.shape != dev.shape:
            raise ValueError(f"{label}: {L.shape[0]} chord lengths but {dev.shape[0]} deviations")
        ax.scatter(L, dev, s=10, alpha=0.6, marker=markers[k % len(markers)], color=colour(k), label=label)
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
    return finish(fig)


def draw_trajectory_pca(*, fig=None, sigmas, explained, rel_error, n_show=6):
    r"""Per-trajectory PCA (Zhou et al. 2024, AMED Fig. 4): left, the variance *not* explained by the
    first k components (log scale) for each trajectory set; right, the relative 2-component projection
    error :math:`\lVert x_t - \tilde x_t\rVert/\lVert x_t\rVert` against sigma.

    ``sigmas``: ``(T,)``; ``explained``: label -> ``(batch, K)`` cumulative explained fractions (the
    first ``n_show`` components are drawn); ``rel_error``: label -> ``(T', batch)`` at the first ``T'``
    levels.
    """
    explained = check_dict(explained, "explained")
    rel_error = check_dict(rel_error, "rel_error")
    s = as_array(sigmas, "sigmas", 1)
    fig = new_figure(fig, (10.0, 3.8))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for k, (label, ev) in enumerate(explained.items()):
        e = as_array(ev, label, 2)[:, :n_show]
        ks = np.arange(1, e.shape[1] + 1)
        un = np.clip(1 - e, 1e-12, None)
        c = colour(k)
        ax1.plot(ks, np.median(un, 0), "o-", color=c, label=f"{label} (median)")
        ax1.fill_between(ks, un.min(0), un.max(0), color=c, alpha=0.2, lw=0)
    ax1.set_yscale("log")
    ax1.set_xlabel("number of principal components k")
    ax1.set_ylabel("fraction of variance not explained")
    ax1.set_title("Each trajectory is nearly 2-D")
    ax1.legend(fontsize=8)
    for k, (label, re) in enumerate(rel_error.items()):
        mean_band(ax2, s[: as_array(re, label).shape[0]], re, colour(k), label, lw=1.8)
    ax2.set_xscale("log")
    ax2.invert_xaxis()
    ax2.set_xlabel(r"noise level $\sigma$")
    ax2.set_ylabel("relative 2-PC projection error")
    ax2.set_title("Error of the 2-D approximation")
    ax2.legend(fontsize=8)
    return finish(fig)


def draw_boomerang(*, fig=None, coords, elev=20.0, azim=-60.0, title="The boomerang"):
    r"""The 3-D projection of trajectories (Chen et al. 2024, GITS Fig. 4): the chord direction
    against the top two principal directions orthogonal to it; every trajectory ends at the origin.

    ``coords``: label -> ``(T, batch, 3)`` from :func:`diffusion_geometry.geometry.boomerang_projection`
    (one 3-D panel per label). ``elev``, ``azim``: the viewing angles in degrees.
    """
    coords = check_dict(coords, "coords", "label -> (T, batch, 3) coordinates")
    fig = new_figure(fig, (5.0 * len(coords), 4.4))
    for k, (label, c) in enumerate(coords.items()):
        a = as_array(c, label)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{label}: coords must have shape (T, batch, 3), got {a.shape}")
        ax = fig.add_subplot(1, len(coords), k + 1, projection="3d")
        for b in range(a.shape[1]):
            ax.plot(a[:, b, 0], a[:, b, 1], a[:, b, 2], color=colour(k), lw=0.8, alpha=0.7)
        ax.scatter([0], [0], [0], color="k", s=12)
        ax.set_xlabel("along the chord")
        ax.set_ylabel("PC 1 (orthogonal)")
        ax.set_zlabel("PC 2 (orthogonal)")
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(f"{title}: {label}\n({a.shape[1]} trajectories, L2 units)", fontsize=10)
    return finish(fig)


def draw_boomerang_profiles(*, fig=None, sigmas, coords, n_show=None):
    r"""Two 2-D views of the boomerang projection (Chen et al. 2024/2025) that show the shared shape.

    Left: the coordinate along the chord against the first orthogonal principal coordinate, one line
    per trajectory (L2 units; every trajectory ends at the origin). Right: that principal coordinate
    divided by its largest magnitude, against sigma, with the median over trajectories: if the
    trajectories share one shape, the normalised curves overlap.
    ``coords``: ``(T, B, 3)`` from :func:`diffusion_geometry.geometry.boomerang_projection`;
    ``sigmas``: ``(T,)``; ``n_show``: how many trajectories to draw (all by default).
    """
    c = as_array(coords, "coords", 3, 3)
    s = as_array(sigmas, "sigmas", 1)
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
    return finish(fig)


def draw_trajectory_step(*, fig=None, step, sigmas, x, denoised, coords, label="trajectory"):
    r"""One step of one image trajectory: :math:`x_\sigma`, :math:`D(x_\sigma;\sigma)`, and where the
    step sits on the trajectory's 2-D projection (chord coordinate against the first orthogonal PC).

    ``x``: ``(T, C, H, W)`` the sampling trajectory; ``denoised``: ``(T - 1, C, H, W)`` its denoiser
    outputs; ``coords``: ``(T, 3)`` its :func:`~diffusion_geometry.geometry.boomerang_projection`;
    ``sigmas``: ``(T,)``; ``step`` in ``[0, T - 2]`` (the steps where the denoiser was evaluated).
    Raises ``ValueError`` on other shapes or steps.
    """
    from .images import to_unit

    s = as_array(sigmas, "sigmas", 1)
    c = as_array(coords, "coords")
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
    return finish(fig)
