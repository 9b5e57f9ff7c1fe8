"""diffusion_geometry: the supporting package of *The Geometry of Diffusion Sampling*.

Import as ``import diffusion_geometry as dg``. Modules: :mod:`.schedules` (noise grids),
:mod:`.denoisers` (exact mixture, optimal empirical and preconditioned network denoisers),
:mod:`.samplers` (ODE samplers with one signature), :mod:`.trajectory` (the ``Trajectory`` record),
:mod:`.geometry` (measurements on trajectories), :mod:`.datasets` (toy data, digits, Fashion-MNIST),
:mod:`.profiles` (compute profiles of the book).
"""
from . import datasets, denoisers, geometry, plotting, profiles, samplers, schedules, widgets
from . import interpolation
from . import checkpoints, networks
from . import deviation, meanshift
from . import amed, benchmarking, finite_differences, gits
from . import imaging
from .denoisers import EDMPrecond, EmpiricalDenoiser, GaussianMixture
from .schedules import append_zero, edm_sigmas, logsnr_sigmas, uniform_sigmas
from .trajectory import Trajectory, sample

__version__ = "0.1.0"

__all__ = [
    "datasets", "denoisers", "geometry", "profiles", "samplers", "schedules",
    "EDMPrecond", "EmpiricalDenoiser", "GaussianMixture",
    "append_zero", "edm_sigmas", "logsnr_sigmas", "uniform_sigmas",
    "Trajectory", "sample",
]
__all__ += ["interpolation"]
__all__ += ["checkpoints", "networks", "training"]


def __getattr__(name):
    # `training`, `generate` and `metrics` are command-line modules too (`python -m
    # diffusion_geometry.training`): they are imported on first use, so that runpy does not find
    # them already imported by the package (it would warn)
    if name in ("training", "generate", "metrics"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
__all__ += ["deviation", "meanshift"]
__all__ += ["amed", "benchmarking", "finite_differences", "gits"]
__all__ += ["generate", "metrics"]
__all__ += ["imaging"]
