"""Quantities against NFE and schedules (diffusion_geometry.plotting.nfe_curves)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py

F64 = torch.float64
GM = dg.datasets.mixture_2d()


def test_draw_error_vs_nfe():
    rows = [{"method": m, "schedule": s, "nfe": n, "error": 1.0 / n + k}
            for k, m in enumerate(("Euler", "Heun")) for s in ("rho=7", "GITS") for n in (4, 6, 8)]
    fig = plotting.draw_error_vs_nfe(rows=rows, suffix={"Euler": "(order 1)"})
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4 and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Euler / rho=7 (order 1)" in labels
    parent = plt.figure(layout="constrained")
    left, right = parent.subfigures(1, 2)
    assert plotting.draw_error_vs_nfe(fig=right, rows=rows, methods=["Heun"], schedules=["GITS"]) is right
    ax2 = right.axes[0]
    assert len(ax2.get_lines()) == 1
    assert list(ax2.get_lines()[0].get_ydata()) == [1.0 / n + 1 for n in (4, 6, 8)]
    with pytest.raises(TypeError):
        plotting.draw_error_vs_nfe(rows=rows, ax=ax2)  # one way to say where: fig=
    with pytest.raises(ValueError, match="non-empty list"):
        plotting.draw_error_vs_nfe(rows=[])
    with pytest.raises(ValueError, match="no rows match"):
        plotting.draw_error_vs_nfe(rows=rows, methods=["DEIS"])


def test_draw_gits_marks_the_dp_path():
    x = 80 * torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    res = dg.gits.gits_fit(GM, x, 4, fine_grid=dg.edm_sigmas(20))
    fig = plotting.draw_gits(n_steps=4, result=res, compare={"rho=7": dg.edm_sigmas})
    left, _, right = fig.axes  # the colour bar is the middle axes
    path = left.get_lines()[0]
    idx = res.indices
    assert list(path.get_xdata()) == idx[1:] and list(path.get_ydata()) == idx[:-1]
    assert len(right.get_lines()) == 2
    fig2 = plotting.draw_gits(fig=fig, n_steps=6, result=res, coeff=0.9)
    assert fig2 is fig and len(fig.axes[0].get_lines()[0].get_xdata()) == 6



def test_draw_fd_vs_nfe_and_schedules():
    fig = plotting.draw_fd_vs_nfe(results={"euler": ([3, 5, 9], [90.0, 50.0, 20.0]),
                                           "heun": ([3, 5, 9], [200.0, 60.0, 10.0])}, floor=2.0)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.get_lines()[0].get_ydata()) == [90.0, 50.0, 20.0]
    with pytest.raises(ValueError):
        plotting.draw_fd_vs_nfe(results={"euler": ([3, 5], [1.0])})
    fig = plotting.draw_schedules(grids={"rho=7": dg.edm_sigmas(5), "zero": dg.append_zero(dg.edm_sigmas(5))})
    assert len(fig.axes[0].get_lines()[1].get_ydata()) == 6  # the trailing 0 is not drawn


def test_draw_schedule_comparison_one_panel_per_sampler():
    res = {("Euler", "rho=7"): ([5, 8], [300.0, 200.0]), ("Euler", "GITS"): ([5, 8], [250.0, 190.0]),
           ("iPNDM", "rho=7"): ([5, 8], [200.0, 130.0])}
    fig = plotting.draw_schedule_comparison(results=res, floor=70.0)
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["Euler", "iPNDM"]
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == [250.0, 190.0]
    assert [t for t in fig.axes[0].get_xticks()] == [5, 8]
    with pytest.raises(ValueError, match="pairs"):
        plotting.draw_schedule_comparison(results={"Euler": ([5], [1.0])})
    with pytest.raises(ValueError):
        plotting.draw_schedule_comparison(results={("Euler", "a"): ([5, 8], [1.0])})

