"""Part IV helpers: image grids and strips (diffusion_geometry.imaging), sampling at a fixed NFE, and
the chapter 09/10 drawing functions of diffusion_geometry.plotting."""
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import imaging, plotting  # noqa: E402


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py


def _images(n=5, c=1, h=4, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2.4 - 1.2  # a little outside [-1, 1], like noisy x_t


# --------------------------------------------------------------------------------------------------
# to_unit / image_grid
# --------------------------------------------------------------------------------------------------


def test_to_unit_maps_the_range_and_clips():
    x = torch.tensor([[-1.0, 0.0, 1.0, -3.0, 2.5]])
    assert np.allclose(imaging.to_unit(x), [[0.0, 0.5, 1.0, 0.0, 1.0]])
    assert imaging.to_unit(np.array([0.5])).tolist() == [0.75]


def test_to_unit_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        imaging.to_unit(torch.tensor([float("nan")]))
    with pytest.raises(TypeError):
        imaging.to_unit([0.1, 0.2])


def test_image_grid_places_every_tile_where_the_formula_says():
    imgs = _images(n=5, h=4, w=3)
    grid = imaging.image_grid(imgs, nrow=2, pad=1, pad_value=1.0)
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
    grid = imaging.image_grid(_images(n=9, h=2, w=2), pad=0)
    assert grid.shape == (6, 6)
    colour = imaging.image_grid(_images(n=2, c=3, h=2, w=2), nrow=2, pad=0)
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
        imaging.image_grid(**kwargs)


# --------------------------------------------------------------------------------------------------
# log_spaced_steps / trajectory_rows
# --------------------------------------------------------------------------------------------------


def test_log_spaced_steps_matches_a_brute_force_choice():
    sig = dg.edm_sigmas(40)
    steps = imaging.log_spaced_steps(sig, 6)
    assert steps[0] == 0 and steps[-1] == 40
    assert steps == sorted(set(steps)) and len(steps) == 6
    logs = np.log(sig.numpy())
    for t in np.linspace(logs[0], logs[-1], 6):
        nearest = int(np.argmin(np.abs(logs - t)))
        assert nearest in steps  # on this grid the targets never collide


def test_log_spaced_steps_ignores_a_final_zero_and_caps_at_the_grid():
    sig = dg.append_zero(dg.edm_sigmas(3))
    assert imaging.log_spaced_steps(sig, 10) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        imaging.log_spaced_steps(sig, 1)
    with pytest.raises(ValueError):
        imaging.log_spaced_steps(torch.tensor([1.0, 2.0]), 3)


def test_trajectory_rows_stacks_the_chosen_steps():
    a, b = _images(n=6, seed=1), _images(n=6, seed=2)
    out = imaging.trajectory_rows(a, b, steps=[0, 2, 5])
    assert out.shape == (6, 1, 4, 3)
    assert torch.equal(out[:3], a[[0, 2, 5]]) and torch.equal(out[3:], b[[0, 2, 5]])
    with pytest.raises(ValueError, match="outside"):
        imaging.trajectory_rows(a, steps=[6])
    with pytest.raises(ValueError):
        imaging.trajectory_rows(steps=[0])
    with pytest.raises(ValueError):
        imaging.trajectory_rows(a, _images(n=6, h=5), steps=[0])


# --------------------------------------------------------------------------------------------------
# sampling at a fixed budget
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, nfe, afs, steps", [
    ("euler", 7, False, 7), ("euler", 7, True, 8), ("ipndm", 5, True, 6), ("deis", 4, False, 4),
    ("dpm_solver_pp_2m", 6, False, 6), ("heun", 8, False, 4), ("heun", 9, True, 5),
    ("dpm_solver_2", 3, True, 2), ("amed", 6, False, 3),
])
def test_steps_for_nfe(method, nfe, afs, steps):
    assert imaging.steps_for_nfe(method, nfe, afs=afs) == steps


@pytest.mark.parametrize("args, kwargs, err", [
    (("heun", 7), {}, ValueError),             # odd NFE needs AFS
    (("heun", 8), {"afs": True}, ValueError),  # even NFE with AFS does not fit
    (("rk4", 8), {}, ValueError),
    (("euler", 0), {}, ValueError),
    (("euler", 2.0), {}, ValueError),
    (("euler", 3), {"afs": 1}, TypeError),
])
def test_steps_for_nfe_rejects_impossible_budgets(args, kwargs, err):
    with pytest.raises(err):
        imaging.steps_for_nfe(*args, **kwargs)


def test_evals_per_step_covers_every_sampler():
    assert set(imaging.EVALS_PER_STEP) == set(dg.samplers.SAMPLERS)


@pytest.mark.parametrize("method, nfe, afs", [("heun", 9, True), ("ipndm", 6, False), ("dpm_solver_2", 8, False),
                                              ("deis", 5, True)])
def test_sample_at_nfe_equals_the_sampler_on_the_grid_and_counts_evaluations(method, nfe, afs):
    gm = dg.datasets.mixture_2d()
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 80
    calls = []

    def counted(z, s):
        calls.append(z.shape[0])
        return gm(z, s)

    run = imaging.sample_at_nfe(counted, x, method, nfe, afs=afs, schedule="logsnr")
    n = imaging.steps_for_nfe(method, nfe, afs=afs)
    grid = dg.logsnr_sigmas(n)
    expect = dg.samplers.SAMPLERS[method](gm, x, grid, afs=afs)
    assert torch.equal(run.samples, expect)
    assert torch.equal(run.sigmas, grid)
    assert run.nfe == nfe == len(calls) and run.schedule == "logsnr" and run.afs == afs
    chunked = imaging.sample_at_nfe(gm, x, method, nfe, afs=afs, schedule="logsnr", batch_size=5)
    assert torch.allclose(chunked.samples, expect, rtol=0, atol=1e-12)


def test_sample_at_nfe_accepts_a_schedule_function():
    gm = dg.datasets.mixture_2d()
    x = torch.randn(4, 2, dtype=torch.float64) * 80

    def rho3(n):
        return dg.edm_sigmas(n, rho=3.0)

    run = imaging.sample_at_nfe(gm, x, "euler", 5, schedule=rho3)
    assert run.schedule == "rho3" and torch.equal(run.sigmas, dg.edm_sigmas(5, rho=3.0))
    assert torch.equal(run.samples, dg.samplers.euler(gm, x, dg.edm_sigmas(5, rho=3.0)))


def test_sample_at_nfe_rejects_bad_input():
    gm = dg.datasets.mixture_2d()
    x = torch.randn(4, 2, dtype=torch.float64) * 80
    with pytest.raises(ValueError, match="schedule"):
        imaging.sample_at_nfe(gm, x, "euler", 5, schedule="cosine")
    with pytest.raises(ValueError, match="levels"):
        imaging.sample_at_nfe(gm, x, "euler", 5, schedule=lambda n: dg.edm_sigmas(n + 1))
    with pytest.raises(ValueError, match="above 0"):
        imaging.sample_at_nfe(gm, x, "euler", 5, schedule=lambda n: dg.append_zero(dg.edm_sigmas(n - 1)))
    with pytest.raises(TypeError):
        imaging.sample_at_nfe("not a denoiser", x, "euler", 5)
    with pytest.raises(ValueError):
        imaging.sample_at_nfe(gm, torch.zeros(0, 2), "euler", 5)
    with pytest.raises(ValueError):
        imaging.sample_at_nfe(gm, x, "euler", 5, batch_size=0)


def test_first_reaching():
    assert imaging.first_reaching([5.0, 3.0, 2.0, 1.0], 2.5) == 2
    assert imaging.first_reaching(torch.tensor([5.0, 3.0]), 1.0) == -1
    assert imaging.first_reaching([1.0, 9.0], 1.0) == 0
    with pytest.raises(ValueError):
        imaging.first_reaching([], 1.0)
    with pytest.raises(ValueError):
        imaging.first_reaching([1.0, float("nan")], 1.0)


# --------------------------------------------------------------------------------------------------
# drawing functions (chapters 09 and 10)
# --------------------------------------------------------------------------------------------------

SIG = dg.edm_sigmas(10)


def _curve(t=11, b=4, seed=0):
    return torch.rand(t, b, generator=torch.Generator().manual_seed(seed)) + 0.1


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


def test_draw_cosine_and_pca_and_fd_per_step():
    fig = plotting.draw_cosine_to_end(sigmas=SIG, curves={"learned": _curve(10)})
    assert len(fig.axes) == 1
    expl = torch.tensor([[0.9, 0.999, 1.0], [0.8, 0.99, 1.0]])
    fig = plotting.draw_trajectory_pca(sigmas=SIG, explained={"a": expl}, rel_error={"a": _curve()})
    assert len(fig.axes) == 2
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), np.median(1 - expl.numpy(), 0))
    fig = plotting.draw_fd_per_step(sigmas=SIG, curves={"x": torch.arange(11.0) + 1}, target=3.0)
    assert len(fig.axes[0].get_lines()) == 2
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


def test_draw_image_rows_and_samples_at_nfe():
    rows = {"x": _images(n=4), "D": _images(n=4, seed=3)}
    fig = plotting.draw_image_rows(rows=rows, col_labels=["80", "8", "0.8", "0.002"])
    assert len(fig.axes) == 2
    shown = fig.axes[0].get_images()[0].get_array()
    assert np.array_equal(np.asarray(shown), imaging.image_grid(rows["x"], nrow=4, pad=1))
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


def test_draw_fd_vs_nfe_nn_distances_and_schedules():
    fig = plotting.draw_fd_vs_nfe(results={"euler": ([3, 5, 9], [90.0, 50.0, 20.0]),
                                           "heun": ([3, 5, 9], [200.0, 60.0, 10.0])}, floor=2.0)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.get_lines()[0].get_ydata()) == [90.0, 50.0, 20.0]
    with pytest.raises(ValueError):
        plotting.draw_fd_vs_nfe(results={"euler": ([3, 5], [1.0])})
    fig = plotting.draw_nn_distances(groups={"a": torch.rand(10) + 0.1, "b": torch.rand(5) + 1}, reference=0.056)
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="positive"):
        plotting.draw_nn_distances(groups={"a": torch.zeros(3)})
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
