r"""Quantities against the noise level: one curve (mean or median with a band over a batch) per label,
on a logarithmic sigma axis reversed so that sampling runs left to right.

Norms and the :math:`\sigma\sqrt d` shell (chapters 04, 09), deviation from the chord and distance to
the end point (03, 04, 09), the cosine to the end point (04, 09), the Frechet distance of each step
to the test set (09), and the four learned-against-optimal deviations (08, 09).
"""
from __future__ import annotations

import math

import numpy as np

from ._common import as_array, check_dict, colour, finish, mean_band, new_figure, OKABE_ITO

__all__ = ["draw_norms_vs_sigma", "draw_chord_statistics", "draw_cosine_to_end", "draw_fd_per_step",
           "draw_distance_to_end", "draw_norm_shell", "draw_score_deviation"]


def _sigma_axis(ax, label=r"noise level $\sigma$"):
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(label)


def draw_norms_vs_sigma(*, fig=None, sigmas, curves, dim):
    r"""Mean (+-1 std) norms against sigma, log-log, with the shell radius :math:`\sigma\sqrt d` dashed.

    ``sigmas``: ``(T,)``; ``curves``: label -> ``(T', batch)`` norms at the first ``T'`` levels of
    ``sigmas``; ``dim``: the dimension ``d``. Raises ``ValueError`` on an empty ``curves``, a curve
    longer than ``sigmas`` or ``dim < 1``.
    """
    curves = check_dict(curves, "curves")
    if not dim >= 1:
        raise ValueError(f"dim must be positive, got {dim}")
    s = as_array(sigmas, "sigmas", 1)
    fig = new_figure(fig, (6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, vals) in enumerate(curves.items()):
        t = as_array(vals, label).shape[0]
        mean_band(ax, s[:t], vals, colour(k), label, lw=1.8)
    pos = s[s > 0]
    ax.plot(pos, pos * np.sqrt(dim), ls="--", color="0.4", lw=1, label=r"$\sigma\sqrt{d}$")
    _sigma_axis(ax, r"noise level $\sigma$ (decreasing to the right)")
    ax.set_yscale("log")
    ax.set_ylabel(r"$\ell_2$ norm (pixel units, images in $[-1, 1]$)")
    ax.set_title(f"Norms along trajectories, d = {dim}")
    ax.legend(fontsize=8)
    return finish(fig)


def draw_chord_statistics(*, fig=None, panels):
    r"""Deviation from the chord (left axis) and distance to the end point (right axis) against sigma,
    mean +-1 std over trajectories, one panel per entry (Chen et al. 2023, Fig. 2b).

    ``panels``: title -> dict with ``sigmas`` ``(T,)``, ``deviation`` and ``distance`` ``(T, batch)``.
    Raises ``ValueError`` if a panel lacks a key or its lengths differ.
    """
    panels = check_dict(panels, "panels", "title -> dict(sigmas, deviation, distance)")
    fig = new_figure(fig, (5.2 * len(panels), 3.8))
    for k, (title, p) in enumerate(panels.items()):
        missing = {"sigmas", "deviation", "distance"} - set(p)
        if missing:
            raise ValueError(f"panel {title!r} lacks {sorted(missing)}")
        s = as_array(p["sigmas"], f"{title} sigmas", 1)
        ax = fig.add_subplot(1, len(panels), k + 1)
        mean_band(ax, s, p["deviation"], OKABE_ITO[3], "deviation from the chord", lw=1.8)
        _sigma_axis(ax)
        ax.set_ylabel("deviation from the chord (L2)", color=OKABE_ITO[3])
        ax2 = ax.twinx()
        mean_band(ax2, s, p["distance"], OKABE_ITO[0], "distance to the end point", lw=1.8)
        ax2.set_ylabel("distance to the end point (L2)", color=OKABE_ITO[0])
        ax.set_title(title)
        lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    return finish(fig)


def draw_cosine_to_end(*, fig=None, sigmas, curves):
    r"""Cosine between the ODE direction and the direction to the end point against sigma.

    ``sigmas``: ``(T,)``; ``curves``: label -> ``(T', batch)`` cosines at the first ``T'`` levels.
    """
    curves = check_dict(curves, "curves")
    s = as_array(sigmas, "sigmas", 1)
    fig = new_figure(fig, (6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, vals) in enumerate(curves.items()):
        mean_band(ax, s[: as_array(vals, label).shape[0]], vals, colour(k), label, lw=1.8)
    _sigma_axis(ax)
    ax.set_ylabel(r"$\cos(\varepsilon(x_\sigma), x_\sigma - x_\mathrm{end})$")
    ax.set_title("Does each step point at the final sample?")
    ax.legend(fontsize=8)
    return finish(fig)


def draw_fd_per_step(*, fig=None, sigmas, curves, target=None):
    r"""Frechet distance (FD) to the test set of the points of each trajectory at every step (log
    scale), against sigma.

    ``sigmas``: ``(T,)``; ``curves``: label -> ``(T',)`` FD values at the first ``T'`` levels;
    ``target``: an FD level drawn as a horizontal line (e.g. the level both trajectories must reach).
    """
    from matplotlib.ticker import ScalarFormatter

    curves = check_dict(curves, "curves")
    s = as_array(sigmas, "sigmas", 1)
    fig = new_figure(fig, (6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, v) in enumerate(curves.items()):
        v = as_array(v, label, 1)
        ax.plot(s[: len(v)], v, "o-", ms=3, color=colour(k), label=label)
    if target is not None:
        ax.axhline(target, ls="--", color="0.4", lw=1, label=f"target FD {target:.3g}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    _sigma_axis(ax, r"noise level $\sigma$ of the step")
    ax.set_ylabel("FD to the test set (classifier features)")
    ax.set_title("Which trajectory looks like data first?")
    ax.legend(fontsize=8)
    return finish(fig)


def draw_distance_to_end(*, fig=None, sigmas, distances, threshold=None, settle=None, unit="data units"):
    r"""Distance of each trajectory to the final sample against sigma (log-log): median and the
    10-90 % band over trajectories, one curve per entry of ``distances`` (label -> ``(T', B)``,
    measured at the first ``T'`` levels of ``sigmas`` ``(T,)``). ``threshold``: a horizontal line;
    ``settle``: label -> a noise level marked with a vertical line (e.g. the median settling sigma
    from :func:`diffusion_geometry.geometry.settling_sigma`).
    """
    distances = check_dict(distances, "distances", "label -> (T, B) values")
    s = as_array(sigmas, "sigmas", 1)
    fig = new_figure(fig, (6.8, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, vals) in enumerate(distances.items()):
        v = as_array(vals, label, 2)
        if v.shape[0] > s.shape[0]:
            raise ValueError(f"{label}: {v.shape[0]} rows for {s.shape[0]} noise levels")
        t = s[: v.shape[0]]
        keep = t > 0
        c = colour(k)
        lo, med, hi = np.quantile(v, [0.1, 0.5, 0.9], axis=1)
        ax.plot(t[keep], med[keep], "-", color=c, lw=2, label=f"{label} (median)")
        ax.fill_between(t[keep], lo[keep], hi[keep], color=c, alpha=0.2, lw=0)
        if settle is not None and label in settle:
            ax.axvline(settle[label], color=c, ls=":", lw=1.5,
                       label=f"{label} settles at $\\sigma$ = {settle[label]:.3g}")
    if threshold is not None:
        ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    _sigma_axis(ax, r"noise level $\sigma$ (decreasing to the right)")
    ax.set_yscale("log")
    ax.set_ylabel(f"distance to the final sample ({unit})")
    ax.set_title("Which trajectory reaches the final sample first?")
    ax.legend(fontsize=8)
    return finish(fig)


def draw_norm_shell(*, fig=None, sigmas, ratios, expected=None):
    r"""Norm concentration of :math:`x_\sigma = x_0 + \sigma\varepsilon`: the ratio
    :math:`\lVert x_\sigma\rVert/(\sigma\sqrt d)` against sigma (left; mean and +-1 std band) and its
    histogram at the largest sigma (right), one colour per dimension.

    ``ratios``: dimension d -> ``(S, n)`` ratios for ``n`` samples at the ``S`` levels ``sigmas``;
    ``expected``: optional dimension d -> ``(S,)`` predicted values, drawn dashed (e.g. the root mean
    square :math:`\sqrt{1 + \mathbb{E}\lVert x_0\rVert^2/(\sigma^2 d)}`).
    """
    ratios = check_dict(ratios, "ratios", "dimension -> (S, n) values")
    s = as_array(sigmas, "sigmas", 1)
    top = int(np.argmax(s))
    fig = new_figure(fig, (11.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2)
    for k, (d, vals) in enumerate(ratios.items()):
        v = as_array(vals, f"ratios[{d}]", 2)
        if v.shape[0] != s.shape[0]:
            raise ValueError(f"ratios[{d}] has {v.shape[0]} rows for {s.shape[0]} noise levels")
        c = colour(k)
        mean_band(ax1, s, v, c, f"d = {d}", "o-", ms=3)
        if expected is not None and d in expected:
            e = as_array(expected[d], f"expected[{d}]", 1)
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
    return finish(fig)


def draw_score_deviation(*, fig=None, deviation, per_dim: bool = False, title: str | None = None):
    r"""The four curves of :func:`diffusion_geometry.deviation.score_deviation` against sigma.

    Mean over the batch (line) and the 10-90 % range (band); the sigma axis is logarithmic and
    reversed, so sampling runs left to right. ``per_dim=True`` divides by :math:`\sqrt d` (RMS per
    coordinate, comparable across data sets). To draw beside other panels, pass a sub-figure
    (``fig.subfigures``) as ``fig``. Raises ``TypeError`` unless ``deviation`` is a
    :class:`~diffusion_geometry.deviation.ScoreDeviation`.
    """
    from ..deviation import ScoreDeviation

    if not isinstance(deviation, ScoreDeviation):
        raise TypeError(f"deviation must be a ScoreDeviation, got {type(deviation).__name__}")
    n = deviation.denoising.shape[0]
    d = deviation.learned.x[0, 0].numel()
    scale = 1 / math.sqrt(d) if per_dim else 1.0
    s = as_array(deviation.sigmas[:n], "sigmas", 1)
    curves = [
        (r"(1) sampling  $\Vert x_t - x^*_t\Vert$", deviation.sampling[:n]),
        (r"(2) denoising  $\Vert r_\theta(x_t) - r^*(x^*_t)\Vert$", deviation.denoising),
        (r"(3) on learned  $\Vert r_\theta(x_t) - r^*(x_t)\Vert$", deviation.on_learned),
        (r"(4) on optimal  $\Vert r_\theta(x^*_t) - r^*(x^*_t)\Vert$", deviation.on_optimal),
    ]
    fig = new_figure(fig, (6.8, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    styles = ["-", "--", "-", ":"]
    for k, (label, v) in enumerate(curves):
        v = as_array(v, label, 2) * scale
        c = OKABE_ITO[k]
        ax.plot(s, v.mean(1), styles[k], color=c, lw=1.8, label=label)
        ax.fill_between(s, np.quantile(v, 0.1, axis=1), np.quantile(v, 0.9, axis=1), color=c, alpha=0.15, lw=0)
    _sigma_axis(ax, r"noise level $\sigma$ (sampling runs left to right)")
    ax.set_ylabel("RMS distance per coordinate" if per_dim else "L2 distance (data units)")
    ax.set_title(title or "Learned against optimal, from the same noise", fontsize=10)
    ax.legend(fontsize=7.5)
    return finish(fig)
