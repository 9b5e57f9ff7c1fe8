"""Data sets: shapes, ranges, labels; Fashion-MNIST lookup, checksum and error messages."""
import gzip
import shutil

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import datasets

F64 = torch.float64
FASHION_DIR = datasets._find_dir(None)  # where the loader finds the files by default, or None
FASHION_SKIP = pytest.mark.skipif(
    FASHION_DIR is None,
    reason="Fashion-MNIST is not installed (`sudo apt-get install -y dataset-fashion-mnist`; `make data` does it)",
)


# -- toy mixtures -----------------------------------------------------------------------------------


def test_mixture_1d():
    gm = datasets.mixture_1d()
    assert isinstance(gm, dg.GaussianMixture) and gm.means.shape == (3, 1) and gm.dim == 1
    assert torch.allclose(gm.means[:, 0], torch.tensor([-2.0, 0.5, 2.5], dtype=F64))
    assert torch.allclose(gm.covariances.sqrt(), torch.tensor([0.3, 0.2, 0.5], dtype=F64))
    assert torch.allclose(gm.weights.sum(), torch.tensor(1.0, dtype=F64))


def test_mixture_2d_is_a_ring():
    gm = datasets.mixture_2d(n_modes=6, radius=3.0, std=0.1)
    assert gm.means.shape == (6, 2)
    assert torch.allclose(gm.means.norm(dim=1), torch.full((6,), 3.0, dtype=F64))
    angles = torch.atan2(gm.means[:, 1], gm.means[:, 0]).remainder(2 * torch.pi).sort().values
    assert torch.allclose(angles.diff(), torch.full((5,), 2 * torch.pi / 6, dtype=F64), atol=1e-14)
    assert torch.allclose(gm.covariances, torch.full((6,), 0.01, dtype=F64))


def test_mixture_nd_isotropic_and_low_rank():
    gm = datasets.mixture_nd(20, n_modes=4, std=0.3, seed=7)
    assert gm.means.shape == (4, 20) and gm.kind == "iso"
    assert gm.means.abs().max() <= 1
    assert torch.equal(gm.means, datasets.mixture_nd(20, n_modes=4, std=0.3, seed=7).means)  # seeded
    lr = datasets.mixture_nd(20, n_modes=4, std=0.3, rank=3, seed=7)
    assert lr.kind == "full" and lr.covariances.shape == (4, 20, 20)
    evals = torch.linalg.eigvalsh(lr.covariances)  # ascending: 17 at the floor, 3 above it
    assert torch.allclose(evals[:, :17], torch.full((4, 17), 0.03**2, dtype=F64), rtol=1e-8)
    assert (evals[:, 17:] > 2 * 0.03**2).all()


def test_mixture_bad_input():
    with pytest.raises(ValueError, match="need n_modes >= 1"):
        datasets.mixture_2d(n_modes=0)
    with pytest.raises(ValueError, match="need n_modes >= 1"):
        datasets.mixture_2d(std=-1.0)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        datasets.mixture_nd(0)
    with pytest.raises(ValueError, match=r"rank must lie in \[1, 5\]"):
        datasets.mixture_nd(5, rank=6)


# -- small 2-D training sets ------------------------------------------------------------------------


@pytest.mark.parametrize("name", datasets.TRAINING_SETS_2D)
def test_training_sets_2d(name):
    a = datasets.training_set_2d(name, 11, seed=3)
    b = datasets.training_set_2d(name, 11, seed=3)
    assert a.shape == (11, 2) and a.dtype == torch.float64
    assert torch.equal(a, b)  # seeded
    assert a.abs().max() < 4.0  # scale about 2
    assert not torch.equal(a, datasets.training_set_2d(name, 11, seed=4))


def test_training_set_clusters_is_unbalanced():
    y = datasets.training_set_2d("clusters", 8)
    left = (y[:, 0] < 0.25).sum().item()
    assert left == 6


def test_training_set_errors():
    with pytest.raises(ValueError, match="unknown training set"):
        datasets.training_set_2d("spiral", 5)
    with pytest.raises(ValueError, match="positive integer"):
        datasets.training_set_2d("ring", 0)


# -- digits -----------------------------------------------------------------------------------------


def test_digits():
    images, labels = datasets.digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.long
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert set(labels.tolist()) == set(range(10))
    counts = torch.bincount(labels)
    assert counts.sum() == 1797 and counts.min() >= 170  # about 180 per class
    assert datasets.digits(dtype=F64)[0].dtype == F64


# -- Fashion-MNIST ----------------------------------------------------------------------------------


@FASHION_SKIP
def test_fashion_train(fashion_train):
    assert fashion_train.shape == (60_000, 1, 28, 28) and fashion_train.dtype == torch.float32
    assert fashion_train.min().item() == -1.0 and fashion_train.max().item() == 1.0
    # pixels are k/127.5 - 1 for integers k in 0..255
    k = (fashion_train[:100] + 1) * 127.5
    assert torch.allclose(k, k.round(), atol=1e-4)


@FASHION_SKIP
def test_fashion_labels_and_splits():
    _, train_labels = datasets.fashion_mnist("train")
    test_images, test_labels = datasets.fashion_mnist("test")
    assert test_images.shape == (10_000, 1, 28, 28)
    assert torch.equal(torch.bincount(train_labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test_labels), torch.full((10,), 1000))
    assert test_images.min().item() == -1.0 and test_images.max().item() == 1.0
    assert len(datasets.FASHION_MNIST_CLASSES) == 10


@FASHION_SKIP
def test_fashion_all_is_train_then_test(fashion_train):
    images, labels = datasets.fashion_mnist("all")
    assert images.shape == (70_000, 1, 28, 28) and labels.shape == (70_000,)
    assert torch.equal(images[:60_000], fashion_train)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 7000))


@FASHION_SKIP
def test_fashion_from_a_named_directory_and_env(tmp_path, monkeypatch):
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
              "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / f).symlink_to(FASHION_DIR / f)
    ref, ref_labels = datasets.fashion_mnist("test")
    images, labels = datasets.fashion_mnist("test", root=tmp_path, dtype=F64)
    assert images.dtype == F64 and torch.allclose(images.float(), ref, rtol=0, atol=1e-6)
    assert torch.equal(labels, ref_labels)
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", ())
    monkeypatch.setenv("DG_FASHION_MNIST_DIR", str(tmp_path))
    assert torch.equal(datasets.fashion_mnist("test")[1], ref_labels)


@FASHION_SKIP
def test_fashion_corrupt_file_fails_the_checksum(tmp_path):
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (tmp_path / f).symlink_to(FASHION_DIR / f)
    with gzip.open(FASHION_DIR / "t10k-labels-idx1-ubyte.gz", "rb") as fh:
        raw = bytearray(fh.read())
    raw[5000] ^= 0x01  # one flipped bit in one label; the gzip container itself stays valid
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes(raw))
    with pytest.raises(ValueError, match="do not match the Fashion-MNIST checksum"):
        datasets.fashion_mnist("test", root=tmp_path)
    # an untouched copy of the same file loads
    shutil.copy(FASHION_DIR / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz")
    assert datasets.fashion_mnist("test", root=tmp_path)[1].shape == (10_000,)


def test_fashion_missing_directory_names_the_install_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y dataset-fashion-mnist"):
        datasets.fashion_mnist("train", root=tmp_path / "nowhere")
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (tmp_path / "absent",))
    monkeypatch.delenv("DG_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"sudo apt-get install -y dataset-fashion-mnist"):
        datasets.fashion_mnist("test")


def test_fashion_partial_directory_is_missing(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no Fashion-MNIST files in"):
        datasets.fashion_mnist("train", root=tmp_path)


def test_fashion_bad_split():
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'all'"):
        datasets.fashion_mnist("validation")
