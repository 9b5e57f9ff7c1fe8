"""Training throughput of the Fashion-MNIST U-Net on this machine, for each CPU speed-up that
PyTorch offers without changing the model: bfloat16 autocast, ``channels_last``, ``torch.compile``,
the thread count and the batch size.

    .venv/bin/python benchmarks/training_speed.py            # every setting, about 3 minutes
    .venv/bin/python benchmarks/training_speed.py --compile  # also torch.compile (minutes of compiling)

Each setting runs ``--steps`` optimiser steps of the package's own loss (``dg.training.edm_loss``,
Adam) on random [-1, 1] images of Fashion-MNIST's shape, after ``--warmup`` steps that are not timed,
and prints images per second (wall clock). The network is ``CONFIGS["fashion_unet"]``; "bf16" wraps the
loss in ``torch.autocast("cpu", dtype=torch.bfloat16)`` exactly as ``dg-train --bf16`` does. Not a
test: the figures depend on the machine (AVX512-BF16/AMX, threads, other load); they are printed,
never asserted. Measured on the book's 2-core CI-class CPU (2026-11-30, otherwise idle): float32 321,
bf16 477, float32 + channels_last 317, bf16 + channels_last 304 images/s at batch 128 and 2 threads;
1 thread: float32 173, bf16 285; torch.compile: bf16 457, float32 269 (after 48-85 s of compiling).
So ``dg-train --bf16 --threads 2`` at batch 128 is the fastest; the shipped model was trained that way.
"""
from __future__ import annotations

import argparse
import time

import torch

from diffusion_geometry.networks import CONFIGS, build_model
from diffusion_geometry.training import edm_loss


def throughput(*, batch: int, bf16: bool, channels_last: bool, compile_net: bool, steps: int, warmup: int) -> float:
    """Images per second of ``steps`` timed training steps (after ``warmup`` untimed ones)."""
    model = build_model(CONFIGS["fashion_unet"], seed=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_net:
        model.net = torch.compile(model.net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    data = (2 * torch.rand(4096, 1, 28, 28, generator=gen) - 1)

    def step():
        y = data[torch.randint(0, data.shape[0], (batch,), generator=gen)]
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = edm_loss(model, y, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per setting")
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or min(args.threads) < 1:
        p.error("--steps and --threads must be positive, --warmup non-negative")
    print(f"torch {torch.__version__}; fashion_unet; {args.steps} timed steps per setting")
    print(f"{'threads':>7} {'batch':>5} {'setting':<26} {'images/s':>9}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        settings = [(128, False, False, False), (128, True, False, False), (128, False, True, False),
                    (128, True, True, False), (256, True, False, False), (64, True, False, False)]
        if args.compile:
            settings += [(128, True, False, True), (128, False, False, True)]
        for batch, bf16, cl, comp in settings:
            name = " + ".join(n for n, on in (("bf16", bf16), ("channels_last", cl), ("compile", comp)) if on) or "float32"
            ips = throughput(batch=batch, bf16=bf16, channels_last=cl, compile_net=comp, steps=args.steps,
                             warmup=args.warmup if not comp else max(args.warmup, 3))
            print(f"{threads:>7} {batch:>5} {name:<26} {ips:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
