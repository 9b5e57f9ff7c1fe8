"""The pictures of the line and the plane (diffusion_geometry.plotting.fields_2d): they return a Figure,
draw into a given one, draw what they are given (or the closed form they evaluate), and reject bad input.

Chapters 01-02 (marginal, denoiser), 03 and 05 (2-D trajectories, one Euler step, one finite-difference
step), 07 (basins: computed by dg.meanshift.basins, drawn here), 08 (denoiser fields, point clouds).
"""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import meanshift as ms  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402
from diffusion_geometry import plotting as P  # noqa: E402
from diffusion_geometry.datasets import training_set_2d  # noqa: E402
from diffusion_geometry.plotting import (  # noqa: E402
    draw_basins,
    draw_denoiser,
    draw_denoiser_fields,
    draw_marginal_1d,
    draw_samples_vs_training,
)

F64 = torch.float64
GM = dg.datasets.mixture_2d()


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py


# --- chapters 01-02: the noised marginal and the denoiser ------------------------------------------


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


# --- chapters 03 and 05: trajectories in the plane, one Euler step, one finite-difference step -------


@pytest.fixture(scope="module")
def run2d():
    gm = dg.datasets.mixture_2d()
    x = 80 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return dg.sample(gm, x, dg.edm_sigmas(6), "euler")


def _lines_with(ax, xs, ys):
    """Lines of ``ax`` whose data equal (xs, ys)."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_xdata()) == len(xs) and np.allclose(ln.get_xdata(), xs) and np.allclose(ln.get_ydata(), ys)]


def test_draw_trajectories_2d_draws_both_trajectories(run2d):
    fig = P.draw_trajectories_2d(x=run2d.x, denoised=run2d.denoised, zoom=2.5)
    assert len(fig.axes) == 3
    ax_full, ax_zoom, ax_den = fig.axes
    for b in range(5):
        assert _lines_with(ax_full, run2d.x[:, b, 0].numpy(), run2d.x[:, b, 1].numpy())
        assert _lines_with(ax_den, run2d.denoised[:, b, 0].numpy(), run2d.denoised[:, b, 1].numpy())
    assert ax_zoom.get_xlim() == (-2.5, 2.5) and ax_den.get_ylim() == (-2.5, 2.5)
    assert "denoising" in ax_den.get_title()


def test_draw_trajectories_2d_reuses_figure_and_rejects_bad_shapes(run2d):
    fig = plt.figure()
    out = P.draw_trajectories_2d(fig=fig, x=run2d.x, denoised=run2d.denoised)
    out = P.draw_trajectories_2d(fig=fig, x=run2d.x, denoised=run2d.denoised)
    assert out is fig and len(fig.axes) == 3
    with pytest.raises(ValueError, match="denoised must have shape"):
        P.draw_trajectories_2d(x=run2d.x, denoised=run2d.denoised[:-1])
    with pytest.raises(ValueError, match="last axis 2"):
        P.draw_trajectories_2d(x=torch.zeros(4, 2, 3), denoised=torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="zoom"):
        P.draw_trajectories_2d(x=run2d.x, denoised=run2d.denoised, zoom=-1)
    with pytest.raises(TypeError):
        P.draw_trajectories_2d(x=object(), denoised=run2d.denoised)


def test_draw_euler_step_2d_marks_the_step_and_the_fraction(run2d):
    step = 3
    fig = P.draw_euler_step_2d(step=step, sigmas=run2d.sigmas, x=run2d.x, denoised=run2d.denoised)
    ax = fig.axes[0]
    for b in range(5):
        xi, di, xn = run2d.x[step, b].numpy(), run2d.denoised[step, b].numpy(), run2d.x[step + 1, b].numpy()
        assert _lines_with(ax, [xi[0], di[0]], [xi[1], di[1]])           # the segment [x_i, D_i]
        assert _lines_with(ax, [xn[0]], [xn[1]])                         # x_{i+1}
    lam = 1 - run2d.sigmas[step + 1].item() / run2d.sigmas[step].item()
    assert f"{lam:.3f} of the way" in fig._suptitle.get_text()


def test_draw_euler_step_2d_rejects_bad_input(run2d):
    kw = dict(sigmas=run2d.sigmas, x=run2d.x, denoised=run2d.denoised)
    with pytest.raises(ValueError, match="step must be an integer"):
        P.draw_euler_step_2d(step=len(run2d.denoised), **kw)
    with pytest.raises(ValueError, match="step must be an integer"):
        P.draw_euler_step_2d(step=1.5, **kw)
    with pytest.raises(ValueError, match="levels"):
        P.draw_euler_step_2d(step=0, sigmas=run2d.sigmas[:-1], x=run2d.x, denoised=run2d.denoised)


def test_draw_euler_step_2d_works_with_animate(run2d):
    html = dg.widgets.animate(P.draw_euler_step_2d, "step", [0, 1], sigmas=run2d.sigmas, x=run2d.x,
                              denoised=run2d.denoised)
    assert "<img" in html.data or "animation" in html.data.lower()



@pytest.fixture(scope="module")
def cases():
    x = torch.tensor([[2.0, 0.45]], dtype=F64)
    return {r: dg.finite_differences.step_anatomy(GM, x, 2.0, 0.5, r=r, n_path=8) for r in (0.3, 0.5)}


def test_step_anatomy_is_consistent(cases):
    c = cases[0.5]
    # the drawn step is the package's DPM-Solver-2 step, and it lies on the segment towards D_eff
    want = dg.samplers.euler_step(c["x"], 2.0, 0.5, c["d_eff"])
    assert torch.allclose(c["x_next"], want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(c["path_x"][0], c["x"]) and torch.allclose(c["path_x"][-1], c["x_exact"], atol=1e-8)
    assert c["error"] == pytest.approx(float((c["x_next"] - c["x_exact"]).norm()), rel=1e-12)


def test_draw_finite_difference_step_draws_and_reuses_the_figure(cases):
    fig = plotting.draw_finite_difference_step(r=0.3, cases=cases, data=GM.sample(50, generator=torch.Generator().manual_seed(0)))
    ax = fig.axes[0]
    assert "r = 0.30" in ax.get_title()
    assert ax.get_xlabel().startswith("$x_1$")
    n_lines = len(ax.get_lines())
    again = plotting.draw_finite_difference_step(fig=fig, r=0.5, cases=cases)
    assert again is fig and len(fig.axes) == 1 and "r = 0.50" in fig.axes[0].get_title()
    assert len(fig.axes[0].get_lines()) == n_lines  # cleared, not stacked
    with pytest.raises(ValueError, match="no case for r=0.4"):
        plotting.draw_finite_difference_step(r=0.4, cases=cases)
    with pytest.raises(ValueError, match="cases must be a non-empty dict"):
        plotting.draw_finite_difference_step(r=0.5, cases={})
    with pytest.raises(ValueError, match=r"data must have shape \(n, 2\)"):
        plotting.draw_finite_difference_step(r=0.5, cases=cases, data=torch.zeros(3))


def test_interact_passes_fixed_arguments(cases):
    """Regression: dg.widgets.interact used to pair controls with ui.children, which drops
    ipywidgets.fixed values (they have no child widget) and shifts the others."""
    ipywidgets = pytest.importorskip("ipywidgets")
    seen = []

    def draw(*, fig=None, r=0.5, cases=None, tag=None):
        seen.append((r, tag, cases is not None))
        return plotting.draw_finite_difference_step(fig=fig, r=r, cases=cases)

    box = dg.widgets.interact(draw, cases=ipywidgets.fixed(cases), tag=ipywidgets.fixed("t"),
                              r=ipywidgets.SelectionSlider(options=[0.3, 0.5], value=0.5))
    assert isinstance(box, ipywidgets.VBox)
    assert seen and all(s == (0.5, "t", True) for s in seen)



# --- chapters 07-08: basins, denoiser fields, point clouds -----------------------------------------


def _render(fig):
    fig.canvas.draw()  # raises on bad mathtext or layout
    plt.close(fig)


def _basins(dataset, n_points, sigma, **kw):
    return ms.basins(training_set_2d(dataset, n_points), sigma, **kw)


def test_draw_basins_shows_one_colour_per_training_point_and_the_modes():
    b = _basins("ring", 5, 0.05, resolution=24, n_steps=8)
    fig = draw_basins(basins=b)
    left, right = fig.axes[0], fig.axes[1]
    mesh_l = left.collections[0].get_array().reshape(24, 24)
    np.testing.assert_array_equal(mesh_l, b.annealed.numpy())  # draws what it is given
    # at small sigma every training point has its own basin (its Voronoi cell)
    assert set(np.unique(mesh_l).astype(int)) == set(range(5))
    assert "5 basins" in left.get_title()
    # fixed bandwidth 0.05: the modes of p_sigma sit on the 5 training points
    assert "5 mode(s)" in right.get_title()
    np.testing.assert_allclose(right.collections[-1].get_offsets(), b.modes.numpy())
    _render(fig)


def test_draw_basins_fixed_bandwidth_merges_modes_at_large_sigma():
    fig = draw_basins(basins=_basins("clusters", 8, 3.0, resolution=16, n_steps=6))
    assert "1 mode(s)" in fig.axes[1].get_title()
    assert len(np.unique(fig.axes[1].collections[0].get_array())) == 1
    _render(fig)


def test_draw_basins_reuses_figure_and_rejects_bad_input():
    fig = plt.figure()
    out = draw_basins(fig=fig, basins=_basins("moons", 4, 0.3, resolution=12, n_steps=4))
    assert out is fig and len(fig.axes) == 2
    _render(fig)
    with pytest.raises(TypeError, match="Basins"):
        draw_basins(basins={"sigma": 0.5})
    with pytest.raises(TypeError):
        draw_basins(dataset="ring", sigma=0.5)  # the computation is dg.meanshift.basins, not the figure's
    # the errors of the computation (they were draw_basins' errors before it moved to meanshift.basins)
    with pytest.raises(ValueError, match="sigma"):
        _basins("ring", 8, 0.001)
    with pytest.raises(TypeError, match="number"):
        _basins("ring", 8, "big")
    with pytest.raises(ValueError, match="unknown training set"):
        _basins("spiral", 8, 0.5)
    with pytest.raises(ValueError, match="resolution"):
        _basins("ring", 8, 0.5, resolution=1)
    with pytest.raises(ValueError, match="n_steps"):
        _basins("ring", 8, 0.5, n_steps=1)


def _gm_kde():
    gm = dg.datasets.mixture_2d()
    return gm, dg.EmpiricalDenoiser(gm.sample(50, generator=torch.Generator().manual_seed(0)))

def test_draw_denoiser_fields_colours_the_gap():
    gm, kde = _gm_kde()
    fig = draw_denoiser_fields(sigma=0.5, learned=gm, optimal=kde, resolution=10, n_arrows=4)
    gap = fig.axes[0].collections[0].get_array()
    y = kde.training_points(torch.arange(len(kde)))
    lo, hi = y.min(0).values - 1, y.max(0).values + 1
    X, Y = torch.meshgrid(torch.linspace(lo[0], hi[0], 10, dtype=torch.float64),
                          torch.linspace(lo[1], hi[1], 10, dtype=torch.float64), indexing="xy")
    grid = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    expect = (gm(grid, 0.5) - kde(grid, 0.5)).norm(dim=1).numpy()
    np.testing.assert_allclose(np.asarray(gap).ravel(), expect, rtol=1e-10)
    _render(fig)
    with pytest.raises(TypeError, match="2-D"):
        draw_denoiser_fields(sigma=1.0, learned=gm, optimal=dg.EmpiricalDenoiser(torch.zeros(3, 4)))
    with pytest.raises(TypeError, match="callable"):
        draw_denoiser_fields(sigma=1.0, learned=None, optimal=kde)
    with pytest.raises(ValueError, match="sigma"):
        draw_denoiser_fields(sigma=0.0, learned=gm, optimal=kde)


def test_draw_samples_vs_training():
    g = torch.Generator().manual_seed(1)
    panels = {"a": (torch.randn(5, 2, generator=g), torch.randn(40, 2, generator=g)),
              "b": (torch.randn(300, 2, generator=g), torch.randn(40, 2, generator=g))}
    fig = draw_samples_vs_training(panels=panels)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    offsets = fig.axes[0].collections[1].get_offsets()
    np.testing.assert_allclose(np.asarray(offsets), panels["a"][0].numpy())
    _render(fig)
    with pytest.raises(ValueError, match="non-empty"):
        draw_samples_vs_training(panels={})
    with pytest.raises(ValueError, match="pair"):
        draw_samples_vs_training(panels={"a": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        draw_samples_vs_training(panels={"a": (torch.zeros(3, 3), torch.zeros(3, 2))})


def test_widget_wrappers_accept_the_part3_draw_functions():
    """Chapter 07's widget: a thin wrapper computes the basins (dg.meanshift.basins) and draws them."""

    def basins_figure(*, fig=None, dataset="ring", sigma=0.5, n_points=3):
        return draw_basins(fig=fig, basins=_basins(dataset, n_points, sigma, resolution=8, n_steps=4))

    html = dg.widgets.animate(basins_figure, "sigma", [0.1, 0.5], dataset="ring", n_points=3)
    assert "<script" in html.data

