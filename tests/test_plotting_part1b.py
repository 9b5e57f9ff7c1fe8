"""The drawing functions of chapters 3 and 4 (diffusion_geometry.plotting, Part I section 3-4).

Each test checks that a function draws what it is given (line data, marker positions, titles computed
from the inputs), that it reuses a figure passed in, and that it rejects bad input with a clear message.
"""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting as P  # noqa: E402


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py


@pytest.fixture(scope="module")
def run2d():
    gm = dg.datasets.mixture_2d()
    x = 80 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return dg.sample(gm, x, dg.edm_sigmas(6), method="euler")


def _lines_with(ax, xs, ys):
    """Lines of ``ax`` whose data equal (xs, ys)."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_xdata()) == len(xs) and np.allclose(ln.get_xdata(), xs) and np.allclose(ln.get_ydata(), ys)]


# --- chapter 3 -------------------------------------------------------------------------------------


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


def test_draw_distance_to_end_median_and_markers():
    sig = torch.tensor([10.0, 5.0, 1.0, 0.1])
    d = torch.arange(12, dtype=torch.float64).reshape(4, 3) + 1
    fig = P.draw_distance_to_end(sigmas=sig, distances={"a": d}, threshold=2.0, settle={"a": 3.0})
    ax = fig.axes[0]
    assert _lines_with(ax, sig.numpy(), np.median(d.numpy(), axis=1))
    assert _lines_with(ax, [3.0, 3.0], [0, 1])                           # the settling line
    assert _lines_with(ax, [0, 1], [2.0, 2.0])                           # the threshold
    with pytest.raises(ValueError, match="non-empty dict"):
        P.draw_distance_to_end(sigmas=sig, distances={})
    with pytest.raises(ValueError, match="rows for 4 noise levels"):
        P.draw_distance_to_end(sigmas=sig, distances={"a": torch.ones(5, 2)})


# --- chapter 4 -------------------------------------------------------------------------------------


def test_draw_norm_shell_plots_mean_ratio_and_expected():
    sig = torch.tensor([1.0, 10.0, 80.0])
    g = torch.Generator().manual_seed(1)
    r = {64: 1 + 0.1 * torch.randn(3, 50, generator=g), 784: 1 + 0.03 * torch.randn(3, 50, generator=g)}
    exp = {64: torch.tensor([1.2, 1.01, 1.0])}
    fig = P.draw_norm_shell(sigmas=sig, ratios=r, expected=exp)
    ax1, ax2 = fig.axes
    for v in r.values():
        assert _lines_with(ax1, sig.numpy(), v.numpy().mean(1))
    assert _lines_with(ax1, sig.numpy(), exp[64].numpy())
    assert "80" in ax2.get_xlabel()                                      # histogram at the largest sigma
    with pytest.raises(ValueError, match="rows for 3 noise levels"):
        P.draw_norm_shell(sigmas=sig, ratios={2: torch.ones(2, 5)})
    with pytest.raises(ValueError, match="expected"):
        P.draw_norm_shell(sigmas=sig, ratios=r, expected={64: torch.ones(2)})


def test_draw_chord_vs_length_scatter_and_reference_lines():
    L = torch.tensor([600.0, 650.0, 2200.0])
    dev = torch.tensor([3.0, 4.0, 12.0])
    fig = P.draw_chord_vs_length(groups={"a": (L, dev)}, levels=(0.01,))
    ax = fig.axes[0]
    pts = ax.collections[0].get_offsets()
    assert np.allclose(pts, np.stack([L.numpy(), dev.numpy()], 1))
    ref = [ln for ln in ax.get_lines() if "1%" in ln.get_label()][0]
    assert np.allclose(ref.get_ydata(), 0.01 * np.asarray(ref.get_xdata()))
    with pytest.raises(ValueError, match="pair"):
        P.draw_chord_vs_length(groups={"a": L})
    with pytest.raises(ValueError, match="3 chord lengths but 2"):
        P.draw_chord_vs_length(groups={"a": (L, dev[:2])})


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


def test_draw_boomerang_profiles_normalises_each_trajectory():
    gm = dg.datasets.mixture_nd(16)
    x = 80 * torch.randn(6, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    run = dg.sample(gm, x, dg.edm_sigmas(8), method="euler")
    c = dg.geometry.boomerang_projection(run.x)
    fig = P.draw_boomerang_profiles(sigmas=run.sigmas, coords=c, n_show=4)
    ax1, ax2 = fig.axes
    u2 = c[..., 1].numpy()
    prof = u2 / np.abs(u2).max(0)
    assert _lines_with(ax2, run.sigmas.numpy(), np.median(prof, 1))
    assert _lines_with(ax1, c[:, 0, 0].numpy(), c[:, 0, 1].numpy())
    assert len(_lines_with(ax2, run.sigmas.numpy(), prof[:, 5])) == 0    # only n_show = 4 drawn
    with pytest.raises(ValueError, match="n_show"):
        P.draw_boomerang_profiles(sigmas=run.sigmas, coords=c, n_show=7)
    with pytest.raises(ValueError, match="levels"):
        P.draw_boomerang_profiles(sigmas=run.sigmas[1:], coords=c)
    with pytest.raises(ValueError, match="last axis 3"):
        P.draw_boomerang_profiles(sigmas=run.sigmas, coords=c[..., :2])
