"""The drawing functions of chapters 1-2 (the VE-SDE and the denoiser): they return a Figure, draw
into a given one, draw what the package computes, and reject bad parameters."""
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry.plotting import draw_denoiser, draw_marginal_1d  # noqa: E402


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py


def _line(ax, label_part):
    lines = [ln for ln in ax.get_lines() if label_part in ln.get_label()]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    return lines[0]


# -- draw_marginal_1d ------------------------------------------------------------------------------


def test_marginal_returns_a_figure_and_reuses_fig():
    fig = draw_marginal_1d(sigma=0.5)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    again = draw_marginal_1d(fig=fig, sigma=2.0)
    assert again is fig and len(fig.axes) == 2  # cleared, not stacked
    assert "2" in fig.axes[0].get_title()


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.0, 3.0])
def test_marginal_density_curve_is_a_probability_density(sigma):
    """The drawn p_sigma integrates to 1 over a range that holds all its mass."""
    fig = draw_marginal_1d(sigma=sigma, xlim=(-25.0, 25.0), n_points=20001)
    x, p = _line(fig.axes[0], r"p_\sigma").get_data()
    assert np.all(p >= 0)
    assert abs(np.trapezoid(p, x) - 1.0) < 1e-6


def test_marginal_score_curve_is_the_derivative_of_the_log_density():
    """The score panel is d/dx log of the density panel (central differences, float64)."""
    fig = draw_marginal_1d(sigma=0.4, xlim=(-3.0, 4.0), n_points=7001, score_ylim=1e6)
    x, p = _line(fig.axes[0], r"p_\sigma").get_data()
    _, score = _line(fig.axes[1], "score").get_data()
    fd = np.gradient(np.log(p), x)
    interior = slice(5, -5)
    assert np.max(np.abs(fd[interior] - score[interior])) < 1e-4 * (1 + np.max(np.abs(score)))


def test_marginal_uses_the_given_mixture():
    mix = dg.GaussianMixture(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0.25], dtype=torch.float64))
    fig = draw_marginal_1d(sigma=0.0, mixture=mix, xlim=(-4.0, 6.0), n_points=1001)
    x, p = _line(fig.axes[0], r"p_\sigma").get_data()
    assert x[np.argmax(p)] == pytest.approx(1.0, abs=0.011)  # the mode of N(1, 0.5^2)
    assert np.max(p) == pytest.approx(1 / math.sqrt(2 * math.pi * 0.25), rel=1e-4)


@pytest.mark.parametrize("kwargs, err", [
    ({"sigma": -0.1}, ValueError),
    ({"sigma": float("nan")}, ValueError),
    ({"sigma": float("inf")}, ValueError),
    ({"sigma": "1"}, TypeError),
    ({"sigma": True}, TypeError),
    ({"mixture": dg.datasets.mixture_2d()}, ValueError),
    ({"mixture": "mixture"}, TypeError),
    ({"xlim": (1.0, 0.0)}, ValueError),
    ({"xlim": 3.0}, ValueError),
    ({"score_ylim": 0.0}, ValueError),
    ({"n_points": 1}, ValueError),
])
def test_marginal_rejects_bad_parameters(kwargs, err):
    with pytest.raises(err):
        draw_marginal_1d(**kwargs)


# -- draw_denoiser ---------------------------------------------------------------------------------


def test_denoiser_returns_a_figure_and_reuses_fig():
    fig = draw_denoiser(sigma=0.5)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert draw_denoiser(fig=fig, sigma=1.0) is fig and len(fig.axes) == 3


def test_denoiser_curves_are_the_package_denoisers():
    mix = dg.datasets.mixture_1d()
    pts = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    fig = draw_denoiser(sigma=0.3, mixture=mix, points=pts)
    x, d_mix = _line(fig.axes[0], "mixture").get_data()
    xs = torch.as_tensor(np.asarray(x, dtype=float))[:, None]
    assert np.allclose(d_mix, mix.denoise(xs, 0.3)[:, 0].numpy(), atol=1e-12)
    _, d_emp = _line(fig.axes[0], "3 points").get_data()
    # the optimal denoiser of a finite set is a convex combination of its points
    assert np.all(d_emp >= -1.0 - 1e-12) and np.all(d_emp <= 2.0 + 1e-12)
    # and at small noise it snaps to the nearest point away from the midpoints -0.25 and 1.25
    fig = draw_denoiser(fig=fig, sigma=0.01, points=pts)
    x, d_emp = _line(fig.axes[0], "3 points").get_data()
    x = np.asarray(x)
    nearest = np.array([-1.0, 0.5, 2.0])[np.argmin(np.abs(x[:, None] - np.array([-1.0, 0.5, 2.0])), 1)]
    away = np.min(np.abs(x[:, None] - np.array([-0.25, 1.25])), 1) > 0.05
    assert np.max(np.abs(np.asarray(d_emp)[away] - nearest[away])) < 1e-6


@pytest.mark.parametrize("panel", [1, 2])
def test_denoiser_arrows_end_at_the_data_mean_at_large_noise(panel):
    """Arrows go from x to D(x; sigma); as sigma grows, D tends to the mean of the data."""
    pts2 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], dtype=torch.float64)
    fig = draw_denoiser(sigma=200.0, points_2d=pts2)
    quiver = [c for c in fig.axes[panel].collections if isinstance(c, matplotlib.quiver.Quiver)]
    assert len(quiver) == 1
    q = quiver[0]
    heads = q.get_offsets() + np.stack([q.U, q.V], 1)
    mean = np.zeros(2) if panel == 1 else pts2.mean(0).numpy()  # mixture_2d is centred at 0
    assert np.max(np.linalg.norm(heads - mean, axis=1)) < 1e-3


@pytest.mark.parametrize("kwargs, err", [
    ({"sigma": 0.0}, ValueError),
    ({"sigma": -1.0}, ValueError),
    ({"sigma": None}, TypeError),
    ({"mixture": dg.datasets.mixture_2d()}, ValueError),
    ({"mixture_2d": dg.datasets.mixture_1d()}, ValueError),
    ({"points": torch.zeros(4, 2)}, ValueError),
    ({"points": torch.zeros(0, 1)}, ValueError),
    ({"points": [[0.0]]}, ValueError),
    ({"points_2d": torch.zeros(4)}, ValueError),
    ({"xlim": (0.0, 0.0)}, ValueError),
    ({"grid": 1}, ValueError),
])
def test_denoiser_rejects_bad_parameters(kwargs, err):
    with pytest.raises(err):
        draw_denoiser(**{"sigma": 0.5, **kwargs})


def test_static_fallback_animates_both_widgets():
    """The HTML fallback of each chapter: one frame per sigma, with a kernel-free slider."""
    for draw in (draw_marginal_1d, draw_denoiser):
        html = dg.widgets.animate(draw, "sigma", [0.1, 1.0]).data
        assert "<input" in html and "range" in html
