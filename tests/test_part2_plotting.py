"""Part II drawing functions (chapters 5-6) and the widget wrapper they rely on."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402

F64 = torch.float64
GM = dg.datasets.mixture_2d()


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py


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


def test_draw_fd_step_draws_and_reuses_the_figure(cases):
    fig = plotting.draw_fd_step(r=0.3, cases=cases, data=GM.sample(50, generator=torch.Generator().manual_seed(0)))
    ax = fig.axes[0]
    assert "r = 0.30" in ax.get_title()
    assert ax.get_xlabel().startswith("$x_1$")
    n_lines = len(ax.get_lines())
    again = plotting.draw_fd_step(fig=fig, r=0.5, cases=cases)
    assert again is fig and len(fig.axes) == 1 and "r = 0.50" in fig.axes[0].get_title()
    assert len(fig.axes[0].get_lines()) == n_lines  # cleared, not stacked
    with pytest.raises(ValueError, match="no case for r=0.4"):
        plotting.draw_fd_step(r=0.4, cases=cases)
    with pytest.raises(ValueError, match="cases must be a non-empty dict"):
        plotting.draw_fd_step(r=0.5, cases={})
    with pytest.raises(ValueError, match=r"data must have shape \(n, 2\)"):
        plotting.draw_fd_step(r=0.5, cases=cases, data=torch.zeros(3))


def test_draw_error_vs_nfe():
    rows = [{"method": m, "schedule": s, "nfe": n, "error": 1.0 / n + k}
            for k, m in enumerate(("Euler", "Heun")) for s in ("rho=7", "GITS") for n in (4, 6, 8)]
    fig = plotting.draw_error_vs_nfe(rows=rows, suffix={"Euler": "(order 1)"})
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4 and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Euler / rho=7 (order 1)" in labels
    fig2, ax2 = plt.subplots()
    assert plotting.draw_error_vs_nfe(rows=rows, ax=ax2, methods=["Heun"], schedules=["GITS"]) is fig2
    assert len(ax2.get_lines()) == 1
    with pytest.raises(ValueError, match="non-empty list"):
        plotting.draw_error_vs_nfe(rows=[])
    with pytest.raises(ValueError, match="no rows match"):
        plotting.draw_error_vs_nfe(rows=rows, methods=["DEIS"])


def test_draw_gits_marks_the_dp_path():
    x = 80 * torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    res = dg.gits.gits_sigmas(GM, x, 4, fine_grid=dg.edm_sigmas(20), return_details=True)
    fig = plotting.draw_gits(n_steps=4, result=res, compare={"rho=7": dg.edm_sigmas})
    left, _, right = fig.axes  # the colour bar is the middle axes
    path = left.get_lines()[0]
    idx = res.indices
    assert list(path.get_xdata()) == idx[1:] and list(path.get_ydata()) == idx[:-1]
    assert len(right.get_lines()) == 2
    fig2 = plotting.draw_gits(fig=fig, n_steps=6, result=res, coeff=0.9)
    assert fig2 is fig and len(fig.axes[0].get_lines()[0].get_xdata()) == 6


def test_interact_passes_fixed_arguments(cases):
    """Regression: dg.widgets.interact used to pair controls with ui.children, which drops
    ipywidgets.fixed values (they have no child widget) and shifts the others."""
    ipywidgets = pytest.importorskip("ipywidgets")
    seen = []

    def draw(*, fig=None, r=0.5, cases=None, tag=None):
        seen.append((r, tag, cases is not None))
        return plotting.draw_fd_step(fig=fig, r=r, cases=cases)

    box = dg.widgets.interact(draw, cases=ipywidgets.fixed(cases), tag=ipywidgets.fixed("t"),
                              r=ipywidgets.SelectionSlider(options=[0.3, 0.5], value=0.5))
    assert isinstance(box, ipywidgets.VBox)
    assert seen and all(s == (0.5, "t", True) for s in seen)
