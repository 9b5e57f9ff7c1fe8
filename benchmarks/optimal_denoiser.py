"""Throughput and accuracy of the optimal (empirical) denoiser over the Fashion-MNIST training set,
against smalldiffusion's ``IdealDenoiser``.

    .venv/bin/python benchmarks/optimal_denoiser.py            # N = 60,000, d = 784, batch 256
    .venv/bin/python benchmarks/optimal_denoiser.py --quick    # N = 10,000, batch 64: seconds

Prints, for float32 queries x = y + sigma * eps (y training images, sigma = 1):

1. queries per second of ``dg.EmpiricalDenoiser``: a float32 matrix product per chunk screens the
   training points with a rigorous error bound, the candidates that can carry weight get float64
   squared distances, and the softmax and the weighted mean run in float64 (see its docstring);
2. queries per second of smalldiffusion's ``IdealDenoiser`` (Yuan Chen's smalldiffusion 0.5.0,
   ``model.py``): ``||x||^2 + ||y||^2 - 2 y.x`` for all (N, batch) pairs in float32, a softmax over N and
   an einsum for the mean. The package itself is timed when it can be imported (or when its
   ``model.py`` loads on its own: it needs ``einops``); otherwise the same five lines, re-implemented
   here, are timed and the table says so. Nothing is downloaded;
3. the accuracy of both against a naive float64 computation (explicit differences, softmax over all
   N) on the first 8 queries, in float32 units in the last place of the data scale;
4. the machine's float32 matrix-multiply rate on the screen's product shape, (batch x d) @ (d x N),
   and the fraction of it the denoiser reaches counting its one product, 2 * batch * N * d FLOPs.

Timings are medians over ``--repeats`` runs after one warm-up, the two methods interleaved so that
other load on the machine hits both alike; wall clock and process CPU time are both shown. Not a
test: numbers depend on the machine (threads, BLAS, other load), so they are printed, never asserted.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import torch

import diffusion_geometry as dg


def timed(fn) -> tuple[float, float]:
    """Wall-clock and process CPU seconds (all threads) of one call of ``fn``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def interleaved(fns: dict, repeats: int) -> dict:
    """Median (wall, cpu) seconds of each function, after one warm-up each, runs interleaved."""
    for fn in fns.values():
        fn()
    runs = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            runs[k].append(timed(fn))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}


class _IdealDenoiserFormula:
    """smalldiffusion 0.5.0's ``IdealDenoiser.forward``, line for line (used only when the package
    cannot be imported): returns the noise estimate eps = (x - D(x)) / sigma."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        def sq_norm(M, k):
            return (torch.norm(M, dim=1) ** 2).unsqueeze(1).repeat(1, k)

        data = self.data.to(x)
        x_flat, d_flat = x.flatten(start_dim=1), data.flatten(start_dim=1)
        xb, db = x_flat.shape[0], d_flat.shape[0]
        sq_diffs = sq_norm(x_flat, db).T + sq_norm(d_flat, xb) - 2 * d_flat @ x_flat.T
        weights = torch.nn.functional.softmax(-sq_diffs / 2 / sigma.squeeze() ** 2, dim=0)
        eps = torch.einsum("ij,i...->j...", weights, data)
        return (x - eps) / sigma


def ideal_denoiser_class():
    """``(IdealDenoiser class, description)``: smalldiffusion's own class when it can be loaded."""
    try:
        from smalldiffusion import IdealDenoiser

        import smalldiffusion

        return IdealDenoiser, f"smalldiffusion {getattr(smalldiffusion, '__version__', '')} IdealDenoiser".replace("  ", " ")
    except ImportError:
        pass
    spec = importlib.util.find_spec("smalldiffusion")  # the package's __init__ needs accelerate and
    if spec is not None and spec.submodule_search_locations:  # torchvision; model.py needs only einops
        path = os.path.join(list(spec.submodule_search_locations)[0], "model.py")
        try:
            mspec = importlib.util.spec_from_file_location("smalldiffusion_model", path)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
            return module.IdealDenoiser, "smalldiffusion IdealDenoiser (model.py)"
        except Exception:  # noqa: BLE001 - fall back to the formula below
            pass
    return _IdealDenoiserFormula, "IdealDenoiser formula (smalldiffusion not importable: re-implemented)"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def naive_float64(data: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The truth: explicit differences, softmax over all N, weighted mean, all in float64."""
    y = data.double()
    out = []
    for q in x.double():
        d2 = ((y - q) ** 2).sum(1)
        out.append(torch.softmax(-d2 / (2 * sigma**2), 0) @ y)
    return torch.stack(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 10,000 and batch 64 (a few seconds)")
    from diffusion_geometry import cli  # argparse types: bad numbers get "error: ..." and exit status 2

    p.add_argument("--n", type=cli.positive_int, default=None, help="training points (default 60000, quick 10000)")
    p.add_argument("--batch", type=cli.positive_int, default=None, help="queries per call (default 256, quick 64)")
    p.add_argument("--sigma", type=cli.positive_float, default=1.0)
    p.add_argument("--chunk-size", type=cli.positive_int, default=None,
                   help="EmpiricalDenoiser chunk size (default: its own)")
    p.add_argument("--repeats", type=cli.positive_int, default=None, help="timed runs (default 5, quick 3)")
    p.add_argument("--threads", type=cli.positive_int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", type=cli.device, default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

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
        p.error(" ".join(str(err).split()))
    if not 1 <= n <= len(images):
        p.error(f"--n must lie in [1, {len(images)}]")
    data = images[:n].reshape(n, -1).to(device)  # float32, (N, 784)
    d = data.shape[1]
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, n, (batch,), generator=g)
    x = (data[idx].cpu() + args.sigma * torch.randn(batch, d, generator=g)).to(device)
    sigma_t = torch.tensor(args.sigma, device=device)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          f"{' (' + cpu_name() + ')' if device.type == 'cpu' else ' (' + torch.cuda.get_device_name(device) + ')'}")
    print(f"N = {n:,} training images, d = {d}, batch = {batch}, float32, sigma = {args.sigma}, "
          f"median of {repeats} interleaved runs")
    if hasattr(os, "getloadavg"):  # other processes on the machine skew every number below
        print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} logical CPUs")

    den = dg.EmpiricalDenoiser(data, **({"chunk_size": args.chunk_size} if args.chunk_size else {}))
    Ideal, ideal_name = ideal_denoiser_class()
    ideal = Ideal(data)

    with torch.no_grad():
        times = interleaved({"dg": lambda: (den(x, args.sigma), sync()),
                             "ideal": lambda: (ideal(x, sigma_t), sync())}, repeats)
        a = torch.randn(batch, d, device=device)
        b = torch.randn(d, n, device=device)
        t_mm, c_mm = interleaved({"mm": lambda: (a @ b, sync())}, repeats)["mm"]

        k = min(8, batch)  # accuracy against the float64 truth, in float32 ulps of the data scale
        truth = naive_float64(data.cpu(), x[:k].cpu(), args.sigma)
        ulp = torch.finfo(torch.float32).eps * data.abs().max().item()
        err_dg = (den(x[:k], args.sigma).cpu().double() - truth).abs().max().item()
        d_ideal = x[:k] - args.sigma * ideal(x[:k], sigma_t)  # IdealDenoiser returns the noise estimate
        err_ideal = (d_ideal.cpu().double() - truth).abs().max().item()

    (t_dg, c_dg), (t_id, c_id) = times["dg"], times["ideal"]
    rate_mm = 2 * batch * d * n / t_mm / 1e9
    flops_dg = 2 * batch * n * d  # the screen's product; the float64 work on the candidates is extra
    print()
    print(f"{'method':<58}{'wall/batch':>12}{'queries/s':>11}{'CPU s/batch':>13}")
    print(f"{'dg.EmpiricalDenoiser (chunk ' + format(den.chunk_size, ',') + ')':<58}"
          f"{t_dg * 1e3:>10.1f}ms{batch / t_dg:>11.1f}{c_dg:>13.3f}")
    print(f"{ideal_name:<58}{t_id * 1e3:>10.1f}ms{batch / t_id:>11.1f}{c_id:>13.3f}")
    print()
    print(f"max |D - naive float64| on {k} queries: EmpiricalDenoiser {err_dg / ulp:.2f} float32 ulps, "
          f"IdealDenoiser {err_ideal / ulp:.3g} float32 ulps (1 ulp = {ulp:.2e}, the data's scale)")
    print(f"float32 matmul ({batch}x{d}) @ ({d}x{n}): {rate_mm:8.1f} GFLOP/s ({t_mm * 1e3:.1f} ms); "
          f"EmpiricalDenoiser reaches {flops_dg / t_dg / 1e9:.1f} GFLOP/s counting its one product "
          f"({flops_dg / t_dg / 1e9 / rate_mm:.0%})")
    print(f"speed-up over IdealDenoiser: {t_id / t_dg:.2f}x (wall clock), {c_id / c_dg:.2f}x (CPU time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
