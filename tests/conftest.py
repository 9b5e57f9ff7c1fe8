"""Shared fixtures of the unit tests."""
import pytest
import torch

import diffusion_geometry as dg


FASHION_DIR = dg.datasets._find_dir(None)  # the loader's default search; None when the files are absent
FASHION_REASON = "Fashion-MNIST is not installed (`sudo apt-get install -y dataset-fashion-mnist`; `make data` does it)"


@pytest.fixture(scope="session")
def fashion_train_or_none():
    """The Fashion-MNIST training images (60000, 1, 28, 28), or None when the files are absent."""
    if FASHION_DIR is None:
        return None
    torch.manual_seed(0)
    return dg.datasets.fashion_mnist("train")[0]


@pytest.fixture(scope="session")
def fashion_train(fashion_train_or_none):
    if fashion_train_or_none is None:
        pytest.skip(FASHION_REASON)
    return fashion_train_or_none


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny tensors: thread-pool hand-offs cost more than they save
    there, badly so on a shared 2-core machine. Restores the previous setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def close_figures():
    """Close every matplotlib figure the test opened (the plotting test modules use it)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
