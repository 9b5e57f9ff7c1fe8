"""diffusion_geometry: the supporting package of *The Geometry of Diffusion Sampling*.

Import as ``import diffusion_geometry as dg`` and call ``dg.<module>.<function>``. The modules, by
concept (``CONTRIBUTING.md`` says where a new sampler, schedule, figure, metric or chapter goes):

* the ODE and its solvers -- :mod:`.schedules` (noise grids and their registry), :mod:`.denoisers`
  (exact mixture, linear (Gaussian), optimal empirical and preconditioned network denoisers),
  :mod:`.local` (local, patch-based denoisers), :mod:`.samplers` (samplers with one signature and
  their registry), :mod:`.trajectory` (the ``Trajectory`` record), :mod:`.budget` (sampling at a
  fixed NFE);
* geometry and the papers' findings -- :mod:`.geometry` (measurements on trajectories),
  :mod:`.interpolation`, :mod:`.finite_differences` (samplers as finite differences),
  :mod:`.benchmarking` (error against NFE), :mod:`.amed` and :mod:`.gits` (fitted samplers and
  schedules), :mod:`.meanshift` (the optimal denoiser as mean shift), :mod:`.deviation` (learned
  against optimal), :mod:`.image_experiments` (the image-scale measurements of Part IV);
* data, networks and quality -- :mod:`.datasets`, :mod:`.networks`, :mod:`.training`,
  :mod:`.checkpoints`, :mod:`.classifier` (Fashion-MNIST features), :mod:`.metrics` (FD = Fréchet
  distance, precision/recall), :mod:`.generate` (sharded generation);
* the book's tools -- :mod:`.plotting` (figures by kind), :mod:`.widgets`, :mod:`.notebook` (``glue``
  with or without myst-nb), :mod:`.exercises` (reference checks of the coding exercises),
  :mod:`.ledger` (the reproduction ledger: each claim checked and recorded), :mod:`.profiles`, :mod:`.cli`.
"""
from . import datasets, denoisers, geometry, notebook, plotting, profiles, samplers, schedules, widgets
from . import budget, interpolation, likelihood, local, paths, trajectory
from . import checkpoints, networks
from . import deviation, meanshift
from . import amed, benchmarking, finite_differences, gits, image_experiments
from .denoisers import EDMPrecond, EmpiricalDenoiser, GaussianMixture
from .local import LocalDenoiser
from .schedules import append_zero, edm_sigmas, logsnr_sigmas, uniform_sigmas
from .trajectory import Trajectory, sample

__version__ = "0.1.0"

__all__ = [
    "datasets", "denoisers", "geometry", "notebook", "plotting", "profiles", "samplers", "schedules", "widgets",
    "budget", "interpolation", "likelihood", "local", "paths", "trajectory", "checkpoints", "networks", "deviation", "meanshift",
    "amed", "benchmarking", "finite_differences", "gits", "image_experiments",
    "training", "generate", "classifier", "metrics", "exercises", "ledger", "memorisation",
    "EDMPrecond", "EmpiricalDenoiser", "GaussianMixture", "LocalDenoiser",
    "append_zero", "edm_sigmas", "logsnr_sigmas", "uniform_sigmas",
    "Trajectory", "sample",
]


def __getattr__(name):
    # `training`, `generate`, `classifier` and `metrics` are command-line modules too (`python -m
    # diffusion_geometry.training`): they are imported on first use, so that runpy does not find
    # them already imported by the package (it would warn); `exercises` imports `metrics`; `ledger` is
    # loaded with the first claim a chapter makes; `memorisation` is a command-line module too
    if name in ("training", "generate", "classifier", "metrics", "exercises", "ledger", "memorisation"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
