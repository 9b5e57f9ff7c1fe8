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
