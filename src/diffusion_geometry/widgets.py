"""Widgets that work where the reader is.

A chapter's interactive figure is a *pure drawing function* ``draw(*, fig=None, **params) -> Figure``
(in :mod:`diffusion_geometry.plotting`, where tests call it). It draws into ``fig`` after clearing it,
or into a new figure. Two thin wrappers show it:

* :func:`interact` -- a live ipywidgets control, for a reader with a kernel (Jupyter, Colab);
* :func:`animate` -- a static fallback for the rendered HTML book: a ``matplotlib.animation``
  exported with ``to_jshtml()``, which has its own slider and needs no kernel.

A control's initial value must lie on the control's own grid. A browser's slider snaps its value to
``min + k * step`` when it first renders and sends the snapped value back, so an off-grid value (a
``FloatLogSlider`` at sigma = 0.5 with exponents -2, -1.95, ...) is redrawn at once at another value
(0.501): the first figure disagrees with the readout (found by ``tests/test_browser.py``).
:func:`interact` refuses such controls; :func:`log_slider` gives log-spaced round values, exactly.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import matplotlib.pyplot as plt

__all__ = ["interact", "animate", "log_slider", "ROUND_MANTISSAS"]

# Round values per decade, about evenly spaced in log (the E-series idea): 10 steps per factor of 10.
ROUND_MANTISSAS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)


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
    for control in ui.kwargs_widgets:
        _check_on_grid(control)
    update(**ui.kwargs)  # all current values, including ipywidgets.fixed ones (which have no child widget)
    return ipywidgets.VBox([ui, out])


def log_slider(value: float, lo: float, hi: float, description: str = "sigma"):
    """A slider over the round values from ``lo`` to ``hi`` (``ROUND_MANTISSAS`` times powers of 10).

    An ``ipywidgets.SelectionSlider``: the browser sends the index of the option, so the value the
    kernel draws is exactly the value the readout shows (a ``FloatLogSlider`` works in exponents and
    can send back a value a rounding away). ``value`` must be one of those round values.

    Raises ``ValueError`` unless ``0 < lo <= value <= hi`` and ``value`` is a round value.
    """
    import ipywidgets

    if not (0 < lo <= value <= hi):
        raise ValueError(f"log_slider needs 0 < lo <= value <= hi, got lo={lo}, value={value}, hi={hi}")
    decades = range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
    options = [v for d in decades for m in ROUND_MANTISSAS if lo <= (v := float(f"{m}e{d}")) <= hi]
    if value not in options:
        raise ValueError(f"log_slider value {value} is not one of its round values {options}")
    return ipywidgets.SelectionSlider(options=[(f"{v:g}", v) for v in options], value=value,
                                      description=description)


def _check_on_grid(control) -> None:
    """Raise ``ValueError`` when a numeric slider's value is not ``min + k * step`` (exponents for log)."""
    import ipywidgets

    if isinstance(control, ipywidgets.FloatLogSlider):
        position = (math.log(control.value, control.base) - control.min) / control.step
    elif isinstance(control, (ipywidgets.FloatSlider, ipywidgets.IntSlider)):
        position = (control.value - control.min) / control.step
    else:
        return  # selections send an index; text and check boxes have no grid
    if abs(position - round(position)) > 1e-9:
        raise ValueError(
            f"widget control {control.description!r}: value {control.value} is not on its grid (min "
            f"{control.min}, step {control.step}); a browser would snap it and redraw at once, so the "
            "first figure would not match the readout. Put the value on the grid, or use "
            "dg.widgets.log_slider for log-spaced values.")


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
