"""dg.meanshift.basins: the basins of attraction behind chapter 07's figure, against independent truth
(the symmetry of two points, the closed-form modes of a two-point KDE, Voronoi cells at small sigma, a
naive float64 KDE log-density)."""
import numpy as np
import pytest
import torch

from diffusion_geometry import meanshift as ms
from diffusion_geometry.datasets import training_set_2d

TWO = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):  # tests/conftest.py: tiny tensors
    yield


def _two_point_mode(sigma):
    """The positive mode of p_sigma for data at (+-1, 0): x = tanh(x / sigma^2) (fixed point, float64);
    0 when sigma >= 1 (the two Gaussians merge into one mode)."""
    if sigma >= 1:
        return 0.0
    x = 1.0
    for _ in range(10_000):
        x = np.tanh(x / sigma**2)
    return x


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_two_point_basins_are_split_by_the_bisector(sigma):
    """Two points: the ODE keeps the sign of x_1 (the line x_1 = 0 is invariant by symmetry), so the
    basin boundary is the bisector at every sigma. An even resolution puts no grid point on it."""
    b = ms.basins(TWO, sigma, resolution=10, n_steps=12)
    want = np.broadcast_to((b.gx.numpy() > 0).astype(int), (10, 10))
    print("sigma", sigma, "grid points on the wrong side:", int((b.annealed.numpy() != want).sum()))
    np.testing.assert_array_equal(b.annealed.numpy(), want)
    assert b.n_basins == 2 and b.annealed.dtype == torch.int64 and b.annealed.shape == (10, 10)


@pytest.mark.parametrize("sigma", [0.4, 0.7, 1.5])
def test_two_point_modes_match_the_closed_form(sigma):
    b = ms.basins(TWO, sigma, resolution=8, n_steps=4)
    xstar = _two_point_mode(sigma)
    got = np.sort(b.modes[:, 0].numpy())
    want = np.array([-xstar, xstar]) if xstar > 0 else np.array([0.0])
    print("sigma", sigma, "modes", got, "closed form", want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(b.modes[:, 1].numpy(), 0.0, atol=1e-6)
    if xstar > 0:  # two modes: fixed-bandwidth mean shift also splits at the bisector
        np.testing.assert_array_equal(b.fixed.numpy(), np.broadcast_to((b.gx.numpy() > 0).astype(int), (8, 8)))
    else:
        assert len(np.unique(b.fixed.numpy())) == 1


def test_small_sigma_basins_are_voronoi_cells_and_each_point_keeps_its_own():
    y = training_set_2d("clusters", 8, seed=0)
    b = ms.basins(y, 0.02, resolution=20, n_steps=10)
    X, Y = np.meshgrid(b.gx.numpy(), b.gy.numpy(), indexing="xy")
    grid = np.stack([X, Y], -1)
    d = ((grid[:, :, None, :] - y.numpy()[None, None]) ** 2).sum(-1)
    nearest = d.argmin(-1)
    agree = (b.annealed.numpy() == nearest).mean()
    print("fraction of the grid in the Voronoi cell's basin:", agree)
    assert agree >= 0.99
    # a point started next to a training point (the grid point nearest it) lands on that point
    for i in range(8):
        r, c = np.unravel_index(d[:, :, i].argmin(), d.shape[:2])
        assert b.annealed[r, c] == i


def test_log_prob_is_the_kde_log_density_on_the_grid():
    y = training_set_2d("ring", 5, seed=1)
    sigma = 0.4
    b = ms.basins(y, sigma, resolution=7, n_steps=4, margin=0.5)
    yn = y.numpy()
    lo, hi = yn.min(0) - 0.5, yn.max(0) + 0.5
    np.testing.assert_allclose(b.gx.numpy(), np.linspace(lo[0], hi[0], 7), rtol=0, atol=1e-15)
    np.testing.assert_allclose(b.gy.numpy(), np.linspace(lo[1], hi[1], 7), rtol=0, atol=1e-15)
    X, Y = np.meshgrid(b.gx.numpy(), b.gy.numpy(), indexing="xy")
    q = np.stack([X.ravel(), Y.ravel()], 1)
    e = -((q[:, None] - yn[None]) ** 2).sum(-1) / (2 * sigma**2)
    m = e.max(1)
    naive = m + np.log(np.exp(e - m[:, None]).sum(1)) - np.log(5) - np.log(2 * np.pi * sigma**2)
    np.testing.assert_allclose(b.log_prob.numpy().ravel(), naive, rtol=1e-12)
    assert b.sigma == sigma and torch.equal(b.points, y)


def test_float32_points_keep_their_dtype():
    b = ms.basins(TWO.float(), 0.5, resolution=6, n_steps=4)
    assert b.gx.dtype == torch.float32 and b.log_prob.dtype == torch.float32 and b.fixed.dtype == torch.int64
    np.testing.assert_array_equal(b.annealed.numpy(), np.broadcast_to((b.gx.numpy() > 0).astype(int), (6, 6)))


@pytest.mark.parametrize("args, kwargs, err, match", [
    ((TWO[:, :1], 0.5), {}, ValueError, r"\(N, 2\)"),
    ((TWO[:0], 0.5), {}, ValueError, r"\(N, 2\)"),
    ((TWO.long(), 0.5), {}, ValueError, "floating"),
    (([[0.0, 1.0]], 0.5), {}, ValueError, r"\(N, 2\)"),
    ((torch.tensor([[0.0, float("nan")]]), 0.5), {}, ValueError, "NaN"),
    ((TWO, 0.004), {}, ValueError, "sigma"),
    ((TWO, float("inf")), {}, ValueError, "sigma"),
    ((TWO, "big"), {}, TypeError, "number"),
    ((TWO, True), {}, TypeError, "number"),
    ((TWO, 0.5), {"resolution": 1}, ValueError, "resolution"),
    ((TWO, 0.5), {"n_steps": 1.5}, ValueError, "n_steps"),
    ((TWO, 0.5), {"margin": -1.0}, ValueError, "margin"),
])
def test_basins_rejects_bad_input(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        ms.basins(*args, **kwargs)


def test_plane_grid_orders_points_row_by_row():
    gx, gy, grid = ms.plane_grid(TWO, 3, margin=0.5)
    np.testing.assert_allclose(gx.numpy(), [-1.5, 0.0, 1.5])
    np.testing.assert_allclose(gy.numpy(), [-0.5, 0.0, 0.5])
    for i in range(3):
        for j in range(3):
            assert grid[i * 3 + j].tolist() == [gx[j].item(), gy[i].item()]
    with pytest.raises(ValueError, match="resolution"):
        ms.plane_grid(TWO, True)
