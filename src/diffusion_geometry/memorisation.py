r"""Memorisation and generalisation: one denoiser recipe trained on nested, disjoint subsets of a data set.

The minimiser of the EDM loss on a training set :math:`\{y_i\}_{i=1}^N` is its optimal denoiser
:math:`D^*` (:class:`~diffusion_geometry.EmpiricalDenoiser`), whose probability-flow ODE ends on a
training point: a network that reaches the minimum copies its data. Whether it gets there depends on
:math:`N`, on the network and on how long it trains:

* Kadkhodaie, Guth, Simoncelli & Mallat (2024, arXiv 2310.02557, ICLR) train the same network on two
  *disjoint* subsets of size :math:`N`. For small :math:`N` each copies its own training images, so the
  two generate different images from the same noise; for large :math:`N` neither copies and the two
  generate nearly the *same* image -- the network's output no longer depends on which images it saw.
* Bonnaire, Urfin, Biroli & Mézard (2025, arXiv 2505.17638) show that memorisation sets in after a
  training time that grows linearly with :math:`N`, while good samples appear after a time that does
  not depend on :math:`N`: early stopping generalises, and the window widens with the data set.

This module makes the training sets and the networks of that experiment. :func:`disjoint_subsets`
draws, for each size :math:`N`, two nested index sets ``A_N`` and ``B_N`` (``A_N`` the first
:math:`N` of one seeded permutation, ``B_N`` the last :math:`N`), disjoint whenever
:math:`2N` does not exceed the data set. :func:`train_family` trains :data:`CONFIG` on every subset
with one recipe, keeping the EMA weights at the steps :data:`SNAPSHOTS`, and :func:`load_family` returns
the shipped family (``weights/digits_subsets.pt``), made by::

    python -m diffusion_geometry.memorisation --out src/diffusion_geometry/weights/digits_subsets.pt --threads 1

(``--halves A`` and ``--halves B`` in two processes sharing ``--work-dir`` train the halves side by
side; whichever call finds every member trained writes the bundle). Chapter 13 of the book measures the family.
"""
from __future__ import annotations

import argparse
import operator
import time
from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_checkpoint, pretrained_path, save_checkpoint
from .networks import build_model, count_parameters

__all__ = ["SIZES", "HALVES", "SNAPSHOTS", "CONFIG", "RECIPE", "SUBSET_SEED", "disjoint_subsets", "member_name",
           "train_family", "SubsetFamily", "load_family", "main"]

SIZES = (4, 16, 64, 256, 898)
"""Training-set sizes N of the shipped family: a few, tens, hundreds, and half of the 1,797 digits."""
HALVES = ("A", "B")
"""The two disjoint subsets of each size."""
SNAPSHOTS = (750, 1500, 3000, 6000)
"""Optimiser steps at which the EMA weights are kept (the last is the end of training)."""
CONFIG = {"kind": "unet", "in_channels": 1, "image_size": 8, "channels": [8, 16], "blocks": 1,
          "emb_dim": 32, "groups": 4, "sigma_data": 0.5}
"""The network of every member: a two-level U-Net of 41,257 parameters."""
RECIPE = {"batch_size": 128, "lr": 2e-3, "warmup": 200, "ema_decay": 0.999, "p_uniform": 0.1}
"""The training settings shared by every member (:func:`diffusion_geometry.training.train`)."""
_SEEDS = {"A": 0, "B": 1}  # initial weights and training noise differ between the halves


def disjoint_subsets(n_data: int, size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(A, B)`` of two disjoint subsets of ``size`` points out of ``n_data``.

    ``A`` is the first ``size`` entries of ``torch.randperm(n_data)`` drawn with ``seed``, ``B`` the last
    ``size``: subsets of one seed are nested (``A`` of a smaller size lies inside ``A`` of a larger one).
    Raises ``ValueError`` unless ``1 <= size`` and ``2 * size <= n_data``.
    """
    for name, v in (("n_data", n_data), ("size", size), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if not (1 <= size and 2 * size <= n_data):
        raise ValueError(f"two disjoint subsets of size {size} need 1 <= size <= n_data / 2 = {n_data / 2:g}")
    perm = torch.randperm(n_data, generator=torch.Generator().manual_seed(seed))
    return perm[:size], perm[n_data - size:]


def member_name(size: int, half: str, step: int) -> str:
    """The key of one member in a family's bundle, e.g. ``"n0064_A_s3000"``."""
    return f"n{size:04d}_{half}_s{step}"


def _train_member(data, size, half, work: Path, *, sizes_seed: int, progress: bool) -> None:
    from .training import train

    idx = disjoint_subsets(data.shape[0], size, seed=sizes_seed)[HALVES.index(half)]
    model = build_model(CONFIG, seed=_SEEDS[half])
    for step in SNAPSHOTS:
        out = work / f"{member_name(size, half, step)}.pt"
        if out.is_file():
            continue
        t0 = time.perf_counter()
        ema, hist = train(model, data[idx], steps=SNAPSHOTS[-1], stop_at=step, seed=_SEEDS[half], **RECIPE,
                          state_path=work / f"n{size:04d}_{half}.state", save_every=250, progress=progress)
        save_checkpoint(out, ema, config=CONFIG, meta={"size": size, "half": half, "step": step,
                                                        "seconds": time.perf_counter() - t0,
                                                        "last_loss": hist["loss"][-1]})


def train_family(data: torch.Tensor, work_dir, *, halves=HALVES, seed: int = 0, progress: bool = False) -> dict:
    """Train :data:`CONFIG` with :data:`RECIPE` on both subsets of every size in :data:`SIZES`.

    ``data`` is ``(n_data, 1, 8, 8)`` (the digits in [-1, 1]); ``seed`` seeds the subsets
    (:func:`disjoint_subsets`). Every member's snapshots go to ``work_dir`` as checkpoints, and its
    training state too, so an interrupted run resumes where it stopped and finished members are skipped.
    Returns ``{member_name: state_dict}`` when every member of every half exists in ``work_dir``, else ``{}``.
    Raises ``ValueError`` for data of another shape, halves outside :data:`HALVES`, or a size that does not fit
    twice into the data (:func:`disjoint_subsets`).
    """
    shape = (CONFIG["in_channels"], CONFIG["image_size"], CONFIG["image_size"])
    if not isinstance(data, torch.Tensor) or data.ndim != 4 or tuple(data.shape[1:]) != shape:
        raise ValueError(f"data must be a tensor (n_data, {', '.join(map(str, shape))}), got "
                         f"{tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__}")
    if not halves or any(h not in HALVES for h in halves):
        raise ValueError(f"halves must be a non-empty sequence of {HALVES}, got {halves!r}")
    for size in SIZES:   # every subset before any training
        disjoint_subsets(data.shape[0], size, seed=seed)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        for half in halves:
            _train_member(data, size, half, work, sizes_seed=seed, progress=progress)
    names = [member_name(n, h, s) for n in SIZES for h in HALVES for s in SNAPSHOTS]
    if not all((work / f"{name}.pt").is_file() for name in names):
        return {}
    return {name: load_checkpoint(work / f"{name}.pt")["state_dict"] for name in names}


class SubsetFamily:
    """The shipped networks of :func:`load_family`: ``family[size, half]`` is the model at the end of
    training, ``family[size, half, step]`` the one at a snapshot step; ``family.indices(size, half)``
    are the rows of the data set it was trained on. Every model is an
    :class:`~diffusion_geometry.EDMPrecond` in eval mode with gradients off."""

    def __init__(self, models: dict[str, nn.Module], seed: int, n_data: int):
        self._models, self.seed, self.n_data = models, seed, n_data
        self.sizes, self.halves, self.snapshots = SIZES, HALVES, SNAPSHOTS

    def __getitem__(self, key):
        if not isinstance(key, tuple) or len(key) not in (2, 3):
            raise KeyError(f"index a family as family[size, half] or family[size, half, step], got {key!r}")
        size, half, *step = key
        try:
            name = member_name(operator.index(size), half, operator.index(step[0] if step else SNAPSHOTS[-1]))
        except TypeError:   # a size or step that is not an integer (numpy integers are)
            name = None
        if name not in self._models:
            raise KeyError(f"no member {key!r}: sizes {SIZES}, halves {HALVES}, steps {SNAPSHOTS}")
        return self._models[name]

    def indices(self, size: int, half: str) -> torch.Tensor:
        """The rows of the data set (``(size,)`` int64) that ``family[size, half]`` was trained on.

        Raises ``KeyError`` for a size not in :data:`SIZES` or a half not in :data:`HALVES`."""
        if half not in HALVES:
            raise KeyError(f"half must be one of {HALVES}, got {half!r}")
        if size not in SIZES:
            raise KeyError(f"size must be one of {SIZES}, got {size!r}")
        return disjoint_subsets(self.n_data, operator.index(size), seed=self.seed)[HALVES.index(half)]


def load_family(name: str = "digits_subsets", *, weights_dir=None) -> SubsetFamily:
    """The shipped family ``name`` (``weights/manifest.json``, or the manifest in ``weights_dir``), checked
    against its SHA-256.

    The file holds one flat float32 vector per member (its parameters and buffers in the order of the
    state dict of ``build_model(CONFIG)``), keyed by :func:`member_name`. Raises ``KeyError`` for an unknown
    name, ``ValueError`` for a file whose SHA-256 is not the manifest's, and ``ValueError`` when the file does not
    hold every member of :data:`SIZES` x :data:`HALVES` x
    :data:`SNAPSHOTS` with the number of values of :data:`CONFIG`.
    """
    ckpt = load_checkpoint(pretrained_path(name, weights_dir=weights_dir))
    config = ckpt["config"]
    if config.get("member") != CONFIG:
        raise ValueError(f"{name}: its member config {config.get('member')} is not this module's CONFIG")
    shapes = {k: v.shape for k, v in build_model(CONFIG).state_dict().items()}
    size = sum(shape.numel() for shape in shapes.values())
    models = {}
    for member in (member_name(n, h, s) for n in SIZES for h in HALVES for s in SNAPSHOTS):
        flat = ckpt["state_dict"].get(member)
        if flat is None or flat.shape != (size,):
            raise ValueError(f"{name}: member {member} is missing or does not fit CONFIG ({size} values)")
        parts = torch.split(flat, [shape.numel() for shape in shapes.values()])
        model = build_model(CONFIG)
        model.load_state_dict({k: p.reshape(shapes[k]) for k, p in zip(shapes, parts)}, strict=True)
        models[member] = model.eval().requires_grad_(False)
    return SubsetFamily(models, seed=int(config["subset_seed"]), n_data=int(config["n_data"]))


SUBSET_SEED = 0
"""The seed of the shipped family's subsets (:func:`disjoint_subsets`)."""


def main(argv=None) -> None:
    """``python -m diffusion_geometry.memorisation``: train the family and write its bundle."""
    from . import cli
    from .training import training_data

    p = argparse.ArgumentParser(prog="python -m diffusion_geometry.memorisation", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the bundle to write (.pt) once every member is trained")
    p.add_argument("--work-dir", default="runs/digits_subsets", help="members' checkpoints and training states")
    p.add_argument("--halves", default="".join(HALVES), choices=["A", "B", "AB"], help="train only these halves")
    p.add_argument("--threads", type=cli.positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = training_data("digits_unet")
    t0 = time.perf_counter()
    states = train_family(data, args.work_dir, halves=tuple(args.halves), seed=SUBSET_SEED, progress=args.progress)
    if not states:
        print(f"trained halves {args.halves} in {time.perf_counter() - t0:.0f} s; run again once every half is "
              "trained to write the bundle")
        return
    bundle = nn.Module()   # one flat vector per member, in the order of CONFIG's state dict (fewer, larger records)
    order = list(build_model(CONFIG).state_dict())
    for name, state in states.items():
        bundle.register_buffer(name, torch.cat([state[k].reshape(-1) for k in order]))
    config = {"kind": "family", "member": CONFIG, "sizes": list(SIZES), "halves": list(HALVES),
              "snapshots": list(SNAPSHOTS), "recipe": RECIPE, "subset_seed": SUBSET_SEED, "n_data": int(data.shape[0])}
    sha = save_checkpoint(args.out, bundle, config=config,
                          meta={"parameters_per_member": count_parameters(build_model(CONFIG))})
    print(f"wrote {args.out} ({len(states)} members), sha256 {sha}")


if __name__ == "__main__":
    main()
