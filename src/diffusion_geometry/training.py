r"""Training EDM denoisers: the loss, EMA, a seeded training loop with resume, and the ``dg-train`` command.

The EDM objective (Karras et al. 2022, Eq. 2 and Table 1): draw a clean point :math:`y`, a noise
level :math:`\ln\sigma \sim N(P_\text{mean}, P_\text{std}^2)` with :math:`P_\text{mean} = -1.2`,
:math:`P_\text{std} = 1.2`, and :math:`n \sim N(0, \sigma^2 I)`; minimise

.. math:: \mathcal{L}(\theta) = \mathbb{E}\Big[\lambda(\sigma)\,\lVert D_\theta(y + n;\sigma) - y\rVert^2\Big],
          \qquad \lambda(\sigma) = \frac{\sigma^2 + \sigma_d^2}{(\sigma\,\sigma_d)^2},

whose minimiser over all functions is the posterior mean :math:`D^*(x;\sigma) = \mathbb{E}[y \mid x]`,
the optimal denoiser of the training set (:class:`~diffusion_geometry.EmpiricalDenoiser`). The weight
:math:`\lambda` makes the effective target of the raw network :math:`F_\theta` have unit variance at
every :math:`\sigma`. Here the squared error is averaged over the coordinates (not summed), which
only rescales the learning rate.

Optimisation: Adam with a linear learning-rate warm-up, then a constant rate; an exponential moving
average (EMA) of the weights, :math:`\bar\theta \leftarrow \beta\bar\theta + (1-\beta)\theta` with
:math:`\beta_t = \min(\beta, (1+t)/(10+t))`, is the model that gets used (Song & Ermon 2020;
Karras et al. 2022). Everything random (initialisation via ``build_model(seed=)``, batches, noise
levels, noise) comes from seeded generators, so a run is reproducible on a given machine and
thread count, and a run resumed from a state file ends with the same weights as one that was not
interrupted.

Command line (also installed as ``dg-train``)::

    python -m diffusion_geometry.training --model digits_unet --steps 3000 --out digits.pt --threads 2

Data-parallel, on one machine's CPUs (gloo) or GPUs (nccl), with ``DistributedDataParallel``; the
same ``--batch-size`` is the global batch, split evenly over the processes, and the run follows the
one-process run up to float round-off (``tests/test_training.py``)::

    torchrun --nproc_per_node=2 -m diffusion_geometry.training --model digits_unet --steps 3000 --out digits.pt --threads 1
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

from .checkpoints import save_checkpoint
from .denoisers import EDMPrecond
from .networks import PathNet
from .paths import convert_prediction

__all__ = ["edm_loss", "path_loss", "ema_update", "ema_decay_at", "lr_at", "train", "TRAINING_SETS", "training_data", "run",
           "main"]

P_MEAN, P_STD = -1.2, 1.2
SIGMA_RANGE = (0.002, 80.0)


def _shard_rows(y: torch.Tensor, shard: tuple[int, int]) -> slice:
    """The rows of the batch ``y`` that process ``rank`` of ``world_size`` evaluates (``shard``)."""
    rank, world = shard
    if not (0 <= rank < world and y.shape[0] % world == 0):
        raise ValueError(f"shard (rank, world_size) = {shard} must have 0 <= rank < world_size and a batch "
                         f"of {y.shape[0]} that splits into world_size equal slices")
    return slice(rank * (y.shape[0] // world), (rank + 1) * (y.shape[0] // world))


def edm_loss(model: EDMPrecond, y: torch.Tensor, *, generator: torch.Generator | None = None,
             p_mean: float = P_MEAN, p_std: float = P_STD, p_uniform: float = 0.0,
             sigma_range: tuple[float, float] = SIGMA_RANGE, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    r"""The EDM loss of a batch ``y`` (a 0-d tensor): :math:`\operatorname{mean}\,\lambda(\sigma)(D_\theta(y+n;\sigma)-y)^2`.

    :math:`\ln\sigma \sim N(p_\text{mean}, p_\text{std}^2)` per sample, :math:`n = \sigma\varepsilon`,
    :math:`\lambda(\sigma) = (\sigma^2+\sigma_d^2)/(\sigma\sigma_d)^2` with ``sigma_data`` of ``model``.
    With ``p_uniform > 0`` that fraction of the samples (in expectation) draws :math:`\ln\sigma`
    uniformly on ``log(sigma_range)`` instead (see :func:`train`); ``p_uniform = 0`` is EDM exactly.
    Random numbers come from ``generator`` (on ``y``'s device) when given.

    Precision: sigma, the noise, the weight and the squared error are formed in float32 at least
    (``y``'s dtype when that is float32 or float64); only the noisy input is cast to ``y.dtype``
    for the model. The loss is a 0-d tensor in that working dtype.

    Data-parallel training: ``shard = (rank, world_size)`` draws the noise levels and the noise of the
    whole batch ``y`` (so every process draws the same numbers as one process would) and evaluates the
    model on the ``rank``-th of ``world_size`` equal consecutive slices of it only; the mean of the
    processes' losses (and gradients) is then the one-process loss of ``y``. ``model`` may be wrapped in
    ``torch.nn.parallel.DistributedDataParallel``. Raises ``ValueError`` when the batch does not split
    into equal slices.
    """
    precond = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not isinstance(precond, EDMPrecond):
        raise TypeError(f"model must be an EDMPrecond, got {type(model).__name__}")
    if not isinstance(y, torch.Tensor) or y.ndim < 2 or y.shape[0] == 0:
        raise ValueError("y must be a non-empty batch tensor of shape (batch, ...)")
    if not p_std > 0:
        raise ValueError(f"p_std must be positive, got {p_std}")
    if not 0.0 <= p_uniform <= 1.0:
        raise ValueError(f"p_uniform must lie in [0, 1], got {p_uniform}")
    lo, hi = sigma_range
    if not 0 < lo < hi:
        raise ValueError(f"sigma_range must satisfy 0 < low < high, got {sigma_range}")
    rows = _shard_rows(y, shard)
    # sigma, the noise and the weight are formed in float32 at least (in float16 the weight
    # (sigma^2 + sd^2)/(sigma sd)^2 = 250,004 at sigma = 0.002 overflows); the random numbers are drawn
    # in that dtype, so float32 and float64 runs draw exactly what they always did
    work = torch.promote_types(y.dtype, torch.float32)
    opts = dict(dtype=work, device=y.device, generator=generator)
    ln_sigma = torch.randn(y.shape[0], **opts) * p_std + p_mean
    if p_uniform > 0:
        pick = torch.rand(y.shape[0], **opts) < p_uniform
        ln_uniform = math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(y.shape[0], **opts)
        ln_sigma = torch.where(pick, ln_uniform, ln_sigma)
    sigma = ln_sigma.exp()
    noise = torch.randn(y.shape, **opts)
    y, sigma, noise = y[rows], sigma[rows], noise[rows]
    s = sigma.reshape(-1, *([1] * (y.ndim - 1)))
    sd = precond.sigma_data
    weight = (s**2 + sd**2) / (s * sd) ** 2
    yw = y.to(work)
    denoised = model((yw + s * noise).to(y.dtype), sigma)
    return (weight * (denoised.to(work) - yw) ** 2).mean()


PATH_T_MIN = 1e-5
"""The smallest training time of a path model (Song et al. 2021 train VP on [1e-5, 1])."""


def path_loss(model: PathNet, y: torch.Tensor, *, generator: torch.Generator | None = None,
              shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    r"""The plain regression loss of a model of a Gaussian path (a 0-d tensor): draw
    :math:`t \sim U(t_\min, 1)`, :math:`x_t = \alpha_t y + s_t\varepsilon`, and average
    :math:`\lVert \text{model}(x_t, t) - \text{target}\rVert^2` over the coordinates,
    with target :math:`\varepsilon` (DDPM's simple loss, Ho et al. 2020, Eq. 14), :math:`y`, or the velocity
    :math:`\dot\alpha_t y + \dot s_t\varepsilon` (:math:`\varepsilon - y` for flow matching: Lipman et
    al. 2023, Eq. 23; Liu et al. 2023, Eq. 1), as ``model.prediction`` says. :math:`t_\min = 10^{-5}`
    (:data:`PATH_T_MIN`). The velocity target is formed by
    :func:`~diffusion_geometry.paths.convert_prediction` from the true noise, so the loss and the
    sampler's conversion share one formula. ``shard`` as in :func:`edm_loss`. Coefficients in float64,
    arithmetic in float32 at least.
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not isinstance(inner, PathNet):
        raise TypeError(f"model must be a PathNet, got {type(model).__name__}")
    if not isinstance(y, torch.Tensor) or y.ndim < 2 or y.shape[0] == 0:
        raise ValueError("y must be a non-empty batch tensor of shape (batch, ...)")
    rows = _shard_rows(y, shard)
    work = torch.promote_types(y.dtype, torch.float32)
    opts = dict(dtype=work, device=y.device, generator=generator)
    t = PATH_T_MIN + (1 - PATH_T_MIN) * torch.rand(y.shape[0], **opts)
    noise = torch.randn(y.shape, **opts)
    y, t, noise = y[rows].to(work), t[rows], noise[rows]
    path = inner.path
    sigma = path.sigma(t.to(torch.float64))
    shape = (-1, *([1] * (y.ndim - 1)))
    alpha = path.alpha(sigma)
    x_t = (alpha.reshape(shape) * y.to(torch.float64) + (sigma * alpha).reshape(shape) * noise.to(torch.float64))
    target = {"eps": noise, "x0": y}.get(inner.prediction)
    if target is None:
        target = convert_prediction(("eps", noise.to(torch.float64)), to="velocity", x=x_t, sigma=sigma, path=path)
    pred = model(x_t.to(y.dtype), t)
    return ((pred.to(work) - target.to(work)) ** 2).mean()


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    r"""In place: :math:`\bar\theta \leftarrow \text{decay}\cdot\bar\theta + (1-\text{decay})\,\theta`
    for every parameter; buffers (constants such as the embedding frequencies) are copied."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {decay}")
    ema_params, model_params = dict(ema.named_parameters()), dict(model.named_parameters())
    ema_buffers, model_buffers = dict(ema.named_buffers()), dict(model.named_buffers())
    if ema_params.keys() != model_params.keys() or ema_buffers.keys() != model_buffers.keys():
        raise ValueError("ema and model have different parameters")
    for name, value in model_params.items():
        ema_params[name].mul_(decay).add_(value.detach(), alpha=1.0 - decay)
    for name, value in model_buffers.items():
        ema_buffers[name].copy_(value)


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay used after ``step`` optimiser steps: ``min(decay, (1 + step) / (10 + step))``."""
    return min(decay, (1.0 + step) / (10.0 + step))


def lr_at(step: int, lr: float, warmup: int, decay_from: int | None = None, steps: int | None = None) -> float:
    """Learning rate at 0-based ``step``: linear warm-up ``lr * (step + 1) / warmup``, then ``lr``; with
    ``decay_from``, from that step on it falls linearly to 0 at ``steps``: ``lr * (steps - step) / (steps - decay_from)``."""
    rate = lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr
    if decay_from is not None and step >= decay_from:
        rate *= (steps - step) / (steps - decay_from)
    return rate


_RUN_KEYS = ("seed", "batch_size", "lr", "warmup", "ema_decay", "n_data", "p_uniform", "bf16", "lr_decay_from",
             "p_mean", "p_std", "noise_from")
_EDM_NOISE = {"p_mean": P_MEAN, "p_std": P_STD, "noise_from": -1.0}  # what a state without noise keys ran with


def _batch_indices(n: int, step: int, batch_size: int, seed: int) -> torch.Tensor:
    """The data indices of ``step``: consecutive slices of one seeded permutation per epoch.

    Derived from ``(seed, epoch)`` alone, so a resumed run draws the same batches.
    """
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[pos * batch_size : pos * batch_size + batch_size] if n >= batch_size else perm


def train(model: EDMPrecond, data: torch.Tensor, *, steps: int, batch_size: int = 128,
          lr: float = 1e-3, ema_decay: float = 0.999, seed: int = 0, warmup: int = 200,
          p_uniform: float = 0.1, grad_clip: float | None = 1.0, progress: bool = True, state_path=None,
          save_every: int = 500, resume: bool = True, device=None, log_every: int = 1,
          bf16: bool = False, lr_decay_from: int | None = None, p_mean: float = P_MEAN, p_std: float = P_STD,
          noise_from: int | None = None, stop_at: int | None = None):
    r"""Train ``model`` (in place) on ``data`` with the EDM loss; return ``(ema_model, history)``.

    Parameters
    ----------
    model : an :class:`~diffusion_geometry.EDMPrecond` (e.g. from ``networks.build_model``), trained
        with :func:`edm_loss`; or a :class:`~diffusion_geometry.networks.PathNet` (a VP or
        flow-matching model), trained with :func:`path_loss` (``p_uniform`` is then unused).
    data : ``(N, *shape)`` training points (scaled like the model expects, e.g. [-1, 1] images).
    steps : total optimiser steps (a resumed run continues up to this number).
    batch_size, lr, warmup : Adam on batches of ``batch_size``; linear warm-up over ``warmup`` steps.
    lr_decay_from : from this step on, the learning rate falls linearly to 0 at ``steps`` (:func:`lr_at`);
        ``None``: constant after the warm-up. A run with a constant rate may be resumed with a decay
        phase (its state records none); a state written with a decay resumes only with the same one.
    ema_decay : the EMA decay :math:`\beta` (with the warm-up :func:`ema_decay_at`).
    seed : seeds batches, noise levels and noise (initial weights come from ``build_model(seed=)``).
    p_uniform : fraction of noise levels drawn log-uniformly on [0.002, 80] instead of from EDM's
        log-normal (:func:`edm_loss`). The log-normal puts about 2e-4 of its mass above
        :math:`\sigma = 20`, where every sampler starts; a small network trained for minutes then
        never learns that range (measured on digits after 1,000 steps with ``p_uniform=0``: its
        denoiser at :math:`\sigma = 80` misses the optimal one by 29%). Any noise-level
        distribution has the same minimiser, the posterior mean, at every sigma it covers.
    p_mean, p_std : the log-normal of the other noise levels, :math:`\ln\sigma \sim N(p_\text{mean},
        p_\text{std}^2)` (default EDM's -1.2, 1.2). A small network spends its capacity where the
        training puts its noise levels: the Fashion-MNIST U-Net continued from step 15,000 with
        ``p_mean=-0.4`` (more weight at sigma from 1 to 10, where a sample's shape is decided) scored
        FD 17.4 at step 20,000 against 19.2 for the same steps at -1.2 (1,024 samples, Heun 35 NFE).
    noise_from : ``None``: ``(p_mean, p_std)`` from the first step. An integer: EDM's (-1.2, 1.2) before
        this step and ``(p_mean, p_std)`` from it on (a second phase). A state written with EDM's noise
        levels throughout may be resumed with a second phase that starts at its step or later; a state
        with a phase resumes only with the same one.
    stop_at : stop after this many steps, before ``steps`` (``None``: run to ``steps``); the schedules
        (learning-rate decay, noise phases) are still those of a run of ``steps``, and the state file is
        kept, so the weights at step ``stop_at`` of a run are reproducible and the run can go on.
    grad_clip : clip the gradient norm to this value (``None``: no clipping).
    progress : show a tqdm progress bar with the running loss.
    state_path : a file for the full training state (model, EMA, optimiser, RNG, history), written
        every ``save_every`` steps and at the end; with ``resume=True`` an existing file is loaded
        first and training continues from its step.
    device : where to train (default: the device of the model's parameters); ``data`` is moved there.
    log_every : record the loss every ``log_every`` steps.
    bf16 : run the network's forward and backward passes under bfloat16 autocast
        (``torch.autocast``): convolutions and matrix products in bfloat16, normalisations, the
        loss and its weight, the optimiser and the EMA in float32. On a CPU with AVX512-BF16 this
        trains the Fashion-MNIST U-Net 1.5x faster (``benchmarks/training_speed.py``); the loss
        curve follows float32's to within the noise of the batches.

    Data-parallel training: when ``torch.distributed`` is initialised with more than one process
    (``torchrun``, see :func:`run`), every process holds all of ``data`` and the same seeded
    generator, the model is wrapped in ``DistributedDataParallel``, and each process evaluates the
    loss on its equal slice of the same global batch of ``batch_size`` (:func:`edm_loss` ``shard``), so
    the run follows the one-process run up to float round-off. The recorded loss is the global batch's;
    only rank 0 shows the progress bar and writes the state file; every rank reads it to resume.

    Returns
    -------
    ema_model : a copy of ``model`` carrying the EMA weights, in eval mode with gradients off.
    history : dict with ``step`` and ``loss`` (lists), ``seconds`` (wall time of this call),
        ``images_per_second`` and ``resumed_from`` (the step a resumed run started at, else 0).
    """
    if not isinstance(model, (EDMPrecond, PathNet)):
        raise TypeError(f"model must be an EDMPrecond or a PathNet, got {type(model).__name__}")
    if not isinstance(data, torch.Tensor) or data.ndim < 2 or data.shape[0] == 0:
        raise ValueError("data must be a non-empty tensor of shape (N, ...)")
    if not data.is_floating_point() or not torch.isfinite(data).all():
        raise ValueError("data must be finite floating-point values")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("save_every", save_every),
                        ("log_every", log_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if lr_decay_from is not None and not (isinstance(lr_decay_from, int) and 0 <= lr_decay_from < steps):
        raise ValueError(f"lr_decay_from must be an integer in [0, steps) = [0, {steps}), got {lr_decay_from!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
    if not 0.0 <= p_uniform <= 1.0:
        raise ValueError(f"p_uniform must lie in [0, 1], got {p_uniform}")
    if not (math.isfinite(p_mean) and math.isfinite(p_std) and p_std > 0):
        raise ValueError(f"p_mean must be finite and p_std positive, got {p_mean}, {p_std}")
    if noise_from is not None and not (isinstance(noise_from, int) and not isinstance(noise_from, bool)
                                       and 0 <= noise_from < steps):
        raise ValueError(f"noise_from must be an integer in [0, steps) = [0, {steps}), got {noise_from!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
    if stop_at is not None and not (isinstance(stop_at, int) and not isinstance(stop_at, bool) and 1 <= stop_at <= steps):
        raise ValueError(f"stop_at must be an integer in [1, steps] = [1, {steps}], got {stop_at!r}")
    end = steps if stop_at is None else stop_at

    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    rank = dist.get_rank() if world > 1 else 0
    if batch_size % world:
        raise ValueError(f"batch_size = {batch_size} does not split into {world} processes' equal slices")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    dtype = next(model.parameters()).dtype
    data = data.to(device=device, dtype=dtype)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    history = {"step": [], "loss": []}
    start = 0
    run_settings = {"seed": seed, "batch_size": batch_size, "lr": float(lr), "warmup": warmup,
                    "ema_decay": float(ema_decay), "n_data": int(data.shape[0]),
                    "p_uniform": float(p_uniform), "bf16": float(bool(bf16)),
                    "lr_decay_from": float(-1 if lr_decay_from is None else lr_decay_from),
                    "p_mean": float(p_mean), "p_std": float(p_std),
                    "noise_from": float(-1 if noise_from is None else noise_from)}
    if state_path is not None and resume and Path(state_path).is_file():
        try:
            state = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as err:  # a file that is not a training state (pickle, zip or format error)
            raise ValueError(f"{state_path} is not a training state of this package: {type(err).__name__}") from err
        if not isinstance(state, dict) or not {"model", "ema", "optimizer", "rng", "step"} <= set(state):
            raise ValueError(f"{state_path} is not a training state of this package (missing keys)")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"].cpu())
        start = int(state["step"])
        saved = {k: state[k].item() for k in _RUN_KEYS if k in state}
        if "p_uniform" in saved and not any(k in state for k in _EDM_NOISE):
            saved.update(_EDM_NOISE)  # written before the noise keys existed: EDM's log-normal throughout
        wanted = {k: v for k, v in run_settings.items() if k in saved}
        if saved.get("lr_decay_from") == -1:  # a constant-rate state may go on with a decay phase
            saved.pop("lr_decay_from")
        edm_so_far = all(saved.get(k) == v for k, v in _EDM_NOISE.items())
        if edm_so_far and noise_from is not None:  # EDM's noise levels so far: a second phase may follow
            for k in _EDM_NOISE:
                saved.pop(k, None)
        if any(saved[k] != wanted[k] for k in saved):
            raise ValueError(f"{state_path} was written by a run with other settings {saved}; "
                             f"this run has {wanted} (delete the file or pass resume=False)")
        if start > end:
            raise ValueError(f"{state_path} is at step {start}, beyond " + (f"steps={steps}" if stop_at is None
                                                                              else f"stop_at={stop_at}"))
        if lr_decay_from is not None and "lr_decay_from" not in saved and lr_decay_from < start:
            raise ValueError(f"{state_path} ran at a constant rate up to step {start}: a decay phase must start at "
                             f"step {start} or later, got lr_decay_from={lr_decay_from}")
        if noise_from is not None and "noise_from" not in saved and noise_from < start:
            raise ValueError(f"{state_path} ran with EDM's noise levels up to step {start}: a second noise phase "
                             f"must start at step {start} or later, got noise_from={noise_from}")
        history = {"step": state["hist_step"].tolist(), "loss": state["hist_loss"].tolist()}

    def save_state(step: int) -> None:
        if state_path is None or rank != 0:
            return
        payload = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                   "rng": gen.get_state(), "step": step,
                   **{k: torch.tensor(v, dtype=torch.float64) for k, v in run_settings.items()},
                   "hist_step": torch.tensor(history["step"], dtype=torch.long),
                   "hist_loss": torch.tensor(history["loss"], dtype=torch.float64)}
        tmp = Path(str(state_path) + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, state_path)

    if progress:  # the notebook-aware bar imports ipywidgets: only pay for it when it is shown
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    t0 = time.perf_counter()
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" and device.index is not None else None
        net = DistributedDataParallel(model, device_ids=ids)
    else:
        net = model
    bar = tqdm(range(start, end), initial=start, total=end, disable=not progress or rank != 0,
               desc="training", unit="step", mininterval=1.0)
    running = None
    for step in bar:
        idx = _batch_indices(data.shape[0], step, batch_size, seed).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, lr, warmup, lr_decay_from, steps)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(bf16)):
            if isinstance(model, PathNet):
                loss = path_loss(net, data[idx], generator=gen, shard=(rank, world))
            else:
                phase = noise_from is None or step >= noise_from
                loss = edm_loss(net, data[idx], generator=gen, p_uniform=p_uniform, shard=(rank, world),
                                p_mean=p_mean if phase else P_MEAN, p_std=p_std if phase else P_STD)
        if world > 1:  # the global batch's loss: the mean of the processes' slices
            reported = loss.detach().clone()
            dist.all_reduce(reported)
            value = reported.item() / world
        else:
            value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        ema_update(ema, model, ema_decay_at(step, ema_decay))
        if step % log_every == 0:
            history["step"].append(step)
            history["loss"].append(value)
        running = value if running is None else 0.98 * running + 0.02 * value
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % save_every == 0:
            save_state(step + 1)
    bar.close()
    seconds = time.perf_counter() - t0
    save_state(end)
    history["seconds"] = seconds
    history["images_per_second"] = (end - start) * batch_size / seconds if seconds > 0 else math.nan
    history["resumed_from"] = start
    model.eval()
    return ema.eval().requires_grad_(False), history


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


TRAINING_SETS = {"toy2d_mlp": "mixture_2d", "digits_unet": "digits", "fashion_unet": "fashion_mnist",
                 "fashion_unet_large": "fashion_mnist", "digits_fm": "digits", "digits_vp": "digits"}
"""The data set each trainable model config learns (the ``--model`` choices of ``dg-train``)."""


def training_data(name: str, *, n_data: int | None = None, seed: int = 0) -> torch.Tensor:
    """The training set of a named model (:data:`TRAINING_SETS`): ``toy2d_mlp`` -> ``n_data``
    (default 4096) points of ``datasets.mixture_2d()`` drawn with ``seed``; ``digits_unet`` -> the
    1,797 scikit-learn digits; ``fashion_unet`` and ``fashion_unet_large`` -> the 60,000
    Fashion-MNIST training images (``n_data`` keeps the first ones, and must not exceed them).
    Raises ``ValueError`` for an unknown name or an ``n_data`` that is not a positive integer (or is
    larger than the data set), ``FileNotFoundError`` when Fashion-MNIST is not installed."""
    from . import datasets

    if name not in TRAINING_SETS:
        raise ValueError(f"no training data defined for {name!r}; models with training data: {sorted(TRAINING_SETS)}")
    if n_data is not None and (not isinstance(n_data, int) or isinstance(n_data, bool) or n_data < 1):
        raise ValueError(f"n_data must be a positive integer or None, got {n_data!r}")
    kind = TRAINING_SETS[name]
    if kind == "mixture_2d":
        g = torch.Generator().manual_seed(seed)
        return datasets.mixture_2d(dtype=torch.float32).sample(n_data or 4096, generator=g)
    data = datasets.digits()[0] if kind == "digits" else datasets.fashion_mnist("train")[0]
    if n_data is not None and n_data > data.shape[0]:
        raise ValueError(f"n_data = {n_data} exceeds the {data.shape[0]:,} training points of {name!r}")
    return data[:n_data] if n_data else data


def _parser() -> argparse.ArgumentParser:
    from . import cli

    p = argparse.ArgumentParser(prog="dg-train", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(TRAINING_SETS), help="named model config")
    p.add_argument("--steps", type=cli.positive_int, required=True, help="optimiser steps")
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--batch-size", type=cli.positive_int, default=128)
    p.add_argument("--lr", type=cli.positive_float, default=1e-3)
    p.add_argument("--warmup", type=cli.non_negative_int, default=200, help="learning-rate warm-up steps")
    p.add_argument("--lr-decay-from", type=cli.non_negative_int, default=None,
                   help="from this step on, decay the learning rate linearly to 0 at --steps (default: constant)")
    p.add_argument("--ema-decay", type=cli.fraction, default=0.999, help="EMA decay in [0, 1)")
    p.add_argument("--p-uniform", type=cli.fraction, default=0.1,
                   help="fraction of noise levels drawn log-uniformly on [0.002, 80]")
    p.add_argument("--p-mean", type=float, default=P_MEAN,
                   help=f"mean of the log-normal of noise levels, ln sigma ~ N(p_mean, p_std^2) (EDM: {P_MEAN})")
    p.add_argument("--p-std", type=cli.positive_float, default=P_STD,
                   help=f"standard deviation of that log-normal (EDM: {P_STD})")
    p.add_argument("--noise-from", type=cli.non_negative_int, default=None,
                   help="use EDM's log-normal before this step and --p-mean/--p-std from it on (default: from the start)")
    p.add_argument("--stop-at", type=cli.positive_int, default=None,
                   help="stop after this step, before --steps, keeping the state file (the schedules still run to --steps)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0,
                   help="seeds the initial weights and the training run")
    p.add_argument("--n-data", type=cli.positive_int, default=None, help="use only the first N training points")
    p.add_argument("--threads", type=cli.positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the network (1.5x faster on CPUs with AVX512-BF16)")
    p.add_argument("--device", type=cli.device, default="cpu")
    p.add_argument("--state", default=None, help="training-state file for resuming (default OUT.state)")
    p.add_argument("--save-every", type=cli.positive_int, default=500)
    p.add_argument("--loss-log", default=None, help="write the loss of every step to this CSV file (step,loss)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(argv=None) -> str:
    """Parse the command line ``argv``, train the named model, save its checkpoint; return the sha256.

    Bad input (an unknown model, a non-positive ``--steps``, a state file of another run, missing
    data, ...) exits like argparse: ``dg-train: error: ...`` on stderr and status 2."""
    from . import cli

    p = _parser()
    args = p.parse_args(argv)
    if args.ema_decay >= 1:
        p.error(f"argument --ema-decay: expected a number in [0, 1), got {args.ema_decay}")
    with cli.user_errors(p, cli.USER_ERRORS + (OSError, FloatingPointError)):
        return _run(args, argv)


def _run(args, argv) -> str:
    import torch.distributed as dist

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: one process per rank
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(args.device)
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        try:
            return _run_one(args, argv)
        finally:
            dist.destroy_process_group()
    return _run_one(args, argv)


def _run_one(args, argv) -> str:
    import torch.distributed as dist

    from .networks import CONFIGS, build_model, count_parameters

    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if world > 1 else 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = "python -m diffusion_geometry.training " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    config = copy.deepcopy(CONFIGS[args.model])
    data = training_data(args.model, n_data=args.n_data, seed=args.seed)
    model = build_model(config, seed=args.seed).to(args.device)
    out = Path(args.out)
    state = args.state or str(out) + ".state"
    # fail before training, not after it: the checkpoint and the state file must be writable files
    for path, flag in ((out, "--out"), (Path(state), "--state")):
        if path.is_dir():
            raise ValueError(f"{flag} {path} is a directory; give a file name")
        if any(p.exists() and not p.is_dir() for p in path.parents):
            raise ValueError(f"{flag} {path}: a parent is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        print(f"{args.model}: {count_parameters(model):,} parameters, {data.shape[0]:,} training points "
              f"of shape {tuple(data.shape[1:])}, {torch.get_num_threads()} threads"
              + (f" in each of {world} processes" if world > 1 else ""), flush=True)
    ema, hist = train(model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      ema_decay=args.ema_decay, seed=args.seed, warmup=args.warmup, p_uniform=args.p_uniform,
                      lr_decay_from=args.lr_decay_from, p_mean=args.p_mean, p_std=args.p_std,
                      noise_from=args.noise_from, stop_at=args.stop_at,
                      progress=not args.no_progress, state_path=state, save_every=args.save_every,
                      device=args.device, bf16=args.bf16)
    if rank != 0:  # every process holds the same weights; rank 0 writes them
        return ""
    if args.loss_log:
        Path(args.loss_log).write_text("step,loss\n" + "".join(
            f"{k},{v!r}\n" for k, v in zip(hist["step"], hist["loss"])))
    tail = hist["loss"][-min(200, len(hist["loss"])):]
    meta = {"command": command, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "warmup": args.warmup, "lr_decay_from": args.lr_decay_from, "ema_decay": args.ema_decay, "p_uniform": args.p_uniform, "bf16": args.bf16, "seed": args.seed,
            "p_mean": args.p_mean, "p_std": args.p_std, "noise_from": args.noise_from, "stop_at": args.stop_at,
            "n_data": int(data.shape[0]), "threads": torch.get_num_threads(), "processes": world,
            "device": args.device,
            "seconds": round(hist["seconds"], 1), "resumed_from": hist["resumed_from"],
            "images_per_second": round(hist["images_per_second"], 1),
            "final_loss_mean_last_200": float(sum(tail) / len(tail)),
            "parameters": count_parameters(model), "torch": torch.__version__}
    digest = save_checkpoint(out, ema, config=config, meta=meta)
    if args.stop_at is None or args.stop_at == args.steps:  # the run has ended: its state is no longer needed
        Path(state).unlink(missing_ok=True)
    print(f"wrote {out} (EMA weights), {hist['seconds']:.0f} s of training, "
          f"mean loss of the last {len(tail)} steps {meta['final_loss_mean_last_200']:.4f}")
    print(f"sha256 {digest}")
    return digest


def main(argv=None) -> int:
    """``python -m diffusion_geometry.training`` / ``dg-train``: train a named model, save a
    checkpoint and print its sha256; returns the exit status 0 (bad input: ``SystemExit(2)`` after
    one ``dg-train: error: ...`` line on stderr)."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
