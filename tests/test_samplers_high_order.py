"""UniPC (bh2), DPM-Solver++(3M) and iPNDM-v: each against a plainly transcribed float64 reference of its
published algorithm, its measured global order, its NFE, AFS, the callback, low-precision inputs and
bad options."""
import math

import numpy as np
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import samplers

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64
GM = dg.datasets.mixture_2d()  # 8 isotropic modes on a circle of radius 2, std 0.15, float64
X_T = 80 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
NEW = ("unipc", "dpm_solver_pp_3m", "ipndm_v")


def _D(x: np.ndarray, s: float) -> np.ndarray:
    return GM(torch.from_numpy(x), s).numpy()


# -- float64 references, transcribed from the papers' algorithms in VE form ---------------------------
# x_t = x_0 + sigma n, lambda = -log sigma; the data prediction D is the model output.


def unipc_reference(x, sig, order=3):
    """UniPC (Zhao et al. 2023, Alg. 1-2; B(h) = e^{-h} - 1, "bh2"), data prediction, multistep: UniP-p,
    then UniC-p with the evaluation at the predicted point, which is kept as the next model value. The
    phi-recurrence, R matrix and b vector as the paper writes them; UniP-2 and UniC-1 use rho = 1/2.
    No corrector after the last step above 0; a step to 0 outputs D at the final point."""
    x = x.copy()
    sig = [float(s) for s in sig]
    n_pos = sum(1 for s in sig[1:] if s > 0)
    lam = [-math.log(s) if s > 0 else math.inf for s in sig]
    models = [_D(x, sig[0])]  # newest last
    for i in range(n_pos):
        p = min(order, i + 1)
        s0, t = sig[i], sig[i + 1]
        h = lam[i + 1] - lam[i]
        hh = -h
        rks, D1s = [], []
        for k in range(1, p):
            rk = (lam[i - k] - lam[i]) / h
            rks.append(rk)
            D1s.append((models[-1 - k] - models[-1]) / rk)
        rks.append(1.0)
        h_phi_1 = math.expm1(hh)
        B = math.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        fac = 1
        R, b = [], []
        for k in range(1, p + 1):
            R.append([r ** (k - 1) for r in rks])
            b.append(h_phi_k * fac / B)
            fac *= k + 1
            h_phi_k = h_phi_k / hh - 1 / fac
        R, b = np.array(R), np.array(b)
        if p == 1:
            rho_p = []
        elif p == 2:
            rho_p = [0.5]
        else:
            rho_p = np.linalg.solve(R[:-1, :-1], b[:-1])
        x_lin = (t / s0) * x - h_phi_1 * models[-1]
        x_pred = x_lin - B * sum((r * d for r, d in zip(rho_p, D1s)), np.zeros_like(x))
        if i == n_pos - 1:  # the last step above 0: no corrector
            x = x_pred
            break
        rho_c = [0.5] if p == 1 else np.linalg.solve(R, b)
        model_t = _D(x_pred, t)
        corr = sum((r * d for r, d in zip(rho_c[:-1], D1s)), np.zeros_like(x)) + rho_c[-1] * (model_t - models[-1])
        x = x_lin - B * corr
        models.append(model_t)
    if sig[-1] == 0:
        return _D(x, sig[-2])
    return x


def dpm_solver_pp_3m_reference(x, sig):
    """DPM-Solver++(3M) (Lu et al. 2022b, data prediction, multistep), VE form with phi_1 = expm1(-h),
    phi_2 = phi_1/h + 1, phi_3 = phi_2/h - 1/2; warm-up with the first- and second-order updates."""
    x = x.copy()
    sig = [float(s) for s in sig]
    ms, ls = [], []
    for i in range(len(sig) - 1):
        s, t = sig[i], sig[i + 1]
        m = _D(x, s)
        if t == 0:
            return m
        ms.append(m)
        ls.append(-math.log(s))
        lt = -math.log(t)
        h = lt - ls[-1]
        phi_1 = math.expm1(-h)
        k = min(3, len(ms))
        if k == 1:
            x = (t / s) * x - phi_1 * ms[-1]
        elif k == 2:
            r0 = (ls[-1] - ls[-2]) / h
            D1_0 = (ms[-1] - ms[-2]) / r0
            x = (t / s) * x - phi_1 * ms[-1] - 0.5 * phi_1 * D1_0
        else:
            r0, r1 = (ls[-1] - ls[-2]) / h, (ls[-2] - ls[-3]) / h
            D1_0 = (ms[-1] - ms[-2]) / r0
            D1_1 = (ms[-2] - ms[-3]) / r1
            D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
            D2 = (D1_0 - D1_1) / (r0 + r1)
            phi_2 = phi_1 / h + 1
            phi_3 = phi_2 / h - 0.5
            x = (t / s) * x - phi_1 * ms[-1] + phi_2 * D1 - phi_3 * D2
    return x


def ipndm_v_weights(hn, hn1=None, hn2=None, hn3=None):
    """diff-sampler's ``ipndm_v_sampler`` weights on (d_n, d_{n-1}, ...), from the step sizes
    hn = t_{n+1} - t_n, hn1 = t_n - t_{n-1}, ... (written out as that code states them)."""
    if hn1 is None:
        return [1.0]
    if hn2 is None:
        return [(2 + hn / hn1) / 2, -(hn / hn1) / 2]
    temp1 = (1 - hn / (3 * (hn + hn1)) * (hn * (hn + hn1)) / (hn1 * (hn1 + hn2))) / 2
    if hn3 is None:
        return [(2 + hn / hn1) / 2 + temp1, -(hn / hn1) / 2 - (1 + hn1 / hn2) * temp1, temp1 * hn1 / hn2]
    temp2 = ((1 - hn / (3 * (hn + hn1))) / 2 + (1 - hn / (2 * (hn + hn1))) * hn / (6 * (hn + hn1 + hn2))) \
        * (hn * (hn + hn1) * (hn + hn1 + hn2)) / (hn1 * (hn1 + hn2) * (hn1 + hn2 + hn3))
    g = hn1 * (hn1 + hn2) / (hn2 * (hn2 + hn3))
    return [(2 + hn / hn1) / 2 + temp1 + temp2,
            -(hn / hn1) / 2 - (1 + hn1 / hn2) * temp1 - (1 + hn1 / hn2 + g) * temp2,
            temp1 * hn1 / hn2 + (hn1 / hn2 + g * (1 + hn2 / hn3)) * temp2,
            -temp2 * g * hn1 / hn2]


def ipndm_v_reference(x, sig, order=3):
    x = x.copy()
    sig = [float(s) for s in sig]
    ds = []  # directions, newest first
    for i in range(len(sig) - 1):
        s, t = sig[i], sig[i + 1]
        den = _D(x, s)
        if t == 0:
            return den
        ds.insert(0, (x - den) / s)
        k = min(order, i + 1)
        steps = [t - s] + [sig[i - j] - sig[i - j - 1] for j in range(k - 1)]
        w = ipndm_v_weights(*steps)
        x = x + (t - s) * sum(wj * dj for wj, dj in zip(w, ds[:k]))
    return x


REFERENCES = {
    ("unipc", 1): lambda x, sig: unipc_reference(x, sig, 1),
    ("unipc", 2): lambda x, sig: unipc_reference(x, sig, 2),
    ("unipc", 3): lambda x, sig: unipc_reference(x, sig, 3),
    ("dpm_solver_pp_3m", None): dpm_solver_pp_3m_reference,
    ("ipndm_v", 2): lambda x, sig: ipndm_v_reference(x, sig, 2),
    ("ipndm_v", 3): lambda x, sig: ipndm_v_reference(x, sig, 3),
    ("ipndm_v", 4): lambda x, sig: ipndm_v_reference(x, sig, 4),
}


def _random_grid():
    g = torch.Generator().manual_seed(3)
    inner = torch.sort(torch.exp(torch.empty(9, dtype=F64).uniform_(math.log(0.002), math.log(80.0), generator=g)),
                       descending=True).values
    return torch.cat([torch.tensor([80.0], dtype=F64), inner, torch.tensor([0.002], dtype=F64)])


GRIDS = {
    "edm": dg.edm_sigmas(10),
    "logsnr": dg.logsnr_sigmas(10),
    "random": _random_grid(),
    "to_zero": dg.append_zero(dg.edm_sigmas(9)),
    "short": dg.edm_sigmas(2),  # two steps: only warm-up
}


@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("name,order", list(REFERENCES), ids=[f"{n}-{o}" for n, o in REFERENCES])
def test_against_the_float64_transcription(name, order, grid):
    sig = GRIDS[grid]
    assert (sig[:-1] > sig[1:]).all()
    opts = {} if order is None else {"order": order}
    got = samplers.SAMPLERS[name](GM, X_T, sig, **opts)
    want = torch.from_numpy(REFERENCES[(name, order)](X_T.numpy(), sig.tolist()))
    rel = ((got - want).abs().max() / want.abs().max()).item()
    print(f"{name} {opts} on {grid}: relative difference {rel:.1e}")
    assert rel < 1e-12


def test_the_references_are_not_all_the_same_method():
    """A positive control: the transcriptions differ where the methods do (so agreement above means something)."""
    sig = GRIDS["random"].tolist()
    x = X_T.numpy()
    outs = {k: f(x, sig) for k, f in REFERENCES.items()}
    keys = list(outs)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            gap = np.abs(outs[keys[a]] - outs[keys[b]]).max() / np.abs(outs[keys[a]]).max()
            assert gap > 1e-6, (keys[a], keys[b], gap)


# -- how iPNDM-v relates to DEIS (rho-AB) and iPNDM ------------------------------------------------


def test_ipndm_v_order_two_is_deis_order_two_on_any_grid():
    sig = GRIDS["random"]
    a = samplers.ipndm_v(GM, X_T, sig, order=2)
    b = samplers.deis(GM, X_T, sig, order=2)
    rel = ((a - b).abs().max() / b.abs().max()).item()
    print(f"iPNDM-v(2) vs DEIS-2 on a random grid: {rel:.1e}")
    assert rel < 1e-12


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ipndm_v_on_a_grid_uniform_in_sigma_is_ipndm_and_deis(order):
    sig = dg.uniform_sigmas(30, sigma_min=1.0, sigma_max=20.0)
    a = samplers.ipndm_v(GM, X_T, sig, order=order)
    for other in (samplers.ipndm, samplers.deis):
        b = other(GM, X_T, sig, order=order)
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-12


def test_ipndm_v_order_four_with_equal_steps_is_not_adams_bashforth():
    """With equal steps diff-sampler's k = 4 weights are (57, -65, 43, -11)/24, not AB4's (55, -59, 37, -9)/24."""
    h = -0.3
    nodes = [2.0 - j * h for j in range(4)]
    got = [c / h for c in samplers.ipndm_v_coefficients(nodes, 2.0 + h)]
    np.testing.assert_allclose(got, [57 / 24, -65 / 24, 43 / 24, -11 / 24], rtol=1e-13)
    np.testing.assert_allclose(got, ipndm_v_weights(h, h, h, h), rtol=1e-13)
    assert abs(got[3] - samplers.IPNDM_COEFFICIENTS[4][3]) > 0.08
    np.testing.assert_allclose([c / h for c in samplers.ipndm_v_coefficients(nodes[:3], 2.0 + h)],
                               samplers.IPNDM_COEFFICIENTS[3], rtol=1e-13)


def test_ipndm_v_weights_against_exact_variable_step_adams_bashforth():
    """The docstring's statements: k = 3 is DEIS-3 with tau_1 replaced, and the k = 4 weights sum to
    1 + tau_2 q (h_2/h_3 - h_1/h_2)."""
    levels = [5.0, 3.7, 2.9, 2.1]  # sigma_{n-3}, ..., sigma_n
    nxt = 1.6
    nodes = levels[::-1]
    h0, h1, h2, h3 = nxt - levels[3], levels[3] - levels[2], levels[2] - levels[1], levels[1] - levels[0]
    c3 = samplers.ipndm_v_coefficients(nodes[:3], nxt)
    exact3 = samplers.deis_coefficients(nodes[:3], nxt)
    tau_exact = h0 * (2 * h0 + 3 * h1) / (6 * h1 * (h1 + h2))
    tau_v = (1 - h0**2 / (3 * h1 * (h1 + h2))) / 2
    shift = [1.0, -(1 + h1 / h2), h1 / h2]
    np.testing.assert_allclose(c3, [e + h0 * (tau_v - tau_exact) * s for e, s in zip(exact3, shift)], rtol=1e-13)
    assert abs(sum(c3) / h0 - 1) < 1e-14
    c4 = samplers.ipndm_v_coefficients(nodes, nxt)
    np.testing.assert_allclose(c4, [h0 * w for w in ipndm_v_weights(h0, h1, h2, h3)], rtol=1e-13)
    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
    a = ipndm_v_weights(h0, h1, h2, h3)
    tau2 = -a[3] / (q * h1 / h2)
    excess = sum(c4) / h0 - 1
    print(f"k = 4 weights sum to 1 + {excess:.4f}")
    assert abs(excess - tau2 * q * (h2 / h3 - h1 / h2)) < 1e-13 and abs(excess) > 1e-2


# -- measured global orders --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return dg.benchmarking.ode_reference(GM, X_T, 80.0, 0.002, rtol=1e-12, atol=1e-13)


# (name, options, expected order or None for the registry's, step counts in the asymptotic regime)
ORDER_CASES = [
    ("unipc", {}, None, (128, 256, 512, 1024)),  # UniC-3 raises UniP-3 to order 4 (local slopes 3.8, 3.9, 3.9)
    ("unipc", {"order": 2}, 3, (64, 128, 256, 512)),
    ("unipc", {"order": 1}, 2, (64, 128, 256, 512)),
    ("dpm_solver_pp_3m", {}, None, (256, 512, 1024, 2048)),  # local slopes 1.9, 2.0, 2.0
    ("ipndm_v", {}, None, (128, 256, 512)),
    ("ipndm_v", {"order": 4}, 2, (512, 1024, 2048)),  # the weights' sum defect: order 2, reached late
]


@pytest.mark.parametrize("name,opts,order,steps", ORDER_CASES, ids=[f"{c[0]}{c[1]}" for c in ORDER_CASES])
def test_measured_global_order(reference, name, opts, order, steps):
    if order is None:
        order = samplers.SAMPLERS[name].order
    errs = [(samplers.SAMPLERS[name](GM, X_T, dg.edm_sigmas(n), **opts) - reference).norm().item() for n in steps]
    slope = dg.benchmarking.fit_order(steps, errs)
    print(f"{name}{opts}: errors {['%.2e' % e for e in errs]}, fitted order {slope:.3f}, expected {order}")
    assert all(b < a for a, b in zip(errs, errs[1:]))
    assert min(errs) > 1e-9  # far above the reference's own error (rtol 1e-12)
    assert abs(slope - order) <= 0.3


def test_dpm_solver_pp_3m_error_is_about_a_quarter_of_2m(reference):
    """The docstring's comparison: same order as DPM-Solver++(2M), about a quarter of its error at 512 steps."""
    sig = dg.edm_sigmas(512)
    e3 = (samplers.dpm_solver_pp_3m(GM, X_T, sig) - reference).norm().item()
    e2 = (samplers.dpm_solver_pp_2m(GM, X_T, sig) - reference).norm().item()
    print(f"512 steps: 3M error {e3:.2e}, 2M error {e2:.2e}, ratio {e3 / e2:.3f}")
    assert 0.2 < e3 / e2 < 0.3


def test_dpm_solver_pp_3m_second_difference_weight():
    """The docstring's claim about the published weight: with D^(2) weighted by h phi_3(-h), the update is
    exact for data predictions linear in lambda but not quadratic; twice that weight makes it exact for
    quadratics (so the step is second order, as measured above)."""
    lams = [0.0, 0.4, 0.7, 1.2]  # lambda_{n-2}, lambda_{n-1}, lambda_n, lambda_{n+1}
    sig = [math.exp(-v) for v in lams]

    def integral(a, b, c):  # sigma_{n+1} * int e^lambda D dlambda over the step, D = a + b lambda + c lambda^2:
        # the exact update from x_n = 0 (antiderivative e^v (a + b (v - 1) + c (v^2 - 2 v + 2)))
        prim = lambda v: math.exp(v) * (a + b * (v - 1) + c * (v * v - 2 * v + 2))  # noqa: E731
        return sig[3] * (prim(lams[3]) - prim(lams[2]))

    def step(a, b, c):  # one DPM-Solver++(3M) step from x_n = 0 with the reference transcription
        return dpm_solver_pp_3m_step([a + b * v + c * v * v for v in lams[:3]], sig)

    assert abs(step(0.3, 0.7, 0.0) - integral(0.3, 0.7, 0.0)) < 1e-13
    miss = step(0.3, 0.7, 1.1) - integral(0.3, 0.7, 1.1)
    h = lams[3] - lams[2]
    phi3 = samplers._phi(3, -h)
    r0, r1 = (lams[2] - lams[1]) / h, (lams[1] - lams[0]) / h
    d2 = 2 * 1.1 * h**2 / 2  # D^(2) of a quadratic: h^2 D''/2 exactly, D'' = 2.2
    print(f"quadratic: miss {miss:.3e}, predicted {-h * phi3 * d2:.3e}")
    assert abs(miss) > 1e-3 and abs(miss + h * phi3 * d2) < 1e-12  # adding h phi_3 D^(2) once more is exact
    assert r0 > 0 and r1 > 0


def dpm_solver_pp_3m_step(vals, sig):
    """The third step of dpm_solver_pp_3m_reference from x_n = 0, with given model values."""
    ls = [-math.log(s) for s in sig]
    h = ls[3] - ls[2]
    r0, r1 = (ls[2] - ls[1]) / h, (ls[1] - ls[0]) / h
    D1_0 = (vals[2] - vals[1]) / r0
    D1_1 = (vals[1] - vals[0]) / r1
    D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
    D2 = (D1_0 - D1_1) / (r0 + r1)
    phi_1 = math.expm1(-h)
    phi_2 = phi_1 / h + 1
    phi_3 = phi_2 / h - 0.5
    return -phi_1 * vals[2] + phi_2 * D1 - phi_3 * D2


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_phi_functions_against_their_series_and_closed_forms(k):
    for z in (-1e-6, -0.3, -0.999, -1.0, -2.5, -12.0):
        closed = math.exp(z)
        for m in range(k):
            closed = (closed - 1 / math.factorial(m)) / z
        series = sum(z**j / math.factorial(j + k) for j in range(60))
        want = series if abs(z) < 3 else closed  # each where it does not cancel
        assert abs(samplers._phi(k, z) - want) <= 1e-14 * abs(want), (k, z)


# -- cost, AFS, callback --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("afs", [False, True])
@pytest.mark.parametrize("n_steps", [1, 2, 3, 7])
def test_nfe_is_the_registry_count(name, zero, afs, n_steps):
    if zero:
        sig = dg.append_zero(dg.edm_sigmas(n_steps - 1)) if n_steps > 1 else torch.tensor([80.0, 0.0], dtype=F64)
    else:
        sig = dg.edm_sigmas(n_steps)
    assert len(sig) - 1 == n_steps
    counter = dg.trajectory.CountingDenoiser(GM)
    out = samplers.SAMPLERS[name](counter, X_T, sig, afs=afs)
    assert torch.isfinite(out).all()
    assert counter.nfe == samplers.SAMPLERS[name].nfe(n_steps, to_zero=zero, afs=afs)


@pytest.mark.parametrize("name", NEW)
def test_afs_equals_a_denoiser_that_answers_analytically_once(name):
    for sig in (dg.edm_sigmas(6), dg.append_zero(dg.edm_sigmas(5))):
        calls = []

        def first_analytical(x, s):
            calls.append(s)
            return samplers.afs_denoised(x, s) if len(calls) == 1 else GM(x, s)

        want = samplers.SAMPLERS[name](first_analytical, X_T, sig)
        counter = dg.trajectory.CountingDenoiser(GM)
        got = samplers.SAMPLERS[name](counter, X_T, sig, afs=True)
        assert torch.equal(got, want)
        assert counter.nfe == len(calls) - 1
        assert not torch.allclose(got, samplers.SAMPLERS[name](GM, X_T, sig), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NEW)
def test_callback_once_per_step_before_the_step(name):
    sig = dg.append_zero(dg.edm_sigmas(7))
    seen = []
    out = samplers.SAMPLERS[name](GM, X_T, sig, callback=seen.append)
    assert [c["i"] for c in seen] == list(range(len(sig) - 1))
    assert [c["sigma"] for c in seen] == sig[:-1].tolist() and [c["sigma_next"] for c in seen] == sig[1:].tolist()
    assert torch.equal(seen[0]["x"], X_T)
    for k in range(1, len(sig) - 1):
        before = samplers.SAMPLERS[name](GM, X_T, sig[: k + 1])  # the run stopped at sigma_k
        if name == "unipc":
            # the evaluation is at the predicted point (the k-step run ends there, no corrector after the
            # last step); x is that point corrected, except before the step to 0
            assert torch.allclose(seen[k]["denoised"], GM(before, float(sig[k])), rtol=1e-13, atol=1e-13)
            corrected = k < len(sig) - 2
            assert torch.allclose(seen[k]["x"], before, rtol=1e-13, atol=1e-13) != corrected
        else:
            assert torch.allclose(seen[k]["x"], before, rtol=1e-13, atol=1e-13)
            assert torch.allclose(seen[k]["denoised"], GM(before, float(sig[k])), rtol=1e-13, atol=1e-13)
    assert torch.equal(out, seen[-1]["denoised"])  # the step to 0 outputs D(x; sigma_last)


# -- low precision -----------------------------------------------------------------------------------

GAUSS = dg.GaussianMixture(torch.tensor([[0.3, -0.2, 0.1, 0.0]], dtype=F64), 0.25)  # one Gaussian, 4-D


def _quantised(dtype):
    """The exact denoiser at x rounded to ``dtype``, answer rounded to ``dtype``: the same function for the
    low-precision run and its float64 reference."""
    return lambda x, s: GAUSS(x.to(dtype).double(), s).to(dtype).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", NEW)
def test_low_precision_inputs_stay_finite_and_close_to_float64(name, dtype):
    """Ten steps and a step to 0 from sigma = 80 in ``dtype`` against the same sampler in float64 with the same
    (quantised) denoiser. Each update rounds once to ``dtype`` (arithmetic in float32 at least), and the
    flow of one Gaussian contracts (D is linear with slope s^2/(s^2 + sigma^2) <= 1), so the error stays
    within a few roundings of the largest value per step: at most 2 ulp of max|x| per step (one rounding
    of x, one of D re-entering through the weights), 20 ulp over the ten steps."""
    sig = dg.append_zero(dg.edm_sigmas(10))
    x64 = 80 * torch.randn(512, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = x64.to(dtype)
    den = _quantised(dtype)
    got = samplers.SAMPLERS[name](den, x, sig)
    ref = samplers.SAMPLERS[name](den, x.double(), sig)
    assert got.dtype == dtype and torch.isfinite(got).all()
    eps = torch.finfo(dtype).eps  # 1 ulp at 1
    err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
    print(f"{name} {dtype}: max error {err / eps:.2f} ulp of max|x|")
    assert err <= 20 * eps


# -- bad options --------------------------------------------------------------------------------------


def test_bad_options_raise_clear_errors():
    sig = dg.edm_sigmas(4)
    for order in (0, 4, 2.5, "3"):
        with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
            samplers.unipc(GM, X_T, sig, order=order)
    for order in (0, 5):
        with pytest.raises(ValueError, match="order must be 1, 2, 3 or 4"):
            samplers.ipndm_v(GM, X_T, sig, order=order)
    for name in NEW:
        with pytest.raises(TypeError, match="afs must be True or False"):
            samplers.SAMPLERS[name](GM, X_T, sig, afs=1)
        with pytest.raises(ValueError):
            samplers.SAMPLERS[name](GM, X_T, torch.tensor([1.0, 2.0]))  # not decreasing
        with pytest.raises(ValueError, match="non-finite"):
            samplers.SAMPLERS[name](GM, torch.full((2, 2), float("nan"), dtype=F64), sig)
    with pytest.raises(ValueError, match="h must be positive"):
        samplers.unipc_coefficients(0.0, [], True)
    with pytest.raises(ValueError, match="distinct negative"):
        samplers.unipc_coefficients(0.5, [-1.0, -1.0], True)
    with pytest.raises(ValueError, match="distinct negative"):
        samplers.unipc_coefficients(0.5, [0.5], False)
    with pytest.raises(ValueError, match="1 to 4 nodes"):
        samplers.ipndm_v_coefficients([], 0.5)
    with pytest.raises(ValueError, match="current node first"):
        samplers.ipndm_v_coefficients([1.0, 0.5], 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        samplers.ipndm_v_coefficients([1.0], -0.1)
