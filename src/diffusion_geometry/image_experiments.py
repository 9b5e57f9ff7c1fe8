r"""The image-scale experiments of Part IV, written once: chapters 9 and 10 run them at the book's
sample counts, ``benchmarks/gpu_profile.py`` at paper scale, with the same choices.

Each function takes the denoiser, the start noise :math:`x_T = \sigma_\max z` (``(N, ...)``), the sizes
(budgets, batch) and a quality function ``fd(images) -> float`` (the book passes
:func:`diffusion_geometry.metrics.fd_to_test`, the Fréchet distance (FD) in the classifier's features
to the Fashion-MNIST test set; tests pass a stand-in), and returns a dataclass of plain numbers whose
:meth:`to_dict` is what the GPU profile stores. Every sampler run goes through
:func:`diffusion_geometry.budget.sample_at_nfe`, so a budget is an exact count of denoiser evaluations.

* :func:`fd_vs_nfe` -- the FD of each sampler at each NFE on the :math:`\rho = 7` grid with the
  analytical first step (chapter 10, "All samplers at equal NFE"; the GPU file's ``samplers``);
* :func:`fit_gits` and :func:`schedule_comparison` -- a GITS schedule fitted on a warm-up batch
  (Chen et al. 2024, GITS, §4), and the FD of a few samplers on the :math:`\rho = 7`, logSNR and GITS
  grids without AFS (chapter 10, "Time schedules"; ``schedules``);
* :func:`afs_effect` -- the FD of a sampler without and with the analytical first step (chapter 10,
  "The analytical first step and ODE-Jump"; ``no_afs``);
* :func:`ode_jump` -- the FD of :math:`D(x_k;\sigma_k)` after ``k - 1`` steps of one long run, at a
  cost of ``k`` evaluations (Chen et al. 2023, §5; chapter 10; ``ode_jump``);
* :func:`trajectory_fd` -- the FD of the sampling points :math:`x_i` and of the denoiser outputs
  :math:`D(x_i)` at every step of one run (chapter 9, "How soon do the outputs look like data?";
  ``trajectory_fd``);
* :func:`load_gpu_results` -- the GPU profile's results, shipped in the package as
  ``diffusion_geometry/data/gpu_profile.json`` (:func:`gpu_results_path`) or read from a named file.

The experimental choices are arguments with one default each, the book's: the samplers of the table
(:data:`TABLE_SAMPLERS`, every registered sampler with fixed coefficients), of the schedule comparison
(:data:`SCHEDULE_SAMPLERS`) and of the AFS comparison (:data:`AFS_SAMPLERS`), the schedules compared
(:data:`COMPARED_SCHEDULES` and GITS), and the GITS fit (iPNDM teacher, the official code's
``metric="dev"`` cost, ``coeff=1.15``). Samplers are named by their registry name
(:data:`diffusion_geometry.samplers.SAMPLERS`); tables and legends use the registry's labels.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import torch

from .budget import sample_at_nfe
from .gits import GITSResult, gits_fit
from .samplers import SAMPLERS, get_sampler
from .schedules import SCHEDULES, edm_sigmas
from .trajectory import sample

__all__ = [
    "TABLE_SAMPLERS", "SCHEDULE_SAMPLERS", "GITS_STUDY_SAMPLERS", "GITS_SUSPECT_SAMPLERS", "AFS_SAMPLERS", "COMPARED_SCHEDULES", "GITS",
    "label", "NFETable", "fd_vs_nfe", "GITSGrids", "fit_gits", "ScheduleComparison",
    "schedule_comparison", "AFSEffect", "afs_effect", "ODEJump", "ode_jump", "TrajectoryFD",
    "trajectory_fd", "gpu_results_path", "load_gpu_results",
]

FD = Callable[[torch.Tensor], float]


def _samplers(*names: str) -> tuple[str, ...]:
    """A selection of registered samplers, checked against the registry (an unknown name raises)."""
    return tuple(get_sampler(n).name for n in names)


def _schedules(*names: str) -> tuple[str, ...]:
    for n in names:
        if n not in SCHEDULES:
            raise ValueError(f"unknown schedule {n!r}; choose from {sorted(SCHEDULES)}")
    return names


TABLE_SAMPLERS: tuple[str, ...] = tuple(name for name, spec in SAMPLERS.items() if not spec.fitted)
"""The samplers of the FD-against-NFE table, in registry order: every registered sampler except AMED,
the one ``fitted`` sampler, whose per-step parameters are fitted per model and grid (chapter 6; with its default parameters it would
repeat DPM-Solver-2). A sampler added to the registry gets a row."""

SCHEDULE_SAMPLERS: tuple[str, ...] = _samplers("euler", "ipndm", "deis")
"""The schedule comparison's samplers: Euler (DDIM, whose one-step error the GITS cost measures) and
two one-evaluation multistep samplers (the GITS paper's iPNDM and DEIS)."""

GITS_STUDY_SAMPLERS: tuple[str, ...] = SCHEDULE_SAMPLERS + _samplers("ipndm_v")
"""The samplers of the GITS study (``benchmarks/gits_vs_rho.py``): the schedule comparison's and iPNDM-v,
whose variable-step coefficients test whether iPNDM's fixed ones are why GITS loses for it."""

GITS_SUSPECT_SAMPLERS: tuple[str, ...] = _samplers("ipndm", "ipndm_v")
"""The multistep samplers run on every variant of the GITS fit in the study: fixed and variable-step
coefficients."""

AFS_SAMPLERS: tuple[str, ...] = _samplers("euler", "ipndm")
"""The AFS comparison's samplers: a first-order and a multistep sampler."""

GITS = "gits"
"""The key of the fitted GITS schedule in :class:`ScheduleComparison` (not a registered schedule: it
is fitted on a warm-up batch by :func:`fit_gits`)."""

COMPARED_SCHEDULES: tuple[str, ...] = _schedules("edm", "logsnr") + (GITS,)
"""The schedules of the comparison: :math:`\\rho = 7` (``"edm"``), logSNR and the fitted GITS grid."""


def label(name: str) -> str:
    """The display label of a sampler (registry name) or of a schedule (``"edm"`` -> ``rho=7``, ...)."""
    if name == GITS:
        return "GITS"
    if name in SCHEDULES:
        return SCHEDULES[name].label
    return get_sampler(name).label


def _check_inputs(denoiser, x_T, fd) -> None:
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x, sigma)")
    if not isinstance(x_T, torch.Tensor) or x_T.ndim < 2 or x_T.shape[0] < 2:
        raise ValueError("x_T must be a tensor of shape (N, ...) with N >= 2 (an FD needs a sample)")
    if not callable(fd):
        raise TypeError("fd must be callable as fd(images) -> float")


def _check_nfes(nfes, name: str = "nfes") -> list[int]:
    nfes = list(nfes)
    if not nfes or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in nfes):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {nfes!r}")
    if len(set(nfes)) != len(nfes):
        raise ValueError(f"{name} has repeated budgets: {nfes!r}")
    return nfes


def _check_names(names, kind: str) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{kind} must be a sequence of names, not the single string {names!r}")
    names = [get_sampler(n).name for n in names] if kind == "samplers" else list(names)
    if not names:
        raise ValueError(f"{kind} must not be empty")
    return names


def _fd(fd: FD, images: torch.Tensor) -> float:
    value = float(fd(images))
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("the FD function returned a non-finite value (diverged samples?)")
    return value


# --------------------------------------------------------------------------------------------------
# FD against NFE
# --------------------------------------------------------------------------------------------------


@dataclass
class NFETable:
    """FD of each sampler (registry name) at each NFE: ``fd[name][i]`` at ``nfes[i]``, on ``schedule``
    with or without AFS; ``samples[name][nfe]`` holds the first samples of each run (CPU, for display;
    not part of :meth:`to_dict`)."""

    nfes: list[int]
    schedule: str
    afs: bool
    fd: dict[str, list[float]]
    samples: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict, repr=False)

    def at(self, sampler: str, nfe: int) -> float:
        """The FD of ``sampler`` at ``nfe`` (``KeyError``/``ValueError`` when it was not measured)."""
        return self.fd[sampler][self.nfes.index(nfe)]

    def best(self) -> tuple[str, int, float]:
        """``(sampler, nfe, fd)`` of the lowest FD in the table (the first one on a tie)."""
        name, nfe = min(((s, n) for s in self.fd for n in self.nfes), key=lambda k: self.at(*k))
        return name, nfe, self.at(name, nfe)

    @classmethod
    def combine(cls, tables) -> "NFETable":
        """One table from parts measured with the same budgets, schedule and AFS (e.g. one per cell)."""
        tables = list(tables)
        if not tables:
            raise ValueError("nothing to combine")
        first = tables[0]
        out = cls(list(first.nfes), first.schedule, first.afs, {}, {})
        for t in tables:
            if (t.nfes, t.schedule, t.afs) != (first.nfes, first.schedule, first.afs):
                raise ValueError("tables measured with different budgets, schedules or AFS")
            if set(t.fd) & set(out.fd):
                raise ValueError(f"samplers measured twice: {sorted(set(t.fd) & set(out.fd))}")
            out.fd.update(t.fd)
            out.samples.update(t.samples)
        return out

    def to_dict(self) -> dict:
        return {"nfes": list(self.nfes), "schedule": self.schedule, "afs": self.afs,
                "fd": {k: list(v) for k, v in self.fd.items()}}


def fd_vs_nfe(denoiser, x_T: torch.Tensor, fd: FD, *, nfes, samplers=TABLE_SAMPLERS, schedule="edm",
              afs: bool = True, batch_size: int | None = None, keep: int = 0) -> NFETable:
    r"""FD of every sampler in ``samplers`` at every budget in ``nfes``, all from the same ``x_T``.

    Each run is ``budget.sample_at_nfe(denoiser, x_T, name, nfe, schedule=schedule, afs=afs,
    batch_size=batch_size)`` (an odd NFE suits every sampler with AFS: ``NFE + 1`` steps of a
    one-evaluation sampler, ``(NFE + 1) / 2`` of a two-evaluation one), and its FD is ``fd(samples)``.
    ``keep`` first samples of each run are kept on the CPU (``NFETable.samples``).

    Returns an :class:`NFETable`. Raises ``ValueError`` for an unknown sampler, empty or repeated
    budgets, a budget a sampler cannot meet exactly (:class:`~diffusion_geometry.budget.BudgetError`)
    or a non-finite FD; ``TypeError`` for a non-callable denoiser or ``fd``.
    """
    _check_inputs(denoiser, x_T, fd)
    nfes, names = _check_nfes(nfes), _check_names(samplers, "samplers")
    if not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep must be a non-negative integer, got {keep!r}")
    table = NFETable(nfes, schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom"),
                     afs, {}, {})
    for name in names:
        table.fd[name], table.samples[name] = [], {}
        for nfe in nfes:
            run = sample_at_nfe(denoiser, x_T, name, nfe, schedule=schedule, afs=afs, batch_size=batch_size)
            table.fd[name].append(_fd(fd, run.samples))
            if keep:
                table.samples[name][nfe] = run.samples[:keep].cpu()
    return table


# --------------------------------------------------------------------------------------------------
# Schedules: rho = 7, logSNR and GITS
# --------------------------------------------------------------------------------------------------


@dataclass
class GITSGrids:
    """GITS schedules for several budgets from one warm-up run: ``grids[n]`` (float64, ``n + 1``
    levels) for ``n`` in ``nfes``, all solved on ``fit``'s cost matrix; ``warmup`` the batch size."""

    nfes: list[int]
    grids: dict[int, torch.Tensor]
    fit: GITSResult = field(repr=False)
    warmup: int
    metric: str
    coeff: float

    def schedule(self, n_steps: int) -> torch.Tensor:
        """The grid with ``n_steps`` steps (a callable for :func:`~diffusion_geometry.budget.sample_at_nfe`)."""
        if n_steps not in self.grids:
            raise ValueError(f"no GITS grid with {n_steps} steps was fitted (have {sorted(self.grids)})")
        return self.grids[n_steps]

    def to_dict(self) -> dict:
        return {"warmup": self.warmup, "metric": self.metric, "coeff": self.coeff,
                "gits_grids": {str(n): g.tolist() for n, g in self.grids.items()}}


def fit_gits(denoiser, x_warmup: torch.Tensor, nfes, *, sampler: str = "ipndm", metric: str = "dev",
             coeff: float = 1.15, fine_grid=None) -> GITSGrids:
    r"""Fit GITS schedules for every budget in ``nfes`` (one-evaluation samplers without AFS: ``n``
    steps cost ``n`` evaluations) from one run of ``sampler`` (the teacher) on ``fine_grid`` (default the
    61-level :math:`\rho = 7` grid)
    from ``x_warmup``: :func:`diffusion_geometry.gits.gits_fit` for ``nfes[0]`` steps, then the dynamic
    programme re-solved on the same cost matrix for the other budgets (:meth:`GITSResult.schedule`).

    ``metric="dev"`` is the cost of the official code (the increase of the distance to the teacher's
    chord), ``coeff`` its weight per step (Chen et al. 2024, GITS, §4). Raises as
    :func:`~diffusion_geometry.gits.gits_fit`, and ``ValueError`` for empty or repeated budgets.
    """
    nfes = _check_nfes(nfes)
    fit = gits_fit(denoiser, x_warmup, nfes[0], sampler=sampler, metric=metric, coeff=coeff, fine_grid=fine_grid)
    grids = {n: fit.schedule(n) for n in nfes}
    return GITSGrids(nfes, grids, fit, int(x_warmup.shape[0]), metric, coeff)


@dataclass
class ScheduleComparison:
    """FD of each sampler on each schedule: ``fd[sampler][schedule][i]`` at ``nfes[i]`` (no AFS);
    ``gits`` the fitted GITS grids."""

    nfes: list[int]
    fd: dict[str, dict[str, list[float]]]
    gits: GITSGrids = field(repr=False)
    afs: bool = False

    def gain(self, sampler: str, over: str = "edm", of: str = GITS) -> list[float]:
        """``FD(over) - FD(of)`` at each budget: positive where ``of`` (GITS) beats ``over`` (rho = 7)."""
        return [a - b for a, b in zip(self.fd[sampler][over], self.fd[sampler][of])]

    @classmethod
    def combine(cls, parts) -> "ScheduleComparison":
        """One comparison from parts measured on the same GITS fit (e.g. one sampler per cell)."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to combine")
        out = cls(list(parts[0].nfes), {}, parts[0].gits, parts[0].afs)
        for p in parts:
            if p.nfes != out.nfes or p.gits is not out.gits:
                raise ValueError("parts measured with different budgets or GITS fits")
            if set(p.fd) & set(out.fd):
                raise ValueError(f"samplers measured twice: {sorted(set(p.fd) & set(out.fd))}")
            out.fd.update(p.fd)
        return out

    def to_dict(self) -> dict:
        return {"nfes": list(self.nfes), "afs": self.afs,
                "fd": {s: {k: list(v) for k, v in by.items()} for s, by in self.fd.items()},
                **self.gits.to_dict()}


def schedule_comparison(denoiser, x_T: torch.Tensor, fd: FD, gits: GITSGrids, *,
                        samplers=SCHEDULE_SAMPLERS, schedules=COMPARED_SCHEDULES,
                        batch_size: int | None = None) -> ScheduleComparison:
    r"""FD of every sampler in ``samplers`` on every schedule in ``schedules`` (registered names, and
    :data:`GITS` for ``gits``'s fitted grids) at the budgets ``gits.nfes``, without AFS (as in the
    GITS tables), all from the same ``x_T``. Each run is :func:`~diffusion_geometry.budget.sample_at_nfe`.

    Returns a :class:`ScheduleComparison`. Raises ``ValueError`` for an unknown sampler or schedule, a
    budget a sampler cannot meet without AFS (a two-evaluation sampler at an odd NFE) or a non-finite FD.
    """
    _check_inputs(denoiser, x_T, fd)
    if not isinstance(gits, GITSGrids):
        raise TypeError("gits must be the GITSGrids of fit_gits")
    names = _check_names(samplers, "samplers")
    scheds = _check_names(schedules, "schedules")
    for s in scheds:
        if s != GITS and s not in SCHEDULES:
            raise ValueError(f"unknown schedule {s!r}; choose from {sorted(SCHEDULES)} or {GITS!r}")

    def gits_grid(n_steps):
        return gits.schedule(n_steps)

    gits_grid.__name__ = GITS
    out = ScheduleComparison(list(gits.nfes), {}, gits)
    for name in names:
        out.fd[name] = {}
        for s in scheds:
            grid = gits_grid if s == GITS else s
            out.fd[name][s] = [_fd(fd, sample_at_nfe(denoiser, x_T, name, n, schedule=grid,
                                                     batch_size=batch_size).samples) for n in gits.nfes]
    return out


# --------------------------------------------------------------------------------------------------
# The analytical first step and ODE-Jump
# --------------------------------------------------------------------------------------------------


@dataclass
class AFSEffect:
    """FD without (``fd_plain``) and with (``fd_afs``) the analytical first step, per sampler, at
    ``nfes``; ``gain[s][i] = fd_plain[s][i] - fd_afs[s][i]`` is positive where AFS helps."""

    nfes: list[int]
    fd_plain: dict[str, list[float]]
    fd_afs: dict[str, list[float]]

    @property
    def gain(self) -> dict[str, list[float]]:
        return {s: [p - a for p, a in zip(self.fd_plain[s], self.fd_afs[s])] for s in self.fd_plain}

    def to_dict(self) -> dict:
        return {"nfes": list(self.nfes), "fd": {k: list(v) for k, v in self.fd_plain.items()},
                "fd_afs": {k: list(v) for k, v in self.fd_afs.items()}}


def afs_effect(denoiser, x_T: torch.Tensor, fd: FD, *, nfes, samplers=AFS_SAMPLERS,
               with_afs: NFETable | None = None, batch_size: int | None = None) -> AFSEffect:
    r"""FD of each sampler in ``samplers`` at each budget in ``nfes`` on the :math:`\rho = 7` grid
    without AFS, beside the same budget with AFS. AFS replaces the first evaluation by
    :math:`D(x_T) \approx x_T(1 - \sigma_\max/\sqrt{1 + \sigma_\max^2})` and so buys one more step.

    ``with_afs``: an :class:`NFETable` of :func:`fd_vs_nfe` (``afs=True``, ``"edm"``) from the same
    ``x_T`` that already holds these samplers and budgets (its values are reused, not recomputed);
    ``None`` measures them. A two-evaluation sampler needs an odd NFE with AFS and an even one
    without: no budget suits both, and ``BudgetError`` is raised.
    """
    _check_inputs(denoiser, x_T, fd)
    nfes, names = _check_nfes(nfes), _check_names(samplers, "samplers")
    if with_afs is None:
        with_afs = fd_vs_nfe(denoiser, x_T, fd, nfes=nfes, samplers=names, afs=True, batch_size=batch_size)
    elif not (with_afs.afs and with_afs.schedule == "edm"):
        raise ValueError("with_afs must be an fd_vs_nfe table with afs=True on the 'edm' schedule")
    plain = fd_vs_nfe(denoiser, x_T, fd, nfes=nfes, samplers=names, afs=False, batch_size=batch_size)
    return AFSEffect(nfes, plain.fd, {s: [with_afs.at(s, n) for n in nfes] for s in names})


@dataclass
class ODEJump:
    """ODE-Jump from one ``grid_steps``-step run of ``sampler`` on the :math:`\\rho = 7` grid: ``fd[i]`` is
    the FD of :math:`D(x_k;\\sigma_k)` with ``k = nfes[i] - 1`` steps taken (``nfes[i]`` evaluations for a
    one-evaluation sampler); ``fd_full`` is the FD of the run's final samples (``grid_steps`` evaluations)."""

    sampler: str
    grid_steps: int
    nfes: list[int]
    fd: list[float]
    fd_full: float

    def to_dict(self) -> dict:
        return asdict(self)


def ode_jump(denoiser, x_T: torch.Tensor, fd: FD, *, steps: int, nfes=None, sampler: str = "euler",
             batch_size: int | None = None) -> ODEJump:
    r"""ODE-Jump (Chen et al. 2023, §5): after ``k`` steps of a long run, output the denoiser's estimate
    :math:`D(x_k;\sigma_k)` instead of continuing. One run of ``sampler`` on ``edm_sigmas(steps)`` from
    ``x_T`` gives every jump at once: the output after ``nfe`` evaluations is ``denoised[nfe - 1]``
    (the same as :func:`diffusion_geometry.samplers.ode_jump` with ``k = nfe - 1``).

    ``nfes``: the budgets, each in ``[1, steps]`` (default all of them). Only one-evaluation samplers
    (their ``k`` steps and one jump cost ``k + 1``). Raises ``ValueError`` for a budget outside
    ``[1, steps]``, a two-evaluation sampler or a non-finite FD.
    """
    _check_inputs(denoiser, x_T, fd)
    spec, runs = _one_evaluation_runs(denoiser, x_T, steps, sampler, batch_size, "ODE-Jump")
    nfes = list(range(1, steps + 1)) if nfes is None else _check_nfes(nfes)
    if any(n > steps for n in nfes):
        raise ValueError(f"every budget must be at most steps = {steps}, got {nfes!r}")
    jumped, final = [], []
    for traj in runs:
        jumped.append(traj.denoised[[k - 1 for k in nfes]])
        final.append(traj.sample)
    jumped = torch.cat(jumped, dim=1)
    return ODEJump(spec.name, steps, nfes, [_fd(fd, d) for d in jumped], _fd(fd, torch.cat(final)))


def _one_evaluation_runs(denoiser, x_T, steps, sampler, batch_size, what: str):
    """``(spec, runs)``: ``runs`` yields the :class:`~diffusion_geometry.Trajectory` of ``sampler`` on
    ``edm_sigmas(steps)`` for each chunk of ``batch_size`` start points (the arguments are checked
    first: a one-evaluation sampler, positive ``steps`` and ``batch_size``)."""
    spec = get_sampler(sampler)
    if spec.evals_per_step != 1:
        raise ValueError(f"{what} needs a one-evaluation sampler; {spec.name} takes {spec.evals_per_step}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    n = x_T.shape[0]
    batch_size = n if batch_size is None else batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    grid = edm_sigmas(steps)
    return spec, (sample(denoiser, x_T[lo:lo + batch_size], grid, sampler=spec.name) for lo in range(0, n, batch_size))


# --------------------------------------------------------------------------------------------------
# FD along a trajectory (chapter 9)
# --------------------------------------------------------------------------------------------------


@dataclass
class TrajectoryFD:
    """FD at every step of one run: ``fd_x[i]`` of the points :math:`x_i` at ``sigmas[i]`` (``steps + 1``
    values, the last the samples) and ``fd_denoised[i]`` of :math:`D(x_i;\\sigma_i)` (``steps`` values)."""

    sampler: str
    sigmas: list[float]
    fd_x: list[float]
    fd_denoised: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def trajectory_fd(denoiser, x_T: torch.Tensor, fd: FD, *, steps: int, sampler: str = "euler",
                  batch_size: int | None = None) -> TrajectoryFD:
    r"""The FD of the sampling trajectory :math:`\{x_i\}` and of the denoising trajectory
    :math:`\{D(x_i;\sigma_i)\}` at every step of ``sampler`` on ``edm_sigmas(steps)`` from ``x_T``
    (chapter 9: the denoising trajectory looks like data long before the samples do).

    ``sampler`` must record one denoiser output per step (a one-evaluation sampler). Raises
    ``ValueError`` for non-positive ``steps``/``batch_size``, such a sampler, or a non-finite FD.
    """
    _check_inputs(denoiser, x_T, fd)
    spec, runs = _one_evaluation_runs(denoiser, x_T, steps, sampler, batch_size, "trajectory_fd")
    xs, ds = [], []
    for traj in runs:
        xs.append(traj.x)
        ds.append(traj.denoised)
    xs, ds = torch.cat(xs, dim=1), torch.cat(ds, dim=1)
    return TrajectoryFD(spec.name, edm_sigmas(steps).tolist(), [_fd(fd, p) for p in xs], [_fd(fd, p) for p in ds])


# --------------------------------------------------------------------------------------------------
# The GPU profile's results
# --------------------------------------------------------------------------------------------------


def gpu_results_path() -> Path:
    """Where the GPU profile's results live in the package: ``diffusion_geometry/data/gpu_profile.json``
    (found with :mod:`importlib.resources`, so an installed package finds its copy; the file may be
    absent). ``benchmarks/gpu_profile.py`` writes there by default."""
    return Path(str(resources.files("diffusion_geometry").joinpath("data", "gpu_profile.json")))


def load_gpu_results(path=None) -> dict | None:
    """The GPU-profile results (``benchmarks/gpu_profile.py``) as a dict, or ``None`` when the package
    holds no full GPU run.

    ``path=None`` reads :func:`gpu_results_path` and ignores a file written with ``--quick``
    (``"quick": true``); an explicit ``path`` is returned even when quick. The dict carries ``device``,
    ``date``, ``command`` and the measurements (keys in ``benchmarks/gpu_profile.py``). Raises
    ``FileNotFoundError`` for an explicit path that does not exist, ``ValueError`` for a file that is
    not a GPU-profile results file.
    """
    explicit = path is not None
    path = Path(path) if explicit else gpu_results_path()
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"no GPU-profile results file at {path}")
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a GPU-profile results file (not JSON: {err})") from None
    if not isinstance(data, dict) or not {"device", "date", "command"} <= set(data):
        raise ValueError(f"{path} is not a GPU-profile results file (needs device, date and command)")
    if data.get("quick") and not explicit:
        return None
    return data
