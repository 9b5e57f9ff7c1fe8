"""Tests of Part III's drawing functions (chapters 07 and 08) and the small 2-D training sets.

The drawing functions compute nothing the tests could not: each test checks that the picture shows
what the package computes (basin labels, curve values) and that bad input is rejected.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import meanshift as ms  # noqa: E402
from diffusion_geometry.plotting import (  # noqa: E402
    draw_basins,
    draw_denoiser_fields,
    draw_samples_vs_training,
    draw_score_deviation,
)


def _render(fig):
    fig.canvas.draw()  # raises on bad mathtext or layout
    plt.close(fig)


@pytest.mark.parametrize("name", ms.TRAINING_SETS_2D)
def test_training_sets_2d(name):
    a = ms.training_set_2d(name, 11, seed=3)
    b = ms.training_set_2d(name, 11, seed=3)
    assert a.shape == (11, 2) and a.dtype == torch.float64
    assert torch.equal(a, b)  # seeded
    assert a.abs().max() < 4.0  # scale about 2
    assert not torch.equal(a, ms.training_set_2d(name, 11, seed=4))


def test_training_set_clusters_is_unbalanced():
    y = ms.training_set_2d("clusters", 8)
    left = (y[:, 0] < 0.25).sum().item()
    assert left == 6


def test_training_set_errors():
    with pytest.raises(ValueError, match="unknown training set"):
        ms.training_set_2d("spiral", 5)
    with pytest.raises(ValueError, match="positive integer"):
        ms.training_set_2d("ring", 0)


def test_draw_basins_shows_one_colour_per_training_point_and_the_modes():
    fig = draw_basins(dataset="ring", sigma=0.05, n_points=5, resolution=24, n_steps=8)
    left, right = fig.axes[0], fig.axes[1]
    mesh_l = left.collections[0].get_array().reshape(24, 24)
    # at small sigma every training point has its own basin (its Voronoi cell)
    assert set(np.unique(mesh_l).astype(int)) == set(range(5))
    assert "5 basins" in left.get_title()
    # fixed bandwidth 0.05: the modes of p_sigma sit on the 5 training points
    assert "5 mode(s)" in right.get_title()
    _render(fig)


def test_draw_basins_fixed_bandwidth_merges_modes_at_large_sigma():
    fig = draw_basins(dataset="clusters", sigma=3.0, n_points=8, resolution=16, n_steps=6)
    assert "1 mode(s)" in fig.axes[1].get_title()
    assert len(np.unique(fig.axes[1].collections[0].get_array())) == 1
    _render(fig)


def test_draw_basins_reuses_figure_and_rejects_bad_input():
    fig = plt.figure()
    out = draw_basins(fig=fig, dataset="moons", sigma=0.3, n_points=4, resolution=12, n_steps=4)
    assert out is fig and len(fig.axes) == 2
    _render(fig)
    with pytest.raises(ValueError, match="sigma"):
        draw_basins(sigma=0.001)
    with pytest.raises(TypeError, match="number"):
        draw_basins(sigma="big")
    with pytest.raises(ValueError, match="unknown training set"):
        draw_basins(dataset="spiral")
    with pytest.raises(ValueError, match="resolution"):
        draw_basins(resolution=1)
    with pytest.raises(ValueError, match="n_steps"):
        draw_basins(n_steps=1)


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


def test_draw_score_deviation_per_dim_and_into_axes():
    _, _, dev = _deviation()
    fig, axes = plt.subplots(1, 2)
    out = draw_score_deviation(deviation=dev, per_dim=True, ax=axes[1], title="t")
    assert out is fig
    np.testing.assert_allclose(axes[1].get_lines()[3].get_ydata(), dev.on_optimal.mean(1).numpy() / np.sqrt(2))
    assert axes[1].get_title() == "t"
    _render(fig)
    with pytest.raises(TypeError, match="ScoreDeviation"):
        draw_score_deviation(deviation={"a": 1})


def test_draw_denoiser_fields_colours_the_gap():
    gm, kde, _ = _deviation()
    fig = draw_denoiser_fields(sigma=0.5, learned=gm, kde=kde, resolution=10, n_arrows=4)
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
        draw_denoiser_fields(sigma=1.0, learned=gm, kde=dg.EmpiricalDenoiser(torch.zeros(3, 4)))
    with pytest.raises(TypeError, match="callable"):
        draw_denoiser_fields(sigma=1.0, learned=None, kde=kde)
    with pytest.raises(ValueError, match="sigma"):
        draw_denoiser_fields(sigma=0.0, learned=gm, kde=kde)


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
    html = dg.widgets.animate(draw_basins, "sigma", [0.1, 0.5], dataset="ring", n_points=3, resolution=8, n_steps=4)
    assert "<script" in html.data
