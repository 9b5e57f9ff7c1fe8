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
    denoised : ``(n, batch, ...)`` the denoising trajectory, ``denoised[i] = D(x[i]; sigmas[i])`` (for a
        predictor-corrector sampler, UniPC, D at the predicted point that ``x[i]`` corrects).
    nfe : number of denoiser evaluations (each on the whole batch).
    sampler : the sampler's registry name (or the function's ``__name__``).
    """

    sigmas: torch.Tensor
    x: torch.Tensor
    denoised: torch.Tensor
    nfe: int
    sampler: str = ""

    @property
    def sample(self) -> torch.Tensor:
        """The final sample ``x[-1]``."""
        return self.x[-1]

    @property
    def directions(self) -> torch.Tensor:
        r"""The ODE directions :math:`\varepsilon_i = (x_i - D_i)/\sigma_i`, ``(n, batch, ...)``, in the
        dtype of ``x - denoised`` (computed in float32 at least, see :func:`~diffusion_geometry.samplers.to_d`)."""
        s = self.sigmas[:-1].to(self.x.device).reshape(-1, *([1] * (self.x.ndim - 1)))
        return _samplers.to_d(self.x[:-1], s, self.denoised)


class CountingDenoiser:
    """Wraps a denoiser and counts its evaluations (``nfe``)."""

    def __init__(self, denoiser):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x, sigma):
        self.nfe += 1
        return self.denoiser(x, sigma)


def _listing(values: list, limit: int = 12) -> str:
    """``[0, 0, 1, ...]`` with at most ``limit`` entries shown."""
    shown = ", ".join(map(str, values[:limit]))
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def sample(denoiser, x: torch.Tensor, sigmas, sampler: str = "heun", **opts) -> Trajectory:
    """Run ``sampler`` from ``x`` (at ``sigmas[0]``) along ``sigmas`` and record both
    trajectories. ``opts`` go to the sampler (e.g. ``r=`` for ``dpm_solver_2``, ``order=`` for
    ``ipndm``). ``sampler`` is a name in :data:`~diffusion_geometry.samplers.SAMPLERS`, its spec, or a
    sampler function with the common signature.

    The record is built from the sampler's callback, which must report each grid step exactly once,
    in order: ``i = 0, 1, ..., len(sigmas) - 2``, with the point ``x`` at ``sigmas[i]`` and its
    ``denoised`` value (the samplers of :mod:`diffusion_geometry.samplers` do). With the returned final
    sample that gives ``len(sigmas)`` points of the sampling trajectory and ``len(sigmas) - 1`` of the
    denoising trajectory. A sampler that reports more or fewer steps, out of order, without the keys
    ``i``, ``x`` and ``denoised``, or with tensors of another shape than ``x`` raises ``ValueError``
    naming the sampler, the expected count and the count received (a user ``callback`` still sees
    every report, before the check).
    """
    if callable(sampler) and not isinstance(sampler, _samplers.SamplerSpec):
        fn, name = sampler, getattr(sampler, "__name__", "custom")
    else:
        spec = _samplers.get_sampler(sampler)
        fn, name = spec.fn, spec.name
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor of shape (batch, ...), got {type(x).__name__}")
    sigmas = check_sigmas(sigmas)
    counting = CountingDenoiser(denoiser)
    reports: list[dict] = []
    user_cb = opts.pop("callback", None)

    def callback(state):
        if not isinstance(state, dict) or not {"i", "x", "denoised"} <= set(state):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"sampler {name!r} reported {got}; the trajectory record needs a dict with "
                             "keys 'i', 'x' and 'denoised'")
        reports.append(state)
        if user_cb is not None:
            user_cb(state)

    final = fn(counting, x, sigmas, callback=callback, **opts)
    n_points = len(sigmas)
    steps = [r["i"] for r in reports]
    expected = list(range(n_points - 1))
    if steps != expected:
        order = " (out of order)" if len(steps) == len(expected) else ""
        raise ValueError(
            f"sampler {name!r} on a grid of len(sigmas) = {n_points} levels must report each step once, in "
            f"order (i = 0..{n_points - 2}), for a trajectory of {n_points} points; it made {len(steps)} "
            f"reports ({len(steps) + 1} points) with i = {_listing(steps)}{order}")
    if not isinstance(final, torch.Tensor):
        raise ValueError(f"sampler {name!r} returned {type(final).__name__}, not the final sample tensor")
    xs = [x, *(r["x"] for r in reports[1:]), final]
    dens = [r["denoised"] for r in reports]
    for label, seq in (("x", xs), ("denoised", dens)):
        for k, t in enumerate(seq):
            if not isinstance(t, torch.Tensor) or t.shape != x.shape:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"sampler {name!r}: {label} at step {k} has shape {shape}, "
                                 f"expected {tuple(x.shape)} (the shape of x)")
    return Trajectory(sigmas=sigmas, x=torch.stack(xs), denoised=torch.stack(dens), nfe=counting.nfe, sampler=name)
