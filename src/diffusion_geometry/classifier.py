r"""The Fashion-MNIST feature classifier: a small CNN, its training loop, loading the shipped
weights, its 256-d penultimate features of 28x28 images, and the command that trained it.

Train the classifier (about 2-3 minutes on one CPU thread)::

    python -m diffusion_geometry.classifier --train --out PATH --epochs 3 --seed 0 --threads 1

:class:`FashionCNN` is three conv-BN-ReLU blocks, a 256-unit fully connected layer (the *features*)
and 10 logits; :func:`train_classifier` fits it to the 60,000 Fashion-MNIST training images (Xiao et
al. 2017). The book ships the result as ``fashion_classifier`` in ``weights/manifest.json``, with the
command above and its SHA-256, verified on load (:func:`load_classifier`, :func:`classifier`).

The features (:func:`features`, :func:`reference_features`) are the space in which
:mod:`diffusion_geometry.metrics` measures sample quality: Inception-v3 weights must be downloaded
and ImageNet features are a poor fit for 28x28 grey garments, so the book's Fréchet distance and
precision/recall use this classifier's features instead. :func:`prepare_images` and :func:`to_uint8`
bring images of any accepted form to the classifier's input and to the stored ``uint8`` format;
:func:`predict` gives the predicted classes.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLASSIFIER_NAME",
    "FEATURE_DIM",
    "FashionCNN",
    "train_classifier",
    "evaluate_accuracy",
    "load_classifier",
    "classifier",
    "prepare_images",
    "to_uint8",
    "features",
    "predict",
    "reference_features",
]

CLASSIFIER_NAME = "fashion_classifier"
"""Name of the shipped classifier in ``weights/manifest.json``."""

FEATURE_DIM = 256
"""Dimension of the penultimate features used for FD and precision/recall."""


# --------------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------------


class FashionCNN(nn.Module):
    """A small CNN for 28x28 grey images in [-1, 1]: three conv-BN-ReLU blocks (28 -> 14 -> 7),
    a ``feature_dim`` fully connected layer with ReLU (the *features*), then 10 logits.

    ``channels`` sets the widths of the three conv blocks. :meth:`features` returns the
    penultimate activations, :meth:`forward` the logits.
    """

    def __init__(self, channels=(16, 32, 64), feature_dim: int = FEATURE_DIM, n_classes: int = 10):
        super().__init__()
        if len(channels) != 3 or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be three positive widths, got {channels!r}")
        if feature_dim < 1 or n_classes < 2:
            raise ValueError("need feature_dim >= 1 and n_classes >= 2")
        c1, c2, c3 = (int(c) for c in channels)

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, c1), nn.MaxPool2d(2),       # 28 -> 14
            *block(c1, c2), nn.MaxPool2d(2),      # 14 -> 7
            *block(c2, c3),
            nn.Flatten(),
            nn.Linear(c3 * 7 * 7, feature_dim), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, feature_dim)`` of images ``(N, 1, 28, 28)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _model_config(model: FashionCNN) -> dict:
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    return {"arch": "FashionCNN", "channels": [c.out_channels for c in convs],
            "feature_dim": model.head.in_features, "n_classes": model.head.out_features}


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      *, batch_size: int = 1000) -> float:
    """Fraction of ``images`` whose arg-max logit equals ``labels`` (model put in eval mode)."""
    model.eval()
    correct = 0
    for lo in range(0, len(images), batch_size):
        logits = model(images[lo:lo + batch_size])
        correct += int((logits.argmax(1) == labels[lo:lo + batch_size]).sum())
    return correct / len(images)


def train_classifier(*, epochs: int = 3, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     channels=(16, 32, 64), threads: int | None = None, progress: bool = True,
                     data=None):
    """Train :class:`FashionCNN` on the 60,000 Fashion-MNIST training images; return ``(model, info)``.

    Adam with a cosine learning-rate decay, cross-entropy loss, no augmentation, seeded shuffles and
    initialisation (bit-for-bit repeatable for a fixed thread count). ``info`` holds the test
    accuracy on the 10,000 test images, the per-epoch mean training loss, the wall time and the
    settings. ``data`` = ``((train_x, train_y), (test_x, test_y))`` overrides Fashion-MNIST (tests).
    """
    from tqdm.auto import tqdm

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    if data is None:
        from .datasets import fashion_mnist

        data = (fashion_mnist("train"), fashion_mnist("test"))
    (x_train, y_train), (x_test, y_test) = data
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = FashionCNN(channels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    losses, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress)
        for step in bar:
            idx = perm[step * batch_size:(step + 1) * batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        losses.append(total / len(x_train))
    model.eval()
    info = {
        "test_accuracy": evaluate_accuracy(model, x_test, y_test),
        "train_loss_per_epoch": losses,
        "wall_time_s": time.perf_counter() - t0,
        "epochs": epochs, "steps": epochs * steps_per_epoch, "batch_size": batch_size, "lr": lr, "seed": seed,
        "channels": list(channels), "threads": torch.get_num_threads(),
        "n_train": len(x_train), "n_test": len(x_test),
    }
    return model, info


def load_classifier(path=None, *, sha256: str | None = None, device=None) -> FashionCNN:
    """The classifier from a checkpoint, in eval mode.

    With no ``path``: the shipped ``fashion_classifier``, whose file is verified against the SHA-256
    in ``weights/manifest.json`` (:func:`diffusion_geometry.checkpoints.pretrained_path`). With a
    ``path``: that file, verified against ``sha256`` when given.
    """
    from .checkpoints import load_checkpoint, manifest, pretrained_path

    if path is None:
        path = pretrained_path(CLASSIFIER_NAME)
        sha256 = manifest()[CLASSIFIER_NAME]["sha256"]
    ckpt = load_checkpoint(path, sha256=sha256)
    cfg = ckpt["config"]
    if cfg.get("arch") != "FashionCNN":
        raise ValueError(f"{path} is not a FashionCNN classifier checkpoint (config {cfg})")
    model = FashionCNN(cfg["channels"], cfg["feature_dim"], cfg["n_classes"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not match the config {cfg}: {err}") from None
    return model.eval().to(device if device is not None else "cpu")


@functools.lru_cache(maxsize=4)
def _cached_classifier(device: str) -> FashionCNN:
    return load_classifier(device=device)


def classifier(device=None) -> FashionCNN:
    """The shipped classifier (verified, eval mode), loaded once per device and cached."""
    return _cached_classifier(str(torch.device(device if device is not None else "cpu")))


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------


def prepare_images(images) -> torch.Tensor:
    """Images as a float32 tensor ``(N, 1, 28, 28)`` in [-1, 1].

    Accepts tensors or arrays of shape ``(N, 28, 28)`` or ``(N, 1, 28, 28)``: ``uint8`` values in
    0..255 are mapped to [-1, 1]; floating values are taken to be in [-1, 1] already and clipped to it
    (a sampler's output can overshoot slightly). Rejects other shapes, empty batches and NaN/inf.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor or a numpy array, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"images must have shape (N, 28, 28) or (N, 1, 28, 28), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (0..255) or floating point in [-1, 1], got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    return images.float().clamp(-1.0, 1.0)


def to_uint8(images) -> torch.Tensor:
    """Images quantised to ``uint8`` 0..255, shape ``(N, 1, 28, 28)``: ``round((x + 1) * 127.5)``
    after clipping to [-1, 1] (``uint8`` input is returned unchanged in value).

    This is how generated images are stored (:mod:`diffusion_geometry.generate`), and Fashion-MNIST's
    pixels are ``uint8``: compare sets after the same quantisation.
    """
    x = prepare_images(images)  # uint8 input maps to [-1, 1] and back exactly
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def features(images, *, model: nn.Module | None = None, batch_size: int = 1000, device=None) -> torch.Tensor:
    """Penultimate classifier features ``(N, 256)`` (float32, on the CPU) of ``images``.

    ``images``: see :func:`prepare_images`. ``model`` defaults to the shipped classifier. Batches
    of ``batch_size`` run on ``device`` (default: the images' device).
    """
    x = prepare_images(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = torch.device(device) if device is not None else x.device
    net = classifier(dev) if model is None else model.eval().to(dev)
    out = [net.features(x[lo:lo + batch_size].to(dev)).float().cpu() for lo in range(0, len(x), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def predict(images, *, model: nn.Module | None = None, batch_size: int = 1000, device=None) -> torch.Tensor:
    """The classifier's predicted labels ``(N,)`` (0..9, see ``datasets.FASHION_MNIST_CLASSES``)."""
    x = prepare_images(images)
    dev = torch.device(device) if device is not None else x.device
    net = classifier(dev) if model is None else model.eval().to(dev)
    return torch.cat([net(x[lo:lo + batch_size].to(dev)).argmax(1).cpu() for lo in range(0, len(x), batch_size)])


@functools.lru_cache(maxsize=4)
def _reference_features(split: str, device: str) -> torch.Tensor:
    from .datasets import fashion_mnist

    return features(fashion_mnist(split)[0], device=device)


def reference_features(split: str = "test", *, device=None) -> torch.Tensor:
    """Features of a whole Fashion-MNIST split (``"train"`` 60k, ``"test"`` 10k), computed once and
    cached. Do not modify the returned tensor in place."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _reference_features(split, str(torch.device(device if device is not None else "cpu")))



# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """``python -m diffusion_geometry.classifier --train --out PATH [--epochs --batch-size --lr
    --seed --threads]``: train :class:`FashionCNN` on Fashion-MNIST and save it with its command,
    settings and test accuracy. Bad values answer ``error: ...`` and exit status 2."""
    from . import cli

    parser = argparse.ArgumentParser(prog="python -m diffusion_geometry.classifier",
                                     description="Train the Fashion-MNIST feature classifier.")
    parser.add_argument("--train", action="store_true", help="train and save the classifier")
    parser.add_argument("--out", help="checkpoint path to write")
    parser.add_argument("--epochs", type=cli.positive_int, default=3)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--lr", type=cli.positive_float, default=2e-3)
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    parser.add_argument("--threads", type=cli.positive_int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not args.train:
        parser.error("nothing to do: give --train (and --out PATH)")
    if not args.out:
        parser.error("--train needs --out PATH")
    with cli.user_errors(parser, cli.USER_ERRORS + (OSError,)):  # bad values, missing data: "error: ..."
        return _main(args, argv)


def _main(args, argv) -> int:
    from .checkpoints import save_checkpoint

    model, info = train_classifier(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   seed=args.seed, threads=args.threads)
    command = "python -m diffusion_geometry.classifier " + " ".join(sys.argv[1:] if argv is None else argv)
    info["command"] = command
    sha = save_checkpoint(args.out, model, config=_model_config(model), meta=info)
    print(f"test accuracy {info['test_accuracy']:.4f}  wall time {info['wall_time_s']:.0f} s")
    print(f"wrote {args.out}  sha256 {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
