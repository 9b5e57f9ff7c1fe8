"""Data sets of the book, all scaled to [-1, 1] (the EDM convention), returned as float tensors.

* toy Gaussian mixtures in 1-D, 2-D and d dimensions (:class:`~diffusion_geometry.GaussianMixture`,
  so their denoisers are exact);
* small 2-D point sets (a ring, two moons, two unbalanced clusters) for pictures of basins of
  attraction (:func:`training_set_2d`, chapter 07);
* scikit-learn's handwritten digits, 1,797 images of 8x8 (bundled with scikit-learn);
* Fashion-MNIST, 70,000 images of 28x28 (Xiao et al. 2017), read from Debian's
  ``dataset-fashion-mnist`` files, a directory the user names, or -- only when asked and online -- a
  download whose decoded contents are checked against SHA-256 sums.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np
import torch

from .denoisers import GaussianMixture

__all__ = [
    "mixture_1d",
    "mixture_2d",
    "mixture_nd",
    "TRAINING_SETS_2D",
    "training_set_2d",
    "digits",
    "fashion_mnist",
    "FASHION_MNIST_DIRS",
    "FASHION_MNIST_CLASSES",
]


def mixture_1d(dtype: torch.dtype = torch.float64) -> GaussianMixture:
    """Three-component 1-D mixture: means -2, 0.5, 2.5; standard deviations 0.3, 0.2, 0.5."""
    means = torch.tensor([[-2.0], [0.5], [2.5]], dtype=dtype)
    return GaussianMixture(means, torch.tensor([0.3, 0.2, 0.5], dtype=dtype) ** 2, [0.3, 0.3, 0.4])


def mixture_2d(n_modes: int = 8, radius: float = 2.0, std: float = 0.15,
               dtype: torch.dtype = torch.float64) -> GaussianMixture:
    """``n_modes`` isotropic Gaussians evenly spaced on a circle of ``radius`` (the classic 2-D ring)."""
    if n_modes < 1 or radius < 0 or std < 0:
        raise ValueError("need n_modes >= 1, radius >= 0 and std >= 0")
    angle = torch.arange(n_modes, dtype=dtype) * (2 * math.pi / n_modes)
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    return GaussianMixture(means, torch.full((n_modes,), std**2, dtype=dtype))


def mixture_nd(dim: int, n_modes: int = 10, std: float = 0.2, *, rank: int | None = None,
               seed: int = 0, dtype: torch.dtype = torch.float64) -> GaussianMixture:
    """A mixture in ``dim`` dimensions with means drawn uniformly in [-1, 1]^d (data-like scale).

    ``rank=None``: isotropic components of standard deviation ``std``. ``rank=r``: low-rank plus
    isotropic covariances ``U U^T + (std/10)^2 I`` with ``U`` of ``r`` columns of norm ``std * sqrt(d/r)``,
    so that samples concentrate near r-dimensional affine pieces, as images do.
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n_modes, dim, generator=g, dtype=dtype) * 2 - 1)
    if rank is None:
        return GaussianMixture(means, torch.full((n_modes,), std**2, dtype=dtype))
    if not 1 <= rank <= dim:
        raise ValueError(f"rank must lie in [1, {dim}], got {rank}")
    U = torch.randn(n_modes, dim, rank, generator=g, dtype=dtype) * (std / math.sqrt(rank))
    return GaussianMixture.low_rank(means, U, (std / 10) ** 2)


TRAINING_SETS_2D = ("ring", "moons", "clusters")
"""Names accepted by :func:`training_set_2d`."""


def training_set_2d(name: str, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A small 2-D training set ``(n, 2)`` of scale about 2, for basin-of-attraction pictures.

    ``"ring"``: draws from the 8-mode ring mixture (:func:`mixture_2d`);
    ``"moons"``: scikit-learn's two interleaving half circles (noise 0.06), centred and scaled by 1.5;
    ``"clusters"``: an unbalanced pair of clusters, three quarters of the points around (-1, 0) and a
    quarter around (1.5, 0.5), standard deviation 0.35. Seeded by ``seed``; ``dtype`` float64 by
    default. Raises ``ValueError`` for an unknown ``name`` or ``n`` not a positive integer.
    """
    if name not in TRAINING_SETS_2D:
        raise ValueError(f"unknown training set {name!r}; choose one of {TRAINING_SETS_2D}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    if name == "ring":
        return mixture_2d(dtype=dtype).sample(n, generator=g)
    if name == "moons":
        from sklearn.datasets import make_moons

        pts, _ = make_moons(n, noise=0.06, random_state=seed)
        pts = torch.as_tensor(pts, dtype=dtype)
        return 1.5 * (pts - torch.tensor([0.5, 0.25], dtype=dtype))
    big = (3 * n + 3) // 4
    centres = torch.tensor([[-1.0, 0.0]] * big + [[1.5, 0.5]] * (n - big), dtype=dtype)
    return centres + 0.35 * torch.randn(n, 2, generator=g, dtype=dtype)


def digits(dtype: torch.dtype = torch.float32):
    """scikit-learn's 8x8 digits as ``(images (1797, 1, 8, 8) in [-1, 1], labels (1797,))``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=dtype)[:, None] / 8.0 - 1.0  # pixel values 0..16
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
"""Where Fashion-MNIST is looked for when no directory is given (Debian's ``dataset-fashion-mnist``)."""

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_FASHION_FILES = {
    # name: (file, sha256 of the decompressed IDX bytes)
    ("train", "images"): ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    ("train", "labels"): ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("test", "images"): ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_INSTALL_HINT = ("Fashion-MNIST was not found. Install it with `sudo apt-get install -y dataset-fashion-mnist` "
                 "(Debian/Ubuntu), pass root=DIR holding the four *-ubyte.gz files, set "
                 "DG_FASHION_MNIST_DIR=DIR, or call fashion_mnist(..., download=True) on a machine "
                 "with internet access.")


def _read_idx(raw: bytes, expect_sha: str, name: str) -> np.ndarray:
    if hashlib.sha256(raw).hexdigest() != expect_sha:
        raise ValueError(f"{name}: contents do not match the Fashion-MNIST checksum (corrupt or wrong file)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{name}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_dir(root) -> Path | None:
    candidates = [Path(root)] if root is not None else []
    if root is None and os.environ.get("DG_FASHION_MNIST_DIR"):
        candidates.append(Path(os.environ["DG_FASHION_MNIST_DIR"]))
    if root is None:
        candidates += list(FASHION_MNIST_DIRS)
    for c in candidates:
        if all((c / f).is_file() for f, _ in _FASHION_FILES.values()):
            return c
    if root is not None:
        raise FileNotFoundError(f"no Fashion-MNIST files in {root}. {_INSTALL_HINT}")
    return None


def fashion_mnist(split: str = "train", *, root=None, download: bool = False,
                  cache_dir=None, dtype: torch.dtype = torch.float32):
    """Fashion-MNIST as ``(images (N, 1, 28, 28) in [-1, 1], labels (N,))``.

    ``split`` is ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"`` (70,000, train first).
    Looks in ``root``, then ``$DG_FASHION_MNIST_DIR``, then Debian's install directory; with
    ``download=True`` and nothing found, downloads into ``cache_dir`` (default
    ``~/.cache/diffusion_geometry``). Decoded contents are always checked against SHA-256 sums.
    """
    if split == "all":
        a, la = fashion_mnist("train", root=root, download=download, cache_dir=cache_dir, dtype=dtype)
        b, lb = fashion_mnist("test", root=root, download=download, cache_dir=cache_dir, dtype=dtype)
        return torch.cat([a, b]), torch.cat([la, lb])
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    directory = _find_dir(root)
    if directory is None:
        if not download:
            raise FileNotFoundError(_INSTALL_HINT)
        directory = Path(cache_dir or Path.home() / ".cache" / "diffusion_geometry" / "fashion-mnist")
        directory.mkdir(parents=True, exist_ok=True)
        for fname, _ in _FASHION_FILES.values():
            if not (directory / fname).is_file():
                urllib.request.urlretrieve(_FASHION_URL + fname, directory / fname)
    arrays = {}
    for kind in ("images", "labels"):
        fname, sha = _FASHION_FILES[(split, kind)]
        with gzip.open(directory / fname, "rb") as fh:
            arrays[kind] = _read_idx(fh.read(), sha, str(directory / fname))
    images = torch.as_tensor(arrays["images"].copy()).to(dtype)[:, None] / 127.5 - 1.0
    labels = torch.as_tensor(arrays["labels"].astype(np.int64))
    return images, labels
