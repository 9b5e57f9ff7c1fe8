"""Helpers shared by the plotting tests (``tests/test_plotting_*.py``)."""
import numpy as np
import torch


def curve(t=11, b=4, seed=0):
    """A positive ``(t, b)`` tensor: ``b`` curves over ``t`` noise levels."""
    return torch.rand(t, b, generator=torch.Generator().manual_seed(seed)) + 0.1


def lines_with(ax, xs, ys):
    """Lines of ``ax`` whose data equal (xs, ys)."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_xdata()) == len(xs) and np.allclose(ln.get_xdata(), xs) and np.allclose(ln.get_ydata(), ys)]
