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

    The figure goes into the ``Output`` widget by setting its ``outputs`` state (one assignment, so a
    live front end swaps the image without flicker), never by ``with out: display(...)``. The context
    manager makes a headless executor (nbclient, hence myst-nb, jupyter-book and nbconvert) mimic the
    Output widget and send a ``comm_msg`` on the *shell* socket for every output, while it is awaiting
    the cell's ``execute_reply`` on that same socket; with pyzmq's edge-triggered socket notification
    that send can swallow the wake-up of the reply, and the build waits, idle, for the whole cell
    timeout (measured: 3 of 20 ten-cell runs stalled; ``tests/test_widgets.py`` keeps this path out).
    """
    import ipywidgets

    fig = plt.figure()
    plt.close(fig)
    out = ipywidgets.Output()

    def update(**params):
        draw(fig=fig, **params)
        out.outputs = (_display_data(fig),)

    ui = ipywidgets.interactive(update, **controls)
    update(**ui.kwargs)  # all current values, including ipywidgets.fixed ones (which have no child widget)
    return ipywidgets.VBox([ui, out])


def _display_data(obj) -> dict:
    """``obj`` as one nbformat ``display_data`` output (what ``display(obj)`` would send)."""
    from IPython.core.formatters import format_display_data

    data, metadata = format_display_data(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


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
