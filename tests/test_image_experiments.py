"""The Part IV experiments of ``image_experiments`` on a tiny problem (a 2-D Gaussian mixture, float64,
and the Frechet distance of the raw coordinates to exact mixture draws standing in for the image FD),
each checked against the same measurement written out directly with ``budget.sample_at_nfe``,
``dg.sample``, ``samplers.ode_jump`` and ``gits.gits_fit``; and the GPU results loader."""
import json

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import budget, gits, metrics, samplers
from diffusion_geometry import image_experiments as ie

GM = dg.datasets.mixture_2d()
REF = GM.sample(400, generator=torch.Generator().manual_seed(1))
X_T = 80 * torch.randn(24, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def fd(points):
    """A stand-in for the image FD: the Frechet distance of the points to exact draws of the data."""
    return metrics.frechet_distance(points.reshape(len(points), -1), REF)


def direct(sampler, nfe, **kw):
    return fd(budget.sample_at_nfe(GM, X_T, sampler, nfe, **kw).samples)


def test_the_defaults_are_the_chapters_choices_read_from_the_registry():
    assert ie.TABLE_SAMPLERS == tuple(n for n in samplers.SAMPLERS if n != "amed")  # AMED alone is fitted
    assert set(ie.SCHEDULE_SAMPLERS) | set(ie.AFS_SAMPLERS) <= set(ie.TABLE_SAMPLERS)
    assert [ie.label(n) for n in ie.SCHEDULE_SAMPLERS] == [samplers.SAMPLERS[n].label for n in ie.SCHEDULE_SAMPLERS]
    assert ie.label("edm") == dg.schedules.SCHEDULES["edm"].label and ie.label(ie.GITS) == "GITS"
    assert ie.COMPARED_SCHEDULES[-1] == ie.GITS and set(ie.COMPARED_SCHEDULES[:-1]) <= set(dg.schedules.SCHEDULES)
    with pytest.raises(ValueError, match="unknown sampler"):
        ie.label("no_such_sampler")


def test_fd_vs_nfe_is_sample_at_nfe_and_fd_written_out():
    names = ["euler", "heun", "ipndm"]
    table = ie.fd_vs_nfe(GM, X_T, fd, nfes=[3, 5], samplers=names, batch_size=10, keep=4)
    for s in names:
        for i, nfe in enumerate([3, 5]):
            run = budget.sample_at_nfe(GM, X_T, s, nfe, schedule="edm", afs=True)
            assert table.fd[s][i] == fd(run.samples)
            assert torch.equal(table.samples[s][nfe], run.samples[:4])
            assert table.at(s, nfe) == table.fd[s][i]
    brute = min((table.fd[s][i], s, n) for s in names for i, n in enumerate([3, 5]))
    assert table.best() == (brute[1], brute[2], brute[0])
    assert json.loads(json.dumps(table.to_dict())) == {"nfes": [3, 5], "schedule": "edm", "afs": True,
                                                       "fd": table.fd}


def test_fd_vs_nfe_in_parts_combines_to_the_whole_and_defaults_to_every_table_sampler():
    whole = ie.fd_vs_nfe(GM, X_T, fd, nfes=[5])
    assert list(whole.fd) == list(ie.TABLE_SAMPLERS)
    parts = [ie.fd_vs_nfe(GM, X_T, fd, nfes=[5], samplers=ie.TABLE_SAMPLERS[i:i + 2]) for i in range(0, len(ie.TABLE_SAMPLERS), 2)]
    assert ie.NFETable.combine(parts).fd == whole.fd
    with pytest.raises(ValueError, match="measured twice"):
        ie.NFETable.combine([parts[0], parts[0]])
    with pytest.raises(ValueError, match="different budgets"):
        ie.NFETable.combine([parts[0], ie.fd_vs_nfe(GM, X_T, fd, nfes=[3], samplers=["unipc"])])


def test_fd_vs_nfe_rejects_bad_input():
    with pytest.raises(budget.BudgetError):
        ie.fd_vs_nfe(GM, X_T, fd, nfes=[4], samplers=["heun"])           # even NFE with AFS: no Heun grid
    with pytest.raises(ValueError, match="unknown sampler"):
        ie.fd_vs_nfe(GM, X_T, fd, nfes=[3], samplers=["rk45"])
    with pytest.raises(TypeError, match="single string"):
        ie.fd_vs_nfe(GM, X_T, fd, nfes=[3], samplers="euler")
    with pytest.raises(ValueError, match="repeated"):
        ie.fd_vs_nfe(GM, X_T, fd, nfes=[3, 3], samplers=["euler"])
    with pytest.raises(ValueError, match="N >= 2"):
        ie.fd_vs_nfe(GM, X_T[:1], fd, nfes=[3], samplers=["euler"])
    with pytest.raises(ValueError, match="non-finite"):
        ie.fd_vs_nfe(GM, X_T, lambda x: float("nan"), nfes=[3], samplers=["euler"])
    with pytest.raises(TypeError, match="fd must be callable"):
        ie.fd_vs_nfe(GM, X_T, 1.0, nfes=[3], samplers=["euler"])


def test_fit_gits_grids_are_gits_fit_with_the_official_cost():
    x_warm = 80 * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    fitted = ie.fit_gits(GM, x_warm, [4, 6])
    assert (fitted.metric, fitted.coeff, fitted.warmup) == ("dev", 1.15, 8)
    for n in (4, 6):
        own = gits.gits_fit(GM, x_warm, n, sampler="ipndm", metric="dev", coeff=1.15).sigmas
        assert torch.equal(fitted.grids[n], own) and fitted.grids[n].dtype == torch.float64
        assert torch.equal(fitted.schedule(n), own)
    l2 = gits.gits_fit(GM, x_warm, 6, sampler="ipndm", metric="l2").sigmas
    assert not torch.equal(fitted.grids[6], l2)        # the metric matters here, so the default is tested
    with pytest.raises(ValueError, match="no GITS grid with 5"):
        fitted.schedule(5)
    assert set(fitted.to_dict()["gits_grids"]) == {"4", "6"}


def test_schedule_comparison_is_each_grid_run_directly():
    x_warm = 80 * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    fitted = ie.fit_gits(GM, x_warm, [4, 6])
    comp = ie.schedule_comparison(GM, X_T, fd, fitted, batch_size=7)
    assert list(comp.fd) == list(ie.SCHEDULE_SAMPLERS)
    for s in ie.SCHEDULE_SAMPLERS:
        assert list(comp.fd[s]) == list(ie.COMPARED_SCHEDULES)
        assert comp.fd[s]["edm"] == [direct(s, n) for n in (4, 6)]
        assert comp.fd[s]["logsnr"] == [direct(s, n, schedule="logsnr") for n in (4, 6)]
        assert comp.fd[s][ie.GITS] == [direct(s, n, schedule=lambda k: fitted.grids[k]) for n in (4, 6)]
        assert comp.gain(s) == [a - b for a, b in zip(comp.fd[s]["edm"], comp.fd[s][ie.GITS])]
    parts = [ie.schedule_comparison(GM, X_T, fd, fitted, samplers=[s], schedules=["edm"]) for s in ("euler", "deis")]
    assert ie.ScheduleComparison.combine(parts).fd == {s: {"edm": comp.fd[s]["edm"]} for s in ("euler", "deis")}
    d = json.loads(json.dumps(comp.to_dict()))
    assert d["afs"] is False and d["metric"] == "dev" and d["nfes"] == [4, 6]
    with pytest.raises(ValueError, match="unknown schedule"):
        ie.schedule_comparison(GM, X_T, fd, fitted, schedules=["cosine"])
    with pytest.raises(budget.BudgetError):                      # no AFS: Heun cannot spend an odd budget
        ie.schedule_comparison(GM, X_T, fd, ie.fit_gits(GM, x_warm, [5]), samplers=["heun"])


def test_afs_effect_is_the_difference_of_two_direct_runs():
    eff = ie.afs_effect(GM, X_T, fd, nfes=[3, 5])
    for s in ie.AFS_SAMPLERS:
        plain = [direct(s, n) for n in (3, 5)]
        with_afs = [direct(s, n, afs=True) for n in (3, 5)]
        assert eff.fd_plain[s] == plain and eff.fd_afs[s] == with_afs
        assert eff.gain[s] == [p - a for p, a in zip(plain, with_afs)]
    table = ie.fd_vs_nfe(GM, X_T, fd, nfes=[3, 5, 7], samplers=ie.AFS_SAMPLERS)
    reused = ie.afs_effect(GM, X_T, fd, nfes=[3, 5], with_afs=table)
    assert reused.fd_afs == eff.fd_afs and reused.fd_plain == eff.fd_plain
    with pytest.raises(ValueError, match="afs=True"):
        ie.afs_effect(GM, X_T, fd, nfes=[3], with_afs=ie.fd_vs_nfe(GM, X_T, fd, nfes=[3], samplers=["euler"], afs=False))
    with pytest.raises(budget.BudgetError):
        ie.afs_effect(GM, X_T, fd, nfes=[3], samplers=["heun"])   # no budget suits Heun with and without AFS


def test_ode_jump_is_samplers_ode_jump_at_every_budget():
    steps = 6
    jump = ie.ode_jump(GM, X_T, fd, steps=steps, batch_size=5)
    assert jump.nfes == list(range(1, steps + 1))
    grid = dg.edm_sigmas(steps)
    for nfe, value in zip(jump.nfes, jump.fd):
        counting = dg.trajectory.CountingDenoiser(GM)
        out = samplers.ode_jump(counting, X_T, grid, k=nfe - 1, sampler="euler")
        assert counting.nfe == nfe                          # k steps and the jump: k + 1 evaluations
        assert value == pytest.approx(fd(out), rel=1e-12)
    assert jump.fd_full == pytest.approx(fd(samplers.euler(GM, X_T, grid)), rel=1e-12)
    some = ie.ode_jump(GM, X_T, fd, steps=steps, nfes=[2, 5])
    assert some.fd == pytest.approx([jump.fd[1], jump.fd[4]], rel=1e-12)
    with pytest.raises(ValueError, match="at most steps"):
        ie.ode_jump(GM, X_T, fd, steps=3, nfes=[4])
    with pytest.raises(ValueError, match="ODE-Jump needs a one-evaluation sampler"):
        ie.ode_jump(GM, X_T, fd, steps=3, sampler="heun")


def test_trajectory_fd_is_the_fd_of_every_recorded_point():
    res = ie.trajectory_fd(GM, X_T, fd, steps=5, batch_size=10)
    traj = dg.sample(GM, X_T, dg.edm_sigmas(5), sampler="euler")
    assert res.sigmas == dg.edm_sigmas(5).tolist()
    assert res.fd_x == pytest.approx([fd(p) for p in traj.x], rel=1e-12) and len(res.fd_x) == 6
    assert res.fd_denoised == pytest.approx([fd(p) for p in traj.denoised], rel=1e-12) and len(res.fd_denoised) == 5
    assert res.fd_denoised[2] < res.fd_x[2]             # the denoiser's outputs look like data sooner
    assert json.loads(json.dumps(res.to_dict()))["sampler"] == "euler"
    with pytest.raises(ValueError, match="one-evaluation"):
        ie.trajectory_fd(GM, X_T, fd, steps=5, sampler="dpm_solver_2")


# ---------------------------------------------------------------------------- the GPU results file


def test_gpu_results_live_in_the_package():
    path = ie.gpu_results_path()
    assert path.name == "gpu_profile.json" and path.parent.name == "data"
    assert path.parent.parent == __import__("pathlib").Path(dg.__file__).parent


def test_load_gpu_results(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        ie.load_gpu_results(tmp_path / "absent.json")
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({"device": "cpu", "date": "today", "command": "x", "quick": True}))
    assert ie.load_gpu_results(quick)["device"] == "cpu"   # explicit path: returned even if quick
    monkeypatch.setattr(ie, "gpu_results_path", lambda: quick)
    assert ie.load_gpu_results() is None                   # the package's file: a quick run does not count
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"device": "H200", "date": "today", "command": "x", "quick": False}))
    monkeypatch.setattr(ie, "gpu_results_path", lambda: full)
    assert ie.load_gpu_results()["device"] == "H200"
    monkeypatch.setattr(ie, "gpu_results_path", lambda: tmp_path / "none.json")
    assert ie.load_gpu_results() is None                   # no run recorded
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="GPU-profile"):
        ie.load_gpu_results(tmp_path / "bad.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        ie.load_gpu_results(tmp_path / "text.json")
