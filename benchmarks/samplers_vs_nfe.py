"""Error against NFE for every sampler and schedule of Part II.

Two problems, both with a denoiser known exactly, so the error measures the solver alone:

* the 2-D Gaussian mixture (8 modes on a circle): reference = scipy ``solve_ivp`` (DOP853, rtol 1e-10)
  of the probability-flow ODE;
* scikit-learn digits (1,797 images of 8x8) with the optimal denoiser: reference = 500 Heun steps on
  the EDM rho = 7 grid (the script prints how far a 250-step run is from it).

Error = mean over samples of the L2 distance between the final sample and the reference's.
Samplers: every sampler of the registry (``dg.samplers.SAMPLERS``) at its default options, iPNDM with
the analytical first step, and AMED (one (r_n, c_n) per step fitted on a separate warm-up batch).
Schedules: every named schedule of ``dg.schedules.SCHEDULES``, and GITS (dynamic programme on a 61-level rho = 7 grid with an iPNDM teacher, fitted on the
warm-up batch). Usage::

    python benchmarks/samplers_vs_nfe.py            # 256 samples, NFE 3..12, 16, 20 (minutes)
    python benchmarks/samplers_vs_nfe.py --quick    # 16 samples, NFE 4 and 6 (seconds)
"""
from __future__ import annotations

import argparse
import time

import torch

import diffusion_geometry as dg
from diffusion_geometry import benchmarking as bm
from diffusion_geometry import cli


def methods_with_amed(denoiser, x_warm):
    """Every registered sampler, iPNDM with AFS, and AMED fitted on ``x_warm`` for each grid it meets."""
    cache = {}

    def amed_opts(sigmas):
        key = tuple(round(float(s), 12) for s in sigmas)
        if key not in cache:
            p = dg.amed.fit_amed(denoiser, x_warm, sigmas)
            cache[key] = {"r": p.r, "c": p.c}
        return cache[key]

    methods = bm.labelled(*(name for name, spec in dg.samplers.SAMPLERS.items() if not spec.fitted))  # AMED: below
    methods[dg.samplers.SAMPLERS["ipndm"].label + "+AFS"] = ("ipndm", {"afs": True})
    methods[dg.samplers.SAMPLERS["amed"].label] = ("amed", amed_opts)
    return methods


def schedules_with_gits(denoiser, x_warm):
    gits = dg.gits.gits_fit(denoiser, x_warm, 5)
    named = {spec.label: name for name, spec in dg.schedules.SCHEDULES.items()}
    return {**named, "GITS": gits.schedule}


def run(name, denoiser, x, x_warm, reference, nfes):
    t0 = time.perf_counter()
    rows = bm.error_vs_nfe(denoiser, x, reference, nfes=nfes, methods=methods_with_amed(denoiser, x_warm),
                           schedules=schedules_with_gits(denoiser, x_warm))
    print(f"\n== {name}: mean L2 error to the reference, {x.shape[0]} samples "
          f"({time.perf_counter() - t0:.1f} s) ==")
    print(bm.format_table(rows))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few samples and NFE values (a smoke test)")
    ap.add_argument("--samples", type=cli.positive_int, default=None, help="evaluation samples (default 256, quick 16)")
    ap.add_argument("--threads", type=cli.positive_int, default=None, help="torch intra-op threads")
    ap.add_argument("--seed", type=cli.non_negative_int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.samples or (16 if args.quick else 256)
    nfes = [4, 6] if args.quick else [3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 20]
    g = torch.Generator().manual_seed(args.seed)
    print(f"samplers_vs_nfe: {n} samples, NFE {nfes}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, seed {args.seed}")

    # 2-D Gaussian mixture: exact ODE reference
    gm = dg.datasets.mixture_2d()
    x = 80 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x_warm = 80 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    t0 = time.perf_counter()
    ref = bm.ode_reference(gm, x, rtol=1e-10, atol=1e-10)
    print(f"2-D mixture reference: solve_ivp DOP853 ({time.perf_counter() - t0:.1f} s)")
    run("2-D Gaussian mixture, exact denoiser", gm, x, x_warm, ref, nfes)

    # digits with the optimal denoiser: 500-step Heun reference
    images, _ = dg.datasets.digits(torch.float64)
    opt = dg.EmpiricalDenoiser(images)
    x = 80 * torch.randn(n, *images.shape[1:], generator=g, dtype=torch.float64)
    x_warm = 80 * torch.randn(n, *images.shape[1:], generator=g, dtype=torch.float64)
    ref_steps = 50 if args.quick else 500
    t0 = time.perf_counter()
    ref = bm.sampler_reference(opt, x, n_steps=ref_steps)
    half = bm.sampler_reference(opt, x, n_steps=ref_steps // 2)
    print(f"\ndigits reference: Heun, {ref_steps} steps ({time.perf_counter() - t0:.1f} s); "
          f"{ref_steps // 2}-step run differs by {float(bm.sample_error(half, ref).mean()):.2e} on average")
    run("digits 8x8, optimal denoiser", opt, x, x_warm, ref, nfes)


if __name__ == "__main__":
    main()
