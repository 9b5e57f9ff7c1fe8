"""The reference checks of the autograded exercises (``diffusion_geometry.exercises``).

For every exercise of the registry: the package reference and an independent naive float64
implementation written here pass; so do correct answers written the way a student would (in the
input's dtype, with scipy's ``sqrtm``...), so the tolerances are not tighter than honest round-off;
at least three distinct plausible wrong answers are rejected, each with the verdict it deserves;
the unfilled stub is "not attempted"; exceptions inside a student's code are reported, never raised;
verdicts are deterministic for a seed.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from diffusion_geometry import exercises as ex
from diffusion_geometry.samplers import SAMPLERS

BOOK = Path(__file__).resolve().parents[1] / "book"


# --------------------------------------------------------------------------------------------------
# independent naive float64 answers (explicit loops and closed forms, no package calls)
# --------------------------------------------------------------------------------------------------


def naive_score(x, sigma, mean, std):
    return (-(x.double() - mean.double()) / (std**2 + sigma**2)).to(x.dtype)


def _weights64(x, data, sigma):
    d2 = ((x.double()[:, None, :] - data.double()[None, :, :]) ** 2).sum(-1)  # explicit differences
    logits = -d2 / (2 * sigma**2)
    w = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    return w / w.sum(dim=1, keepdim=True)


def naive_denoiser(x, data, sigma):
    return (_weights64(x, data, sigma) @ data.double()).to(x.dtype)


def naive_euler_step(denoiser, x, sigma, sigma_next):
    d = (x.double() - denoiser(x, sigma).double()) / sigma
    return (x.double() + (sigma_next - sigma) * d).to(x.dtype)


def naive_slerp(a, b, alpha):
    rows = []
    alphas = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1).tolist()
    for i in range(a.shape[0]):
        ai, bi = a[i].double(), b[i].double()
        t = alphas[i] if len(alphas) > 1 else alphas[0]
        c = min(1.0, max(-1.0, float(ai @ bi) / (float(ai.norm()) * float(bi.norm()))))
        th = math.acos(c)
        if math.sin(th) < 1e-12:
            rows.append((1 - t) * ai + t * bi)
        else:
            rows.append((math.sin((1 - t) * th) * ai + math.sin(t * th) * bi) / math.sin(th))
    return torch.stack(rows).to(a.dtype)


def naive_heun(denoiser, x, sigmas):
    s = [float(v) for v in sigmas]
    y = x.double()
    for i in range(len(s) - 1):
        d = (y - denoiser(y.to(x.dtype), s[i]).double()) / s[i]
        if s[i + 1] == 0:
            y = y + (s[i + 1] - s[i]) * d
            continue
        pred = y + (s[i + 1] - s[i]) * d
        d2 = (pred - denoiser(pred.to(x.dtype), s[i + 1]).double()) / s[i + 1]
        y = y + (s[i + 1] - s[i]) * (d + d2) / 2
    return y.to(x.dtype)


def naive_schedule(n_steps, sigma_min, sigma_max, rho):
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    levels = [(hi + i / n_steps * (lo - hi)) ** rho for i in range(n_steps + 1)]
    return torch.tensor(levels + [0.0], dtype=torch.float64)


def naive_mean_shift_step(x, data, sigma, lam):
    m = _weights64(x, data, sigma) @ data.double()
    return (x.double() + lam * (m - x.double())).to(x.dtype)


def naive_score_deviation(learned, optimal, x, sigma):
    diff = (learned(x, sigma).double() - optimal(x, sigma).double()).reshape(x.shape[0], -1)
    return (diff.norm(dim=1) / sigma**2).to(x.dtype)


def naive_frechet(mu_a, cov_a, mu_b, cov_b):
    mu_a, cov_a, mu_b, cov_b = (np.asarray(v, np.float64) for v in (mu_a, cov_a, mu_b, cov_b))
    w, v = np.linalg.eigh(cov_a)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root @ cov_b @ root)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def naive_steps(sampler, nfe, afs):
    k = SAMPLERS[sampler].evals_per_step
    if nfe < 1 or (nfe + int(afs)) % k:
        raise ValueError(f"{sampler} cannot spend {nfe}")
    return (nfe + int(afs)) // k


def naive_gaussian_flow(x, mean, cov, sigma_from, sigma_to):
    """Eq. (ch12-flow) in NumPy float64: scale the eigen-coordinates of x - mean."""
    lam, U = np.linalg.eigh(np.asarray(cov, np.float64))
    lam = np.clip(lam, 0, None)
    z = (np.asarray(x, np.float64) - np.asarray(mean, np.float64)) @ U
    return torch.from_numpy(np.asarray(mean, np.float64) + (z * np.sqrt((lam + sigma_to**2) / (lam + sigma_from**2))) @ U.T)


def naive_copy_fraction(samples, train, ratio):
    """Loops over samples and training points, distances in Python floats, sorted."""
    s, t = np.asarray(samples, np.float64), np.asarray(train, np.float64)
    copies = 0
    for row in s:
        d = sorted(math.sqrt(sum((a - b) ** 2 for a, b in zip(row, y))) for y in t)
        copies += d[0] < ratio * d[1]
    return copies / len(s)


NAIVE = {
    "ve_gaussian_score": naive_score, "optimal_denoiser": naive_denoiser, "euler_step": naive_euler_step,
    "slerp": naive_slerp, "heun_sampler": naive_heun, "edm_schedule": naive_schedule,
    "mean_shift_step": naive_mean_shift_step, "score_deviation": naive_score_deviation,
    "frechet_distance": naive_frechet, "steps_for_nfe": naive_steps,
    "velocity_to_denoised": lambda v, x, t: (x.double() - t * v.double()).to(x.dtype),  # x0 = x - t v, in float64
    "gaussian_flow": naive_gaussian_flow, "copy_fraction": naive_copy_fraction,
}


# --------------------------------------------------------------------------------------------------
# correct answers the way a student writes them: in the input's dtype, with library shortcuts
# --------------------------------------------------------------------------------------------------


def student_denoiser(x, data, sigma):
    w = torch.softmax(-torch.cdist(x, data) ** 2 / (2 * sigma**2), dim=1)
    return w @ data


def student_slerp(a, b, alpha):
    alpha = torch.as_tensor(alpha, dtype=a.dtype).reshape(-1, 1)
    cos = ((a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True))).clamp(-1, 1)
    th = torch.acos(cos)
    s = torch.sin(th)
    safe = torch.where(s.abs() < 1e-6, torch.ones_like(s), s)
    out = (torch.sin((1 - alpha) * th) * a + torch.sin(alpha * th) * b) / safe
    return torch.where(s.abs() < 1e-6, (1 - alpha) * a + alpha * b, out)


def student_heun(denoiser, x, sigmas):
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoiser(x, s)) / s
        x_pred = x + (s_next - s) * d
        if s_next == 0:
            x = x_pred
        else:
            x = x + (s_next - s) * (d + (x_pred - denoiser(x_pred, s_next)) / s_next) / 2
    return x


def student_schedule(n_steps, sigma_min, sigma_max, rho):
    ramp = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def student_frechet(mu_a, cov_a, mu_b, cov_b):  # the pytorch-fid way
    covmean = scipy.linalg.sqrtm(cov_a.dot(cov_b))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff.dot(diff) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


STUDENT = [
    ("optimal_denoiser", "softmax_cdist_input_dtype", student_denoiser),
    ("slerp", "batched_input_dtype", student_slerp),
    ("heun_sampler", "loop_input_dtype", student_heun),
    ("edm_schedule", "linspace_float64", student_schedule),
    ("frechet_distance", "scipy_sqrtm", student_frechet),
]


# --------------------------------------------------------------------------------------------------
# plausible wrong answers, by exercise, with the verdict each deserves
# --------------------------------------------------------------------------------------------------


def _naive_exp_weights(x, data, sigma):  # no max subtracted: 0/0 when every exp underflows
    w = torch.exp(-torch.cdist(x.double(), data.double()) ** 2 / (2 * sigma**2))
    return w / w.sum(1, keepdim=True)


def _softmax_weights(x, data, sigma, *, power=2, half=True, dim=1):
    d = torch.cdist(x.double(), data.double()) ** power
    return torch.softmax(-d / ((2 if half else 1) * sigma**2), dim=dim)


def _slerp_one_angle(a, b, alpha):  # the angle between the whole batches, not per row
    alpha = torch.as_tensor(alpha, dtype=a.dtype).reshape(-1, 1)
    th = torch.acos(((a * b).sum() / (a.norm() * b.norm())).clamp(-1, 1))
    return (torch.sin((1 - alpha) * th) * a + torch.sin(alpha * th) * b) / torch.sin(th)


def _slerp_no_fallback(a, b, alpha, reshape=True):  # NaN for parallel rows; or alpha left (batch,)
    alpha = torch.as_tensor(alpha, dtype=a.dtype)
    alpha = alpha.reshape(-1, 1) if reshape else alpha
    cos = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True))
    th = torch.acos(cos.clamp(-1, 1))
    return (torch.sin((1 - alpha) * th) * a + torch.sin(alpha * th) * b) / torch.sin(th)


def _euler_only(D, x, sigmas):
    for s, t in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        x = x + (t - s) * (x - D(x, s)) / s
    return x


def _two_nearest(samples, train):
    return torch.cdist(samples.double(), train.double()).topk(2, dim=1, largest=False).values


def _copy_against_other_samples(samples, train, ratio):  # d2 taken to the nearest *other sample*
    d1 = torch.cdist(samples.double(), train.double()).min(1).values
    ds = torch.cdist(samples.double(), samples.double()).fill_diagonal_(math.inf)
    return float((d1 < ratio * ds.min(1).values).double().mean())


WRONG = [
    # 01: the score of a noised Gaussian
    ("ve_gaussian_score", "wrong_sign", "wrong value", lambda x, s, m, std: (x - m) / (std**2 + s**2)),
    ("ve_gaussian_score", "noise_variance_forgotten", "wrong value", lambda x, s, m, std: -(x - m) / std**2),
    ("ve_gaussian_score", "sigma_not_squared", "wrong value", lambda x, s, m, std: -(x - m) / (std**2 + s)),
    ("ve_gaussian_score", "returns_float64", "wrong dtype", lambda x, s, m, std: naive_score(x, s, m, std).double()),
    # 02: the optimal denoiser
    ("optimal_denoiser", "naive_exp_nan_at_small_sigma", "not finite",
     lambda x, y, s: (_naive_exp_weights(x, y, s) @ y.double()).to(x.dtype)),
    ("optimal_denoiser", "half_forgotten_in_exponent", "wrong value",
     lambda x, y, s: (_softmax_weights(x, y, s, half=False) @ y.double()).to(x.dtype)),
    ("optimal_denoiser", "unsquared_distance", "wrong value",
     lambda x, y, s: (_softmax_weights(x, y, s, power=1) @ y.double()).to(x.dtype)),
    ("optimal_denoiser", "softmax_over_batch_axis", "wrong value",
     lambda x, y, s: (_softmax_weights(x, y, s, dim=0) @ y.double()).to(x.dtype)),
    # 03: one Euler step
    ("euler_step", "denoiser_at_sigma_next", "wrong value",
     lambda D, x, s, t: x + (t - s) * (x - D(x, t)) / s),
    ("euler_step", "step_reversed", "wrong value", lambda D, x, s, t: x + (s - t) * (x - D(x, s)) / s),
    ("euler_step", "score_instead_of_direction", "wrong value",
     lambda D, x, s, t: x + (t - s) * (x - D(x, s)) / s**2),
    ("euler_step", "divides_by_sigma_next", "wrong value", lambda D, x, s, t: x + (t - s) * (x - D(x, s)) / t),
    # 04: slerp
    ("slerp", "lerp_instead", "wrong value",
     lambda a, b, t: (1 - torch.as_tensor(t, dtype=a.dtype).reshape(-1, 1)) * a + torch.as_tensor(t, dtype=a.dtype).reshape(-1, 1) * b),
    ("slerp", "angle_over_whole_batch", "wrong value", lambda a, b, t: _slerp_one_angle(a, b, t)),
    ("slerp", "weights_swapped", "wrong value", lambda a, b, t: student_slerp(b, a, t)),
    ("slerp", "no_parallel_fallback", "not finite", lambda a, b, t: _slerp_no_fallback(a, b, t)),
    ("slerp", "alpha_not_reshaped", "error", lambda a, b, t: _slerp_no_fallback(a, b, t, reshape=False)),
    # 05: the Heun sampler
    ("heun_sampler", "euler_only", "wrong value", lambda D, x, s: _euler_only(D, x, s)),
    ("heun_sampler", "off_by_one_last_step_missing", "wrong value", lambda D, x, s: student_heun(D, x, s[:-1])),
    ("heun_sampler", "corrector_on_step_to_zero", "not finite", lambda D, x, s: _heun_always_corrects(D, x, s)),
    ("heun_sampler", "corrector_uses_end_direction_only", "wrong value", lambda D, x, s: _heun_end_only(D, x, s)),
    # 06: the EDM schedule with the appended zero
    ("edm_schedule", "zero_not_appended", "wrong shape", lambda n, lo, hi, rho: student_schedule(n, lo, hi, rho)[:-1]),
    ("edm_schedule", "off_by_one_levels", "wrong shape",
     lambda n, lo, hi, rho: torch.cat([torch.linspace(hi ** (1 / rho), lo ** (1 / rho), n, dtype=torch.float64) ** rho,
                                       torch.zeros(1, dtype=torch.float64)])),
    ("edm_schedule", "float32_linspace", "wrong dtype",
     lambda n, lo, hi, rho: torch.cat([torch.linspace(hi ** (1 / rho), lo ** (1 / rho), n + 1) ** rho, torch.zeros(1)])),
    ("edm_schedule", "increasing_order", "wrong value",
     lambda n, lo, hi, rho: torch.cat([student_schedule(n, lo, hi, rho)[:-1].flip(0), torch.zeros(1, dtype=torch.float64)])),
    ("edm_schedule", "rho_and_inverse_swapped", "wrong value",
     lambda n, lo, hi, rho: student_schedule(n, lo, hi, 1 / rho)),
    # 07: a mean-shift step
    ("mean_shift_step", "naive_exp_nan_at_small_sigma", "not finite",
     lambda x, y, s, lam: (x.double() + lam * (_naive_exp_weights(x, y, s) @ y.double() - x.double())).to(x.dtype)),
    ("mean_shift_step", "step_away_from_mean", "wrong value",
     lambda x, y, s, lam: x - lam * (naive_denoiser(x, y, s) - x)),
    ("mean_shift_step", "fraction_on_the_wrong_side", "wrong value",
     lambda x, y, s, lam: lam * x + (1 - lam) * naive_denoiser(x, y, s)),
    ("mean_shift_step", "fraction_ignored", "wrong value", lambda x, y, s, lam: naive_denoiser(x, y, s)),
    ("mean_shift_step", "half_forgotten_in_exponent", "wrong value",
     lambda x, y, s, lam: (x.double() + lam * (_softmax_weights(x, y, s, half=False) @ y.double() - x.double())).to(x.dtype)),
    # 08: the score deviation
    ("score_deviation", "denoiser_deviation_not_divided", "wrong value",
     lambda L, O, x, s: (L(x, s) - O(x, s)).flatten(1).norm(dim=1)),
    ("score_deviation", "divided_by_sigma_not_squared", "wrong value",
     lambda L, O, x, s: (L(x, s) - O(x, s)).flatten(1).norm(dim=1) / s),
    ("score_deviation", "squared_norm", "wrong value",
     lambda L, O, x, s: ((L(x, s) - O(x, s)) ** 2).flatten(1).sum(1) / s**2),
    ("score_deviation", "norm_over_last_axis_only", "wrong shape",
     lambda L, O, x, s: (L(x, s) - O(x, s)).norm(dim=-1) / s**2),
    ("score_deviation", "averaged_over_batch", "wrong shape",
     lambda L, O, x, s: ((L(x, s) - O(x, s)).flatten(1).norm(dim=1) / s**2).mean()),
    # 09: the Fréchet distance
    ("frechet_distance", "assumes_commuting_covariances", "wrong value",
     lambda ma, ca, mb, cb: float(np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb)
                                  - 2 * np.trace(scipy.linalg.sqrtm(ca).real @ scipy.linalg.sqrtm(cb).real))),
    ("frechet_distance", "factor_two_forgotten", "wrong value",
     lambda ma, ca, mb, cb: float(np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb)
                                  - np.trace(scipy.linalg.sqrtm(ca @ cb).real))),
    ("frechet_distance", "mean_distance_not_squared", "wrong value",
     lambda ma, ca, mb, cb: float(student_frechet(ma, ca, mb, cb) - np.sum((ma - mb) ** 2) + np.linalg.norm(ma - mb))),
    ("frechet_distance", "complex_from_sqrtm", "wrong dtype",
     lambda ma, ca, mb, cb: complex(np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb)
                                    - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb).astype(complex)))),
    # 10: the steps for an NFE budget
    ("steps_for_nfe", "afs_ignored", "error", lambda s, nfe, afs: naive_steps(s, nfe, False)),
    ("steps_for_nfe", "floor_division_without_error", "no error raised",
     lambda s, nfe, afs: (nfe + int(afs)) // SAMPLERS[s].evals_per_step),
    ("steps_for_nfe", "two_evaluations_for_every_sampler", "wrong value",
     lambda s, nfe, afs: naive_steps("heun", nfe, afs)),
    ("steps_for_nfe", "afs_subtracted", "wrong value", lambda s, nfe, afs: naive_steps(s, nfe - int(afs), False)),
    ("steps_for_nfe", "float_division", "wrong dtype", lambda s, nfe, afs: float(naive_steps(s, nfe, afs))),
    # 11: the clean point from a flow-matching velocity
    ("velocity_to_denoised", "time_forgotten", "wrong value", lambda v, x, t: x - v),
    ("velocity_to_denoised", "divided_by_alpha", "wrong value", lambda v, x, t: (x - t * v) / (1 - t)),
    ("velocity_to_denoised", "sign_flipped", "wrong value", lambda v, x, t: x + t * v),
    # 12: the Gaussian's exact flow
    ("gaussian_flow", "sigma_not_squared", "wrong value",
     lambda x, m, c, s0, s1: naive_gaussian_flow(x, m, c, s0**0.5, s1**0.5)),
    ("gaussian_flow", "no_square_root", "wrong value",
     lambda x, m, c, s0, s1: m + ((x - m) @ torch.linalg.eigh(c)[1] * ((torch.linalg.eigh(c)[0].clamp(min=0) + s1**2)
                                   / (torch.linalg.eigh(c)[0].clamp(min=0) + s0**2))) @ torch.linalg.eigh(c)[1].T),
    ("gaussian_flow", "mean_not_subtracted", "wrong value",
     lambda x, m, c, s0, s1: naive_gaussian_flow(x, torch.zeros_like(m), c, s0, s1)),
    # 13: the fraction of copies
    ("copy_fraction", "squared_distances", "wrong value",
     lambda s, t, r: (lambda d: float((d[:, 0] ** 2 < r * d[:, 1] ** 2).double().mean()))(_two_nearest(s, t))),
    ("copy_fraction", "count_not_fraction", "wrong value",
     lambda s, t, r: (lambda d: float((d[:, 0] < r * d[:, 1]).double().sum()))(_two_nearest(s, t))),
    ("copy_fraction", "second_nearest_sample", "wrong value", _copy_against_other_samples),
    ("copy_fraction", "per_sample_verdicts", "wrong shape",
     lambda s, t, r: (lambda d: d[:, 0] < r * d[:, 1])(_two_nearest(s, t))),
]


def _heun_always_corrects(D, x, sigmas):  # the corrector also on the step to 0: divides by 0
    for s, t in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d = (x - D(x, s)) / s
        pred = x + (t - s) * d
        x = x + (t - s) * (d + (pred - D(pred, t)) / t) / 2  # a tensor over t = 0.0: inf or NaN
    return x


def _heun_end_only(D, x, sigmas):  # x + h d(x_pred) instead of the average
    for s, t in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d = (x - D(x, s)) / s
        pred = x + (t - s) * d
        x = pred if t == 0 else x + (t - s) * (pred - D(pred, t)) / t
    return x


def stub(*args):
    raise NotImplementedError()


# --------------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------------


def test_one_exercise_per_chapter_with_the_fields_filled():
    chapters = sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(spec.chapter for spec in ex.EXERCISES.values()) == chapters
    for name, spec in ex.EXERCISES.items():
        assert spec.name == name and spec.signature.startswith(name + "(") and spec.hint
        assert ex.exercises_of(spec.chapter) == [spec]
    assert set(NAIVE) == set(ex.EXERCISES)


# per exercise: (float32 and float64 inputs, sigma = 1e-3 and 80 among the inputs, a batch of one)
EDGES = {
    "ve_gaussian_score": (True, True, True), "optimal_denoiser": (True, True, True),
    "euler_step": (True, True, True), "slerp": (True, False, True), "heun_sampler": (True, False, True),
    "edm_schedule": (False, False, False), "mean_shift_step": (True, True, True),
    "score_deviation": (True, True, True), "frechet_distance": (True, False, False),
    "steps_for_nfe": (False, False, False), "velocity_to_denoised": (True, False, True),
    "gaussian_flow": (False, False, True), "copy_fraction": (False, False, True),
}


@pytest.mark.parametrize("name", sorted(ex.EXERCISES))
def test_draws_cover_the_edge_cases(name):
    draws = ex.EXERCISES[name].draws(0)
    both_dtypes, extreme_sigma, batch_of_one = EDGES[name]
    assert len(draws) >= 5
    if both_dtypes:
        assert {d.dtype for d in draws} >= {torch.float32, torch.float64}
        assert {a.dtype for d in draws for a in d.args if isinstance(a, (torch.Tensor, np.ndarray))} & {
            torch.float32, np.dtype(np.float32)}
    if extreme_sigma:
        labels = " ".join(d.label for d in draws)
        assert "sigma = 0.001" in labels and "sigma = 80" in labels, labels
    if batch_of_one:
        assert 1 in [a.shape[0] for d in draws for a in d.args if isinstance(a, torch.Tensor) and a.ndim >= 2]


@pytest.mark.parametrize("name", sorted(ex.EXERCISES))
@pytest.mark.parametrize("answer", ["reference", "naive_float64"])
def test_correct_answers_pass(name, answer):
    fn = ex.EXERCISES[name].reference if answer == "reference" else NAIVE[name]
    verdict = ex.check(name, fn)
    print(name, answer, verdict.message)
    assert verdict.passed, verdict
    assert verdict.status == "passed" and verdict.hint == ""
    assert verdict.worst_error <= max(ex.EXERCISES[name].rtol.values())


@pytest.mark.parametrize("name, fn", [(n, f) for n, _, f in STUDENT], ids=[f"{n}-{i}" for n, i, _ in STUDENT])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_answers_in_the_input_dtype_pass(name, fn, seed):
    verdict = ex.check(name, fn, seed=seed)
    print(name, verdict.message)
    assert verdict.passed, verdict


@pytest.mark.parametrize("name, fn, status", [(n, f, s) for n, _, s, f in WRONG], ids=[f"{n}-{w}" for n, w, _, _ in WRONG])
def test_wrong_answers_are_rejected(name, fn, status):
    verdict = ex.check(name, fn)
    print(verdict.message)
    assert not verdict.passed
    assert verdict.status == status, verdict
    assert verdict.hint and "input" in verdict.message
    if status == "wrong value":
        assert verdict.worst_error > min(ex.EXERCISES[name].rtol.values())


def test_each_exercise_rejects_three_distinct_wrong_answers():
    names = [n for n, *_ in WRONG]
    for name in ex.EXERCISES:
        assert names.count(name) >= 3, name


@pytest.mark.parametrize("name", sorted(ex.EXERCISES))
@pytest.mark.parametrize("answer", [None, "stub", 42], ids=["none", "raises_not_implemented", "not_callable"])
def test_unfilled_stub_is_not_attempted(name, answer):
    verdict = ex.check(name, stub if answer == "stub" else answer)
    assert verdict == (False, "not attempted", verdict.message, verdict.hint, verdict.worst_error)
    assert verdict.message.startswith("not attempted yet") and math.isnan(verdict.worst_error)


def test_exceptions_in_student_code_are_reported_not_raised():
    def buggy(x, data, sigma):
        weights = torch.softmax(-torch.cdist(x, data) ** 2, dim=1)
        return weights @ data.T  # (batch, N) @ (d, N): a shape error inside torch

    verdict = ex.check("optimal_denoiser", buggy)
    assert verdict.status == "error" and not verdict.passed
    assert "RuntimeError" in verdict.message and "input 1 of" in verdict.message
    assert "return weights @ data.T" in verdict.message  # the student's own line, not torch's

    def late(x, sigma, mean, std):
        if x.dtype == torch.float32:
            raise NotImplementedError("float32 later")
        return naive_score(x, sigma, mean, std)

    verdict = ex.check("ve_gaussian_score", late)
    assert verdict.status == "error" and "NotImplementedError" in verdict.message


def test_expected_errors_must_be_raised_by_the_student():
    def wrong_error(sampler, nfe, afs):
        if nfe < 1 or (nfe + afs) % SAMPLERS[sampler].evals_per_step:
            raise TypeError("no")
        return naive_steps(sampler, nfe, afs)

    verdict = ex.check("steps_for_nfe", wrong_error)
    assert verdict.status == "error" and "should raise ValueError" in verdict.message


def test_inputs_modified_in_place_do_not_change_the_reference():
    def mutating(x, sigma, mean, std):
        out = naive_score(x, sigma, mean, std)
        x.zero_()
        mean.fill_(7.0)
        return out

    assert ex.check("ve_gaussian_score", mutating).passed


def test_wrong_value_message_says_where_and_by_how_much():
    verdict = ex.check("ve_gaussian_score", lambda x, s, m, std: -(x - m) / std**2)
    print(verdict.message)
    assert verdict.message.startswith("wrong value on input ")
    assert "sigma = " in verdict.message and "off by" in verdict.message and "expected" in verdict.message


@pytest.mark.parametrize("name", ["heun_sampler", "frechet_distance", "steps_for_nfe"])
def test_verdicts_are_deterministic_for_a_seed(name):
    first, second = ex.EXERCISES[name].draws(3), ex.EXERCISES[name].draws(3)
    other = ex.EXERCISES[name].draws(4)
    flat = lambda draws: [a for d in draws for a in d.args if isinstance(a, (torch.Tensor, np.ndarray))]
    assert all(bool((np.asarray(a) == np.asarray(b)).all()) for a, b in zip(flat(first), flat(second)))
    assert [d.label for d in first] == [d.label for d in second]
    if flat(first):
        assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(flat(first), flat(other)))
    wrong = next(f for n, _, s, f in WRONG if n == name and s == "wrong value")
    assert ex.check(name, wrong, seed=3)[:3] == ex.check(name, wrong, seed=3)[:3]


def test_grade_prints_and_raises(capsys):
    assert ex.grade("edm_schedule", naive_schedule) is None  # passed: no AssertionError, nothing to display
    assert capsys.readouterr().out.startswith("PASSED edm_schedule")
    with pytest.raises(AssertionError, match="not attempted"):
        ex.grade("edm_schedule", stub)
    out = capsys.readouterr().out
    assert out.startswith("NOT ATTEMPTED edm_schedule") and "Hint:" in out and len(out.strip().splitlines()) == 2
    with pytest.raises(AssertionError, match="wrong shape"):
        ex.grade("edm_schedule", lambda n, lo, hi, rho: naive_schedule(n, lo, hi, rho)[:-1])
    assert capsys.readouterr().out.startswith("FAILED edm_schedule")


def test_bad_calls_to_check_raise_clear_errors():
    with pytest.raises(KeyError, match="unknown exercise"):
        ex.check("heun", naive_heun)
    with pytest.raises(TypeError, match="seed"):
        ex.check("heun_sampler", naive_heun, seed=0.5)


def test_wrong_types_are_named():
    verdict = ex.check("ve_gaussian_score", lambda x, s, m, std: naive_score(x, s, m, std).numpy())
    assert verdict.status == "wrong type" and "numpy array" in verdict.message
    verdict = ex.check("frechet_distance", lambda *stats: [naive_frechet(*stats)])
    assert verdict.status == "wrong type" and "list" in verdict.message
    verdict = ex.check("frechet_distance", lambda *stats: np.array([naive_frechet(*stats)]))
    assert verdict.status == "wrong shape" and "single number" in verdict.message


def test_not_implemented_inside_a_library_is_an_error_not_a_stub():
    def calls_a_bare_module(x, sigma, mean, std):
        return torch.nn.Module()(x)  # torch raises NotImplementedError: no forward

    verdict = ex.check("ve_gaussian_score", calls_a_bare_module)
    assert verdict.status == "error" and "NotImplementedError" in verdict.message
    assert "calls_a_bare_module" in verdict.message
