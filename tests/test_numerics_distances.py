"""Squared distances and softmax logits exact in every dtype (issue 11, items 1.1 and 1.5).

Every expected value comes from a naive float64 computation on the same (exactly converted) inputs:
explicit differences sum((x - y)^2), a softmax over all points, brute-force neighbours. Each kind of
computation is checked over float16, bfloat16, float32 and float64 inputs, at extreme noise levels, at
d = 2 and d = 784, and for data far from the origin (y + 100), where ||x||^2 - 2 x.y + ||y||^2 cancels.
Positive controls show that the float32 expansion the package used before fails the same checks.
"""
import math

import numpy as np
import pytest
import torch

from diffusion_geometry import meanshift as ms
from diffusion_geometry import metrics
from diffusion_geometry.denoisers import EmpiricalDenoiser, GaussianMixture, _expansion_coeff, _PointSet

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
IDS = ["float16", "bfloat16", "float32", "float64"]
PATHS = ["direct", "screen"]  # small problems: explicit sums; large ones: the float32 screen and float64 pairs


def _denoiser(data, path: str, **kw) -> EmpiricalDenoiser:
    """An EmpiricalDenoiser forced onto one of its two paths (the screen is the one large data take)."""
    den = EmpiricalDenoiser(data, **kw)
    if path == "screen":
        den.direct_limit = 0
    return den


def _naive(data: torch.Tensor, x: torch.Tensor, sigma: float):
    """Float64 truth: squared distances by explicit differences, softmax weights, mean, KDE log-density."""
    y = data.reshape(len(data), -1).to(F64)
    q = x.reshape(len(x), -1).to(F64)
    d2 = ((q[:, None, :] - y[None]) ** 2).sum(-1)
    logits = -d2 / (2 * sigma**2)
    w = torch.softmax(logits, dim=1)
    d = y.shape[1]
    logp = torch.logsumexp(logits, 1) - math.log(len(y)) - d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    return d2, w, (w @ y).reshape(x.shape), logp


def _float32_expansion_weights(data: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The softmax the package computed before this fix: ||x||^2 - 2 x.y + ||y||^2 in float32, on data
    centred at their (float32) mean."""
    y, q = data.reshape(len(data), -1).float(), x.reshape(len(x), -1).float()
    centre = y.mean(0)
    y, q = y - centre, q - centre
    d2 = ((q**2).sum(1)[:, None] - 2 * q @ y.T + (y**2).sum(1)[None]).clamp_min(0)
    return torch.softmax(-d2 / (2 * sigma**2), dim=1).double()


def _dyadic_pair(dtype, d: int = 784, n_other: int = 118, seed: int = 0):
    """The issue's example, exactly representable in ``dtype``: y1 = m + delta, y2 = m - delta with
    entries multiples of 2^-b in [-1, 1] (b = 10 bits, or 6 for bfloat16, whose significand has 8),
    ||y1 - y2|| about 0.1, among ``n_other`` other points; the query, their midpoint m, is exact too."""
    g = torch.Generator().manual_seed(seed)
    q = 2.0**6 if dtype == torch.bfloat16 else 2.0**10
    m = torch.randint(-int(q) + 16, int(q) - 15, (d,), generator=g).double() / q
    delta = torch.zeros(d, dtype=F64)
    delta[torch.randperm(d, generator=g)[:10]] = (torch.randint(0, 2, (10,), generator=g).double() * 2 - 1) / 64
    others = torch.randint(-int(q), int(q) + 1, (n_other, d), generator=g).double() / q
    data = torch.cat([(m + delta)[None], (m - delta)[None], others])
    return data, m[None]


# ================================================================================================
# the optimal denoiser: the example
# ================================================================================================


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_weight_on_a_near_duplicate_is_one_half(dtype, path):
    """Two near-duplicates among 118 points, query at their midpoint: the weight on y1 is 1/2 by
    symmetry at every sigma (the issue: float32 gave 0.35, 0.08 and 0.00 at 0.01, 0.005 and 0.002)."""
    data, mid = _dyadic_pair(dtype)
    assert torch.equal(data.to(dtype).double(), data) and torch.equal(mid.to(dtype).double(), mid)
    print(f"||y1 - y2|| = {(data[0] - data[1]).norm():.4f}")
    den = _denoiser(data.to(dtype), path)
    for sigma in (0.01, 0.005, 0.002, 1e-4, 1e-8):
        w = den.weights(mid.to(dtype), sigma)
        print(f"{dtype} sigma={sigma:g}: w1 = {w[0, 0].item():.17g}, w2 = {w[0, 1].item():.17g}")
        assert w[0, 0].item() == pytest.approx(0.5, abs=1e-12) and w[0, 0] == w[0, 1]
        out = den(mid.to(dtype), sigma)
        assert out.dtype == dtype
        _ulp_close(out, mid, 1.0, "the midpoint")  # (float64: to round-off; other dtypes: exactly)
        if dtype != F64:
            assert torch.equal(out.double(), mid)
    for sigma in (0.1, 1.0, 1e3):  # the two weights stay equal when the others carry weight
        w = den.weights(mid.to(dtype), sigma)
        _, w_ref, _, _ = _naive(data, mid, sigma)
        print(f"{dtype} sigma={sigma:g}: w1 = {w[0, 0].item():.6g} (naive float64 {w_ref[0, 0].item():.6g})")
        assert w[0, 0] == w[0, 1]
        torch.testing.assert_close(w, w_ref, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_weights_of_random_near_duplicates_equal_naive_float64(dtype, path):
    """The issue's input drawn at random (uniform in [-1, 1]^784, ||y1 - y2|| = 0.1, query at the midpoint
    rounded to the dtype): the weights equal the naive float64 softmax of the same numbers."""
    g = torch.Generator().manual_seed(3)
    data = torch.rand(120, 784, generator=g, dtype=F64) * 2 - 1
    data[1] = data[0] + 0.1 * torch.randn(784, generator=g, dtype=F64) / math.sqrt(784)
    data = data.to(dtype)
    mid = ((data[0].double() + data[1].double()) / 2).to(dtype)[None]
    den = _denoiser(data, path)
    old = []
    for sigma in (0.01, 0.005, 0.002):
        w = den.weights(mid, sigma)
        _, w_ref, D_ref, _ = _naive(data, mid, sigma)
        print(f"{dtype} sigma={sigma}: w1 = {w[0, 0].item():.15f}, naive float64 {w_ref[0, 0].item():.15f}")
        torch.testing.assert_close(w, w_ref, rtol=1e-10, atol=1e-15)
        assert abs(w[0, 0].item() - 0.5) < 0.01  # (not 0.35, 0.08, 0.00)
        old.append(_float32_expansion_weights(data, mid, sigma)[0, 0].item())
        print(f"  the float32 expansion gives {old[-1]:.3f}")
    if dtype == torch.float32:  # positive control: the failure is present in this input
        assert max(abs(v - 0.5) for v in old) > 0.1


# ================================================================================================
# the optimal denoiser against naive float64: every dtype, extreme sigmas, d = 2 and 784, far data
# ================================================================================================


def _ulp_close(out: torch.Tensor, truth: torch.Tensor, scale: float, what: str, logits: float = 0.0):
    """``out`` (in its dtype) equals ``truth`` (float64) rounded to that dtype: within one unit in the
    last place (eps |truth|; subnormals: eps * tiny); plus, below float64 dtypes, eps / 4 of ``scale``,
    the size of the inputs (the points the cut drops weigh u/8 of the largest weight and move the
    answer by at most u/4 of the data's spread); plus float64 round-off, 8 eps64 of ``scale`` times
    (1 + ``logits``): float64 logits of size L carry round-off eps64 L, in the naive truth as well."""
    fi = torch.finfo(out.dtype)
    err = (out.double() - truth).abs()
    tol = fi.eps * (truth.abs() + fi.tiny) + 8 * torch.finfo(F64).eps * scale * (1 + logits)
    if out.dtype != F64:
        tol = tol + fi.eps * scale / 4
    print(f"  {what}: max |out - truth| = {err.max().item():.3g}, max err / tol = {(err / tol).max().item():.3g}")
    assert (err <= tol).all(), what


CASES = [  # (d, N, offset)
    (2, 200, 0.0),
    (2, 200, 100.0),
    (784, 120, 0.0),
    (784, 120, 100.0),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("d, n, offset", CASES, ids=[f"d{d}-off{o:g}" for d, _, o in CASES])
def test_denoiser_equals_naive_float64(dtype, d, n, offset, path):
    g = torch.Generator().manual_seed(d + int(offset))
    base = torch.rand(n, d, generator=g, dtype=F64) * 2 - 1
    base[1] = base[0] + 1e-3 * torch.randn(d, generator=g, dtype=F64)  # a near-duplicate pair
    data = (base + offset).to(dtype)
    den = _denoiser(data, path, chunk_size=64)  # several chunks
    scale = data.double().abs().max().item()
    for sigma in (1e-4, 2e-3, 0.01, 0.1, 1.0, 1e3):
        idx = torch.arange(6) * 7
        x = (data[idx].double() + sigma * torch.randn(6, d, generator=g, dtype=F64)).to(dtype)
        x = torch.cat([x, ((data[0].double() + data[1].double()) / 2).to(dtype)[None]])  # between the pair
        _, w_ref, D_ref, logp_ref = _naive(data, x, sigma)
        print(f"{dtype} d={d} offset={offset} sigma={sigma:g}")
        w = den.weights(x, sigma)
        werr = (w - w_ref).abs().max().item()
        print(f"  weights: max |w - naive| = {werr:.3g}")
        assert torch.isfinite(w).all() and werr < 1e-10
        d2, *_ = _naive(data, x, sigma)
        logits = (d2.min(1).values / (2 * sigma**2)).max().item()  # size of the largest logits
        out = den(x, sigma)
        assert out.dtype == dtype and torch.isfinite(out).all()
        _ulp_close(out, D_ref, scale, "denoised", logits)
        logp = den.log_prob(x, sigma)
        assert logp.dtype == torch.promote_types(dtype, torch.float32) and torch.isfinite(logp).all()
        terms = d * (abs(math.log(sigma)) + 1) + math.log(n) + logits  # the log-density sums these
        _ulp_close(logp, logp_ref, terms, "log-density")


def test_positive_control_float32_expansion_fails_far_from_the_origin():
    """Data at y + 100 in float32: the old expansion's weights are far from the naive float64 ones."""
    g = torch.Generator().manual_seed(5)
    data = torch.rand(120, 784, generator=g, dtype=F64) * 2 - 1 + 100
    data[1] = data[0] + 1e-3 * torch.randn(784, generator=g, dtype=F64)
    data = data.float()
    x = ((data[:1].double() + data[1:2].double()) / 2 + 1e-4 * torch.randn(4, 784, generator=g, dtype=F64)).float()
    _, w_ref, _, _ = _naive(data, x, 0.002)
    print("naive float64 weights on the pair", w_ref[:, :2].tolist())
    err = (_float32_expansion_weights(data, x, 0.002) - w_ref).abs().max().item()
    ours = max((_denoiser(data, p).weights(x, 0.002) - w_ref).abs().max().item() for p in PATHS)
    print(f"max weight error: float32 expansion {err:.3g}, EmpiricalDenoiser {ours:.3g}")
    assert err > 0.1 and ours < 1e-10


@pytest.mark.parametrize("path", PATHS)
def test_half_precision_inputs_and_mixed_dtypes(path):
    """float16 data with float32 queries and the reverse: the answer in the query's dtype, exact."""
    g = torch.Generator().manual_seed(6)
    data = (torch.rand(50, 3, generator=g, dtype=F64) * 2 - 1)
    for data_dtype, x_dtype in ((torch.float16, torch.float32), (torch.float32, torch.bfloat16),
                                (torch.bfloat16, torch.float64)):
        y = data.to(data_dtype)
        x = (y[:5].double() + 0.05 * torch.randn(5, 3, generator=g, dtype=F64)).to(x_dtype)
        _, _, D_ref, _ = _naive(y, x, 0.05)
        out = _denoiser(y, path)(x, 0.05)
        assert out.dtype == x_dtype
        _ulp_close(out, D_ref, 1.0, f"{data_dtype} data, {x_dtype} queries")


# ================================================================================================
# the sigma -> 0 limit and overflow: never NaN
# ================================================================================================


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_sigma_to_zero_is_the_nearest_point_and_never_nan(dtype, path):
    """As sigma -> 0 (also once sigma^2 underflows) the weights are one-hot on the nearest training
    point and split evenly between exact ties; as sigma -> inf (sigma^2 overflows) they are uniform."""
    y = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [7.0, 7.0]], dtype=F64) + 100
    x = torch.tensor([[1.0, 0.0], [1.0, 3.0], [50.0, 50.0], [0.25, 0.5]], dtype=F64) + 100
    nearest = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=F64)
    den = _denoiser(y.to(dtype), path)
    xd = x.to(dtype)
    for sigma in (1e-4, 1e-8, 1e-30, 1e-200):
        w = den.weights(xd, sigma)
        print(f"{dtype} sigma={sigma:g}: weights {w.tolist()}")
        assert torch.equal(w, nearest)
        out = den(xd, sigma)
        assert torch.equal(out.double(), nearest @ y)
        assert not torch.isnan(den.log_prob(xd, sigma)).any()
    for sigma in (1e200, 1e300):
        w = den.weights(xd, sigma)
        assert torch.allclose(w, torch.full_like(w, 0.25), rtol=0, atol=1e-15)
        _ulp_close(den(xd, sigma), y.mean(0).expand(4, 2), 100.0, "mean of the data")
        assert torch.isfinite(den.log_prob(xd, sigma)).all()


@pytest.mark.parametrize("chunk", [37, 4096])
def test_screen_path_equals_naive_with_several_chunks_and_autograd(chunk):
    """The screen path on the package's toy set (N = 500 points of shape (2, 3, 2), float64): the
    denoiser, the log-density and, through autograd, the score equal naive float64 at every sigma."""
    g = torch.Generator().manual_seed(10)
    data = torch.rand(500, 2, 3, 2, generator=g, dtype=F64) * 2 - 1
    den = _denoiser(data, "screen", chunk_size=chunk)
    for sigma in np.geomspace(0.002, 80, 9).tolist():
        x = torch.cat([data[:12] + sigma * torch.randn(12, 2, 3, 2, generator=g, dtype=F64),
                       3 * torch.randn(4, 2, 3, 2, generator=g, dtype=F64)])
        _, _, D_ref, logp_ref = _naive(data, x, sigma)
        err = (den(x, sigma) - D_ref).abs().max().item()
        xr = x.clone().requires_grad_(True)
        logp = den.log_prob(xr, sigma)
        (score,) = torch.autograd.grad(logp.sum(), xr)
        tweedie = (x + sigma**2 * score - D_ref).abs().max().item()
        print(f"sigma={sigma:.4g} chunk={chunk}: |D - naive| {err:.2e}, |x + s^2 score - D| {tweedie:.2e}")
        assert err < 1e-10 and tweedie < 1e-9
        torch.testing.assert_close(logp.detach(), logp_ref, rtol=1e-12, atol=1e-9)


def test_small_operations_on_one_thread_and_the_caller_count_restored():
    """The denoiser runs its small operations on one thread and its matrix products on the caller's
    count (``_few_threads``); the caller's count is restored after every call, also after an error."""
    g = torch.Generator().manual_seed(14)
    data = torch.rand(3000, 784, generator=g) * 2 - 1
    x = data[:64] + 0.3 * torch.randn(64, 784, generator=g)
    _, _, D_ref, _ = _naive(data, x, 0.3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        den = _denoiser(data, "screen")
        out = den(x, 0.3)
        den.log_prob(x, 0.3)
        den.nearest(x, 2)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="sigma must be positive"):
            den(x, 0.0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    _ulp_close(out, D_ref, 1.0, "denoised on 2 threads")


def test_zero_sigma_and_bad_queries_raise():
    den = EmpiricalDenoiser(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="sigma must be positive"):
        den(torch.zeros(1, 2), 0.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        den(torch.tensor([[float("nan"), 0.0]]), 1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        den.nearest(torch.tensor([[float("inf"), 0.0]]))


# ================================================================================================
# nearest neighbours
# ================================================================================================


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("offset", [0.0, 100.0], ids=["off0", "off100"])
def test_nearest_equals_brute_force_float64(dtype, offset):
    g = torch.Generator().manual_seed(7)
    base = torch.rand(300, 784, generator=g, dtype=F64) * 2 - 1
    base[1] = base[0] + 0.02 * torch.randn(784, generator=g, dtype=F64) / 28  # ||y1 - y0|| = 0.02
    data = (base + offset).to(dtype)
    x = torch.cat([data[:1].double() * 0.5 + data[1:2].double() * 0.5 + 1e-3 * torch.randn(1, 784, generator=g, dtype=F64),
                   data[2:8].double() + 0.3 * torch.randn(6, 784, generator=g, dtype=F64)]).to(dtype)
    d2, _, _, _ = _naive(data, x, 1.0)
    order = torch.sort(d2, dim=1, stable=True)
    den = _denoiser(data, "screen", chunk_size=50)
    for k in (1, 3):
        dist, idx = den.nearest(x, k)
        assert torch.equal(idx, order.indices[:, :k])
        assert dist.dtype == torch.promote_types(dtype, torch.float32)
        _ulp_close(dist, order.values[:, :k].sqrt(), 0.0 if dist.dtype == F64 else 1.0, f"{dtype} distances k={k}")


def test_positive_control_float32_expansion_misorders_near_duplicates():
    g = torch.Generator().manual_seed(8)
    data = (torch.rand(300, 784, generator=g, dtype=F64) * 2 - 1 + 100)
    data[1] = data[0] + 0.02 * torch.randn(784, generator=g, dtype=F64) / 28
    data = data.float()
    x = (data[:1].double() * 0.7 + data[1:2].double() * 0.3).float().expand(8, -1).clone()
    x += (1e-4 * torch.randn(8, 784, generator=g)).float()
    d2, _, _, _ = _naive(data, x, 1.0)
    truth = d2.argmin(1)
    y, q = data.reshape(300, -1), x
    old = ((q**2).sum(1)[:, None] - 2 * q @ y.T + (y**2).sum(1)[None]).argmin(1)
    print("truth", truth.tolist(), "float32 expansion", old.tolist())
    assert (old != truth).any()
    assert torch.equal(EmpiricalDenoiser(data).nearest(x)[1][:, 0], truth)


def test_screen_bound_holds_even_far_from_the_origin():
    """The documented bound |r - d^2| <= c (|a|^2 + |b|^2) of the float32 screen holds on every pair,
    including data at y + 1000 and queries near and far."""
    g = torch.Generator().manual_seed(9)
    for offset in (0.0, 1000.0):
        data = torch.rand(500, 784, generator=g) * 2 - 1 + offset
        P = _PointSet(data, 128)
        assert P.screen_dtype == torch.float32
        x = torch.cat([data[:20] + 1e-3 * torch.randn(20, 784, generator=g), data[:20] * 3 - 2 * offset])
        q = P.queries(x)
        c = _expansion_coeff(784, torch.float32, x.device)
        low, up = P.bounds(q, 0, 500)
        exact = ((x.double()[:, None] - data.double()[None]) ** 2).sum(-1)
        err = (low.double() + c * (q["na64"][:, None] + P.sq64[None]) - exact).abs()
        bound = c * (q["na64"][:, None] + P.sq64[None])
        print(f"offset {offset}: c = {c:.3g}, max |screen error| / bound = {(err / bound).max().item():.3g}")
        assert (low.double() <= exact).all() and (up.double() >= exact).all()


# ================================================================================================
# Gaussian-mixture responsibilities
# ================================================================================================


def _naive_responsibilities(means, variances, x, sigma):
    """Float64 truth for isotropic components: softmax of -|x - mu|^2 / 2 v - d/2 log v, v = var + s^2;
    also the size of the largest logit (the round-off of the logits is relative to it)."""
    mu, q = means.to(F64), x.to(F64)
    v = variances.to(F64) + sigma**2
    d = mu.shape[1]
    logc = -((q[:, None] - mu[None]) ** 2).sum(-1) / (2 * v) - 0.5 * d * torch.log(v)
    return torch.softmax(logc, dim=1), logc.max(1).values.abs().max().item()


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_mixture_responsibilities_tiny_sigma_far_from_origin(dtype):
    g = torch.Generator().manual_seed(10)
    d = 784
    centre = torch.randint(-64, 65, (d,), generator=g).double() / 64
    delta = torch.zeros(d, dtype=F64)
    delta[:4] = 1 / 64
    means = torch.stack([centre + delta, centre - delta, centre + 0.5]) + 100  # exact in every dtype
    variances = torch.tensor([0.0, 0.0, 1e-6], dtype=F64)
    gm = GaussianMixture(means.to(dtype), variances.to(dtype))
    mid = (centre + 100)[None]
    x = torch.cat([mid, (means[:3] + 0.01 * torch.randn(3, d, generator=g, dtype=F64))]).to(dtype)
    for sigma in (1e-4, 1e-3, 0.01, 1.0):
        r = gm.responsibilities(x, sigma)
        ref, size = _naive_responsibilities(means.to(dtype), variances.to(dtype), x, sigma)
        print(f"{dtype} sigma={sigma:g}: responsibilities at the midpoint {r[0].tolist()}")
        assert r.dtype == dtype and torch.isfinite(r).all()
        assert r[0, 0] == r[0, 1]  # symmetry at the midpoint of two equal components
        _ulp_close(r, ref, 1.0, "responsibilities", size)
        den = gm(x, sigma)
        assert den.dtype == dtype and torch.isfinite(den).all()


def test_positive_control_mixture_in_float32_arithmetic_breaks_symmetry():
    """The same responsibilities computed in float32 arithmetic (the old code for float32 means)
    through the expansion |x|^2 - 2 x.mu + |mu|^2 lose the symmetry at small sigma."""
    g = torch.Generator().manual_seed(10)
    d = 784
    centre = torch.randint(-64, 65, (d,), generator=g).float() / 64
    delta = torch.zeros(d)
    delta[:4] = 1 / 64
    mu = torch.stack([centre + delta, centre - delta]) + 100
    x = (centre + 100)[None] + 1e-3 * torch.randn(1, d, generator=g)
    d2 = (x**2).sum(1)[:, None] - 2 * x @ mu.T + (mu**2).sum(1)[None]
    r32 = torch.softmax(-d2 / (2 * 1e-3**2), dim=1)
    ref, _ = _naive_responsibilities(mu, torch.zeros(2), x, 1e-3)
    print("float32 expansion", r32.tolist(), "float64", ref.tolist())
    assert (r32.double() - ref).abs().max() > 0.1


def test_mixture_tiny_sigma_is_the_nearest_mean_or_a_clear_error():
    gm = GaussianMixture(torch.tensor([[0.0, 0.0], [1e5, 0.0]], dtype=F64), torch.zeros(2, dtype=F64))
    x = torch.tensor([[3e4, 0.0], [5e4, 0.0]], dtype=F64)
    r = gm.responsibilities(x, 1e-100)
    print("responsibilities at sigma 1e-100", r.tolist())
    assert torch.equal(r, torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=F64))  # the nearest mean; a tie
    with pytest.raises(ValueError, match="too small for float64"):
        gm.responsibilities(x, 1e-150)  # |x - mu|^2 / sigma^2 overflows for every component
    with pytest.raises(ValueError, match="singular"):
        gm.responsibilities(x, 1e-200)  # sigma^2 underflows to 0


# ================================================================================================
# mean shift
# ================================================================================================


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_mean_shift_and_likelihood_gain_equal_naive_float64(dtype, path):
    """A mean-shift step, the log-likelihood gain and the theorem's bound on float32 (and half) digits-
    sized data far from the origin equal naive float64; the gain never falls below the bound."""
    g = torch.Generator().manual_seed(11)
    y = ((torch.rand(200, 64, generator=g, dtype=F64) * 2 - 1) * 4 + 100).to(dtype)
    kde = _denoiser(y, path)
    for sigma in (0.05, 0.5, 5.0):
        x = (y[:6].double() + sigma * torch.randn(6, 64, generator=g, dtype=F64)).to(dtype)
        d2, _, m_ref, logp_ref = _naive(y, x, sigma)
        logits = (d2.min(1).values / (2 * sigma**2)).max().item()
        _ulp_close(ms.mean_shift_step(kde, x, sigma), m_ref, 104.0, f"{dtype} mean-shift step sigma={sigma}", logits)
        lams = torch.tensor([0.3, 1.0, 1.7], dtype=F64)
        gains = ms.log_likelihood_gain(kde, x, sigma, lams)
        bound = ms.likelihood_gain_bound(kde, x, sigma, lams)
        x64 = x.double()
        want = torch.stack([_naive(y, x64 + l * (m_ref - x64), sigma)[3] - logp_ref for l in lams.tolist()])
        err = (gains - want).abs().max().item()
        print(f"{dtype} sigma={sigma}: max |gain - naive| = {err:.3g}, min gain - bound = {(gains - bound).min().item():.3g}")
        assert gains.dtype == F64 and err <= 1e-9 * (1 + want.abs().max().item())
        assert (gains - bound).min() >= -1e-9


# ================================================================================================
# k-NN precision and recall
# ================================================================================================


def _naive_pr(real: np.ndarray, fake: np.ndarray, k: int):
    """Explicit differences in float64 (exact here: small integers), brute force."""
    def sq(a, b):
        return ((a[:, None, :] - b[None]) ** 2).sum(-1)

    def radii(x):
        d = sq(x, x)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    rr, rf = radii(real), radii(fake)
    return float((sq(fake, real) <= rr[None]).any(1).mean()), float((sq(real, fake) <= rf[None]).any(1).mean())


def _lattice(seed: int, offset: float, spacing: float):
    """Points on an integer lattice (many exact ties between distances), shifted by ``offset``."""
    rng = np.random.default_rng(seed)
    real = rng.integers(0, 6, size=(120, 8)).astype(np.float64)
    fake = rng.integers(0, 6, size=(100, 8)).astype(np.float64)
    return offset + spacing * real, offset + spacing * fake


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_precision_recall_exact_on_ties(dtype):
    """Lattice features (exact in every dtype, 1024 + multiples of 8): ties between a sample's distance
    and a ball's radius are everywhere, and must count as inside, as in exact arithmetic."""
    real, fake = _lattice(12, 1024.0, 8.0)
    want = _naive_pr(real, fake, 3)
    got = metrics.precision_recall(torch.tensor(real).to(dtype), torch.tensor(fake).to(dtype), k=3, chunk=37)
    print(f"{dtype}: precision/recall {tuple(got)}, naive {want}")
    assert (got.precision, got.recall) == want


def test_precision_recall_exact_far_from_the_origin():
    """The same lattice at offset 1e8: float64 cdist (a matrix product) flips tie decisions; the
    package does not."""
    real, fake = _lattice(13, 1e8, 1.0)
    want = _naive_pr(real, fake, 3)
    got = metrics.precision_recall(real, fake, k=3)
    r, f = torch.tensor(real), torch.tensor(fake)

    def cdist_pr():  # the former implementation: torch.cdist (matrix-product mode) distances
        def radii(x):
            return torch.cdist(x, x).kthvalue(4, dim=1).values

        rr, rf = radii(r), radii(f)
        return (float((torch.cdist(f, r) <= rr[None]).any(1).double().mean()),
                float((torch.cdist(r, f) <= rf[None]).any(1).double().mean()))

    old = cdist_pr()
    print(f"package {tuple(got)}, naive {want}, cdist {old}")
    assert (got.precision, got.recall) == want
    assert old != want  # positive control: the float64 product alone gets ties wrong here
