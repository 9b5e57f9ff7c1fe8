r"""Images: display arrays, grids and rows of images, and the figures about image samples.

Images are tensors ``(N, C, H, W)`` scaled to ``[-1, 1]`` (the EDM convention of
:mod:`diffusion_geometry.datasets`). A trajectory of images is ``(T, batch, C, H, W)``, as in
:class:`diffusion_geometry.Trajectory`. The helpers only arrange pixels:

* :func:`to_unit` maps ``[-1, 1]`` to ``[0, 1]`` for display, clipping what a noisy ``x_t`` has outside;
* :func:`image_grid` tiles images into one array for ``imshow``;
* :func:`log_spaced_steps` picks the grid steps whose noise levels are closest to log-spaced targets,
  the natural way to show a trajectory whose noise levels span ``[0.002, 80]``
  (Chen et al. 2023, image rows of the sampling and denoising trajectories);
* :func:`trajectory_rows` stacks the chosen steps of several trajectories into rows of one grid.

The figures: labelled rows of images (chapters 07-09), the samples of every sampler at one NFE
(chapter 10), latent interpolation with its norm curve (chapter 04), and the distances of samples to
their nearest training image (chapter 09).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._common import OKABE_ITO, as_array, check_dict, colour, finish, mean_band, new_figure

__all__ = ["to_unit", "image_grid", "log_spaced_steps", "trajectory_rows", "draw_image_rows",
           "draw_samples_at_nfe", "draw_latent_interpolation", "draw_nn_distances"]


def _check_images(images, name: str = "images") -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or array of shape (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {images.shape[1]}")
    return images


def to_unit(images) -> np.ndarray:
    r"""``(x + 1) / 2`` clipped to ``[0, 1]``, as a float64 numpy array of the same shape.

    ``images``: a tensor (any real dtype) or a numpy array of any shape, in ``[-1, 1]`` (values outside
    are clipped). Raises ``TypeError`` for anything else and ``ValueError`` if it holds NaN or inf.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor or array, got {type(images).__name__}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    return ((images.detach().cpu().double() + 1) / 2).clamp(0, 1).numpy()


def image_grid(images, nrow: int | None = None, *, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``images`` ``(N, C, H, W)`` in ``[-1, 1]`` into one display array in ``[0, 1]``.

    ``nrow`` images per row (default: about ``sqrt(N)``), rows filled left to right, ``pad`` pixels of
    ``pad_value`` between and around tiles. Returns ``(rows*(H+pad)+pad, nrow*(W+pad)+pad)`` for one
    channel, with a trailing channel axis of 3 for colour images (ready for ``plt.imshow``).
    """
    images = _check_images(images)
    n, c, h, w = images.shape
    if nrow is None:
        nrow = max(1, math.ceil(math.sqrt(n)))
    if not isinstance(nrow, int) or isinstance(nrow, bool) or nrow < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow!r}")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    if not 0.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value must lie in [0, 1], got {pad_value}")
    ncol = min(nrow, n)
    rows = math.ceil(n / nrow)
    unit = to_unit(images)
    grid = np.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.float64)
    for k in range(n):
        r, q = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top : top + h, left : left + w] = unit[k]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def log_spaced_steps(sigmas, n: int) -> list[int]:
    """Indices of ``n`` grid levels whose noise levels are closest (in log sigma) to ``n`` targets
    spaced evenly in log sigma between the first and the last positive level.

    ``sigmas`` is a strictly decreasing grid (a trailing 0 is ignored). Always includes the first and
    the last positive level; returns distinct indices in increasing order (fewer than ``n`` only if
    the grid has fewer positive levels).
    """
    from ..schedules import check_sigmas

    s = check_sigmas(sigmas).double()
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    pos = s[s > 0]
    logs = pos.log()
    targets = torch.linspace(float(logs[0]), float(logs[-1]), n, dtype=torch.float64)
    chosen: list[int] = []
    for t in targets:
        order = (logs - t).abs().argsort()
        for idx in order.tolist():
            if idx not in chosen:
                chosen.append(idx)
                break
        if len(chosen) == len(pos):
            break
    return sorted(chosen)


def trajectory_rows(*rows, steps) -> torch.Tensor:
    """Pick ``steps`` from each trajectory in ``rows`` and stack them, row after row, for :func:`image_grid`.

    Each row is one trajectory of images ``(T, C, H, W)`` (e.g. ``traj.x[:, k]`` or
    ``traj.denoised[:, k]``); ``steps`` indexes its first axis. Returns
    ``(len(rows) * len(steps), C, H, W)``; use ``image_grid(result, nrow=len(steps))``.
    """
    if not rows:
        raise ValueError("give at least one trajectory")
    steps = list(steps)
    if not steps:
        raise ValueError("steps is empty")
    out = []
    for j, r in enumerate(rows):
        if not isinstance(r, torch.Tensor) or r.ndim != 4:
            raise ValueError(f"row {j} must be one trajectory of images (T, C, H, W), got "
                             f"{tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__}")
        bad = [i for i in steps if not -r.shape[0] <= i < r.shape[0]]
        if bad:
            raise ValueError(f"steps {bad} are outside row {j}, which has {r.shape[0]} points")
        out.append(r[steps])
    shapes = {tuple(o.shape[1:]) for o in out}
    if len(shapes) != 1:
        raise ValueError(f"rows have different image shapes: {sorted(shapes)}")
    return torch.cat(out)


def draw_image_rows(*, fig=None, rows, col_labels=None, title=None):
    """Rows of images with a label each (e.g. the sampling and the denoising trajectory of one run).

    ``rows``: label -> images ``(n, C, H, W)`` in ``[-1, 1]``; all rows have the same ``n``.
    ``col_labels``: ``n`` strings written under the columns (e.g. the noise levels).
    Raises ``ValueError`` if the rows differ in length or ``col_labels`` has the wrong length.
    """
    rows = check_dict(rows, "rows", "label -> images")
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
    return finish(fig)


def draw_samples_at_nfe(*, fig=None, nfe, samples, n_show=8):
    """The first ``n_show`` samples of every sampler at one NFE, one row per sampler (same noise).

    ``samples``: label -> {nfe: images ``(n, C, H, W)``}; samplers without a run at ``nfe`` are skipped.
    Raises ``ValueError`` if no sampler has a run at ``nfe``.
    """
    rows = {}
    for label, by_nfe in check_dict(samples, "samples", "label -> {nfe: images}").items():
        if nfe in by_nfe:
            rows[label] = by_nfe[nfe][:n_show]
    if not rows:
        raise ValueError(f"no sampler has samples at NFE {nfe}")
    return draw_image_rows(fig=fig, rows=rows, title=f"Samples at NFE = {nfe} (same initial noise in every row)")


def draw_latent_interpolation(*, fig=None, alpha=0.5, alphas, norms, images):
    r"""Linear against spherical interpolation of two latents at one ``alpha``.

    Left: the norm ratio :math:`\lVert z_\alpha\rVert/(T\sqrt d)` against :math:`\alpha` (mean and
    +-1 std over pairs) for each method, with the closed form :math:`\sqrt{(1-\alpha)^2+\alpha^2}` of
    lerp dashed and the current ``alpha`` marked; right: the decoded image of one pair for each
    method at the grid value nearest to ``alpha``.
    ``alphas`` ``(A,)``; ``norms``: method -> ``(A, P)``; ``images``: method -> ``(A, C, H, W)`` or
    ``(A, H, W)`` in [-1, 1]. Raises ``ValueError`` on mismatched lengths or a non-finite ``alpha``.
    """
    a = as_array(alphas, "alphas", 1)
    if not isinstance(norms, dict) or not norms or not isinstance(images, dict) or not images:
        raise ValueError("norms and images must be non-empty dicts keyed by method")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    j = int(np.argmin(np.abs(a - alpha)))
    fig = new_figure(fig, (11.0, 3.8))
    gs = fig.add_gridspec(1, 2 + len(images), width_ratios=[2.2, 0.2] + [1.0] * len(images))
    ax = fig.add_subplot(gs[0, 0])
    for k, (name, v) in enumerate(norms.items()):
        v = as_array(v, f"norms[{name}]", 2)
        if v.shape[0] != a.shape[0]:
            raise ValueError(f"norms[{name}] has {v.shape[0]} rows for {a.shape[0]} values of alpha")
        mean_band(ax, a, v, colour(k), name, "o-", ms=3)
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
        im = as_array(imgs, f"images[{name}]")
        if im.shape[0] != a.shape[0] or im.ndim not in (3, 4):
            raise ValueError(f"images[{name}] must be (A, [C,] H, W) with A = {a.shape[0]}, got {im.shape}")
        pic = im[j] if im.ndim == 3 else im[j].mean(0) if im.shape[1] != 3 else np.moveaxis(im[j], 0, -1)
        axi = fig.add_subplot(gs[0, 2 + k])
        axi.imshow(np.clip((pic + 1) / 2, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axi.set_xticks([])
        axi.set_yticks([])
        axi.set_title(f"{name}, decoded", fontsize=10)
    fig.suptitle(rf"Interpolating two latents at $\alpha$ = {a[j]:.3g}", fontsize=11)
    return finish(fig)


def draw_nn_distances(*, fig=None, groups, reference=None, reference_label="reference"):
    """Distances from samples to their nearest training image, one horizontal strip per group (log x).

    ``groups``: label -> ``(N,)`` distances (positive); ``reference``: a distance drawn as a vertical
    line. Raises ``ValueError`` on a distance <= 0 (a log axis cannot show it).
    """
    groups = check_dict(groups, "groups", "label -> distances")
    fig = new_figure(fig, (6.4, 0.7 * len(groups) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)  # vertical jitter only
    for k, (label, d) in enumerate(groups.items()):
        d = as_array(d, label).ravel()
        if (d <= 0).any():
            raise ValueError(f"{label}: distances must be positive for a log axis")
        ax.scatter(d, k + rng.uniform(-0.2, 0.2, size=d.shape), s=8, color=colour(k), alpha=0.7)
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
    return finish(fig)
