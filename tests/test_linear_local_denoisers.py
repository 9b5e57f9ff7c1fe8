"""Linear (Gaussian) and local (patch) denoisers against independent truth: numpy moments, the naive
Wiener filter, a numerical solution of the probability-flow ODE, and a naive float64 patch denoiser."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.special import logsumexp

import diffusion_geometry as dg
from diffusion_geometry.denoisers import EmpiricalDenoiser, GaussianMixture
from diffusion_geometry.local import LocalDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussians() -> dict[str, GaussianMixture]:
    """d = 5: a full-rank fit (N = 50) and a rank-2 one (N = 3 points: a plane through their mean)."""
    A = torch.randn(5, 5, generator=_gen(0), dtype=F64)
    full = torch.randn(50, 5, generator=_gen(1), dtype=F64) @ A + torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=F64)
    return {"full_rank": GaussianMixture.fit_gaussian(full),
            "rank_2": GaussianMixture.fit_gaussian(torch.randn(3, 5, generator=_gen(2), dtype=F64) * 2)}


GAUSSIANS = _gaussians()


def _naive_denoiser(gm: GaussianMixture, x: np.ndarray, sigma: float) -> np.ndarray:
    mu, S = gm._means64[0].numpy(), gm._cov64[0].numpy()
    return mu + (S @ np.linalg.solve(S + sigma**2 * np.eye(len(mu)), (x - mu).T)).T


# ================================================================================================
# The Gaussian fit
# ================================================================================================


@pytest.mark.parametrize("offset", [0.0, 1e8])
def test_fit_gaussian_equals_numpy_moments(offset):
    """Mean and (biased, 1/N) covariance as numpy computes them in float64, also for data far from the
    origin, where the one-pass E[yy^T] - mu mu^T loses every digit."""
    scale = torch.linspace(0.1, 2, 6, dtype=F64).reshape(2, 3)
    y = torch.randn(40, 2, 3, generator=_gen(3), dtype=F64) * scale + offset
    gm = GaussianMixture.fit_gaussian(y)
    flat = y.reshape(40, -1).numpy()
    assert gm.means.shape == (1, 6) and gm.covariances.shape == (1, 6, 6) and gm.kind == "full"
    np.testing.assert_allclose(gm.means[0].numpy(), flat.mean(0), rtol=1e-15)
    ref = np.cov(flat, rowvar=False, bias=True)
    err = np.abs(gm.covariances[0].numpy() - ref).max() / np.abs(ref).max()
    one_pass = (flat.T @ flat) / 40 - np.outer(flat.mean(0), flat.mean(0))
    err_one_pass = np.abs(one_pass - ref).max() / np.abs(ref).max()
    print(f"offset {offset:g}: relative error {err:.1e} (one-pass formula: {err_one_pass:.1e})")
    assert err < 1e-13
    if offset:
        assert err_one_pass > 1e-2  # the case where the centred second pass matters


def test_fit_gaussian_dtype_keeps_float64_moments():
    y = torch.randn(30, 1, 2, 2, generator=_gen(4)) + 300.0  # float32
    gm = GaussianMixture.fit_gaussian(y)
    assert gm.means.dtype == torch.float32 and gm.covariances.dtype == torch.float32
    flat = y.reshape(30, -1).double().numpy()
    np.testing.assert_allclose(gm._means64[0].numpy(), flat.mean(0), rtol=1e-15)  # not rounded to float32
    np.testing.assert_allclose(gm._cov64[0].numpy(), np.cov(flat, rowvar=False, bias=True), rtol=1e-12, atol=1e-14)
    x = y[:4].reshape(4, -1)
    assert gm(x, 0.5).dtype == torch.float32
    assert GaussianMixture.fit_gaussian(torch.arange(12).reshape(4, 3)).means.dtype == torch.float32  # integer data
    assert GaussianMixture.fit_gaussian(y, dtype=F64).means.dtype == F64


def test_fit_gaussian_shrinkage():
    y = torch.randn(4, 6, generator=_gen(5), dtype=F64)  # N <= d: a singular covariance
    S = GaussianMixture.fit_gaussian(y)._cov64[0]
    assert torch.linalg.matrix_rank(S) == 3
    for a in (0.25, 1.0):
        Sa = GaussianMixture.fit_gaussian(y, shrinkage=a)._cov64[0]
        assert torch.allclose(Sa, (1 - a) * S + a * S.trace() / 6 * torch.eye(6, dtype=F64), rtol=0, atol=1e-14)
        assert torch.linalg.eigvalsh(Sa).min() > 0.2 * a * S.trace() / 6  # full rank


def test_fit_gaussian_bad_input():
    y = torch.randn(5, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"shape \(N, ...\)"):
        GaussianMixture.fit_gaussian(torch.randn(5))
    with pytest.raises(ValueError, match=r"shape \(N, ...\)"):
        GaussianMixture.fit_gaussian(torch.randn(0, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        GaussianMixture.fit_gaussian(torch.tensor([[0.0, math.nan], [1.0, 2.0]]))
    for bad in (-0.1, 1.5, True, "0.1", math.nan):
        with pytest.raises(ValueError, match=r"shrinkage must be a number in \[0, 1\]"):
            GaussianMixture.fit_gaussian(y, shrinkage=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        GaussianMixture.fit_gaussian(y, chunk_size=0)


# ================================================================================================
# The linear denoiser and its exact flow
# ================================================================================================


@pytest.mark.parametrize("name", list(GAUSSIANS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_denoiser_is_the_wiener_filter(name, dtype):
    """D(x; sigma) = mu + S (S + sigma^2 I)^{-1} (x - mu), computed naively in numpy; one sigma for the
    batch (factorised once) and one per sample (factorised per sample) alike."""
    gm = GAUSSIANS[name]
    sigmas = [0.002, 0.1, 1.0, 80.0]
    noise = torch.tensor(sigmas, dtype=F64)[:, None] * torch.randn(4, 5, generator=_gen(7), dtype=F64)
    x = (gm.sample(4, generator=_gen(6)) + noise).to(dtype)
    x64 = x.to(F64).numpy()
    for i, s in enumerate(sigmas):
        ref = _naive_denoiser(gm, x64, s)
        out = gm(x, s)
        assert out.dtype == F64  # the mixture's dtype
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-9 * (1 + np.abs(ref).max()))
    per_sample = gm(x, torch.tensor(sigmas, dtype=F64)).numpy()
    ref = np.stack([_naive_denoiser(gm, x64[i:i + 1], s)[0] for i, s in enumerate(sigmas)])
    np.testing.assert_allclose(per_sample, ref, rtol=1e-9, atol=1e-9)


def _ode(gm: GaussianMixture, x: torch.Tensor, s0: float, s1: float) -> np.ndarray:
    """dx/dsigma = (x - D(x; sigma)) / sigma with the mixture's own denoiser, to rtol 1e-10."""
    def rhs(s, y):
        y = torch.from_numpy(y)[None]
        return ((y - gm(y, s)) / s)[0].numpy()
    out = []
    for row in x:
        sol = solve_ivp(rhs, (s0, s1), row.numpy(), method="DOP853", rtol=1e-10, atol=1e-12)
        assert sol.success
        out.append(sol.y[:, -1])
    return np.stack(out)


@pytest.mark.parametrize("name", list(GAUSSIANS))
@pytest.mark.parametrize("s0, s1", [(10.0, 0.01), (2.0, 0.3), (0.05, 5.0)])
def test_flow_equals_the_numerical_ode_solution(name, s0, s1):
    gm = GAUSSIANS[name]
    x = gm.sample(3, s0, generator=_gen(8))
    ref = _ode(gm, x, s0, s1)
    out = gm.flow(x, s0, s1).numpy()
    err = np.abs(out - ref).max() / np.abs(ref).max()
    print(f"{name} {s0} -> {s1}: relative error {err:.1e}")
    assert err < 1e-8


def test_flow_to_zero_lands_on_the_data_subspace():
    """Rank 2: the three null directions of S reach the mean exactly at sigma = 0 (r = 0, not NaN); the
    map is continuous there."""
    gm = GAUSSIANS["rank_2"]
    lam, U = torch.linalg.eigh(gm._cov64[0])
    null = U[:, lam < 1e-12 * lam.max()]
    assert null.shape[1] == 3
    x = gm.sample(4, 3.0, generator=_gen(9))
    x0 = gm.flow(x, 3.0, 0.0)
    assert torch.isfinite(x0).all()
    off = ((x0 - gm._means64) @ null).abs().max().item()
    before = ((x - gm._means64) @ null).abs().max().item()
    print(f"null-space offset {before:.2f} -> {off:.1e}")
    assert off < 1e-14 * before * 10
    assert torch.allclose(gm.flow(x, 3.0, 1e-9), x0, rtol=0, atol=1e-8)
    # a point on the plane, at a sigma far below the plane's spread, barely moves
    on_plane = gm.sample(2, generator=_gen(10))
    assert torch.allclose(gm.flow(on_plane, 1e-3, 0.0), on_plane, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(GAUSSIANS))
def test_flow_identity_composition_and_per_sample_sigmas(name):
    gm = GAUSSIANS[name]
    x = gm.sample(4, 5.0, generator=_gen(11))
    assert torch.equal(gm.flow(x, 5.0, 5.0), x)  # r - 1 = 0 exactly: x itself, not U U^T x
    via = gm.flow(gm.flow(x, 5.0, 0.7), 0.7, 0.02)
    assert torch.allclose(via, gm.flow(x, 5.0, 0.02), rtol=0, atol=1e-13)
    s_from, s_to = torch.tensor([5.0, 1.0, 0.3, 80.0], dtype=F64), torch.tensor([0.0, 2.0, 0.3, 0.002], dtype=F64)
    batch = gm.flow(x, s_from, s_to)
    one = torch.cat([gm.flow(x[i:i + 1], float(a), float(b)) for i, (a, b) in enumerate(zip(s_from, s_to))])
    assert torch.allclose(batch, one, rtol=0, atol=1e-14)  # a matrix product's rounding may depend on the batch


@pytest.mark.parametrize("kind", ["iso", "diag"])
def test_flow_of_iso_and_diag_components_equals_the_full_matrix(kind):
    v = torch.tensor(0.3, dtype=F64) if kind == "iso" else torch.tensor([0.0, 0.1, 1.0, 4.0], dtype=F64)
    mu = torch.tensor([[1.0, -1.0, 0.5, 2.0]], dtype=F64)
    gm = GaussianMixture(mu, v[None] if kind == "iso" else v[None])
    full = GaussianMixture(mu, torch.diag(v.expand(4))[None])
    x = gm.sample(3, 2.0, generator=_gen(12))
    for s1 in (0.0, 0.1, 7.0):
        assert torch.allclose(gm.flow(x, 2.0, s1), full.flow(x, 2.0, s1), rtol=0, atol=1e-14)
    if kind == "diag":  # the variance-0 coordinate reaches the mean exactly
        assert gm.flow(x, 2.0, 0.0)[:, 0].eq(1.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_flow_dtypes(dtype):
    """Any floating x: computed in float64 from x exactly, returned in x's dtype, rounded once."""
    gm = GAUSSIANS["full_rank"]
    x = gm.sample(4, 2.0, generator=_gen(13)).to(dtype)
    out = gm.flow(x, 2.0, 0.1)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out, gm.flow(x.to(F64), 2.0, 0.1).to(dtype))
    # the closed form transcribed naively in numpy (the ODE tests above check the closed form itself)
    mu, (lam, U) = gm._means64.numpy(), np.linalg.eigh(gm._cov64[0].numpy())
    lam = np.clip(lam, 0, None)
    ref = mu + ((x.to(F64).numpy() - mu) @ U * np.sqrt((lam + 0.1**2) / (lam + 2.0**2))) @ U.T
    tol = 1e-13 if dtype == F64 else torch.finfo(dtype).eps
    assert np.abs(out.to(F64).numpy() - ref).max() <= tol * np.abs(ref).max()


def test_flow_bad_input():
    gm = GAUSSIANS["full_rank"]
    x = gm.sample(2, 1.0, generator=_gen(14))
    with pytest.raises(ValueError, match="single Gaussian only; this mixture has K = 8"):
        dg.datasets.mixture_2d().flow(torch.zeros(2, 2, dtype=F64), 1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_from must be positive"):
        gm.flow(x, 0.0, 0.5)
    with pytest.raises(ValueError, match="sigma_from must be positive"):
        gm.flow(x, torch.tensor([1.0, 0.0], dtype=F64), 0.5)
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite and non-negative"):
            gm.flow(x, 1.0, bad)
        with pytest.raises(ValueError, match="finite and non-negative"):
            gm.flow(x, bad, 0.5)
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(2,\)"):
        gm.flow(x, torch.ones(3, dtype=F64), 0.5)
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        gm.flow(x[:, :4], 1.0, 0.5)
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        gm.flow(x[0], 1.0, 0.5)
    with pytest.raises(ValueError, match="NaN or inf"):
        gm.flow(torch.full((1, 5), math.nan, dtype=F64), 1.0, 0.5)
    with pytest.raises(ValueError, match="floating-point"):
        gm.flow(torch.zeros(1, 5, dtype=torch.long), 1.0, 0.5)
    with pytest.raises(ValueError, match="overflows torch.float16"):
        gm.flow(x.to(torch.float16), 1.0, 1e6)


# ================================================================================================
# The local denoiser
# ================================================================================================


def _naive_windows(data, x, P, equivariant):
    """Per query pixel (b, h, w): its zero-padded P x P window and the candidate training windows, by
    explicit loops and np.pad; yields ``(b, h, w, window, candidates)``."""
    N, C, H, W = data.shape
    r = P // 2
    dp = np.pad(data, ((0, 0), (0, 0), (r, r), (r, r)))
    xp = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)))
    for b in range(len(x)):
        for h in range(H):
            for w in range(W):
                spots = [(hh, ww) for hh in range(H) for ww in range(W)] if equivariant else [(h, w)]
                yield b, h, w, xp[b, :, h:h + P, w:w + P], [dp[j, :, hh:hh + P, ww:ww + P] for j in range(N) for hh, ww in spots]


def _naive_local(data, x, sigma, P, equivariant):
    """Explicit loops over pixels and windows, np.pad zero padding, a float64 log-sum-exp softmax."""
    data, x = np.asarray(data, np.float64), np.asarray(x, np.float64)
    out, r = np.zeros_like(x), P // 2
    for b, h, w, q, cands in _naive_windows(data, x, P, equivariant):
        logit = np.array([-((q - c) ** 2).sum() / (2 * sigma**2) for c in cands])
        wts = np.exp(logit - logsumexp(logit))
        out[b, :, h, w] = sum(wt * c[:, r, r] for wt, c in zip(wts, cands))
    return out


def _naive_nearest(data, x, P, equivariant):
    """The sigma -> 0 limit: the centre of the nearest window, averaged over exact ties."""
    data, x = np.asarray(data, np.float64), np.asarray(x, np.float64)
    out, r = np.zeros_like(x), P // 2
    for b, h, w, q, cands in _naive_windows(data, x, P, equivariant):
        d2 = np.array([((q - c) ** 2).sum() for c in cands])
        out[b, :, h, w] = np.mean([cands[i][:, r, r] for i in np.flatnonzero(d2 == d2.min())], axis=0)
    return out


def _images(n, shape, seed):
    return torch.rand(n, *shape, generator=_gen(seed), dtype=F64) * 2 - 1


DATA = _images(6, (1, 5, 5), 20)
QUERY = DATA[:2] + 0.3 * torch.randn(2, 1, 5, 5, generator=_gen(21), dtype=F64)


@pytest.mark.parametrize("equivariant", [True, False])
@pytest.mark.parametrize("sigma", [1e-3, 0.1, 0.5, 3.0, 100.0])
@pytest.mark.parametrize("chunk_size", [1 << 19, 7])
def test_local_denoiser_equals_naive(equivariant, sigma, chunk_size):
    """N = 6 images 1 x 5 x 5, P = 3; chunk_size = 7 streams the softmax over 22 chunks of windows."""
    D = LocalDenoiser(DATA, 3, equivariant=equivariant, chunk_size=chunk_size)
    out = D(QUERY, sigma)
    ref = _naive_local(DATA, QUERY, sigma, 3, equivariant)
    err = np.abs(out.numpy() - ref).max()
    print(f"equivariant={equivariant} sigma={sigma}: max error {err:.1e}")
    assert err < 1e-13


@pytest.mark.parametrize("equivariant", [True, False])
@pytest.mark.parametrize("sigma", [1e-3, 0.5, 100.0])
def test_local_denoiser_streams_training_images_that_do_not_fit(equivariant, sigma):
    """window_bytes below one image's windows: one training image per chunk, the softmax's running sums
    carried from chunk to chunk; nothing is cached, and the answer is the naive one."""
    D = LocalDenoiser(DATA, 3, equivariant=equivariant, window_bytes=1, chunk_size=5)
    out = D(QUERY, sigma)
    assert D._cache is None
    ref = _naive_local(DATA, QUERY, sigma, 3, equivariant)
    assert np.abs(out.numpy() - ref).max() < 1e-13
    whole = LocalDenoiser(DATA, 3, equivariant=equivariant)(QUERY, sigma)
    assert (out - whole).abs().max().item() < 1e-14


@pytest.mark.parametrize("equivariant", [True, False])
def test_local_denoiser_channels_and_rectangles(equivariant):
    """C = 2, H != W: the window holds both channels, the centre pixel has both."""
    data = _images(4, (2, 4, 5), 22)
    x = _images(2, (2, 4, 5), 23)
    for sigma in (0.05, 0.7):
        out = LocalDenoiser(data, 3, equivariant=equivariant)(x, sigma)
        assert np.abs(out.numpy() - _naive_local(data, x, sigma, 3, equivariant)).max() < 1e-13


@pytest.mark.parametrize("equivariant", [True, False])
@pytest.mark.parametrize("sigma", [1e-6, 1e-200])
@pytest.mark.parametrize("window_bytes", [1 << 28, 1])
def test_local_denoiser_small_sigma_is_the_nearest_window(equivariant, sigma, window_bytes):
    """One-hot on the nearest window; 1e-200: sigma^2 underflows to 0, still the limit, never NaN (also
    with the training images streamed one at a time)."""
    out = LocalDenoiser(DATA, 3, equivariant=equivariant, window_bytes=window_bytes)(QUERY, sigma)
    assert torch.isfinite(out).all()
    np.testing.assert_array_equal(out.numpy(), _naive_nearest(DATA, QUERY, 3, equivariant))


@pytest.mark.parametrize("sigma", [1e-3, 1e-200])
@pytest.mark.parametrize("window_bytes", [1 << 28, 1])
def test_local_denoiser_splits_exact_ties_evenly(sigma, window_bytes):
    """Ties between images, also when they sit in different chunks of training images."""
    data = torch.stack([torch.zeros(1, 3, 3), torch.ones(1, 3, 3)]).to(F64)
    x = torch.full((1, 1, 3, 3), 0.5, dtype=F64)  # equidistant from both images' windows everywhere
    assert torch.equal(LocalDenoiser(data, 3, equivariant=False, window_bytes=window_bytes)(x, sigma), x)
    out = LocalDenoiser(data, 3, equivariant=True, window_bytes=window_bytes)(x, sigma)
    np.testing.assert_array_equal(out.numpy(), _naive_nearest(data, x, 3, True))


def test_local_denoiser_large_sigma_is_the_mean_centre_pixel():
    """Uniform weights: the mean of all training pixels (equivariant), or of the pixel at p (not)."""
    big = 1e6
    eq = LocalDenoiser(DATA, 3, equivariant=True)(QUERY, big)
    pos = LocalDenoiser(DATA, 3, equivariant=False)(QUERY, big)
    assert torch.allclose(eq, DATA.mean().expand_as(eq), rtol=0, atol=1e-10)
    assert torch.allclose(pos, DATA.mean(0, keepdim=True).expand_as(pos), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("equivariant", [True, False])
def test_local_denoiser_dtypes(dtype, equivariant):
    """Any floating x and data: the answer has x's shape and dtype and is the float64 answer for the
    same (exactly converted) numbers, rounded once."""
    data, x = DATA.to(dtype), QUERY.to(dtype)
    D = LocalDenoiser(data, 3, equivariant=equivariant)
    out = D(x, 0.2)
    assert out.dtype == dtype and out.shape == x.shape
    ref = _naive_local(data.to(F64), x.to(F64), 0.2, 3, equivariant)
    tol = 1e-13 if dtype == F64 else torch.finfo(dtype).eps * np.abs(ref).max()  # round-off, or one rounding
    assert np.abs(out.to(F64).numpy() - ref).max() <= tol
    assert torch.equal(out, LocalDenoiser(data.to(F64), 3, equivariant=equivariant)(x.to(F64), 0.2).to(dtype))


def test_local_denoiser_integer_data():
    data = (torch.rand(3, 1, 4, 4, generator=_gen(24)) * 16).to(torch.uint8)
    D = LocalDenoiser(data, 3)
    x = data[:1].to(torch.float32) + 0.25
    assert np.abs(D(x, 1.0).to(F64).numpy() - _naive_local(data, x, 1.0, 3, True)).max() < 1e-5


def test_equivariant_denoiser_commutes_with_translations_in_the_interior():
    """Shift x one pixel right: in the interior (windows that meet neither border column nor the wrapped
    column) the output shifts with it in equivariant mode, and not in position-dependent mode."""
    data, x = _images(5, (1, 7, 9), 25), _images(1, (1, 7, 9), 26)
    shifted = torch.roll(x, 1, dims=-1)
    P, r, W = 3, 1, 9
    for equivariant in (True, False):
        D = LocalDenoiser(data, P, equivariant=equivariant)
        a, b = D(x, 0.3)[..., r:W - 2 - r + 1], D(shifted, 0.3)[..., r + 1:W - 1 - r + 1]
        gap = (a - b).abs().max().item()
        print(f"equivariant={equivariant}: max |D(shift x) - shift D(x)| in the interior = {gap:.1e}")
        if equivariant:
            assert gap < 1e-14
        else:
            assert gap > 1e-2  # the position-dependent denoiser is not equivariant: the test can fail


@pytest.mark.parametrize("shape", [(1, 4, 5), (2, 3, 3)])
@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0, 50.0])
def test_whole_image_windows_are_the_empirical_denoiser(shape, sigma):
    """equivariant=False with P >= 2 max(H, W) - 1 (zero padding): the window at p holds the whole image,
    so the local denoiser is EmpiricalDenoiser; larger P is capped (same answer); smaller P is not it."""
    data = _images(6, shape, 27)
    x = data[:3] + sigma * torch.randn(3, *shape, generator=_gen(28), dtype=F64)
    ref = EmpiricalDenoiser(data)(x, sigma)
    P = 2 * max(shape[1:]) - 1
    for p in (P, P + 4):
        out = LocalDenoiser(data, p, equivariant=False)(x, sigma)
        assert (out - ref).abs().max().item() < 1e-13
    if sigma == 0.3:  # a query far from the data, where the posterior is spread: a smaller window is not it
        far = _images(2, shape, 29)
        smaller = LocalDenoiser(data, P - 2, equivariant=False)(far, sigma)
        assert (smaller - EmpiricalDenoiser(data)(far, sigma)).abs().max().item() > 1e-3


def test_patch_size_schedule_and_per_sample_sigma():
    """A callable patch size: each sample uses the P of its own sigma, as if denoised alone."""
    schedule = lambda s: 3 if s < 1 else 5  # noqa: E731
    sigmas = torch.tensor([0.5, 2.0], dtype=F64)
    for equivariant in (True, False):
        out = LocalDenoiser(DATA, schedule, equivariant=equivariant)(QUERY, sigmas)
        for i, (s, P) in enumerate([(0.5, 3), (2.0, 5)]):
            one = LocalDenoiser(DATA, P, equivariant=equivariant)(QUERY[i:i + 1], s)
            assert torch.equal(out[i:i + 1], one)
            assert np.abs(one.numpy() - _naive_local(DATA, QUERY[i:i + 1], s, P, equivariant)).max() < 1e-13


def test_local_denoiser_bad_input():
    for bad in (4, 0, -1, True, 3.0, "3"):
        with pytest.raises(ValueError, match="odd integer >= 1"):
            LocalDenoiser(DATA, bad)
    with pytest.raises(ValueError, match="odd integer >= 1.*returned by patch_size for sigma = 0.5"):
        LocalDenoiser(DATA, lambda s: 4)(QUERY, 0.5)
    for bad_data in (DATA[:, 0], DATA[:0]):
        with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
            LocalDenoiser(bad_data, 3)
    nan_data = DATA.clone()
    nan_data[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="data contain NaN or inf"):
        LocalDenoiser(nan_data, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        LocalDenoiser(DATA, 3, chunk_size=0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="window_bytes must be a positive integer"):
            LocalDenoiser(DATA, 3, window_bytes=bad)
    D = LocalDenoiser(DATA, 3)
    for bad_query in (QUERY[..., :4], QUERY[0], QUERY[:0]):
        with pytest.raises(ValueError, match=r"shape \(batch, 1, 5, 5\)"):
            D(bad_query, 0.5)
    x = QUERY.clone()
    x[1, 0, 2, 2] = math.inf
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        D(x, 0.5)
    with pytest.raises(ValueError, match="floating-point"):
        D(QUERY.to(torch.long), 0.5)
    with pytest.raises(ValueError, match="sigma must be positive"):
        D(QUERY, 0.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        D(QUERY, torch.tensor([0.5, 0.0], dtype=F64))
    for bad in (-0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite and non-negative"):
            D(QUERY, bad)
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(2,\)"):
        D(QUERY, torch.ones(3))
    with pytest.raises(ValueError, match="output overflows torch.float16"):
        LocalDenoiser(DATA + 1e5, 3)(QUERY.to(torch.float16), 1.0)  # every pixel beyond float16


def test_registered_in_the_package():
    assert dg.LocalDenoiser is LocalDenoiser and "local" in dg.__all__ and "LocalDenoiser" in dg.__all__
    assert ":mod:`.local`" in dg.__doc__
    assert "LocalDenoiser" in repr(LocalDenoiser(DATA, 3))


def test_patch_size_schedule_picks_the_nearest_level_in_log_sigma():
    from diffusion_geometry.local import patch_size_schedule
    size = patch_size_schedule([10.0, 1.0, 0.1], [15, 9, 3])
    # geometric midpoints sqrt(10) and sqrt(0.1) split the levels; a tie goes to the larger level
    cases = {80.0: 15, 10.0: 15, 3.17: 15, 3.16: 9, 1.0: 9, 0.317: 9, 0.316: 3, 1e-6: 3}
    for sigma, P in cases.items():
        assert size(sigma) == P, sigma
    assert size(math.sqrt(10.0)) == 15 and size(math.sqrt(0.1)) == 9
    assert patch_size_schedule(torch.tensor([0.1, 10.0]), (3, 15))(2.0) == 15  # any order, tensors
    D = LocalDenoiser(DATA, size)
    assert torch.equal(D(QUERY, 0.05), LocalDenoiser(DATA, 3)(QUERY, 0.05))
    for bad_levels, bad_sizes in (([], []), ([1.0], [3, 5]), ([1.0, 1.0], [3, 5]), ([0.0], [3]),
                                  ([math.inf], [3]), ([-1.0], [3])):
        with pytest.raises(ValueError, match="level"):
            patch_size_schedule(bad_levels, bad_sizes)
    with pytest.raises(ValueError, match="odd integer >= 1"):
        patch_size_schedule([1.0], [4])
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive and finite"):
            size(bad)
