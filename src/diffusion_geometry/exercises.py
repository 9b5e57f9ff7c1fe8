r"""Reference checks of the book's autograded coding exercises.

Each chapter has one coding exercise whose answer is a function: the score of a noised Gaussian, the
optimal denoiser, an Euler step, slerp, a Heun sampler, the EDM schedule, a mean-shift step, the score
deviation, the Fréchet distance, the steps for an NFE budget, the clean point of a flow-matching velocity, the
Gaussian's exact flow and the fraction of samples that copy a training point. This module states each exercise
once, in :data:`EXERCISES` (:class:`ExerciseSpec`: chapter, the signature the student writes, the
package function it is compared with, a seeded generator of inputs, the tolerance and a hint), and
checks a student's function against the package, so that the chapter (whose solution cell passes the
check), the student notebook (whose stub fails it) and the grader share one definition.

:func:`check` calls the student's function on every input draw -- typical values, the extreme noise
levels :math:`\sigma = 10^{-3}` and :math:`\sigma = 80`, a batch of one, float32 as well as float64 --
and compares it with the package's answer on the same inputs. It returns a :class:`Verdict` and never
raises: a wrong value (which draw, by how much, where), a wrong shape, dtype or type, NaN or inf, an
exception inside the student's code, or an unfilled stub (``None``, not callable, or ``raise
NotImplementedError()``: "not attempted yet") each get their own message and a hint. :func:`grade`
prints the verdict in one or two lines and raises ``AssertionError`` unless it passed, so a grade cell
(an nbgrader autograder test) scores 0 or full marks.

Example: the cell after the exercise in chapter 5, and its grade cell::

    def heun_sampler(denoiser, x, sigmas):
        ...  # the student's answer

    from diffusion_geometry import exercises
    exercises.grade("heun_sampler", heun_sampler)
    # prints "PASSED heun_sampler (chapter 05_finite_differences): 6 inputs agree with
    # diffusion_geometry.samplers.heun (largest error ...)", or "FAILED heun_sampler ...: not finite on
    # input 1 of 6 (...): the answer holds NaN ..." and a hint, and raises AssertionError

``exercises.check("heun_sampler", heun_sampler)`` returns the :class:`Verdict` instead of printing,
``exercises.EXERCISES["heun_sampler"].signature`` is the text of the task, and
``exercises.EXERCISES["heun_sampler"].draws(seed)`` the inputs of a check.
"""
from __future__ import annotations

import math
import numbers
import os
import sysconfig
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

import numpy as np
import torch

from . import budget as _budget
from . import deviation as _deviation
from . import interpolation as _interpolation
from . import meanshift as _meanshift
from . import paths as _paths
from . import metrics as _metrics
from . import samplers as _samplers
from . import schedules as _schedules
from .denoisers import EmpiricalDenoiser, GaussianMixture

__all__ = ["Draw", "ExerciseSpec", "Verdict", "EXERCISES", "check", "grade", "exercises_of"]


class Draw(NamedTuple):
    """One input of a check: ``args`` are passed positionally to the student's function and to the
    reference; ``label`` says what the input is in a verdict; ``dtype`` is the precision the answer is
    judged in (the tolerance of :class:`ExerciseSpec` for it applies)."""

    label: str
    args: tuple
    dtype: torch.dtype


class Verdict(NamedTuple):
    """The outcome of :func:`check`.

    * ``passed`` -- whether every draw agreed with the reference.
    * ``status`` -- ``"passed"``, ``"not attempted"``, ``"error"`` (the student's code raised),
      ``"wrong type"``, ``"wrong shape"``, ``"wrong dtype"``, ``"not finite"``, ``"wrong value"`` or
      ``"no error raised"`` (an input the package rejects was accepted).
    * ``message`` -- one or two sentences: what went wrong, on which input, by how much.
    * ``hint`` -- what to look at (empty when passed).
    * ``worst_error`` -- the largest error over the draws compared, relative to the size of the answer
      (``inf`` for NaN or inf, ``nan`` when no value was compared).
    """

    passed: bool
    status: str
    message: str
    hint: str
    worst_error: float


@dataclass(frozen=True)
class ExerciseSpec:
    """One autograded coding exercise, declared once in :data:`EXERCISES`.

    * ``name`` -- the registry key, also the name of the function the student writes.
    * ``chapter`` -- the chapter that poses it (``"05_finite_differences"``).
    * ``signature`` -- the task as the student reads it: the function's signature, the shapes and dtypes
      of its arguments and of its answer, the edge cases it must handle.
    * ``reference`` -- the package's answer, called with the student's arguments.
    * ``reference_name`` -- the package function behind ``reference``, for messages.
    * ``make_draws`` -- ``generator_seed -> list[Draw]``; see :meth:`draws`.
    * ``rtol`` -- the largest error accepted, relative to the size of the answer, per draw dtype.
    * ``hint`` -- shown when an answer fails; ``hints`` -- specific ones by verdict status.
    * ``elementwise`` -- measure the error entry by entry relative to each entry (a grid whose small
      levels matter as much as its large ones) instead of relative to the largest entry.
    * ``scale`` -- ``(args, answer) -> float``, the size the error is relative to, when the answer's
      own size is the wrong yardstick (a Fréchet distance near 0 between two wide Gaussians).
    * ``error_type`` -- inputs on which the reference raises this exception must make the student's
      function raise it too.
    """

    name: str
    chapter: str
    signature: str
    reference: Callable
    reference_name: str
    make_draws: Callable[[int], list]
    rtol: Mapping[torch.dtype, float]
    hint: str
    hints: Mapping[str, str] = field(default_factory=dict)
    elementwise: bool = False
    scale: Callable | None = None
    error_type: type = ValueError

    def draws(self, seed: int = 0) -> list[Draw]:
        """The inputs of a check with ``seed``: fresh tensors each call, the same values for the same
        seed (the generator is seeded from ``seed`` and the exercise's name). Raises ``TypeError`` for a
        non-integer seed."""
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        return self.make_draws((int(seed) * 1_000_003 + zlib.crc32(self.name.encode())) % 2**63)

    def hint_for(self, status: str) -> str:
        """The hint for a verdict ``status``: the specific one if any, else the general one."""
        return self.hints.get(status, self.hint)


# --------------------------------------------------------------------------------------------------
# input generators
# --------------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _mixture(g: torch.Generator, dtype: torch.dtype, d: int = 2, k: int = 3) -> GaussianMixture:
    """A small Gaussian mixture (``k`` components in ``d`` dimensions, means of size ~1.5, variances
    0.01-0.1) whose exact denoiser returns ``dtype``: the toy data of Parts I and II."""
    means = 1.5 * _randn(g, k, d)
    variances = torch.tensor([_uniform(g, 0.01, 0.1) for _ in range(k)], dtype=torch.float64)
    return GaussianMixture(means.to(dtype), variances)


def _draws_score(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, sigma, std, batch, d in ((torch.float64, 1.0, 0.7, 5, 2), (torch.float64, 1e-3, 1e-3, 3, 3),
                                        (torch.float64, 80.0, 1.3, 1, 4), (torch.float32, 0.5, 1.0, 4, 2),
                                        (torch.float32, 1e-3, 1e-2, 3, 3), (torch.float32, 80.0, 0.5, 2, 3)):
        mean = _randn(g, d)
        x = mean + math.sqrt(std**2 + sigma**2) * _randn(g, batch, d)  # a draw of the noised marginal
        out.append(Draw(f"x of shape {(batch, d)} in {_dt(dtype)}, sigma = {sigma:g}, std = {std:g}",
                        (x.to(dtype), sigma, mean.to(dtype), std), dtype))
    return out


def _points(g: torch.Generator, n: int, d: int) -> torch.Tensor:
    return _randn(g, n, d)


def _queries(g, data, sigma, batch, near: bool) -> torch.Tensor:
    """``batch`` queries: noisy training points ``y_i + sigma z`` (``near``) or draws of N(0, (1 +
    sigma^2) I), off the data at small sigma (there every kernel weight underflows in a naive softmax)."""
    if near:
        idx = torch.randint(data.shape[0], (batch,), generator=g)
        return data[idx] + sigma * _randn(g, batch, data.shape[1])
    return math.sqrt(1 + sigma**2) * _randn(g, batch, data.shape[1])


def _draws_denoiser(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, sigma, n, d, batch, near in ((torch.float64, 0.5, 12, 2, 6, True),
                                            (torch.float64, 1e-3, 10, 3, 4, False),
                                            (torch.float64, 80.0, 16, 2, 1, False),
                                            (torch.float32, 0.2, 20, 4, 5, True),
                                            (torch.float32, 1e-3, 8, 2, 3, True),
                                            (torch.float32, 80.0, 9, 3, 2, False)):
        data = _points(g, n, d)
        x = _queries(g, data, sigma, batch, near)
        where = "near the data" if near else "off the data"
        out.append(Draw(f"x of shape {(batch, d)} {where} in {_dt(dtype)}, data of shape {(n, d)}, sigma = {sigma:g}",
                        (x.to(dtype), data.to(dtype), sigma), dtype))
    return out


def _draws_euler(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, sigma, sigma_next, batch in ((torch.float64, 80.0, 60.0, 4), (torch.float64, 1.0, 0.5, 5),
                                            (torch.float64, 1e-3, 0.0, 3), (torch.float64, 0.01, 1e-3, 1),
                                            (torch.float32, 80.0, 40.0, 3), (torch.float32, 0.5, 0.0, 2)):
        den = _mixture(g, dtype)
        x = den.sample(batch, sigma, generator=g).to(dtype)
        out.append(Draw(f"x of shape {(batch, 2)} in {_dt(dtype)}, sigma = {sigma:g} -> sigma_next = {sigma_next:g}",
                        (den, x, sigma, sigma_next), dtype))
    return out


def _draws_slerp(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, scale, batch, d, alpha, kind in ((torch.float64, 80.0, 4, 16, 0.5, "independent"),
                                                (torch.float64, 1.0, 1, 8, 0.25, "independent"),
                                                (torch.float64, 80.0, 4, 32, "per", "independent"),
                                                (torch.float64, 1.0, 3, 5, 0.4, "parallel"),
                                                (torch.float32, 80.0, 3, 64, 0.5, "independent"),
                                                (torch.float32, 1e-3, 4, 8, "per", "independent")):
        a = scale * _randn(g, batch, d)
        b = 2.5 * a if kind == "parallel" else scale * _randn(g, batch, d)
        if alpha == "per":
            alpha = torch.linspace(0, 1, batch, dtype=torch.float64).to(dtype)
            what = f"alpha = {[round(v, 3) for v in alpha.tolist()]} (one per row)"
        else:
            what = f"alpha = {alpha:g}"
        out.append(Draw(f"{kind} a, b of shape {(batch, d)} and size {scale:g} in {_dt(dtype)}, {what}",
                        (a.to(dtype), b.to(dtype), alpha), dtype))
    return out


def _draws_heun(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, n, batch, to_zero in ((torch.float64, 5, 4, True), (torch.float64, 1, 3, True),
                                     (torch.float64, 18, 1, True), (torch.float64, 4, 3, False),
                                     (torch.float32, 8, 4, True), (torch.float32, 3, 2, False)):
        den = _mixture(g, dtype)
        sigmas = _schedules.edm_sigmas(n)
        if to_zero:
            sigmas = _schedules.append_zero(sigmas)
        x = (80.0 * _randn(g, batch, 2)).to(dtype)
        end = "then 0" if to_zero else "no step to 0"
        out.append(Draw(f"x of shape {(batch, 2)} in {_dt(dtype)}, {n} steps of edm_sigmas from 80 to 0.002, {end}",
                        (den, x, sigmas), dtype))
    return out


def _draws_schedule(seed: int) -> list[Draw]:
    g = _gen(seed)
    cases = [(18, 0.002, 80.0, 7.0), (1, 0.002, 80.0, 7.0), (5, 1e-3, 80.0, 1.0), (40, 0.002, 80.0, 20.0)]
    cases.append((int(torch.randint(2, 30, (), generator=g)), 0.01, 10.0, round(_uniform(g, 1.5, 9.0), 3)))
    return [Draw(f"n_steps = {n}, sigma_min = {lo:g}, sigma_max = {hi:g}, rho = {rho:g}", (n, lo, hi, rho),
                 torch.float64) for n, lo, hi, rho in cases]


def _draws_mean_shift(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, sigma, lam, n, d, batch, near in ((torch.float64, 0.5, 1.0, 12, 2, 5, True),
                                                 (torch.float64, 0.5, 0.3, 12, 2, 5, True),
                                                 (torch.float64, 1e-3, 1 - 5e-4 / 1e-3, 10, 3, 4, False),
                                                 (torch.float64, 80.0, 1 - 60 / 80, 16, 2, 1, False),
                                                 (torch.float32, 0.3, 0.5, 20, 3, 4, True),
                                                 (torch.float32, 1e-3, 1.0, 8, 2, 3, True)):
        data = _points(g, n, d)
        x = _queries(g, data, sigma, batch, near)
        where = "near the data" if near else "off the data"
        out.append(Draw(f"x of shape {(batch, d)} {where} in {_dt(dtype)}, data of shape {(n, d)}, "
                        f"sigma = {sigma:g}, lam = {lam:g}", (x.to(dtype), data.to(dtype), sigma, lam), dtype))
    return out


def _draws_deviation(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, sigma, n, batch, near in ((torch.float64, 1.0, 12, 4, True), (torch.float64, 1e-3, 10, 3, True),
                                         (torch.float64, 80.0, 10, 1, False), (torch.float32, 0.3, 16, 5, True),
                                         (torch.float32, 80.0, 8, 2, False)):
        data = _points(g, n, 16)
        learned_set = data + 0.05 * _randn(g, n, 16)  # a "network" that learned a slightly wrong set
        x = _queries(g, data, sigma, batch, near)
        shape = (1, 4, 4)
        optimal = EmpiricalDenoiser(data.reshape(n, *shape).to(dtype))
        learned = EmpiricalDenoiser(learned_set.reshape(n, *shape).to(dtype))
        out.append(Draw(f"x of shape {(batch, *shape)} in {_dt(dtype)}, sigma = {sigma:g}",
                        (learned, optimal, x.reshape(batch, *shape).to(dtype), sigma), dtype))
    return out


def _spd(rng: np.random.Generator, k: int, scale: float, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((k, rank or k))
    return scale**2 * (a @ a.T / (rank or k) + (0.0 if rank else 0.1 * np.eye(k)))


def _draws_frechet(seed: int) -> list[Draw]:
    rng = np.random.default_rng(seed)
    out = []
    for label, k, scale in (("one feature", 1, 1.0), ("3 features", 3, 1.0), ("8 features, covariances that do not commute", 8, 1.0),
                            ("identical Gaussians (distance 0)", 4, 1.0), ("rank-deficient covariance", 5, 1.0),
                            ("features of size 80", 4, 80.0), ("features of size 1e-3", 3, 1e-3)):
        mu_a, mu_b = scale * rng.standard_normal(k), scale * rng.standard_normal(k)
        cov_a, cov_b = _spd(rng, k, scale), _spd(rng, k, scale, rank=2 if "rank" in label else None)
        if "identical" in label:
            mu_b, cov_b = mu_a.copy(), cov_a.copy()
        out.append(Draw(f"{label} (k = {k}), float64", (mu_a, cov_a, mu_b, cov_b), torch.float64))
    mu_a, mu_b = rng.standard_normal(3), rng.standard_normal(3)
    cov_a, cov_b = _spd(rng, 3, 1.0), _spd(rng, 3, 1.0)
    out.append(Draw("3 features, float32 statistics", tuple(v.astype(np.float32) for v in (mu_a, cov_a, mu_b, cov_b)),
                    torch.float32))
    return out


def _fd_scale(args, answer) -> float:
    """|mu_a - mu_b|^2 + tr cov_a + tr cov_b"""
    mu_a, cov_a, mu_b, cov_b = (np.asarray(v, np.float64) for v in args)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b))


def _draws_budget(seed: int) -> list[Draw]:
    g = _gen(seed)
    # the edge cases on the first registered sampler with one and with two evaluations per step (Euler, Heun)
    one, two = (next(n for n, s in _samplers.SAMPLERS.items() if s.evals_per_step == k) for k in (1, 2))
    cases = [(one, 10, False), (two, 35, True), (two, 36, False), (two, 35, False), (two, 1, True), (one, 1, False),
             (one, 0, False)]
    for name in _samplers.SAMPLERS:  # every sampler of the registry, at a random budget
        cases.append((name, int(torch.randint(1, 41, (), generator=g)), bool(torch.randint(2, (), generator=g))))
    return [Draw(f"sampler = {s!r}, nfe = {nfe}, afs = {afs}", (s, nfe, afs), torch.int64) for s, nfe, afs in cases]


# --------------------------------------------------------------------------------------------------
# the references: calls of the package, with the student's arguments
# --------------------------------------------------------------------------------------------------


def _draws_velocity(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for dtype, t, batch, d in ((torch.float64, 0.5, 5, 2), (torch.float64, 0.0, 3, 2),
                               (torch.float64, 1e-3, 4, 3), (torch.float64, 0.999, 1, 2),
                               (torch.float64, round(_uniform(g, 0.05, 0.95), 4), 6, 16),
                               (torch.float32, 0.3, 4, 2), (torch.float32, 0.999, 3, 8)):
        x0, eps = 1.5 * _randn(g, batch, d), _randn(g, batch, d)
        x = (1 - t) * x0 + t * eps
        v = eps - x0 + 0.1 * _randn(g, batch, d)  # a velocity with a network's error: the answer is not x0 itself
        out.append(Draw(f"v and x of shape {(batch, d)} in {_dt(dtype)}, t = {t:g}", (v.to(dtype), x.to(dtype), t), dtype))
    return out


def _ref_velocity(v, x, t):
    return _paths.convert_prediction(("velocity", v), to="x0", x=x, sigma=t / (1 - t), path="flow_matching").to(x.dtype)


def _draws_gaussian_flow(seed: int) -> list[Draw]:
    g = _gen(seed)
    out = []
    for batch, d, rank, (s0, s1) in ((4, 2, 2, (80.0, 10.0)), (3, 5, 5, (5.0, 0.0)), (5, 5, 3, (2.0, 0.0)),
                                     (2, 16, 12, (80.0, 0.002)), (3, 4, 4, (0.5, 3.0)), (2, 3, 3, (1.0, 1.0)),
                                     (1, 6, 6, (round(_uniform(g, 0.1, 20.0), 3), round(_uniform(g, 0.0, 0.1), 4)))):
        basis = torch.linalg.qr(_randn(g, d, d))[0]
        lam = torch.zeros(d, dtype=torch.float64)
        lam[:rank] = torch.tensor([_uniform(g, 0.05, 4.0) for _ in range(rank)], dtype=torch.float64)
        cov = (basis * lam) @ basis.T
        cov = (cov + cov.T) / 2
        mean = _randn(g, d)
        x = mean + max(s0, 1.0) * _randn(g, batch, d)
        label = f"x {(batch, d)}, covariance of rank {rank}, sigma {s0:g} -> {s1:g}"
        out.append(Draw(label, (x, mean, cov, s0, s1), torch.float64))
    return out


def _ref_gaussian_flow(x, mean, cov, sigma_from, sigma_to):
    return GaussianMixture(mean[None], cov[None]).flow(x, sigma_from, sigma_to)


def _ref_score(x, sigma, mean, std):
    return GaussianMixture(mean[None], std**2).score(x, sigma)


def _ref_denoiser(x, data, sigma):
    return EmpiricalDenoiser(data)(x, sigma)


def _ref_euler(denoiser, x, sigma, sigma_next):
    return _samplers.euler(denoiser, x, torch.tensor([sigma, sigma_next], dtype=torch.float64))


def _ref_mean_shift(x, data, sigma, lam):
    return _meanshift.mean_shift_step(EmpiricalDenoiser(data), x, sigma, lam)


def _ref_deviation(learned, optimal, x, sigma):
    # curve (3) of Chen et al. at the start point: |r_theta(x) - r*(x)|; the score deviation divides by sigma^2
    run = _deviation.score_deviation(learned, optimal, x, torch.tensor([sigma, sigma / 2], dtype=torch.float64))
    return run.on_learned[0] / sigma**2


def _ref_budget(sampler, nfe, afs):
    return _budget.steps_for_nfe(sampler, nfe, afs=afs)


def _ref_schedule(n_steps, sigma_min, sigma_max, rho):
    return _schedules.append_zero(_schedules.edm_sigmas(n_steps, sigma_min, sigma_max, rho))


def _draws_copy_fraction(seed: int) -> list[Draw]:
    """Samples near training points at spread-out distance ratios d1/d2, kept 0.03 away from the threshold
    (so float32 round-off cannot flip a verdict), some of them between ``ratio`` and ``sqrt(ratio)`` (where
    squared distances give the wrong verdict); one sample on a training point; a batch of one; two points."""
    g = _gen(seed)
    out = []
    for dtype, batch, n, d, ratio, scale in ((torch.float64, 12, 6, 4, 1 / 3, 1.0), (torch.float32, 10, 8, 64, 1 / 3, 1.0),
                                             (torch.float64, 1, 5, 3, 1 / 3, 1.0), (torch.float64, 9, 2, 2, 0.5, 1.0),
                                             (torch.float32, 8, 5, 16, 1 / 3, 80.0), (torch.float64, 10, 7, 5, 1 / 3, 1e-3),
                                             (torch.float64, 8, 9, 8, 0.25, 1.0)):
        train = scale * 3 * _randn(g, n, d)
        rows = []
        while len(rows) < batch:
            i = int(torch.randint(n, (), generator=g))
            step = _uniform(g, 0.0, 3.0) if rows else 0.0           # the first sample lies on a training point
            cand = train[i] + step * scale * _randn(g, d)
            dist = ((train - cand) ** 2).sum(1).sqrt().sort().values
            r = float(dist[0] / dist[1])
            if not rows or abs(r - ratio) > 0.03:
                rows.append(cand)
        samples = torch.stack(rows)
        out.append(Draw(f"{batch} samples, {n} training points in {d} dimensions, {_dt(dtype)}, ratio {ratio:.3g}, "
                        f"size {scale:g}", (samples.to(dtype), train.to(dtype), ratio), torch.float64))
    return out


def _one(args, answer) -> float:
    """1 (a fraction's error is absolute)"""
    return 1.0


def _ref_copy_fraction(samples, train, ratio):
    return _deviation.memorized_fraction(EmpiricalDenoiser(train), samples, ratio)


_TIGHT = {torch.float64: 1e-10, torch.float32: 1e-5}

_NAIVE_SOFTMAX = ("At small sigma every exp(-|x - y_i|^2 / (2 sigma^2)) underflows to 0 and the ratio is 0/0: "
                  "subtract the largest exponent before exponentiating (torch.softmax or torch.logsumexp do).")

EXERCISES: dict[str, ExerciseSpec] = {spec.name: spec for spec in (
    ExerciseSpec(
        "ve_gaussian_score", "01_ve_sde",
        """ve_gaussian_score(x, sigma, mean, std) -> Tensor
    The score grad_x log p_sigma(x) of the data distribution p_0 = N(mean, std^2 I) after VE noise of
    level sigma (p_sigma = p_0 convolved with N(0, sigma^2 I)).
    x: (batch, d) float32 or float64; sigma > 0 and std > 0: Python floats; mean: (d,), dtype of x.
    Returns (batch, d) in the dtype of x.""",
        _ref_score, "diffusion_geometry.GaussianMixture.score", _draws_score, _TIGHT,
        "Noising adds variances: p_sigma = N(mean, (std^2 + sigma^2) I), and the score of N(m, v I) is -(x - m) / v.",
    ),
    ExerciseSpec(
        "optimal_denoiser", "02_denoiser",
        """optimal_denoiser(x, data, sigma) -> Tensor
    The optimal denoiser D(x; sigma) = sum_i w_i(x) y_i of the finite data set {y_i}, with
    w = softmax_i(-|x - y_i|^2 / (2 sigma^2)) over the N training points.
    x: (batch, d) and data: (N, d), one floating dtype; sigma > 0 a Python float, from 1e-3 to 80.
    Returns (batch, d) in the dtype of x; finite at every sigma (no 0/0 when all weights underflow).""",
        _ref_denoiser, "diffusion_geometry.EmpiricalDenoiser", _draws_denoiser, _TIGHT,
        "The weights are a softmax over the training points (one row of N weights per query) of "
        "-|x - y_i|^2 / (2 sigma^2): squared distance, the factor 1/2, and sigma squared.",
        {"not finite": _NAIVE_SOFTMAX},
    ),
    ExerciseSpec(
        "euler_step", "03_trajectories",
        """euler_step(denoiser, x, sigma, sigma_next) -> Tensor
    One Euler step of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma from sigma to
    sigma_next < sigma (EDM parametrisation), with one call denoiser(x, sigma) -> (batch, d).
    x: (batch, d) float32 or float64; sigma > 0, sigma_next >= 0: Python floats (sigma_next = 0 allowed:
    the step then outputs D(x; sigma)). Returns (batch, d) in the dtype of x.""",
        _ref_euler, "diffusion_geometry.samplers.euler", _draws_euler, _TIGHT,
        "x_next = x + (sigma_next - sigma) * (x - D(x; sigma)) / sigma: the direction is evaluated at the "
        "current level sigma, and the step h = sigma_next - sigma is negative.",
    ),
    ExerciseSpec(
        "slerp", "04_high_dimensions",
        """slerp(a, b, alpha) -> Tensor
    Spherical interpolation sin((1 - alpha) theta) / sin(theta) * a + sin(alpha theta) / sin(theta) * b,
    with cos(theta) = <a, b> / (|a| |b|) computed per row.
    a, b: (batch, d), one floating dtype, non-zero rows; alpha: a Python float or a (batch,) tensor (one
    per row), 0 gives a and 1 gives b. Parallel rows (sin(theta) = 0) give the limit, the linear
    interpolation (1 - alpha) a + alpha b. Returns (batch, d) in the dtype of a.""",
        _interpolation.slerp, "diffusion_geometry.interpolation.slerp", _draws_slerp, _TIGHT,
        "Compute theta per row (sum over the features only), clamp cos(theta) to [-1, 1] before acos, "
        "reshape a (batch,) alpha to (batch, 1), and fall back to (1 - alpha) a + alpha b where sin(theta) is ~0.",
    ),
    ExerciseSpec(
        "heun_sampler", "05_finite_differences",
        """heun_sampler(denoiser, x, sigmas) -> Tensor
    EDM's Heun sampler (Karras et al. 2022, Alg. 1) of dx/dsigma = (x - D(x; sigma)) / sigma along the grid
    sigmas: an Euler predictor to sigma_{n+1}, then the trapezoidal corrector averaging the directions
    at sigma_n and at the predicted point. A step to sigma = 0 is a plain Euler step (it outputs D).
    denoiser(x, sigma) -> (batch, d); x: (batch, d) float32 or float64 at sigmas[0]; sigmas: 1-D float64
    tensor, strictly decreasing, only its last level may be 0. Returns the final sample, (batch, d),
    in the dtype of x.""",
        _samplers.heun, "diffusion_geometry.samplers.heun", _draws_heun,
        # the float32 reference rounds at each of the 2n stages, about 4e-6 of the sample's size at n = 8
        {torch.float64: 1e-9, torch.float32: 1e-4},
        "Take len(sigmas) - 1 steps; each averages d = (x - D(x; s)) / s at both ends; the last step to "
        "sigma = 0 has no corrector (dividing by sigma = 0 gives NaN).",
    ),
    ExerciseSpec(
        "edm_schedule", "06_schedules",
        """edm_schedule(n_steps, sigma_min, sigma_max, rho) -> Tensor
    EDM's rho-schedule sigma_i = (sigma_max^(1/rho) + i/n (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..n (Karras et al. 2022, Eq. 5), followed by a final level 0.
    n_steps >= 1 an int; 0 < sigma_min < sigma_max and rho > 0 floats.
    Returns a float64 tensor of shape (n_steps + 2,): sigma_max, ..., sigma_min, 0.""",
        _ref_schedule, "diffusion_geometry.schedules.edm_sigmas and append_zero", _draws_schedule,
        # each level is exact to rho u (sigma_max / sigma_i)^(1/rho) <= 1e-11 relative (the cancellation in the
        # sum at rho = 1, sigma_min = 1e-3): 1e-9 is that bound with a margin, far below any wrong grid
        {torch.float64: 1e-9},
        "n_steps steps are n_steps + 1 levels from sigma_max down to sigma_min, then the 0; interpolate "
        "linearly between sigma_max^(1/rho) and sigma_min^(1/rho), raise to rho, and build it in float64.",
        elementwise=True,
    ),
    ExerciseSpec(
        "mean_shift_step", "07_mean_shift",
        """mean_shift_step(x, data, sigma, lam) -> Tensor
    A partial Gaussian mean-shift step x + lam (m_sigma(x) - x) with bandwidth sigma, where
    m_sigma(x) = sum_i w_i y_i, w = softmax_i(-|x - y_i|^2 / (2 sigma^2)) (the optimal denoiser);
    lam = 1 - sigma_next / sigma is the Euler step of the optimal sampler.
    x: (batch, d) and data: (N, d), one floating dtype; sigma > 0 a Python float, from 1e-3 to 80;
    0 < lam <= 1 a float. Returns (batch, d) in the dtype of x.""",
        _ref_mean_shift, "diffusion_geometry.meanshift.mean_shift_step", _draws_mean_shift, _TIGHT,
        "The step moves from x towards the weighted mean by the fraction lam: x + lam (m - x); "
        "the weights use -|x - y_i|^2 / (2 sigma^2).",
        {"not finite": _NAIVE_SOFTMAX},
    ),
    ExerciseSpec(
        "score_deviation", "08_learned_vs_optimal",
        """score_deviation(learned, optimal, x, sigma) -> Tensor
    The score deviation |s_theta(x; sigma) - s*(x; sigma)| = |r_theta(x; sigma) - r*(x; sigma)| / sigma^2
    of a learned denoiser against the optimal one at the same points, the Euclidean norm taken over all
    of a sample's entries. learned, optimal: denoisers D(x, sigma) -> same shape as x;
    x: (batch, ...) float32 or float64, e.g. images (batch, 1, 4, 4); sigma > 0 a Python float.
    Returns (batch,) in the dtype of x.""",
        _ref_deviation, "diffusion_geometry.deviation.score_deviation", _draws_deviation, _TIGHT,
        "score = (D(x; sigma) - x) / sigma^2, so the x cancels in the difference; take the norm of each "
        "sample over all its entries (flatten everything but the batch axis), one value per sample.",
    ),
    ExerciseSpec(
        "frechet_distance", "09_image_trajectories",
        """frechet_distance(mu_a, cov_a, mu_b, cov_b) -> float
    The Fréchet distance |mu_a - mu_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2)) between the
    Gaussians N(mu_a, cov_a) and N(mu_b, cov_b) (Dowson & Landau 1982; FID, Heusel et al. 2017).
    mu_a, mu_b: (k,) numpy arrays; cov_a, cov_b: (k, k) symmetric positive semi-definite (possibly
    singular), float64 or float32. Returns a real Python float >= 0.""",
        _metrics.frechet_distance_from_stats, "diffusion_geometry.metrics.frechet_distance_from_stats",
        # a zero eigenvalue of a singular covariance carries round-off u ||C||, whose square root adds up to
        # 2 (k - rank) sqrt(u) ~ 1e-7 of the scale in float64 (sqrt(u) ~ 2e-4 in float32, well-conditioned there)
        _draws_frechet, {torch.float64: 1e-6, torch.float32: 1e-4},
        "tr((cov_a cov_b)^(1/2)) is not tr(cov_a^(1/2) cov_b^(1/2)) unless the covariances commute: it is the "
        "sum of the square roots of the eigenvalues of cov_a^(1/2) cov_b cov_a^(1/2) (real, >= 0).",
        scale=_fd_scale,
    ),
    ExerciseSpec(
        "velocity_to_denoised", "11_gaussian_paths",
        """velocity_to_denoised(v, x, t) -> Tensor
    The clean-point prediction x0_hat of a flow-matching model, x_t = (1 - t) x0 + t eps, from its velocity
    prediction v = E[eps - x0 | x_t = x] (the book's D(x / (1 - t); t / (1 - t))).
    v, x: (batch, d), one floating dtype; t: a Python float in [0, 0.999] (t = 0 allowed: sigma = 0).
    Returns (batch, d) in the dtype of x, finite at every t.""",
        _ref_velocity, "diffusion_geometry.paths.convert_prediction (velocity to x0, flow matching)", _draws_velocity,
        _TIGHT,
        "Eliminate eps: x = (1 - t) x0 + t eps and v = eps - x0 give x0 = x - t v. Dividing by t or by 1 - t "
        "is not needed (and fails at t = 0).",
    ),
    ExerciseSpec(
        "gaussian_flow", "12_linear_local",
        """gaussian_flow(x, mean, cov, sigma_from, sigma_to) -> Tensor
    The exact solution of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma of the Gaussian
    N(mean, cov), whose denoiser is D = mean + cov (cov + sigma^2 I)^-1 (x - mean), from sigma_from to
    sigma_to (Wang & Vastola 2024): along each eigenvector u_i of cov (eigenvalue lambda_i), the offset
    u_i.(x - mean) is multiplied by sqrt((lambda_i + sigma_to^2) / (lambda_i + sigma_from^2)).
    x: (batch, d), mean: (d,), cov: (d, d) symmetric positive semi-definite (possibly singular), all float64;
    sigma_from > 0 and sigma_to >= 0 Python floats (sigma_to may exceed sigma_from, or equal it).
    Returns (batch, d) float64.""",
        _ref_gaussian_flow, "diffusion_geometry.GaussianMixture.flow", _draws_gaussian_flow,
        # a singular cov's zero eigenvalues come out of eigh as +-1e-16: at sigma_to = 0 the naive ratio is then
        # ~1e-8 instead of 0 in those directions; any wrong formula is off by O(1)
        {torch.float64: 1e-6},
        "Diagonalise cov with torch.linalg.eigh, clamp negative round-off eigenvalues at 0, project x - mean on "
        "the eigenvectors, scale each coordinate by sqrt((lambda + sigma_to^2) / (lambda + sigma_from^2)), rotate "
        "back and add the mean.",
    ),
    ExerciseSpec(
        "copy_fraction", "13_memorisation",
        """copy_fraction(samples, train, ratio) -> float
    The fraction of samples that copy a training point: a sample counts when its nearest training point is
    much closer than the second nearest, d1 < ratio * d2 (Euclidean distances; Yoon et al. 2023, Gu et al.
    2023, Bonnaire et al. 2025 use ratio 1/3).
    samples: (batch, d), train: (n, d) with n >= 2, both float32 or both float64; ratio: a float in (0, 1].
    Returns a Python float in [0, 1].""",
        _ref_copy_fraction, "diffusion_geometry.deviation.memorized_fraction", _draws_copy_fraction,
        {torch.float64: 1e-12}, "Compare distances, not squared distances: d1^2 < ratio * d2^2 is the criterion at "
        "sqrt(ratio). torch.cdist(samples, train) then .topk(2, largest=False) gives d1 and d2 of each sample; the "
        "answer is the mean over the samples of (d1 < ratio * d2).",
        scale=_one,
    ),
    ExerciseSpec(
        "steps_for_nfe", "10_image_samplers",
        """steps_for_nfe(sampler, nfe, afs) -> int
    The number of steps n with which a sampler spends exactly nfe denoiser evaluations on a grid that
    ends above 0: nfe = k n - [afs], k the sampler's evaluations per step, read from the registry
    diffusion_geometry.samplers.SAMPLERS[sampler].evals_per_step; the analytical first step (afs=True)
    saves one evaluation. sampler: a name in SAMPLERS; nfe: an int; afs: a bool.
    Returns an int >= 1; raises ValueError when no whole n >= 1 fits (an odd nfe for Heun without AFS)
    or nfe < 1.""",
        _ref_budget, "diffusion_geometry.budget.steps_for_nfe", _draws_budget, {torch.int64: 0.0},
        "Solve nfe + [afs] = k n for n with k = SAMPLERS[sampler].evals_per_step, and raise ValueError when the "
        "division leaves a remainder or n < 1.",
    ),
)}
"""The autograded coding exercises by name, one :class:`ExerciseSpec` each, one per chapter: the only
list of exercises (the chapters, the student notebooks and the grader read it)."""


def exercises_of(chapter: str) -> list[ExerciseSpec]:
    """The exercises a chapter poses, e.g. ``exercises_of("05_finite_differences")``; ``[]`` if none."""
    return [spec for spec in EXERCISES.values() if spec.chapter == chapter]


# --------------------------------------------------------------------------------------------------
# comparing an answer with the reference
# --------------------------------------------------------------------------------------------------


class _Fail(Exception):
    """A verdict reached while comparing one draw."""

    def __init__(self, status: str, message: str, error: float = math.nan):
        super().__init__(message)
        self.status, self.message, self.error = status, message, error


def _copy(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {_dt(value.dtype)}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}" if isinstance(value, (numbers.Number, str)) else type(value).__name__


def _fmt_index(index: tuple) -> str:
    return "[" + ", ".join(map(str, index)) + "]" if index else ""


def _compare_arrays(got64: np.ndarray, ref64: np.ndarray, spec: ExerciseSpec, tol: float, args, ref) -> float:
    """The error of ``got64`` against ``ref64`` (both float64 arrays of one shape); raises ``_Fail``."""
    if not np.isfinite(got64).all():
        bad = ~np.isfinite(got64)
        first = tuple(int(i) for i in np.argwhere(bad)[0]) if got64.ndim else ()
        kinds = " and ".join(k for k, m in (("NaN", np.isnan(got64)), ("inf", np.isinf(got64))) if m.any())
        raise _Fail("not finite", f"the answer holds {kinds} ({int(bad.sum())} of {got64.size} entries, first at "
                    f"{_fmt_index(first) or 'the value'}) where the reference is finite", math.inf)
    diff = np.abs(got64 - ref64)
    if spec.elementwise:
        rel = diff / np.maximum(np.abs(ref64), np.finfo(np.float64).tiny)
        rel = np.where(diff == 0, 0.0, rel)
    else:
        size = spec.scale(args, ref) if spec.scale is not None else float(np.abs(ref64).max(initial=0.0))
        rel = diff / max(size, np.finfo(np.float64).tiny)
        rel = np.where(diff == 0, 0.0, rel)
    error = float(rel.max(initial=0.0))
    if error > tol:
        at = np.unravel_index(int(np.argmax(rel)), rel.shape) if rel.ndim else ()
        where = f" at {_fmt_index(tuple(int(i) for i in at))}" if at else ""
        yard = "that entry" if spec.elementwise else (spec.scale.__doc__ if spec.scale else "the answer's largest entry")
        raise _Fail("wrong value", f"the answer is off by {error:.2g} relative to {yard} (tolerance {tol:.0e}){where}: "
                    f"got {got64[at] if at else float(got64):.10g}, expected {ref64[at] if at else float(ref64):.10g}",
                    error)
    return error


def _compare(got, ref, spec: ExerciseSpec, draw: Draw) -> float:
    """The relative error of the student's answer ``got`` against the reference ``ref``; raises ``_Fail``."""
    tol = spec.rtol[draw.dtype]
    if isinstance(ref, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            raise _Fail("wrong type", f"expected a torch tensor of shape {tuple(ref.shape)}, got {_describe(got)}")
        if tuple(got.shape) != tuple(ref.shape):
            raise _Fail("wrong shape", f"expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
        if got.dtype != ref.dtype:
            raise _Fail("wrong dtype", f"expected dtype {_dt(ref.dtype)}, got {_dt(got.dtype)}")
        if got.is_complex():
            raise _Fail("wrong dtype", "expected a real tensor, got a complex one")
        got64 = got.detach().to("cpu", torch.float64).numpy()
        ref64 = ref.detach().to("cpu", torch.float64).numpy()
        return _compare_arrays(got64, ref64, spec, tol, draw.args, ref)
    if isinstance(ref, bool) or not isinstance(ref, numbers.Real):
        raise TypeError(f"reference answers are tensors or numbers, got {type(ref).__name__}")
    # a number: accept Python and numpy scalars and 0-d tensors or arrays of the right kind
    value = got
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 0:
            raise _Fail("wrong shape", f"expected a single number, got {_describe(value)}")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        raise _Fail("wrong type", f"expected a number, got {_describe(got)}")
    if isinstance(ref, numbers.Integral):
        if not isinstance(value, numbers.Integral):
            raise _Fail("wrong dtype", f"expected an int, got {_describe(value)}")
        if value != ref:
            raise _Fail("wrong value", f"got {value}, expected {ref}", abs(value - ref) / max(abs(ref), 1))
        return 0.0
    if isinstance(value, complex):
        raise _Fail("wrong dtype", f"expected a real number, got the complex {value!r} (take the real part "
                    "only where the imaginary part is round-off)")
    return _compare_arrays(np.float64(value), np.float64(ref), spec, tol, draw.args, ref)


_LIBRARIES = tuple({os.path.dirname(__file__), *(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))})


def _own_frames(exc: BaseException) -> list:
    """The frames of a traceback that are the student's code (not the standard library, an installed
    package or this package), outermost first."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # [0] is _run's call
    return [f for f in frames if not f.filename.startswith(_LIBRARIES)]


def _is_stub(exc: NotImplementedError) -> bool:
    """Whether the student's own code raised ``exc`` (the stub), not a library it called."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    return bool(frames) and not frames[-1].filename.startswith(_LIBRARIES)


def _student_frame(exc: BaseException) -> str:
    """`` (line N in f: `code`)`` for the innermost frame of the student's own code in a traceback."""
    own = _own_frames(exc)
    if not own:
        return ""
    f = own[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" (line {f.lineno} in {f.name}:{code})"


def _run(student_fn, args):
    return student_fn(*args)


def check(name: str, student_fn, *, seed: int = 0) -> Verdict:
    """Check ``student_fn`` against the package on the input draws of exercise ``name``.

    ``student_fn`` is the student's answer, a function with the exercise's signature
    (``EXERCISES[name].signature``), called positionally on every draw of
    ``EXERCISES[name].draws(seed)``; the package's reference is called on copies of the same inputs.
    The draws are compared in order and the first failure is reported. Never raises for anything the
    student's function does: exceptions it raises are caught and reported (``status = "error"``), and
    ``None``, a non-callable or a function that raises ``NotImplementedError`` on the first draw (the
    unfilled stub) give ``status = "not attempted"``. Returns a :class:`Verdict`; the same ``seed``
    gives the same draws and so the same verdict. Raises ``KeyError`` naming the exercises for an unknown
    ``name``, ``TypeError`` for a non-integer ``seed``.
    """
    if name not in EXERCISES:
        raise KeyError(f"unknown exercise {name!r}; the exercises are {sorted(EXERCISES)}")
    spec = EXERCISES[name]
    draws = spec.draws(seed)
    if student_fn is None or not callable(student_fn):
        what = "the answer is None" if student_fn is None else f"the answer is {_describe(student_fn)}, not a function"
        return Verdict(False, "not attempted", f"not attempted yet: {what}; write {spec.signature.splitlines()[0]}",
                       spec.hint, math.nan)
    worst = math.nan  # the largest error over the draws compared so far

    def worse(error: float) -> float:
        return error if math.isnan(worst) or error > worst else worst

    for k, draw in enumerate(draws):
        where = f"input {k + 1} of {len(draws)} ({draw.label})"
        try:
            ref = spec.reference(*map(_copy, draw.args))
            expected_error = None
        except spec.error_type as exc:
            ref, expected_error = None, exc
        try:
            got = _run(student_fn, tuple(map(_copy, draw.args)))
        except NotImplementedError as exc:
            if k == 0 and _is_stub(exc):
                return Verdict(False, "not attempted", f"not attempted yet: {name} still raises NotImplementedError",
                               spec.hint, math.nan)
            return Verdict(False, "error", f"raised NotImplementedError{_student_frame(exc)} on {where}",
                           spec.hint_for("error"), worst)
        except Exception as exc:  # the student's bug, reported, never propagated
            if expected_error is not None and isinstance(exc, spec.error_type):
                continue
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            want = f" (it should raise {spec.error_type.__name__}: {expected_error})" if expected_error else ""
            return Verdict(False, "error", f"raised {type(exc).__name__}{': ' + text if text else ''}"
                           f"{_student_frame(exc)} on {where}{want}", spec.hint_for("error"), worst)
        if expected_error is not None:
            return Verdict(False, "no error raised", f"returned {_describe(got)} on {where}, which has no answer: it "
                           f"should raise {spec.error_type.__name__} ({expected_error})", spec.hint_for("no error raised"),
                           worst)
        try:
            error = _compare(got, ref, spec, draw)
        except _Fail as fail:
            if not math.isnan(fail.error):
                worst = worse(fail.error)
            return Verdict(False, fail.status, f"{fail.status} on {where}: {fail.message}", spec.hint_for(fail.status),
                           worst)
        worst = worse(error)
    return Verdict(True, "passed", f"{len(draws)} inputs agree with {spec.reference_name} (largest "
                   f"relative error {worst:.1e})", "", worst)


def grade(name: str, student_fn, *, seed: int = 0) -> None:
    """The grade cell of exercise ``name``: print the :func:`check` verdict in one or two lines and raise
    ``AssertionError`` (with the verdict's message) unless it passed, so that an autograder scores the
    cell 0 or full marks. Returns nothing (a grade cell shows only the printed verdict; :func:`check`
    returns the :class:`Verdict`). Raises ``KeyError`` for an unknown exercise."""
    verdict = check(name, student_fn, seed=seed)
    chapter = EXERCISES[name].chapter
    if verdict.passed:
        print(f"PASSED {name} (chapter {chapter}): {verdict.message}")
        return None
    print(f"{'NOT ATTEMPTED' if verdict.status == 'not attempted' else 'FAILED'} {name} (chapter {chapter}): "
          f"{verdict.message}\n  Hint: {verdict.hint}")
    raise AssertionError(f"{name}: {verdict.message}")
