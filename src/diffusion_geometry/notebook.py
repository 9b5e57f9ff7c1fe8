"""What a chapter needs from the notebook it runs in, wherever that is.

A chapter is built into the book by myst-nb, and is also opened by readers in JupyterLab, in Colab, or
in a bare Jupyter with only this package installed (the course wheel). :func:`glue` is the one name a
chapter takes from myst-nb; here it works in all of these.
"""
from __future__ import annotations

__all__ = ["glue"]


def glue(name: str, variable, display: bool = True) -> None:
    """Record ``variable`` under ``name`` for the book's prose, as ``myst_nb.glue`` does.

    Where myst-nb is installed (the book build, the project's environment) this is ``myst_nb.glue``:
    the value's display form is stored in the cell's outputs under ``name``, shown if ``display``.
    Where it is not (a student's Colab or Jupyter with only this package), there is no book to glue
    into: the value is shown if ``display``, and nothing else happens.

    A NumPy scalar or a one-element tensor is stored as the Python number it holds: with NumPy 2 its
    display form is ``np.float64(0.93)``, which the prose's ``{glue:text}`name:.2f``` cannot format
    (the book build would warn).

    Raises ``TypeError`` when ``name`` is not a string (myst-nb would store an unusable key).
    """
    if not isinstance(name, str):
        raise TypeError(f"glue name must be a string, got {type(name).__name__}")
    variable = _plain_number(variable)
    try:
        from myst_nb import glue as myst_glue
    except ModuleNotFoundError:
        if display:
            from IPython.display import display as show

            show(variable)
        return
    myst_glue(name, variable, display)


def _plain_number(value):
    """``value``, or the Python number a NumPy scalar or a one-element torch tensor holds."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if type(value).__module__ == "torch" and hasattr(value, "numel") and value.numel() == 1:
        return value.item()
    return value
