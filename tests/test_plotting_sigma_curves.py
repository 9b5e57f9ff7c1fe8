"""Quantities against sigma (diffusion_geometry.plotting.sigma_curves): each test checks the drawn data
against the input, figure reuse, and the errors on bad input."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402
from diffusion_geometry.plotting import draw_score_deviation  # noqa: E402


from plot_helpers import curve as _curve, lines_with as _lines_with  # noqa: E402

pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py

SIG = dg.edm_sigmas(10)


def test_draw_norms_vs_sigma_and_reuse():
    fig = plotting.draw_norms_vs_sigma(sigmas=SIG, curves={"x": _curve(), "D": _curve(10)}, dim=784)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "x" in labels and "D" in labels
    # the reference line is sigma * sqrt(d)
    ref = [ln for ln in ax.get_lines() if "sqrt" in ln.get_label()][0]
    assert np.allclose(ref.get_ydata(), SIG.numpy() * math.sqrt(784))
    again = plotting.draw_norms_vs_sigma(fig=fig, sigmas=SIG, curves={"x": _curve()}, dim=784)
    assert again is fig and len(fig.axes) == 1
    with pytest.raises(ValueError):
        plotting.draw_norms_vs_sigma(sigmas=SIG, curves={}, dim=784)
    with pytest.raises(ValueError):
        plotting.draw_norms_vs_sigma(sigmas=SIG, curves={"x": _curve(12)}, dim=784)


def test_draw_chord_statistics_plots_the_mean():
    dev, dist = _curve(seed=1), _curve(seed=2)
    fig = plotting.draw_chord_statistics(panels={"a": dict(sigmas=SIG, deviation=dev, distance=dist),
                                                 "b": dict(sigmas=SIG, deviation=dev, distance=dist)})
    assert len(fig.axes) == 4  # two panels, each with a twin axis
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), dev.double().mean(1).numpy())
    with pytest.raises(ValueError, match="lacks"):
        plotting.draw_chord_statistics(panels={"a": dict(sigmas=SIG, deviation=dev)})



def test_draw_cosine_to_end_and_fd_per_step():
    fig = plotting.draw_cosine_to_end(sigmas=SIG, curves={"learned": _curve(10)})
    assert len(fig.axes) == 1
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), _curve(10).double().mean(1).numpy())
    fig = plotting.draw_fd_per_step(sigmas=SIG, curves={"x": torch.arange(11.0) + 1}, target=3.0)
    assert len(fig.axes[0].get_lines()) == 2
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == list(np.arange(11.0) + 1)


def test_draw_distance_to_end_median_and_markers():
    sig = torch.tensor([10.0, 5.0, 1.0, 0.1])
    d = torch.arange(12, dtype=torch.float64).reshape(4, 3) + 1
    fig = plotting.draw_distance_to_end(sigmas=sig, distances={"a": d}, threshold=2.0, settle={"a": 3.0})
    ax = fig.axes[0]
    assert _lines_with(ax, sig.numpy(), np.median(d.numpy(), axis=1))
    assert _lines_with(ax, [3.0, 3.0], [0, 1])                           # the settling line
    assert _lines_with(ax, [0, 1], [2.0, 2.0])                           # the threshold
    with pytest.raises(ValueError, match="non-empty dict"):
        plotting.draw_distance_to_end(sigmas=sig, distances={})
    with pytest.raises(ValueError, match="rows for 4 noise levels"):
        plotting.draw_distance_to_end(sigmas=sig, distances={"a": torch.ones(5, 2)})


def test_draw_norm_shell_plots_mean_ratio_and_expected():
    sig = torch.tensor([1.0, 10.0, 80.0])
    g = torch.Generator().manual_seed(1)
    r = {64: 1 + 0.1 * torch.randn(3, 50, generator=g), 784: 1 + 0.03 * torch.randn(3, 50, generator=g)}
    exp = {64: torch.tensor([1.2, 1.01, 1.0])}
    fig = plotting.draw_norm_shell(sigmas=sig, ratios=r, expected=exp)
    ax1, ax2 = fig.axes
    for v in r.values():
        assert _lines_with(ax1, sig.numpy(), v.numpy().mean(1))
    assert _lines_with(ax1, sig.numpy(), exp[64].numpy())
    assert "80" in ax2.get_xlabel()                                      # histogram at the largest sigma
    with pytest.raises(ValueError, match="rows for 3 noise levels"):
        plotting.draw_norm_shell(sigmas=sig, ratios={2: torch.ones(2, 5)})
    with pytest.raises(ValueError, match="expected"):
        plotting.draw_norm_shell(sigmas=sig, ratios=r, expected={64: torch.ones(2)})



def _render(fig):
    fig.canvas.draw()  # raises on bad mathtext or layout
    plt.close(fig)


def _deviation():
    gm = dg.datasets.mixture_2d()
    g = torch.Generator().manual_seed(0)
    kde = dg.EmpiricalDenoiser(gm.sample(50, generator=g))
    x = 10 * torch.randn(6, 2, generator=g, dtype=torch.float64)
    return gm, kde, dg.deviation.score_deviation(gm, kde, x, dg.edm_sigmas(8, sigma_max=10.0))


def test_draw_score_deviation_plots_the_batch_means():
    _, _, dev = _deviation()
    fig = draw_score_deviation(deviation=dev)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines()]
    assert len(lines) == 4
    np.testing.assert_allclose(lines[2].get_ydata(), dev.on_learned.mean(1).numpy())
    np.testing.assert_allclose(lines[0].get_xdata(), dev.sigmas[:-1].numpy())
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    _render(fig)


def test_draw_score_deviation_per_dim_and_into_a_subfigure():
    _, _, dev = _deviation()
    fig = plt.figure(layout="constrained")
    left, right = fig.subfigures(1, 2)
    left.add_subplot(1, 1, 1).plot([0, 1], [0, 1])  # a chapter's own panel beside the package's
    out = draw_score_deviation(fig=right, deviation=dev, per_dim=True, title="t")
    assert out is right and len(right.axes) == 1 and len(left.axes) == 1
    ax = right.axes[0]
    np.testing.assert_allclose(ax.get_lines()[3].get_ydata(), dev.on_optimal.mean(1).numpy() / np.sqrt(2))
    assert ax.get_title() == "t"
    with pytest.raises(TypeError):
        draw_score_deviation(deviation=dev, ax=ax)  # one way to say where: fig=
    _render(fig)
    with pytest.raises(TypeError, match="ScoreDeviation"):
        draw_score_deviation(deviation={"a": 1})

