"""The shape of trajectories (diffusion_geometry.plotting.trajectory_shape): chord deviation against
length, per-trajectory PCA, the boomerang in 3-D and 2-D, one image step on its projection."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402
from diffusion_geometry import plotting as P  # noqa: E402


from plot_helpers import curve as _curve, lines_with as _lines_with  # noqa: E402

pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py

SIG = dg.edm_sigmas(10)


def _images(n=5, c=1, h=4, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2.4 - 1.2  # a little outside [-1, 1], like noisy x_t


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


def test_draw_boomerang_profiles_normalises_each_trajectory():
    gm = dg.datasets.mixture_nd(16)
    x = 80 * torch.randn(6, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    run = dg.sample(gm, x, dg.edm_sigmas(8), "euler")
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



def test_draw_trajectory_pca():
    expl = torch.tensor([[0.9, 0.999, 1.0], [0.8, 0.99, 1.0]])
    fig = plotting.draw_trajectory_pca(sigmas=SIG, explained={"a": expl}, rel_error={"a": _curve()})
    assert len(fig.axes) == 2
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), np.median(1 - expl.numpy(), 0))
    with pytest.raises(ValueError):
        plotting.draw_trajectory_pca(sigmas=SIG, explained={}, rel_error={"a": _curve()})


def test_draw_boomerang_and_trajectory_step():
    traj = torch.cumsum(torch.randn(11, 3, 20, generator=torch.Generator().manual_seed(0)), 0)
    coords = dg.geometry.boomerang_projection(traj)
    fig = plotting.draw_boomerang(coords={"learned": coords, "optimal": coords})
    assert len(fig.axes) == 2 and all(ax.name == "3d" for ax in fig.axes)
    with pytest.raises(ValueError):
        plotting.draw_boomerang(coords={"a": coords[..., :2]})
    x = _images(n=11, h=6, w=6)
    fig = plotting.draw_trajectory_step(step=3, sigmas=SIG, x=x, denoised=x[:10], coords=coords[:, 0])
    assert len(fig.axes) == 3
    with pytest.raises(ValueError):
        plotting.draw_trajectory_step(step=10, sigmas=SIG, x=x, denoised=x[:10], coords=coords[:, 0])

