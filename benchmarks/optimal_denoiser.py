"""Throughput of the optimal (empirical) denoiser over the Fashion-MNIST training set.

    .venv/bin/python benchmarks/optimal_denoiser.py            # N = 60,000, d = 784, batch 256
    .venv/bin/python benchmarks/optimal_denoiser.py --quick    # N = 10,000, batch 64: seconds

Prints, for float32 queries x = y + sigma * eps (y training images, sigma = 1):

1. queries per second of ``dg.EmpiricalDenoiser`` (chunked streaming log-sum-exp, one matrix product
   per chunk for the distances and one for the weighted mean);
2. queries per second of a naive version: ``torch.cdist`` for all (batch, N) distances, a softmax
   over N, and one matrix product for the mean. Its (batch, N) float32 matrix is 61 MB at batch 256,
   so it is chunked over the batch only when that matrix exceeds ``--naive-budget-mb`` (default
   2048 MB): at the sizes above it runs unchunked, in one piece. The truly naive form, a
   (batch, N, d) difference tensor, would need 48 GB and is not attempted;
3. the machine's float32 matrix-multiply rate (GFLOP/s) on the denoiser's own product shape,
   (batch x d) @ (d x N), and on a square 2048^3 product;
4. the fraction of that rate the denoiser reaches, counting its two products, 4 * batch * N * d FLOPs.

Timings are medians over ``--repeats`` runs after one warm-up. Not a test: numbers depend on the
machine (threads, BLAS, other load), so they are printed, never asserted.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import torch

import diffusion_geometry as dg


def median_time(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds (all threads of this process) of ``fn()``."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def naive_denoise(data: torch.Tensor, x: torch.Tensor, sigma: float, budget_bytes: float) -> torch.Tensor:
    """cdist + softmax + one product, chunked over the batch only if (rows, N) exceeds the budget."""
    rows = max(1, min(len(x), int(budget_bytes // (len(data) * data.element_size()))))
    out = []
    for lo in range(0, len(x), rows):
        d2 = torch.cdist(x[lo : lo + rows], data) ** 2
        out.append(torch.softmax(-d2 / (2 * sigma**2), dim=1) @ data)
    return torch.cat(out)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 10,000 and batch 64 (a few seconds)")
    p.add_argument("--n", type=int, default=None, help="training points (default 60000, quick 10000)")
    p.add_argument("--batch", type=int, default=None, help="queries per call (default 256, quick 64)")
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--chunk-size", type=int, default=4096, help="EmpiricalDenoiser chunk size")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 5, quick 3)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--naive-budget-mb", type=float, default=2048.0,
                   help="largest (rows, N) distance matrix the naive version may hold")
    args = p.parse_args(argv)

    n = args.n or (10_000 if args.quick else 60_000)
    batch = args.batch or (64 if args.quick else 256)
    repeats = args.repeats or (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    try:
        images, _ = dg.datasets.fashion_mnist("train")
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if not 1 <= n <= len(images):
        p.error(f"--n must lie in [1, {len(images)}]")
    data = images[:n].reshape(n, -1).to(device)  # float32, (N, 784)
    d = data.shape[1]
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, n, (batch,), generator=g)
    x = (data[idx].cpu() + args.sigma * torch.randn(batch, d, generator=g)).to(device)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          f"{' (' + cpu_name() + ')' if device.type == 'cpu' else ' (' + torch.cuda.get_device_name(device) + ')'}")
    print(f"N = {n:,} training images, d = {d}, batch = {batch}, float32, sigma = {args.sigma}, "
          f"median of {repeats} runs")
    if hasattr(os, "getloadavg"):  # other processes on the machine skew every number below
        print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} logical CPUs")

    den = dg.EmpiricalDenoiser(data, chunk_size=args.chunk_size)

    def run_dg():
        den(x, args.sigma)
        sync()

    def run_naive():
        naive_denoise(data, x, args.sigma, args.naive_budget_mb * 2**20)
        sync()

    t_dg, c_dg = median_time(run_dg, repeats)
    t_naive, c_naive = median_time(run_naive, repeats)
    gap = (den(x, args.sigma) - naive_denoise(data, x, args.sigma, args.naive_budget_mb * 2**20)).abs().max().item()
    rows = max(1, min(batch, int(args.naive_budget_mb * 2**20 // (n * 4))))
    naive_chunks = math.ceil(batch / rows)

    a = torch.randn(batch, d, device=device)
    b = torch.randn(d, n, device=device)
    t_mm, c_mm = median_time(lambda: (a @ b, sync()), repeats)
    s = torch.randn(2048, 2048, device=device)
    t_sq, _ = median_time(lambda: (s @ s, sync()), repeats)
    rate_mm = 2 * batch * d * n / t_mm / 1e9
    rate_sq = 2 * 2048**3 / t_sq / 1e9
    flops_dg = 4 * batch * n * d  # distances (x @ y.T) and the weighted mean (w @ y), per chunk
    rate_dg = flops_dg / t_dg / 1e9

    print()
    print(f"{'method':<46}{'wall/batch':>12}{'queries/s':>12}{'CPU s/batch':>13}")
    print(f"{'dg.EmpiricalDenoiser (chunk ' + format(args.chunk_size, ',') + ')':<46}"
          f"{t_dg * 1e3:>10.1f}ms{batch / t_dg:>12.1f}{c_dg:>13.3f}")
    print(f"{'naive cdist + softmax (' + str(naive_chunks) + ' batch chunk' + 's' * (naive_chunks > 1) + ')':<46}"
          f"{t_naive * 1e3:>10.1f}ms{batch / t_naive:>12.1f}{c_naive:>13.3f}")
    print(f"max |difference| between the two: {gap:.2e}")
    print()
    print(f"float32 matmul ({batch}x{d}) @ ({d}x{n}): {rate_mm:8.1f} GFLOP/s ({t_mm * 1e3:.1f} ms)")
    print(f"float32 matmul 2048^3:              {rate_sq:8.1f} GFLOP/s ({t_sq * 1e3:.1f} ms)")
    print(f"EmpiricalDenoiser: {rate_dg:.1f} GFLOP/s of matmul work (4*batch*N*d = {flops_dg / 1e9:.1f} GFLOP), "
          f"{rate_dg / rate_mm:.0%} of the same-shape matmul rate, {rate_dg / rate_sq:.0%} of the square one")
    if device.type == "cpu":  # CPU time is what a loaded machine does not distort much
        print(f"by CPU time: denoiser {flops_dg / c_dg / 1e9:.1f} GFLOP/s vs same-shape matmul "
              f"{2 * batch * d * n / c_mm / 1e9:.1f} GFLOP/s ({(flops_dg / c_dg) / (2 * batch * d * n / c_mm):.0%})")
    print(f"speed-up over naive: {t_naive / t_dg:.2f}x (wall clock)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
