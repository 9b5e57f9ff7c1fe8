"""diffusion_geometry: the supporting package of *The Geometry of Diffusion Sampling*.

Import as ``import diffusion_geometry as dg``. Modules: :mod:`.schedules` (noise grids),
:mod:`.denoisers` (exact mixture, optimal empirical and preconditioned network denoisers),
:mod:`.samplers` (ODE samplers with one signature), :mod:`.trajectory` (the ``Trajectory`` record),
:mod:`.geometry` (measurements on trajectories), :mod:`.datasets` (toy data, digits, Fashion-MNIST),
:mod:`.profiles` (compute profiles of the book).
"""
from . import datasets, denoisers, geometry, plotting, profiles, samplers, schedules, widgets
from . import interpolation
from . import checkpoints, networks, training
from . import deviation, meanshift
from . import amed, benchmarking, finite_differences, gits
from . import generate, metrics
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
__all__ += ["deviation", "meanshift"]
__all__ += ["amed", "benchmarking", "finite_differences", "gits"]
__all__ += ["generate", "metrics"]
