"""Execute chapters many times, headless, the way the book build does, and count stalled cells.

    DG_PROFILE=small .venv/bin/python benchmarks/execution_loop.py --runs 20 book/05_finite_differences.ipynb ...

Each run executes one chapter in a fresh kernel with nbclient (the client that myst-nb, and so
jupyter-book, executes chapters with) from the chapter's folder. A lost message shows as a cell that
lasts the whole poll timeout (``--timeout``) and then, often, completes: the reply had been waiting in
the socket all along and the client's last non-blocking poll finds it. So a cell that lasts at least
``0.95 * timeout`` counts as a stall; a run that fails counts as an error. Prints one line per run and
a table of stalls per chapter; exits 1 if any run stalled or failed.

This is how the hang of the widget cells was found (see README, "Builds that fail fast"): with the
widget wrapper of that time, ten-cell notebooks of ``with out: display(fig)`` stalled in about one run
in seven on a loaded 2-core machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run_once(path: Path, timeout: int) -> tuple[str, list[tuple[int, float]], float]:
    """Execute ``path`` once: (``"ok"`` or the error, [(cell index, seconds) of stalled cells], seconds)."""
    nb = nbformat.read(path, as_version=4)
    started: dict[int, float] = {}
    stalls: list[tuple[int, float]] = []

    def on_execute(cell, cell_index, **_):
        started[cell_index] = time.monotonic()

    def on_executed(cell, cell_index, **_):
        seconds = time.monotonic() - started[cell_index]
        if seconds >= 0.95 * timeout:
            stalls.append((cell_index, round(seconds, 1)))

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_execute=on_execute, on_cell_executed=on_executed)
    start = time.monotonic()
    try:
        client.execute()
        status = "ok"
    except Exception as exc:  # a timeout, a cell error or a dead kernel: all count as failures
        status = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
        if "Timeout" in status and started and not stalls:  # the cell that never came back
            last = max(started)
            stalls.append((last, round(time.monotonic() - started[last], 1)))
    return status, stalls, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=20, help="executions of each notebook (default 20)")
    parser.add_argument("--timeout", type=int, default=120, help="per-cell poll timeout in seconds (default 120)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.timeout < 1:
        parser.error("--runs and --timeout must be positive")
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    for p in args.notebooks:
        try:
            nbformat.read(p, as_version=4)
        except Exception as err:
            parser.error(f"{p} is not a notebook: {type(err).__name__}")
    table = {}
    for run in range(args.runs):
        for path in args.notebooks:
            status, stalls, seconds = run_once(path.resolve(), args.timeout)
            row = table.setdefault(path.name, {"runs": 0, "stalled": 0, "failed": 0, "where": []})
            row["runs"] += 1
            row["stalled"] += bool(stalls)
            row["failed"] += status != "ok"
            row["where"] += [f"run {run} cell {c} ({s} s)" for c, s in stalls]
            print(f"run {run:2d} {path.name}: {status} in {seconds:.1f} s"
                  + (f"; stalled cells {stalls}" if stalls else ""), flush=True)
    print(f"\n| chapter | runs | stalled runs | failed runs |\n|---|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | {row['runs']} | {row['stalled']} | {row['failed']} |")
    for name, row in table.items():
        for where in row["where"]:
            print(f"stall: {name} {where}")
    bad = sum(r["stalled"] + r["failed"] for r in table.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
