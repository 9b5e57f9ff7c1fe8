"""Quantities against the budget of denoiser evaluations (NFE), and the time schedules themselves.

The error of a sampler against an exact reference (chapters 05, 06), the Frechet distance (FD) of its
samples to the test set (chapter 10), one panel per sampler for several schedules (10), noise levels
against the step index (10), and the GITS dynamic programme with its chosen path (06).
"""
from __future__ import annotations

import numpy as np

from ._common import OKABE_ITO, as_array, check_dict, colour, finish, new_figure

__all__ = ["draw_error_vs_nfe", "draw_fd_vs_nfe", "draw_schedule_comparison", "draw_schedules", "draw_gits"]

_MARKERS = "os^vD<>ph*"


def _nfe_axes(ax, all_nfe, floor, floor_label):
    """Log-log FD-against-NFE axes with plain-number ticks at the budgets used."""
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
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("NFE (denoiser evaluations per sample)")
    ax.set_ylabel("FD to the test set (classifier features)")


def _nfe_pair(label, pair):
    """``(nfe values, FD values)`` as two 1-D arrays of the same length."""
    nfe, vals = (as_array(v, f"{label} {what}", 1) for v, what in zip(pair, ("NFE values", "FD values")))
    if nfe.shape != vals.shape:
        raise ValueError(f"{label}: {nfe.shape} NFE values but {vals.shape} FD values")
    return nfe, vals


def draw_error_vs_nfe(*, fig=None, rows, methods=None, schedules=None, loglog=False, suffix=None,
                      title="Error against NFE"):
    """Mean error against NFE from the rows of :func:`diffusion_geometry.benchmarking.error_vs_nfe`.

    ``rows``: dicts with ``method``, ``schedule``, ``nfe`` and ``error``. One colour per method, one
    line style per schedule; ``methods``/``schedules`` select and order them. ``suffix`` maps a method
    label to extra legend text (e.g. a fitted order). To draw beside other panels, pass a sub-figure
    (``fig.subfigures``) as ``fig``. Raises ``ValueError`` on empty ``rows`` or when no row matches.
    """
    if not rows:
        raise ValueError("rows must be a non-empty list of error_vs_nfe rows")
    methods = list(dict.fromkeys(r["method"] for r in rows)) if methods is None else list(methods)
    schedules = list(dict.fromkeys(r["schedule"] for r in rows)) if schedules is None else list(schedules)
    styles = ["-", "--", ":", "-."]
    fig = new_figure(fig, (6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
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
                    color=colour(i), label=lab)
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
    return finish(fig)


def draw_fd_vs_nfe(*, fig=None, results, floor=None, floor_label="train vs test", title="Sample quality against NFE"):
    """Frechet distance (FD) against NFE (log-log), one line per sampler/schedule.

    ``results``: label -> ``(nfe values (n,), FD values (n,))``; ``floor``: a reference FD drawn as a
    horizontal line (e.g. real training images against the test set at the same sample size).
    """
    results = check_dict(results, "results", "label -> (nfe values, FD values)")
    fig = new_figure(fig, (7.2, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    all_nfe = []
    for k, (label, pair) in enumerate(results.items()):
        nfe, vals = _nfe_pair(label, pair)
        all_nfe.append(nfe)
        ls = "-" if k < len(OKABE_ITO) else "--"
        ax.plot(nfe, vals, ls, marker=_MARKERS[k % len(_MARKERS)], ms=4, color=colour(k), label=label)
    _nfe_axes(ax, all_nfe, floor, floor_label)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return finish(fig)


def draw_schedule_comparison(*, fig=None, results, floor=None, floor_label="train vs test"):
    """FD against NFE for several samplers and schedules: one panel per sampler, one colour per schedule.

    ``results``: ``(sampler, schedule)`` -> ``(nfe values, FD values)``; all panels share the y axis.
    """
    results = check_dict(results, "results", "(sampler, schedule) -> (nfe values, FD values)")
    if not all(isinstance(k, tuple) and len(k) == 2 for k in results):
        raise ValueError("results keys must be (sampler, schedule) pairs")
    samplers = list(dict.fromkeys(k[0] for k in results))
    schedules = list(dict.fromkeys(k[1] for k in results))
    fig = new_figure(fig, (4.0 * len(samplers), 3.8))
    axes = fig.subplots(1, len(samplers), sharey=True, squeeze=False)[0]
    for ax, sampler in zip(axes, samplers):
        all_nfe = []
        for j, sched in enumerate(schedules):
            if (sampler, sched) not in results:
                continue
            nfe, vals = _nfe_pair(f"{sampler}, {sched}", results[(sampler, sched)])
            all_nfe.append(nfe)
            ax.plot(nfe, vals, "-", marker=_MARKERS[j % len(_MARKERS)], ms=4, color=colour(j), label=sched)
        _nfe_axes(ax, all_nfe, floor, floor_label)
        ax.set_title(sampler)
        if ax is not axes[0]:
            ax.set_ylabel("")
    axes[0].legend(fontsize=7)
    return finish(fig)


def _levels_axes(ax):
    ax.set_yscale("log")
    ax.set_xlabel("step index i")
    ax.set_ylabel(r"noise level $\sigma_i$")


def draw_schedules(*, fig=None, grids):
    """Noise levels of several grids against the step index (log y): where each spends its steps.

    ``grids``: label -> ``(n,)`` levels (a trailing 0 is not drawn).
    """
    grids = check_dict(grids, "grids", "label -> noise levels")
    fig = new_figure(fig, (6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, g) in enumerate(grids.items()):
        g = as_array(g, label, 1)
        g = g[g > 0]
        ax.plot(range(len(g)), g, "o-", ms=4, color=colour(k), label=label)
    _levels_axes(ax)
    ax.set_title("Time schedules")
    ax.legend(fontsize=8)
    return finish(fig)


def draw_gits(*, fig=None, n_steps=6, result, coeff=None, compare=None):
    r"""The GITS dynamic programme: the cost matrix :math:`C_{ij}` on the fine grid (log colour) with the
    chosen path (left) and the chosen levels against the step index (right, log y).

    ``result`` is a :class:`diffusion_geometry.gits.GITSResult`; ``n_steps`` and ``coeff`` re-solve its
    programme with :meth:`~diffusion_geometry.gits.GITSResult.schedule` (a shortest path on the stored
    cost matrix: the widget's cheap redraw; the costs themselves are computed by
    :func:`~diffusion_geometry.gits.gits_fit`); ``compare`` maps labels to functions
    ``n_steps -> sigmas`` drawn on the right for comparison.
    """
    from ..gits import path_cost

    coeff = result.coeff if coeff is None else float(coeff)
    sig = result.schedule(int(n_steps), coeff)
    fine = as_array(result.fine_grid, "result.fine_grid", 1)
    idx = [int(np.argmin(np.abs(fine - float(s)))) for s in sig]
    C = as_array(result.cost, "result.cost", 2, finite=False)
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
    ax2.plot(range(len(sig)), as_array(sig, "schedule", 1), "o-", color=OKABE_ITO[3], label=f"GITS ({n_steps} steps)")
    for k, (lab, make) in enumerate((compare or {}).items()):
        g = as_array(make(int(n_steps)), lab, 1)
        g = g[g > 0]
        ax2.plot(range(len(g)), g, "s--", ms=4, color=OKABE_ITO[k % 3], label=lab)
    _levels_axes(ax2)
    ax2.set_title("the schedules", fontsize=10)
    ax2.legend(fontsize=8)
    return finish(fig)
