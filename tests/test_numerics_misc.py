"""Numerics across dtypes and the command lines (issue 11, items 1.2, 1.3, 1.4, 1.6).

* sigma-dependent factors are formed in float64 (EDMPrecond, the samplers, the EDM loss), so float16
  and bfloat16 inputs work at every sigma and round once, checked against float64 closed forms;
* every grid generator returns a strictly decreasing grid in the requested dtype or raises naming
  the dtype and the count;
* the trajectory recorder checks what a sampler reports;
* every entry point answers bad input with one ``error:`` line and exit status 2.
"""
import copy
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import samplers
from diffusion_geometry.amed import refine_sigmas
from diffusion_geometry.denoisers import EDMPrecond, sigma_like
from diffusion_geometry.networks import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
LOW = (torch.float16, torch.bfloat16)
SD = 0.5


def ulp(ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of ``dtype`` at the float64 values ``ref`` (subnormals: the smallest spacing)."""
    fi = torch.finfo(dtype)
    mant = {torch.float16: 10, torch.bfloat16: 7, torch.float32: 23, torch.float64: 52}[dtype]
    e = torch.floor(torch.log2(ref.abs().clamp_min(fi.tiny)))
    return torch.exp2(e - mant)


# ================================================================================================
# 1.2 EDMPrecond: coefficients in float64, one rounding at the end
# ================================================================================================


class Ones(torch.nn.Module):
    """F = 1: the denoiser is c_skip x + c_out."""

    def forward(self, x, c_noise):
        return torch.ones_like(x)


class XDependent(torch.nn.Module):
    """F(x_in, c) = a x_in + tanh(x_in) c with a float32 parameter a (the network runs in float32)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x, c_noise):
        return self.a * x + torch.tanh(x) * c_noise.reshape(-1, *([1] * (x.ndim - 1)))


def closed_form(x64: torch.Tensor, sigma: float, net: str) -> torch.Tensor:
    """The EDM denoiser in float64 from its definition (Karras et al. 2022, Table 1)."""
    norm = math.sqrt(sigma**2 + SD**2)
    c_skip, c_out, c_in, c_noise = SD**2 / norm**2, sigma * SD / norm, 1 / norm, math.log(sigma) / 4
    f = torch.ones_like(x64) if net == "ones" else 0.7 * c_in * x64 + torch.tanh(c_in * x64) * c_noise
    return c_skip * x64 + c_out * f


def test_issue_example_float16_sigma_300():
    """The issue's input: F = 1, x = 0 in float16, sigma = 300: D = 300 * 0.5 / sqrt(300^2 + 0.25)."""
    want = 300 * 0.5 / math.sqrt(300**2 + 0.25)
    got = EDMPrecond(Ones())(torch.zeros(2, 3, dtype=torch.float16), 300.0)
    print(f"float16 D = {got[0, 0].item()} (float64 {want:.7f})")
    assert abs(want - 0.4999993) < 5e-8
    assert got.dtype == torch.float16 and (got == torch.tensor(want).to(torch.float16)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sigma", [1e5, 1e4, 1000.0, 300.0, 80.0, 1.0, 0.002, 1e-4])
def test_edm_precond_ones_network_is_correctly_rounded(dtype, sigma):
    """x = 0 and F = 1: D = c_out(sigma), which must be the float64 value rounded once to the dtype."""
    got = EDMPrecond(Ones())(torch.zeros(4, 3, dtype=dtype), sigma)
    want = torch.full((4, 3), sigma * SD / math.sqrt(sigma**2 + SD**2), dtype=F64)
    err = (got.double() - want).abs() / ulp(want, dtype)
    print(f"{dtype} sigma={sigma}: D = {got[0, 0].item():.7g}, error {err.max().item():.3f} ulp")
    assert got.dtype == dtype
    assert err.max() <= (0.5 if dtype != F64 else 2.0)  # one rounding (float64: the formula's own round-off)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sigma", [1000.0, 300.0, 80.0, 0.002, 1e-4])
@pytest.mark.parametrize("net", ["ones", "x_dependent"])
def test_edm_precond_matches_the_float64_closed_form(dtype, sigma, net):
    """x = sigma z + data in the dtype; the float32 network sees c_in x and c_noise in float32, so the
    result is the float64 closed form rounded once to the dtype, plus float32 round-off of the terms."""
    g = torch.Generator().manual_seed(7)
    x = (0.4 * torch.randn(64, 3, generator=g, dtype=F64) + sigma * torch.randn(64, 3, generator=g, dtype=F64))
    x = x.to(dtype)
    D = EDMPrecond(Ones() if net == "ones" else XDependent())
    got = D(x, sigma)
    want = closed_form(x.double(), sigma, net)
    norm = math.sqrt(sigma**2 + SD**2)
    skip_term = (SD**2 / norm**2) * x.double().abs()
    net_term = (sigma * SD / norm) * (0.7 / norm * x.double().abs() + 3.0)
    work_eps = torch.finfo(torch.promote_types(dtype, torch.float32)).eps
    net_eps = torch.finfo(torch.float32).eps if net == "x_dependent" else work_eps  # the network's own precision
    tol = (0.5 * ulp(want, dtype) if dtype in LOW else 0) + 8 * work_eps * skip_term + 8 * net_eps * net_term
    err = (got.double() - want).abs()
    print(f"{dtype} sigma={sigma} {net}: max error / tolerance {(err / tol).max().item():.3f}")
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert (err <= tol).all()


@pytest.mark.parametrize("dtype", DTYPES[:3])
@pytest.mark.parametrize("sigma", [1e-4, 0.002, 1.0, 80.0, 300.0, 1000.0])
def test_a_low_precision_network_follows_its_float64_copy(dtype, sigma):
    """The toy MLP cast to the dtype (its noise embedding included) against a float64 copy of the same
    weights on the same x: within 8 units of the dtype's precision of the output scale (a few layers of
    round-off); an overflowing coefficient would give 0 (an error of 100%)."""
    model = build_model("toy2d_mlp", seed=0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    ref = copy.deepcopy(model).double()
    low = copy.deepcopy(model).to(dtype)
    x = (0.5 * torch.randn(128, 2, generator=g, dtype=F64) + sigma * torch.randn(128, 2, generator=g, dtype=F64))
    x = x.to(dtype)
    want = ref(x.double(), sigma)
    got = low(x, sigma)
    rel = ((got.double() - want).abs().max() / want.abs().max()).item()
    print(f"{dtype} sigma={sigma}: relative error {rel:.2e} (eps {torch.finfo(dtype).eps:.1e})")
    assert got.dtype == dtype
    assert rel <= 8 * torch.finfo(dtype).eps


def test_edm_precond_input_range_errors():
    D = EDMPrecond(Ones())
    x = torch.zeros(2, 3, dtype=torch.float16)
    x[0, 0] = math.inf  # what 1e5 * N(0, 1) becomes in float16
    with pytest.raises(ValueError, match=r"non-finite values; torch.float16 holds \|x\| <= 65504"):
        D(x, 1e4)
    with pytest.raises(ValueError, match="floating-point"):
        D(torch.zeros(2, 3, dtype=torch.int64), 1.0)
    # sigma_like names the dtype a level cannot be held in, instead of turning it into inf or 0
    with pytest.raises(ValueError, match=r"sigma = 100000 overflows torch.float16"):
        sigma_like(1e5, torch.zeros(2, 1, dtype=torch.float16))
    with pytest.raises(ValueError, match=r"underflows to 0 in torch.float16"):
        sigma_like(1e-8, torch.zeros(2, 1, dtype=torch.float16))
    s = sigma_like(0.002, torch.zeros(2, 1, dtype=torch.float16), dtype=F64)
    assert s.dtype == F64 and (s == 0.002).all()  # no float32 detour: exactly the float64 number


def test_coefficients_are_float64_whatever_sigma_dtype():
    D = EDMPrecond(Ones())
    for dt in DTYPES:
        c_skip, c_out, c_in, c_noise = D.coefficients(torch.tensor([300.0], dtype=dt))
        assert c_skip.dtype == F64
        assert torch.isfinite(torch.cat([c_skip, c_out, c_in, c_noise])).all() and c_out.item() > 0.49


# ================================================================================================
# 1.2 the samplers: factors in float64, the update rounded once
# ================================================================================================

GM4 = dg.GaussianMixture(torch.tensor([[0.3, -0.2, 0.1, 0.0]], dtype=F64), 0.25)
ONE_EVAL = ["euler", "dpm_solver_pp_2m", "ipndm", "deis"]
TWO_EVAL = ["heun", "dpm_solver_2", "amed"]


def quantised_denoiser(dtype):
    """The exact Gaussian denoiser evaluated on x rounded to ``dtype``, answer rounded to ``dtype``:
    the same function for the low-precision run and the float64 reference."""
    return lambda x, s: GM4(x.to(dtype).double(), s).to(dtype).to(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ONE_EVAL + TWO_EVAL)
def test_one_sampler_step_at_sigma_max_80_against_float64(dtype, name):
    """One step from sigma = 80 to the next EDM level. The reference runs the same sampler in float64 on
    the same start and the same (quantised) denoiser. In float16 and bfloat16 (arithmetic in float32)
    a one-evaluation step must be the reference rounded once (0.5 ulp); a two-evaluation step also
    carries the rounding of its intermediate point into the second direction, weighted by
    |h|/(2 r s) < 0.5 here: at most 0.5 + 0.5 * 0.5 * 2 = 1 ulp (the intermediate point may sit in the
    next binade). float32 keeps its own arithmetic: up to eight roundings of 0.5 ulp, on operands up
    to twice the result (4 ulp; 6 with a second evaluation); float64 is the reference itself."""
    sig = dg.edm_sigmas(18)[:2]
    x64 = 80 * torch.randn(2048, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = x64.to(dtype)
    den = quantised_denoiser(dtype)
    got = samplers.SAMPLERS[name](den, x, sig)
    ref = samplers.SAMPLERS[name](den, x.double(), sig)
    err = ((got.double() - ref).abs() / ulp(ref, dtype)).max().item()
    print(f"{name} {dtype}: max error {err:.3f} ulp of {dtype}")
    assert got.dtype == dtype
    if dtype == F64:
        assert err == 0.0
    elif dtype == torch.float32:
        assert err <= (4.0 if name in ONE_EVAL else 6.0)
    else:
        assert err <= (0.5 + 2**-10 if name in ONE_EVAL else 1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_heun_run_stays_close_to_float64(dtype):
    """A whole 18-step Heun run from sigma = 80: each step rounds once, so the sample differs from the
    float64 run by a few units of the dtype's precision at the data scale, not by overflow or drift."""
    sig = dg.edm_sigmas(18)
    x = (80 * torch.randn(512, 4, generator=torch.Generator().manual_seed(1), dtype=F64)).to(dtype)
    den = quantised_denoiser(dtype)
    got = samplers.heun(den, x, sig)
    ref = samplers.heun(den, x.double(), sig)
    err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
    print(f"{dtype}: 18-step Heun relative error {err:.2e} (eps {torch.finfo(dtype).eps:.1e})")
    assert torch.isfinite(got).all() and err <= 16 * torch.finfo(dtype).eps


def test_afs_and_euler_step_in_float16_at_large_sigma():
    """afs_denoised used to form sigma * x in the dtype: 300 * 1200 overflows float16."""
    x = torch.full((2, 3), 1200.0, dtype=torch.float16)
    got = samplers.afs_denoised(x, 300.0)
    want = 1200.0 * (1 - 300.0 / math.sqrt(1 + 300.0**2))
    print(f"afs float16 {got[0, 0].item():.6g}, float64 {want:.6g}")
    assert torch.isfinite(got).all() and abs(got[0, 0].item() - want) <= 0.5 * ulp(torch.tensor(want), torch.float16)
    # levels given as float16 tensors: the ratio is formed in float64, not in float16
    s0, s1 = torch.tensor(80.0, dtype=torch.float16), torch.tensor(57.58, dtype=torch.float16)
    xx = torch.full((1, 1), 100.0, dtype=torch.float16)
    step = samplers.euler_step(xx, s0, s1, torch.zeros_like(xx))
    want = 100.0 * float(s1) / float(s0)
    assert abs(step.item() - want) <= 0.5 * ulp(torch.tensor(want), torch.float16)


def test_samplers_reject_non_finite_start():
    x = torch.full((2, 2), math.inf, dtype=torch.float16)
    with pytest.raises(ValueError, match="non-finite values; torch.float16 holds"):
        samplers.euler(quantised_denoiser(torch.float16), x, dg.edm_sigmas(3))


# ================================================================================================
# 1.2 the EDM loss in low precision
# ================================================================================================


class Zero(torch.nn.Module):
    def forward(self, x, c):
        return torch.zeros_like(x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sigma", [0.002, 80.0])
def test_edm_loss_of_the_optimal_gaussian_denoiser_is_one_in_every_dtype(dtype, sigma):
    """Data N(0, sd^2 I) and F = 0 (the exact denoiser c_skip x): the EDM loss has expectation 1 at
    every sigma (Karras et al. 2022, App. B.6). With sd = 0.002 the weight (sigma^2 + sd^2)/(sigma sd)^2
    is 500,000 at sigma = 0.002 and 250,000 at sigma = 80, beyond float16's 65,504 (formed in float16:
    inf). Monte-Carlo standard error sqrt(2 / (B d)); the rounding of the noisy input to bfloat16 adds
    about (2^-17 / 0.002)^2 / 3 < 1e-5 (data of scale 0.002 keep it negligible)."""
    B, d, sd = 4096, 4, 0.002
    y = (sd * torch.randn(B, d, generator=torch.Generator().manual_seed(5), dtype=F64)).to(dtype)
    g = torch.Generator().manual_seed(6)
    model = EDMPrecond(Zero(), sigma_data=sd)
    loss = dg.training.edm_loss(model, y, generator=g, p_mean=math.log(sigma), p_std=1e-9)
    se = math.sqrt(2 / (B * d))
    print(f"{dtype} sigma={sigma}: loss {loss.item():.4f} (expected 1 +- {se:.4f})")
    assert torch.isfinite(loss) and abs(loss.item() - 1) <= 5 * se


# ================================================================================================
# 1.3 grids: strictly decreasing in the requested dtype, or a ValueError naming dtype and count
# ================================================================================================


def float64_grid(name: str, n: int) -> torch.Tensor:
    """The generators' levels computed here from their formulas in float64 (independent truth)."""
    i = torch.arange(n + 1, dtype=F64) / n
    if name == "edm":
        lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
        g = (hi + i * (lo - hi)) ** 7
    elif name == "logsnr":
        g = torch.exp(math.log(80.0) + i * (math.log(0.002) - math.log(80.0)))
    else:
        g = 80.0 + i * (0.002 - 80.0)
    g[0], g[-1] = 80.0, 0.002
    return g


GENERATORS = {"edm": dg.edm_sigmas, "logsnr": dg.logsnr_sigmas, "uniform": dg.uniform_sigmas}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("n", [1, 2, 5, 18, 64, 200, 1000, 5000])
def test_every_generator_is_strictly_decreasing_or_raises(dtype, name, n):
    cast = float64_grid(name, n).to(dtype)
    representable = bool((cast[1:] < cast[:-1]).all())
    if n <= 18:
        assert representable  # small grids (the book's step counts) must work in every dtype
    if not representable:
        with pytest.raises(ValueError, match=rf"{re_dtype(dtype)} cannot hold {n + 1} distinct levels"):
            GENERATORS[name](n, dtype=dtype)
        return
    g = GENERATORS[name](n, dtype=dtype)
    assert g.dtype == dtype and g.shape == (n + 1,)
    assert (g[1:] < g[:-1]).all()
    # float64: the formulas' own round-off (uniform: about 80 eps absolute near sigma_min)
    rtol, atol = (torch.finfo(dtype).eps, 0.0) if dtype != F64 else (1e-13, 1e-13)
    assert torch.allclose(g.double(), float64_grid(name, n), rtol=rtol, atol=atol)
    z = dg.append_zero(g)  # the appended 0 keeps the grid strictly decreasing
    assert z.dtype == dtype and z[-1] == 0 and (z[1:] < z[:-1]).all()


def re_dtype(dtype):
    return str(dtype).replace(".", r"\.")


def test_issue_grid_counts_now_raise():
    """The issue's examples: 13 and 8 non-decreasing neighbours after a bfloat16 cast."""
    for fn, n, ties in ((dg.edm_sigmas, 1000, 13), (dg.uniform_sigmas, 200, 8)):
        with pytest.raises(ValueError, match=rf"torch\.bfloat16 cannot hold {n + 1} distinct levels here "
                                             rf"\({ties} neighbours"):
            fn(n, dtype=torch.bfloat16)


def test_grid_overflow_underflow_and_bad_dtype():
    with pytest.raises(ValueError, match=r"sigma_max = 100000 overflows torch\.float16"):
        dg.edm_sigmas(10, sigma_max=1e5, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"sigma_min = 1e-09 underflows to 0 in torch\.float16"):
        dg.logsnr_sigmas(10, sigma_min=1e-9, dtype=torch.float16)
    with pytest.raises(ValueError, match="floating-point dtype"):
        dg.uniform_sigmas(10, dtype=torch.int64)
    # check_sigmas names the dtype and the first offending neighbours
    bad = float64_grid("uniform", 200).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"this torch\.bfloat16 grid of 201 levels has 8 non-decreasing"):
        dg.schedules.check_sigmas(bad)
    with pytest.raises(ValueError, match="strictly decreasing"):
        dg.append_zero(bad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_derived_grids_stay_strictly_decreasing(dtype):
    """The other grid makers: refine_sigmas (AMED teacher grid), jump_sigmas (ODE-Jump), make_sigmas
    (the generation command) on grids given in each dtype."""
    g = dg.edm_sigmas(8, dtype=dtype)
    for grid in (refine_sigmas(g, 8), refine_sigmas(dg.append_zero(g), 3), samplers.jump_sigmas(g, 4),
                 dg.generate.make_sigmas("edm", 8, append_zero=True)):
        assert (grid[1:] < grid[:-1]).all() and grid.dtype in (dtype, F64)


# ================================================================================================
# 1.4 the trajectory recorder
# ================================================================================================


def _reporting(pattern):
    """A custom Euler sampler whose callback reports the steps listed by ``pattern(n_steps)``."""

    def custom(denoiser, x, sigmas, *, callback=None):
        s = [float(v) for v in sigmas]
        xs, dens = [x], []
        for i in range(len(s) - 1):
            dens.append(denoiser(xs[-1], s[i]))
            xs.append(samplers.euler_step(xs[-1], s[i], s[i + 1], dens[-1]))
        for i in pattern(len(s) - 1):
            callback({"i": i, "sigma": s[i], "sigma_next": s[i + 1], "x": xs[i], "denoised": dens[i]})
        return xs[-1]

    return custom


@pytest.mark.parametrize("label, pattern, received", [
    ("twice", lambda n: [i for i in range(n) for _ in range(2)], 10),
    ("never", lambda n: [], 0),
    ("one_fewer", lambda n: list(range(n - 1)), 4),
    ("one_more", lambda n: [*range(n), n - 1], 6),
    ("out_of_order", lambda n: [0, 2, 1, *range(3, n)], 5),
])
def test_recorder_checks_the_reports(label, pattern, received):
    fn = _reporting(pattern)
    fn.__name__ = f"sampler_{label}"
    sig = dg.edm_sigmas(5)  # 6 levels: 5 reports + the final sample = 6 points
    x = 80 * torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    with pytest.raises(ValueError) as info:
        dg.sample(dg.datasets.mixture_2d(), x, sig, sampler=fn)
    msg = str(info.value)
    print(msg)
    assert f"sampler 'sampler_{label}'" in msg
    assert "len(sigmas) = 6" in msg and "trajectory of 6 points" in msg
    assert f"it made {received} reports ({received + 1} points)" in msg
    assert ("out of order" in msg) == (label == "out_of_order")
    # the well-behaved pattern passes and records the same trajectory as the built-in Euler
    good = dg.sample(dg.datasets.mixture_2d(), x, sig, sampler=_reporting(lambda n: range(n)))
    assert torch.equal(good.x, dg.sample(dg.datasets.mixture_2d(), x, sig, sampler="euler").x)


def test_recorder_checks_keys_and_shapes():
    sig = dg.edm_sigmas(3)
    x = torch.ones(2, 2, dtype=F64)

    def no_keys(denoiser, x, sigmas, *, callback=None):
        callback({"step": 0})
        return x

    with pytest.raises(ValueError, match=r"sampler 'no_keys' reported \['step'\]; .* keys 'i', 'x' and 'denoised'"):
        dg.sample(dg.datasets.mixture_2d(), x, sig, sampler=no_keys)

    def wrong_shape(denoiser, x, sigmas, *, callback=None):
        for i in range(len(sigmas) - 1):
            callback({"i": i, "x": x, "denoised": x[:1]})
        return x

    with pytest.raises(ValueError, match=r"sampler 'wrong_shape': denoised at step 0 has shape \(1, 2\), expected \(2, 2\)"):
        dg.sample(dg.datasets.mixture_2d(), x, sig, sampler=wrong_shape)


# ================================================================================================
# 1.6 command lines: one "error:" line and exit status 2
# ================================================================================================


def _expect_usage_error(capsys, main, argv, match):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    print(argv, "->", lines)
    assert info.value.code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0] == err.rstrip("\n").splitlines()[-1], err
    assert match in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    cfg = {"kind": "unet", "in_channels": 1, "image_size": 8, "channels": [4], "blocks": 1,
           "emb_dim": 8, "groups": 2, "sigma_data": 0.5}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    dg.checkpoints.save_checkpoint(path, build_model(cfg, seed=0), config=cfg)
    return str(path)


@pytest.mark.parametrize("args, match", [
    (["--model", "nope"], "unknown model 'nope': not a file and not a shipped denoiser ['digits_unet', 'fashion_unet']"),
    (["--model", "fashion_classifier"], "'fashion_classifier' is a shipped classifier, not a denoiser"),
    (["--model", "/no/such/file.pt"], "checkpoint file not found"),
    (["--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
    (["--steps", "-3"], "argument --steps: expected a positive integer"),
    (["--steps", "ten"], "argument --steps: expected a positive integer, got 'ten'"),
    (["--sigmas", "1,2,3"], "argument --sigmas: a noise grid must be strictly decreasing"),
    (["--sigmas=-1,0.5"], "noise levels must be non-negative"),
    (["--sigmas", "0,0"], "argument --sigmas"),
    (["--sigmas", "80,abc"], "expected comma-separated numbers"),
    (["--sigmas", "5"], "at least two levels"),
    (["--sampler", "nope"], "argument --sampler: invalid choice: 'nope'"),
    (["--schedule", "nope"], "argument --schedule: invalid choice: 'nope'"),
    (["--opt", "foo=1"], "sampler 'heun' takes no option 'foo'"),
    (["--opt", "novalue"], "sampler options look like KEY=VALUE"),
    (["--sampler", "dpm_solver_2", "--opt", "r=2"], "r must lie in (0, 1]"),
    (["--n", "0"], "argument --n/--num-samples: expected a positive integer"),
    (["--shard-size", "0"], "argument --shard-size"),
    (["--threads", "0"], "argument --threads"),
    (["--rho", "-1"], "argument --rho: expected a positive number"),
    (["--sigma-min", "0"], "argument --sigma-min"),
    (["--sigma-min", "90"], "need --sigma-min < --sigma-max"),
    (["--sigma-max", "nan"], "argument --sigma-max: expected a positive number, got 'nan'"),
    (["--device", "gpu7"], "argument --device: not a torch device: 'gpu7'"),
    (["--sampler", "dpm_solver_2", "--opt", "r=abc"], "sampler option r takes a number, got 'abc'"),
    (["--opt", "afs=yes"], "sampler option afs takes true or false, got 'yes'"),
    (["--out", __file__], "exists and is not a directory"),
    (["--out", __file__ + "/sub"], "a parent is not a directory"),
])
def test_generate_command_bad_input(capsys, tmp_path, tiny_ckpt, args, match):
    base = {"--model": tiny_ckpt, "--n": "2", "--steps": "2", "--out": str(tmp_path / "out")}
    argv = []
    for k, v in base.items():
        if k not in args and not any(a.startswith(k + "=") for a in args):
            argv += [k, v]
    _expect_usage_error(capsys, dg.generate.main, [*argv, "--no-progress", "--report", "no", *args], match)


@pytest.mark.parametrize("args, match", [
    (["--model", "nope"], "argument --model: invalid choice: 'nope'"),
    (["--model", "fashion_classifier"], "argument --model: invalid choice: 'fashion_classifier'"),
    (["--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--lr", "-1"], "argument --lr: expected a positive number"),
    (["--ema-decay", "1"], "argument --ema-decay: expected a number in [0, 1)"),
    (["--p-uniform", "2"], "argument --p-uniform: expected a number in [0, 1]"),
    (["--n-data", "0"], "argument --n-data"),
    (["--model", "digits_unet", "--n-data", "5000"], "n_data = 5000 exceeds the 1,797 training points"),
    (["--threads", "0"], "argument --threads"),
    (["--warmup", "-1"], "argument --warmup: expected a non-negative integer"),
    (["--device", "gpu7"], "argument --device: not a torch device"),
    (["--state", __file__], "is not a training state of this package"),
    (["--out", "/"], "is a directory; give a file name"),
    (["--out", __file__ + "/m.pt"], "a parent is not a directory"),
])
def test_train_command_bad_input(capsys, tmp_path, args, match):
    base = {"--model": "toy2d_mlp", "--steps": "1", "--out": str(tmp_path / "m.pt")}
    argv = []
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    _expect_usage_error(capsys, dg.training.main, [*argv, "--no-progress", *args], match)


def test_train_command_state_of_another_run_is_a_usage_error(capsys, tmp_path, restore_threads):
    out = tmp_path / "m.pt"
    common = ["--model", "toy2d_mlp", "--out", str(out), "--n-data", "64", "--batch-size", "16",
              "--no-progress", "--threads", "1", "--state", str(tmp_path / "s.state"), "--save-every", "1"]
    # a state file written by a run with another seed: training from it would mix two runs
    tr = dg.training
    model = build_model("toy2d_mlp", seed=0)
    tr.train(model, tr.training_data("toy2d_mlp", n_data=64), steps=1, batch_size=16, seed=1, progress=False,
             state_path=tmp_path / "s.state")
    _expect_usage_error(capsys, tr.main, [*common, "--steps", "2"], "was written by a run with other settings")


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_training_data_of_every_trainable_config():
    """fashion_unet_large (the GPU profile's config) has training data: the command offered it but
    could not train it."""
    assert set(dg.training.TRAINING_SETS) == set(dg.networks.CONFIGS)
    with pytest.raises(ValueError, match="n_data must be a positive integer"):
        dg.training.training_data("toy2d_mlp", n_data=0)
    with pytest.raises(ValueError, match="n_data must be a positive integer"):
        dg.training.training_data("digits_unet", n_data=-5)  # would have dropped the last 5 silently
    assert dg.networks.shipped_denoisers() == ["digits_unet", "fashion_unet"]
    with pytest.raises(ValueError, match="not a denoiser"):
        dg.networks.load_pretrained("fashion_classifier")


@pytest.mark.parametrize("args, match", [
    (["--calibrate", "--n", "0"], "argument --n: expected a positive integer"),
    (["--calibrate", "--n", "1"], "n must be"),
    (["--calibrate", "--threads", "0"], "argument --threads"),
    (["--n", "5"], "nothing to do: give --calibrate"),
])
def test_metrics_command_bad_input(capsys, args, match):
    _expect_usage_error(capsys, dg.metrics.main, args, match)


@pytest.mark.parametrize("args, match", [
    (["--train", "--out", "x.pt", "--epochs", "0"], "argument --epochs"),
    (["--train", "--out", "x.pt", "--lr", "0"], "argument --lr"),
    (["--train", "--out", "x.pt", "--threads", "0"], "argument --threads"),
    (["--out", "x.pt"], "nothing to do: give --train"),
    (["--train"], "--train needs --out PATH"),
])
def test_classifier_command_bad_input(capsys, args, match):
    _expect_usage_error(capsys, dg.classifier.main, args, match)


def _benchmark(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("script, args, match", [
    ("samplers_vs_nfe", ["--samples", "0"], "argument --samples: expected a positive integer"),
    ("samplers_vs_nfe", ["--threads", "-2"], "argument --threads"),
    ("optimal_denoiser", ["--n", "0"], "argument --n"),
    ("optimal_denoiser", ["--sigma", "-1"], "argument --sigma: expected a positive number"),
    ("optimal_denoiser", ["--device", "gpu7"], "argument --device"),
    ("gpu_profile", ["--quick"], "--quick writes a smoke-test file: name it with --out"),
    ("gpu_profile", ["--n", "0"], "argument --n"),
    ("gpu_profile", ["--train-model", "fashion_classifier"], "argument --train-model: invalid choice"),
    ("gpu_profile", ["--quick", "--out", "x.json", "--model", "fashion_classifier", "--device", "cpu"],
     "'fashion_classifier' is a shipped classifier, not a denoiser"),
    ("gpu_profile", ["--data", "/no/such/dir", "--quick", "--out", "x.json"], "is not a directory"),
])
def test_benchmark_scripts_bad_input(capsys, script, args, match):
    _expect_usage_error(capsys, _benchmark(script).main, args, match)


def test_console_script_answers_like_a_command_line(tmp_path):
    """The installed dg-generate, run as a user would: one error line, status 2, no traceback."""
    exe = Path(sys.executable).with_name("dg-generate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "diffusion_geometry.generate"]
    res = subprocess.run([*cmd, "--model", "nope", "--n", "1", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    print(res.stderr)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].endswith("error: unknown model 'nope': not a file and not a "
                                                          "shipped denoiser ['digits_unet', 'fashion_unet']")
    assert sum("error:" in ln for ln in res.stderr.splitlines()) == 1


@pytest.mark.parametrize("sigma", [1e155, 1e200, 1e300])
def test_edm_precond_at_sigmas_whose_square_overflows_float64(sigma):
    """sqrt(sigma^2 + sigma_data^2) is formed by hypot: D = sigma * 0.5 / sqrt(sigma^2 + 0.25) = 0.5."""
    class Ones(torch.nn.Module):
        def forward(self, x, c_noise):
            return torch.ones_like(x)

    D = dg.EDMPrecond(Ones())
    out = D(torch.zeros(2, 3, dtype=torch.float64), sigma)
    assert torch.equal(out, torch.full_like(out, 0.5))
    c_skip, c_out, c_in, _ = D.coefficients(torch.tensor(sigma, dtype=torch.float64))
    assert float(c_out) == 0.5 and float(c_in) == pytest.approx(1 / sigma, rel=1e-15)
    assert float(c_skip) == pytest.approx((0.5 / sigma) ** 2, rel=1e-12, abs=1e-320)


def test_gaussian_mixture_keeps_the_users_covariances_and_weights_in_float64():
    """Half-precision means must not round the variances and weights the user gave (1e-8 is 0 in float16)."""
    gm = dg.GaussianMixture(torch.tensor([[0.0], [1.0]], dtype=torch.float16), 1e-8, weights=[0.1, 0.9])
    x = torch.tensor([[0.25]], dtype=torch.float16)
    ref = dg.GaussianMixture(torch.tensor([[0.0], [1.0]], dtype=torch.float64), 1e-8, weights=[0.1, 0.9])
    assert gm.denoise(x, 1e-4).item() == ref.denoise(x.double(), 1e-4).to(torch.float16).item()
    r = gm.responsibilities(torch.tensor([[0.5]], dtype=torch.float16), 0.1)
    r_ref = ref.responsibilities(torch.tensor([[0.5]], dtype=torch.float64), 0.1).to(torch.float16)
    assert torch.equal(r, r_ref)
