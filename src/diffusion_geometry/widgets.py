"""Widgets that work where the reader is.

A chapter's interactive figure is a *pure drawing function* ``draw(*, fig=None, **params) -> Figure``
(in :mod:`diffusion_geometry.plotting`, where tests call it). It draws into ``fig`` after clearing it,
or into a new figure. Two thin wrappers show it:

* :func:`interact` -- a live ipywidgets control, for a reader with a kernel (Jupyter, Colab);
* :func:`animate` -- a static fallback for the rendered HTML book: a ``matplotlib.animation``
  exported with ``to_jshtml()``, which has its own slider and needs no kernel.
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt

__all__ = ["interact", "animate"]


def interact(draw: Callable, **controls):
    """``ipywidgets.interact`` over ``draw``; each control is an ipywidgets abbreviation or widget.

    The figure is redrawn in place, so dragging a slider does not stack figures.
    """
    import ipywidgets
    from IPython.display import display

    fig = plt.figure()
    plt.close(fig)
    out = ipywidgets.Output()

    def update(**params):
        draw(fig=fig, **params)
        out.clear_output(wait=True)
        with out:
            display(fig)

    ui = ipywidgets.interactive(update, **controls)
    update(**ui.kwargs)  # all current values, including ipywidgets.fixed ones (which have no child widget)
    return ipywidgets.VBox([ui, out])


def animate(draw: Callable, param: str, values: Sequence, *, interval: int = 600, **fixed):
    """A kernel-free slider: one frame per value of ``param``, exported as HTML with ``to_jshtml``."""
    from IPython.display import HTML
    from matplotlib import animation

    if len(values) == 0:
        raise ValueError("animate needs at least one value")
    fig = draw(**{param: values[0]}, **fixed)

    def frame(v):
        draw(fig=fig, **{param: v}, **fixed)
        return []

    anim = animation.FuncAnimation(fig, frame, frames=list(values), interval=interval, blit=False)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(html)
