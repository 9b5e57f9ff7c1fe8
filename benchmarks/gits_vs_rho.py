"""GITS against the rho = 7 grid on the shipped Fashion-MNIST U-Net: FD at NFE 4-10 with N samples,
for Euler (DDIM), iPNDM, iPNDM-v and DEIS, and the variants of the GITS fit that could explain where
it loses (Chen et al. 2024, GITS, ICML; the paper gains for iPNDM at NFE 5-10 on CIFAR-10, FFHQ,
ImageNet and LSUN).

    .venv/bin/python benchmarks/gits_vs_rho.py                 # N = 1,024, warm-up 256: about 15 min on 2 cores
    .venv/bin/python benchmarks/gits_vs_rho.py --quick         # N = 128, warm-up 32, NFE 5 and 8: about a minute

Every run starts from the same noise (seed 10) and every fit from the same warm-up noise (seed 11); FD
is the book's classifier FD to the test set (``dg.metrics.fd_to_test``), with the train-vs-test floor
at the same N. The fits (``dg.image_experiments.fit_gits``): the book's (iPNDM teacher on the 61-level
rho = 7 grid, ``metric="dev"``, ``coeff`` 1.15, as the official code), and one change at a time: the
L2 cost, a Heun teacher, another warm-up size, ``coeff`` 1.0. For each grid the script also prints the
largest ratio of consecutive step sizes (an irregular grid is one where fixed-step multistep
coefficients, iPNDM's, are wrong; iPNDM-v's and DEIS's follow the steps). ``--out FILE`` writes all
numbers as JSON. Not a test: it prints what it measures.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import diffusion_geometry as dg
from diffusion_geometry import image_experiments as ie


def step_ratio(grid) -> float:
    """The largest ratio between consecutive steps of a grid (its last level excluded if it is 0)."""
    s = np.asarray(torch.as_tensor(grid, dtype=torch.float64))
    h = -np.diff(s)
    r = h[1:] / h[:-1]
    return float(np.max(np.maximum(r, 1 / r)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion_unet", help="a shipped denoiser or a checkpoint path")
    p.add_argument("--n", type=int, default=1024, help="samples per setting (FD sample size)")
    p.add_argument("--warmup", type=int, default=256, help="GITS warm-up batch (the official code's 256)")
    p.add_argument("--nfes", type=int, nargs="+", default=[4, 5, 6, 7, 8, 9, 10])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="N = 128, warm-up 32, NFE 5 and 8")
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args()
    if args.quick:
        args.n, args.warmup, args.nfes = 128, 32, [5, 8]
    torch.set_num_threads(args.threads)
    denoiser, shape = dg.generate.load_denoiser(args.model)
    x_T = 80 * torch.randn(args.n, *shape, generator=torch.Generator().manual_seed(10))
    x_warm = 80 * torch.randn(args.warmup, *shape, generator=torch.Generator().manual_seed(11))
    x_warm_small = x_warm[: max(1, args.warmup // 4)]
    train, _ = dg.datasets.fashion_mnist("train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[: args.n]
    floor = dg.metrics.fd_to_test(train[pick])
    print(f"model {args.model}; N = {args.n}; warm-up {args.warmup}; NFE {args.nfes}; "
          f"train-vs-test FD at N = {args.n}: {floor:.2f}", flush=True)

    t0 = time.perf_counter()
    fits = {
        "book (iPNDM teacher, dev, coeff 1.15)": dict(x=x_warm, sampler="ipndm", metric="dev", coeff=1.15),
        "L2 cost": dict(x=x_warm, sampler="ipndm", metric="l2", coeff=1.15),
        "Heun teacher": dict(x=x_warm, sampler="heun", metric="dev", coeff=1.15),
        f"warm-up {x_warm_small.shape[0]}": dict(x=x_warm_small, sampler="ipndm", metric="dev", coeff=1.15),
        "coeff 1.0": dict(x=x_warm, sampler="ipndm", metric="dev", coeff=1.0),
    }
    grids = {}
    for name, f in fits.items():
        g = ie.fit_gits(denoiser, f["x"], args.nfes, sampler=f["sampler"], metric=f["metric"], coeff=f["coeff"])
        grids[name] = g
    print(f"fits: {time.perf_counter() - t0:.0f} s", flush=True)
    book = next(iter(fits))
    for n in args.nfes:
        rho = dg.edm_sigmas(n)
        print(f"NFE {n}: rho=7 {np.round(rho.tolist(), 3).tolist()} (max step ratio {step_ratio(rho):.1f}); "
              f"GITS {np.round(grids[book].schedule(n).tolist(), 3).tolist()} "
              f"(max step ratio {step_ratio(grids[book].schedule(n)):.1f})")

    def fd(images):
        return dg.metrics.fd_to_test(images)

    results = {"n": args.n, "warmup": args.warmup, "nfes": args.nfes, "floor": floor, "fd": {}}
    rows = [(s, book) for s in ie.GITS_STUDY_SAMPLERS]
    rows += [(s, name) for name in list(fits)[1:] for s in ie.GITS_SUSPECT_SAMPLERS]
    done_rho = set()
    header = f"{'sampler':<10} {'schedule':<40} " + " ".join(f"{'NFE ' + str(n):>8}" for n in args.nfes)
    print(header)
    for sampler, fit_name in rows:
        schedules = (("edm", ie.GITS) if sampler not in done_rho else (ie.GITS,))
        t1 = time.perf_counter()
        comp = ie.schedule_comparison(denoiser, x_T, fd, grids[fit_name], samplers=[sampler], schedules=schedules,
                                      batch_size=256)
        for s in schedules:
            key = "rho=7" if s == "edm" else f"GITS: {fit_name}"
            results["fd"].setdefault(sampler, {})[key] = comp.fd[sampler][s]
            print(f"{sampler:<10} {key:<40} " + " ".join(f"{v:8.2f}" for v in comp.fd[sampler][s]), flush=True)
        done_rho.add(sampler)
        print(f"{'':<10} ({time.perf_counter() - t1:.0f} s)", flush=True)
    results["grids"] = {name: {n: g.schedule(n).tolist() for n in args.nfes} for name, g in grids.items()}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
