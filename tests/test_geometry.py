"""Geometry on constructed curves with known answers: a straight line, a planar circular arc."""
import math

import numpy as np
import pytest
import torch

from diffusion_geometry import geometry as geo

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

F64 = torch.float64


def _frame(d: int, k: int, seed: int) -> torch.Tensor:
    """k orthonormal vectors in R^d as rows (k, d)."""
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=F64))
    return q.T


def _line(T=11, batch=3, d=7):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(batch, d, generator=g, dtype=F64), torch.randn(batch, d, generator=g, dtype=F64)
    t = torch.linspace(0, 1, T, dtype=F64) ** 2  # uneven spacing along the line
    return a[None] + t[:, None, None] * (b - a)[None], a, b, t


def _arc(R=3.0, theta=1.1, T=41, d=6, seed=2):
    """A circular arc of radius R from angle -theta to +theta in a random 2-plane through an offset c.

    In plane coordinates the point at angle phi is (R cos phi, R sin phi); the chord joins the end
    points, runs along the second plane axis, and lies at first coordinate R cos theta.
    """
    phi = torch.linspace(-theta, theta, T, dtype=F64)
    E = _frame(d, 2, seed)
    c = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    pts = c + R * phi.cos()[:, None] * E[0] + R * phi.sin()[:, None] * E[1]  # (T, d)
    return pts[:, None, :], phi, R, theta


def test_straight_line():
    p, a, b, t = _line()
    assert geo.chord_deviation(p).abs().max() < 1e-14
    assert torch.allclose(geo.chord_length(p), (b - a).norm(dim=1), rtol=1e-14)
    assert torch.allclose(geo.distance_to_end(p), (1 - t)[:, None] * (b - a).norm(dim=1)[None], atol=1e-13)
    explained, rel = geo.trajectory_pca(p, n_components=1)
    assert explained.shape == (3, 7)
    assert torch.allclose(explained[:, 0], torch.ones(3, dtype=F64), atol=1e-14)
    assert rel.shape == (11, 3) and rel.max() < 1e-14
    box = geo.boomerang_projection(p)
    assert box.shape == (11, 3, 3)
    assert box[..., 1:].abs().max() < 1e-13
    assert torch.allclose(box[..., 0], -(1 - t)[:, None] * (b - a).norm(dim=1)[None], atol=1e-13)


def test_planar_arc_deviation_is_the_sagitta_profile():
    p, phi, R, theta = _arc()
    dev = geo.chord_deviation(p)[:, 0]
    # distance of (R cos phi, R sin phi) from the chord {first coordinate = R cos theta}
    expect = R * (phi.cos() - math.cos(theta))
    assert torch.allclose(dev, expect, atol=1e-13)
    # the maximum is the sagitta R (1 - cos theta), reached at the middle of the arc
    assert math.isclose(dev.max().item(), R * (1 - math.cos(theta)), rel_tol=1e-13)
    assert dev.argmax().item() == len(phi) // 2
    assert math.isclose(geo.chord_length(p).item(), 2 * R * math.sin(theta), rel_tol=1e-13)
    # relative to the chord: sagitta / chord = (1 - cos theta) / (2 sin theta) = tan(theta / 2) / 2
    assert math.isclose(geo.relative_chord_deviation(p).item(), math.tan(theta / 2) / 2, rel_tol=1e-13)


def test_planar_arc_pca_and_boomerang():
    p, phi, R, theta = _arc()
    explained, rel = geo.trajectory_pca(p, n_components=2)
    assert explained[0, 0] < 0.999  # one component is not enough for a bent curve
    assert torch.allclose(explained[0, 1:], torch.ones(explained.shape[1] - 1, dtype=F64), atol=1e-13)
    assert rel.max() < 1e-13
    box = geo.boomerang_projection(p)[:, 0]  # (T, 3)
    expect = torch.stack([R * (phi.sin() - math.sin(theta)), R * (phi.cos() - math.cos(theta)),
                          torch.zeros_like(phi)], 1)
    assert torch.allclose(box, expect, atol=1e-12)
    assert box[-1].abs().max() < 1e-13  # every trajectory ends at the origin


def test_boomerang_of_a_curve_in_three_dimensions_keeps_all_distances():
    """For a curve inside a 3-D affine subspace the projection is an isometry of relative positions."""
    g = torch.Generator().manual_seed(3)
    E = _frame(9, 3, 4)
    t = torch.linspace(0, 1, 25, dtype=F64)
    coef = torch.stack([10 * t, torch.sin(3 * t), 0.3 * t**2 * (1 - t)], 1)  # (T, 3)
    p = (coef @ E + torch.randn(9, generator=g, dtype=F64))[:, None]
    box = geo.boomerang_projection(p)[:, 0]
    d_box = torch.cdist(box, box)
    d_pts = torch.cdist(p[:, 0], p[:, 0])
    assert torch.allclose(d_box, d_pts, atol=1e-11)
    # the largest excursion of each of the two transverse coordinates is positive (sign convention)
    for j in (1, 2):
        assert box[box[:, j].abs().argmax(), j] > 0


def test_trajectory_pca_matches_numpy():
    x = torch.randn(15, 4, 2, 3, generator=torch.Generator().manual_seed(5), dtype=F64).cumsum(0)
    explained, rel = geo.trajectory_pca(x, n_components=2)
    assert explained.shape == (4, 6) and rel.shape == (15, 4)
    for b in range(4):
        pts = x[:, b].reshape(15, -1).numpy()
        mu = pts.mean(0)
        _, S, Vt = np.linalg.svd(pts - mu, full_matrices=False)
        assert np.allclose(explained[b].numpy(), np.cumsum(S**2) / np.sum(S**2), atol=1e-13)
        proj = mu + (pts - mu) @ Vt[:2].T @ Vt[:2]
        assert np.allclose(rel[:, b].numpy(), np.linalg.norm(pts - proj, axis=1) / np.linalg.norm(pts, axis=1),
                           atol=1e-12)
    assert (explained.diff(dim=1) >= -1e-15).all()  # cumulative


def test_cosine_to_end_on_known_vectors():
    end = torch.tensor([[1.0, 1.0, 0.0]], dtype=F64)
    points = torch.tensor([[[3.0, 1.0, 0.0]], [[1.0, 4.0, 0.0]], [[1.0, 1.0, 0.0]]], dtype=F64)  # (3, 1, 3)
    # x - end = (2,0,0), (0,3,0), (0,0,0)
    dirs = torch.tensor([[[5.0, 0.0, 0.0]], [[0.0, 0.0, 2.0]]], dtype=F64)
    cos = geo.cosine_to_end(points, dirs)
    assert cos.shape == (2, 1)
    assert torch.allclose(cos[:, 0], torch.tensor([1.0, 0.0], dtype=F64), atol=1e-15)
    dirs = torch.tensor([[[-1.0, 0.0, 0.0]], [[0.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]], dtype=F64)
    cos = geo.cosine_to_end(points, dirs)
    assert torch.allclose(cos[:, 0], torch.tensor([-1.0, 1 / math.sqrt(2), 0.0], dtype=F64), atol=1e-15)
    assert torch.isfinite(cos).all()  # the point at the end gives 0, not NaN
    # an explicit end point
    cos = geo.cosine_to_end(points, dirs, end=torch.zeros(1, 3, dtype=F64))
    expect = [-3 / math.sqrt(10), 4 / math.sqrt(17) / math.sqrt(2), 1 / math.sqrt(2)]
    assert torch.allclose(cos[:, 0], torch.tensor(expect, dtype=F64), atol=1e-15)


def test_norms_on_image_shapes():
    x = torch.randn(4, 2, 1, 3, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    n = geo.norms(x)
    assert n.shape == (4, 2)
    assert torch.allclose(n, (x**2).sum((2, 3, 4)).sqrt(), rtol=1e-15)
    assert torch.allclose(geo.norms(torch.full((1, 1, 9, 16), 2.0, dtype=F64)), torch.tensor([[24.0]], dtype=F64))


def test_float32_and_device_are_preserved():
    p = _line()[0].float()
    for out in (geo.norms(p), geo.chord_deviation(p), geo.distance_to_end(p), geo.boomerang_projection(p),
                geo.trajectory_pca(p)[0], geo.trajectory_pca(p)[1]):
        assert out.dtype == torch.float32 and out.device == p.device


# -- bad input: one test per rule ------------------------------------------------------------------


@pytest.mark.parametrize("fn", [geo.norms, geo.chord_deviation, geo.chord_length, geo.distance_to_end,
                                geo.trajectory_pca, geo.boomerang_projection, geo.relative_chord_deviation])
def test_points_must_be_T_batch_features(fn):
    with pytest.raises(ValueError, match=r"must have shape \(T, batch, ...\)"):
        fn(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"must have shape \(T, batch, ...\)"):
        fn(np.zeros((5, 3, 2)))


@pytest.mark.parametrize("fn", [geo.chord_deviation, geo.chord_length, geo.distance_to_end,
                                geo.trajectory_pca, geo.boomerang_projection])
def test_needs_two_points(fn):
    with pytest.raises(ValueError, match="at least 2 points"):
        fn(torch.zeros(1, 3, 2))


def test_zero_chord_is_rejected():
    p = torch.zeros(4, 2, 3, dtype=F64)
    p[1] = 1.0
    with pytest.raises(ValueError, match="zero chord length"):
        geo.chord_deviation(p)


def test_cosine_shape_mismatch():
    p = torch.zeros(4, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match="do not match points"):
        geo.cosine_to_end(p, torch.zeros(5, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="do not match points"):
        geo.cosine_to_end(p, torch.zeros(3, 2, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"directions must have shape \(T, batch, ...\)"):
        geo.cosine_to_end(p, torch.zeros(3, 2))


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_pca_bad_n_components(k):
    with pytest.raises(ValueError, match="n_components must be a positive integer"):
        geo.trajectory_pca(torch.randn(5, 2, 3), n_components=k)
