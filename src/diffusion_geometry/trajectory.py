"""The :class:`Trajectory` record and :func:`sample`, which fills it.

A sampling run leaves two curves (Chen et al. 2023, §3): the *sampling trajectory*
:math:`\\{x_i\\}` (the ODE iterates, one per grid level) and the *denoising trajectory*
:math:`\\{D_i = D(x_i; \\sigma_i)\\}` (the denoiser's outputs along it, one per step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import samplers as _samplers
from .schedules import check_sigmas

__all__ = ["Trajectory", "sample", "CountingDenoiser"]


@dataclass
class Trajectory:
    """One batch of sampling runs.

    Attributes
    ----------
    sigmas : ``(n + 1,)`` the grid walked.
    x : ``(n + 1, batch, ...)`` the sampling trajectory; ``x[0]`` is the start, ``x[-1]`` the sample.
    denoised : ``(n, batch, ...)`` the denoising trajectory, ``denoised[i] = D(x[i]; sigmas[i])``.
    nfe : number of denoiser evaluations (each on the whole batch).
    method : the sampler's name.
    """

    sigmas: torch.Tensor
    x: torch.Tensor
    denoised: torch.Tensor
    nfe: int
    method: str = ""

    @property
    def sample(self) -> torch.Tensor:
        """The final sample ``x[-1]``."""
        return self.x[-1]

    @property
    def directions(self) -> torch.Tensor:
        r"""The ODE directions :math:`\varepsilon_i = (x_i - D_i)/\sigma_i`, ``(n, batch, ...)``."""
        s = self.sigmas[:-1].to(self.x).reshape(-1, *([1] * (self.x.ndim - 1)))
        return (self.x[:-1] - self.denoised) / s


class CountingDenoiser:
    """Wraps a denoiser and counts its evaluations (``nfe``)."""

    def __init__(self, denoiser):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x, sigma):
        self.nfe += 1
        return self.denoiser(x, sigma)


def sample(denoiser, x: torch.Tensor, sigmas, method: str = "heun", **opts) -> Trajectory:
    """Run the sampler ``method`` from ``x`` (at ``sigmas[0]``) along ``sigmas`` and record both
    trajectories. ``opts`` go to the sampler (e.g. ``r=`` for ``dpm_solver_2``, ``order=`` for
    ``ipndm``). ``method`` may also be a sampler function with the common signature."""
    if callable(method):
        fn, name = method, getattr(method, "__name__", "custom")
    elif method in _samplers.SAMPLERS:
        fn, name = _samplers.SAMPLERS[method], method
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(_samplers.SAMPLERS)}")
    sigmas = check_sigmas(sigmas)
    counting = CountingDenoiser(denoiser)
    xs, dens = [x], []

    def record(state):
        if state["i"] > 0:
            xs.append(state["x"])
        dens.append(state["denoised"])

    user_cb = opts.pop("callback", None)

    def callback(state):
        record(state)
        if user_cb is not None:
            user_cb(state)

    final = fn(counting, x, sigmas, callback=callback, **opts)
    xs.append(final)
    return Trajectory(sigmas=sigmas, x=torch.stack(xs), denoised=torch.stack(dens), nfe=counting.nfe, method=name)
