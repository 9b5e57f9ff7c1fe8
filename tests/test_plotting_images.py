"""Images (diffusion_geometry.plotting.images): the display helpers to_unit, image_grid, log_spaced_steps and
trajectory_rows (moved from diffusion_geometry.imaging), and the image figures."""
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402
from diffusion_geometry import plotting as P  # noqa: E402


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py

from diffusion_geometry.plotting import image_grid, log_spaced_steps, to_unit, trajectory_rows  # noqa: E402

def _images(n=5, c=1, h=4, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2.4 - 1.2  # a little outside [-1, 1], like noisy x_t


# --------------------------------------------------------------------------------------------------
# to_unit / image_grid
# --------------------------------------------------------------------------------------------------


def test_to_unit_maps_the_range_and_clips():
    x = torch.tensor([[-1.0, 0.0, 1.0, -3.0, 2.5]])
    assert np.allclose(to_unit(x), [[0.0, 0.5, 1.0, 0.0, 1.0]])
    assert to_unit(np.array([0.5])).tolist() == [0.75]


def test_to_unit_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        to_unit(torch.tensor([float("nan")]))
    with pytest.raises(TypeError):
        to_unit([0.1, 0.2])


def test_image_grid_places_every_tile_where_the_formula_says():
    imgs = _images(n=5, h=4, w=3)
    grid = image_grid(imgs, nrow=2, pad=1, pad_value=1.0)
    # 3 rows of 2 tiles: height 3*(4+1)+1, width 2*(3+1)+1
    assert grid.shape == (16, 9)
    for k in range(5):
        r, q = divmod(k, 2)
        tile = grid[1 + r * 5: 1 + r * 5 + 4, 1 + q * 4: 1 + q * 4 + 3]
        expect = np.clip((imgs[k, 0].double().numpy() + 1) / 2, 0, 1)
        assert np.array_equal(tile, expect)
    # the sixth slot is empty, so it keeps the padding value; so do the separators
    assert (grid[11:15, 5:8] == 1.0).all()
    assert (grid[0] == 1.0).all() and (grid[:, 4] == 1.0).all()


def test_image_grid_default_layout_and_colour():
    grid = image_grid(_images(n=9, h=2, w=2), pad=0)
    assert grid.shape == (6, 6)
    colour = image_grid(_images(n=2, c=3, h=2, w=2), nrow=2, pad=0)
    assert colour.shape == (2, 4, 3)


@pytest.mark.parametrize("kwargs, err", [
    (dict(images=torch.zeros(2, 1, 4)), ValueError),
    (dict(images=torch.zeros(0, 1, 4, 4)), ValueError),
    (dict(images=torch.zeros(2, 2, 4, 4)), ValueError),
    (dict(images=[[0.0]]), TypeError),
    (dict(images=torch.zeros(2, 1, 4, 4), nrow=0), ValueError),
    (dict(images=torch.zeros(2, 1, 4, 4), pad=-1), ValueError),
    (dict(images=torch.zeros(2, 1, 4, 4), pad_value=2.0), ValueError),
])
def test_image_grid_rejects_bad_input(kwargs, err):
    with pytest.raises(err):
        image_grid(**kwargs)


# --------------------------------------------------------------------------------------------------
# log_spaced_steps / trajectory_rows
# --------------------------------------------------------------------------------------------------


def test_log_spaced_steps_matches_a_brute_force_choice():
    sig = dg.edm_sigmas(40)
    steps = log_spaced_steps(sig, 6)
    assert steps[0] == 0 and steps[-1] == 40
    assert steps == sorted(set(steps)) and len(steps) == 6
    logs = np.log(sig.numpy())
    for t in np.linspace(logs[0], logs[-1], 6):
        nearest = int(np.argmin(np.abs(logs - t)))
        assert nearest in steps  # on this grid the targets never collide


def test_log_spaced_steps_ignores_a_final_zero_and_caps_at_the_grid():
    sig = dg.append_zero(dg.edm_sigmas(3))
    assert log_spaced_steps(sig, 10) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        log_spaced_steps(sig, 1)
    with pytest.raises(ValueError):
        log_spaced_steps(torch.tensor([1.0, 2.0]), 3)


def test_trajectory_rows_stacks_the_chosen_steps():
    a, b = _images(n=6, seed=1), _images(n=6, seed=2)
    out = trajectory_rows(a, b, steps=[0, 2, 5])
    assert out.shape == (6, 1, 4, 3)
    assert torch.equal(out[:3], a[[0, 2, 5]]) and torch.equal(out[3:], b[[0, 2, 5]])
    with pytest.raises(ValueError, match="outside"):
        trajectory_rows(a, steps=[6])
    with pytest.raises(ValueError):
        trajectory_rows(steps=[0])
    with pytest.raises(ValueError):
        trajectory_rows(a, _images(n=6, h=5), steps=[0])


# --------------------------------------------------------------------------------------------------
# image figures
# --------------------------------------------------------------------------------------------------


def _lines_with(ax, xs, ys):
    """Lines of ``ax`` whose data equal (xs, ys)."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_xdata()) == len(xs) and np.allclose(ln.get_xdata(), xs) and np.allclose(ln.get_ydata(), ys)]



def test_draw_image_rows_and_samples_at_nfe():
    rows = {"x": _images(n=4), "D": _images(n=4, seed=3)}
    fig = plotting.draw_image_rows(rows=rows, col_labels=["80", "8", "0.8", "0.002"])
    assert len(fig.axes) == 2
    shown = fig.axes[0].get_images()[0].get_array()
    assert np.array_equal(np.asarray(shown), image_grid(rows["x"], nrow=4, pad=1))
    with pytest.raises(ValueError):
        plotting.draw_image_rows(rows={"x": _images(n=4), "D": _images(n=3)})
    with pytest.raises(ValueError):
        plotting.draw_image_rows(rows=rows, col_labels=["a"])
    samples = {"euler": {5: _images(n=8), 10: _images(n=8)}, "heun": {10: _images(n=8)}}
    fig = plotting.draw_samples_at_nfe(nfe=10, samples=samples, n_show=3)
    assert len(fig.axes) == 2
    fig = plotting.draw_samples_at_nfe(nfe=5, samples=samples)
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="NFE 7"):
        plotting.draw_samples_at_nfe(nfe=7, samples=samples)



def test_draw_latent_interpolation_picks_nearest_alpha():
    alphas = torch.linspace(0, 1, 5)
    norms = {"lerp": torch.sqrt((1 - alphas) ** 2 + alphas**2)[:, None].repeat(1, 4), "slerp": torch.ones(5, 4)}
    imgs = torch.linspace(-1, 1, 5)[:, None, None, None].repeat(1, 1, 3, 3)     # image j is constant
    fig = P.draw_latent_interpolation(alpha=0.3, alphas=alphas, norms=norms, images={"lerp": imgs, "slerp": -imgs})
    assert "0.25" in fig._suptitle.get_text()
    ax = fig.axes[0]
    assert _lines_with(ax, alphas.numpy(), norms["lerp"].numpy().mean(1))
    shown = fig.axes[1].get_images()[0].get_array()
    assert np.allclose(shown, (imgs[1, 0].numpy() + 1) / 2)              # alpha = 0.25 is index 1
    assert np.allclose(fig.axes[2].get_images()[0].get_array(), (-imgs[1, 0].numpy() + 1) / 2)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        P.draw_latent_interpolation(alpha=math.nan, alphas=alphas, norms=norms, images={"lerp": imgs})
    with pytest.raises(ValueError, match="values of alpha"):
        P.draw_latent_interpolation(alpha=0.5, alphas=alphas, norms={"lerp": torch.ones(3, 2)}, images={"lerp": imgs})
    with pytest.raises(ValueError, match="images"):
        P.draw_latent_interpolation(alpha=0.5, alphas=alphas, norms=norms, images={"lerp": imgs[:2]})



def test_draw_nn_distances():
    groups = {"a": torch.rand(10, generator=torch.Generator().manual_seed(0)) + 0.1, "b": torch.rand(5) + 1}
    fig = plotting.draw_nn_distances(groups=groups, reference=0.056)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert np.allclose(ax.collections[0].get_offsets()[:, 0], groups["a"].numpy())
    assert ax.get_lines()[0].get_xdata()[0] == pytest.approx(float(np.median(groups["a"].numpy())))
    with pytest.raises(ValueError, match="positive"):
        plotting.draw_nn_distances(groups={"a": torch.zeros(3)})
