"""What every drawing function shares: the palette, figure reuse, and the checks of its inputs.

* :data:`OKABE_ITO` -- the colour-blind-safe palette (Okabe & Ito 2008), :func:`colour` cycles it;
* :func:`new_figure` / :func:`finish` -- draw into a given figure (cleared) or a new one, and lay it out;
* :func:`as_array` -- THE coercion of a tensor, array or list to a float64 numpy array, with checks of
  its name, number of axes, last axis and finiteness;
* :func:`check_sigma` -- THE check of a noise level;
* :func:`check_dict` -- the check of a non-empty ``label -> values`` mapping (one curve, panel or row each);
* :func:`mean_band` -- a mean over a batch axis with a +-1 standard-deviation band.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure, SubFigure

__all__ = ["OKABE_ITO", "new_figure"]

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def colour(k: int) -> str:
    """The ``k``-th colour of :data:`OKABE_ITO`, cycling."""
    return OKABE_ITO[k % len(OKABE_ITO)]


def new_figure(fig=None, figsize=(6.4, 4.0)):
    """``fig`` cleared, or a new figure of ``figsize`` (not shown until returned to Jupyter).

    ``fig`` may be a :class:`~matplotlib.figure.Figure` (a widget redraws into the same one) or a
    :class:`~matplotlib.figure.SubFigure` from ``Figure.subfigures`` (a chapter puts a package figure
    beside its own panels; give the parent ``layout="constrained"``). Raises ``TypeError`` otherwise.
    """
    if fig is None:
        return plt.figure(figsize=figsize)
    if not isinstance(fig, (Figure, SubFigure)):
        raise TypeError(f"fig must be a matplotlib Figure or SubFigure (or None), got {type(fig).__name__}")
    fig.clear()
    return fig


def finish(fig):
    """Tight layout for a :class:`~matplotlib.figure.Figure`; a sub-figure is laid out by its parent."""
    if isinstance(fig, Figure):
        fig.tight_layout()
    return fig


def as_array(v, name: str, ndim: int | None = None, last: int | None = None, *, finite: bool = True) -> np.ndarray:
    """``v`` as a new float64 numpy array (never a view of ``v``: the caller may change it freely).

    ``v``: a :class:`torch.Tensor` of any real dtype (float16 and bfloat16 included: they are widened
    exactly), a numpy array, or (nested) lists of numbers. ``ndim``: the required number of axes;
    ``last``: the required length of the last axis; ``finite``: reject NaN and infinities.
    Raises ``TypeError`` if ``v`` is not numeric, ``ValueError`` if it is empty, has the wrong shape,
    or (with ``finite``) holds a NaN or an infinity; every message names ``name``.
    """
    import torch

    if isinstance(v, torch.Tensor):
        if v.is_complex():
            raise TypeError(f"{name} must be real, got a {v.dtype} tensor")
        a = np.array(v.detach().to(device="cpu", dtype=torch.float64).numpy())
    else:
        try:
            a = np.array(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a tensor or an array of numbers, got {type(v).__name__}") from None
    if (ndim is not None and a.ndim != ndim) or (last is not None and (a.ndim == 0 or a.shape[-1] != last)) \
            or a.size == 0:
        want = (f"{ndim}-D " if ndim is not None else "") + "array" + \
            (f" with last axis {last}" if last is not None else "")
        raise ValueError(f"{name} must be a non-empty {want}, got shape {a.shape}")
    if finite and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def check_sigma(sigma, *, positive: bool = False, name: str = "sigma") -> float:
    """A noise level as a float. Raises ``TypeError`` if it is not a number (``bool`` and strings
    included), ``ValueError`` if it is NaN, infinite, negative, or (``positive=True``) zero."""
    if isinstance(sigma, (bool, str, bytes)):
        raise TypeError(f"{name} must be a number, got {type(sigma).__name__}")
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(sigma).__name__}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be finite and {'positive' if positive else 'non-negative'}, got {value}")
    return value


def check_dict(d, name: str, what: str = "label -> values") -> dict:
    """``d`` itself; ``ValueError`` unless it is a non-empty dict (of ``what``, named in the message)."""
    if not isinstance(d, dict) or not d:
        raise ValueError(f"{name} must be a non-empty dict of {what}")
    return d


def mean_band(ax, xs, vals, color, label, fmt: str = "-", *, alpha: float = 0.2, **line):
    """Plot the mean over the batch axis of ``vals`` ``(T, batch)`` (or ``(T,)``) against ``xs`` ``(T,)``
    with a +-1 standard-deviation band (when the batch has more than one member). Raises ``ValueError``
    if the lengths differ."""
    v = as_array(vals, str(label))
    if v.ndim == 1:
        v = v[:, None]
    if v.shape[0] != len(xs):
        raise ValueError(f"{label}: {v.shape[0]} values for {len(xs)} noise levels")
    mean, std = v.mean(1), v.std(1)
    ax.plot(xs, mean, fmt, color=color, label=label, **line)
    if v.shape[1] > 1:
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=alpha, lw=0)
