"""How long a reader waits: open a chapter in JupyterLab in a real browser and run it top to bottom.

    .venv/bin/python benchmarks/reading_interactively.py [--chapter 01_ve_sde] [--profile default]

Starts JupyterLab on 127.0.0.1 (as `make lab` does, on a copy of the chapter), opens the chapter in
Debian's Chromium through Playwright, and prints the seconds until the chapter's kernel is ready
("open") and until "Run All Cells" has finished ("run"), then checks that no cell failed. The README's
"Reading interactively" quotes its figures for chapter 1 in the default profile (what `make lab` gives).
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from lab_browser import CHROMIUM, CHROMIUM_ARGS, ERRORS_JS, KERNEL_IDLE_JS, RUN_ALL_JS, Lab  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default="01_ve_sde")
    parser.add_argument("--profile", default="default", choices=["small", "default", "gpu"])
    parser.add_argument("--timeout", type=float, default=1200, help="seconds allowed for Run All")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    path = f"{args.chapter}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        home = pathlib.Path(tmp)
        (home / "notebooks").mkdir()
        shutil.copy(ROOT / "book" / path, home / "notebooks")
        t_start = time.monotonic()
        lab = Lab(home, home / "notebooks", profile=args.profile)
        try:
            t_server = time.monotonic() - t_start
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.monotonic()
                page.goto(lab.url(f"lab/workspaces/bench/tree/{path}"))
                page.wait_for_function(KERNEL_IDLE_JS, arg=path, timeout=120_000)
                t_open = time.monotonic() - t0
                t0 = time.monotonic()
                page.evaluate(RUN_ALL_JS, path)
                page.wait_for_function("() => window.dgRun !== 'running'", timeout=args.timeout * 1000,
                                       polling=500)
                t_run = time.monotonic() - t0
                status, errors = page.evaluate("() => window.dgRun"), page.evaluate(ERRORS_JS, [path, None])
                browser.close()
        finally:
            lab.stop()
    print(f"{args.chapter}, profile {args.profile}: JupyterLab server up in {t_server:.1f} s; chapter open "
          f"with its kernel ready in {t_open:.1f} s; Run All Cells {t_run:.1f} s ({status}); "
          f"failed cells: {errors or 'none'}")
    return 0 if status == "done" and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
