"""Live widgets in a real browser: JupyterLab driven by Debian's Chromium through Playwright.

The other widget tests call the drawing functions and execute the ``interact`` cells headless; neither
shows that a reader's slider moves a figure. Here, for one widget of each Part of the book, the test
starts a JupyterLab server on the loopback address (token, throw-away settings, a copy of the chapter
so the book's notebooks stay without outputs), opens the chapter in Chromium, runs it down to and
including the widget's cell in the page, checks that no cell failed, moves the widget's control with
the mouse (a slider) or picks another option (a drop-down), and compares screenshots of the figure
before and after: with nothing moved the figure must stay as the cell drew it (a browser snaps a
control's value to the control's grid and redraws at once: this is how chapter 2's sigma = 0.5 was
found redrawn at 0.501), and after the move it must have changed. The screenshots stay in ``_build/browser/`` (kept by CI as artefacts).

Nothing is downloaded: Playwright drives ``/usr/bin/chromium`` (``make test`` installs Debian's
``chromium`` when it is missing, as it does ``dataset-fashion-mnist``). Outside CI the test is
skipped when Chromium is absent; in CI (``CI`` set) that is a failure.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import time

import pytest

from lab_browser import (CHROMIUM, CHROMIUM_ARGS, Lab, ERRORS_JS, KERNEL_IDLE_JS, RUN_TO_JS, SHUT_DOWN_JS, changed_share,
                         move_control, readout, wait_for_redraw)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHOTS = ROOT / "_build" / "browser"

# One widget per Part: (Part, chapter, the description label of the control the test moves).
# The cheapest chapter of each Part to run down to its widget (small profile, 2-core CPU: chapter 2
# 6 s, 5 28 s, 6 21 s, 7 16 s, 9 23 s, 10 90 s, 11 38 s, 12 43 s, whole chapters), so that they stay near
# three minutes together.
WIDGETS = [
    ("Part I", "02_denoiser", "sigma"),
    ("Part II", "06_schedules", "steps"),
    ("Part III", "07_mean_shift", "sigma"),
    ("Part IV", "09_image_trajectories", "step"),
    ("Part V", "12_linear_local", "level"),
    ("Part VI", "11_gaussian_paths", "steps"),
]

RUN_TIMEOUT_S = 150       # one chapter, down to its widget, in the small profile (measured: see README)
MIN_CHANGED_SHARE = 1e-3  # a redrawn figure differs in far more pixels; an unchanged one in none

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is missing (`sudo apt-get install -y chromium`; `make test` does it)",
                allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    notebooks.mkdir()
    for _, chapter, _ in WIDGETS:
        shutil.copy(ROOT / "book" / f"{chapter}.ipynb", notebooks)
    server = Lab(home, notebooks)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def widget_cell_index(chapter: str) -> int:
    """Index (among all cells) of the chapter's one ``dg.widgets.interact`` cell."""
    cells = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())["cells"]
    found = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "dg.widgets.interact(" in "".join(c["source"])]
    assert len(found) == 1, f"{chapter}: expected one interact cell, found {found}"
    return found[0]


@pytest.mark.parametrize("part, chapter, label", WIDGETS, ids=[w[1] for w in WIDGETS])
def test_moving_a_widget_control_redraws_its_figure(lab, browser, part, chapter, label):
    index, path = widget_cell_index(chapter), f"{chapter}.ipynb"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(lab.url(f"lab/workspaces/{chapter}/tree/{path}"))  # a workspace of its own: one tab
        page.wait_for_function(KERNEL_IDLE_JS, arg=path, timeout=60_000)
        t0 = time.monotonic()
        panel_id = page.evaluate(RUN_TO_JS, [path, index])
        page.wait_for_function("() => window.dgRun !== 'running'", timeout=RUN_TIMEOUT_S * 1000)
        run_s = time.monotonic() - t0
        print(f"{part} {chapter}: ran to the widget in {run_s:.0f} s", end="; ")
        assert page.evaluate("() => window.dgRun") == "done", page.evaluate("() => window.dgRun")
        errors = page.evaluate(ERRORS_JS, [path, index])
        if errors:
            page.screenshot(path=SHOTS / f"{chapter}-failed.png")
        assert errors == [], f"{chapter}: cells failed in the browser: {errors}"

        cell = page.locator(f"[id='{panel_id}'] .jp-Notebook .jp-Cell").nth(index)
        figure = cell.locator(".jp-OutputArea img").last
        figure.wait_for(state="visible", timeout=30_000)
        figure.scroll_into_view_if_needed()
        control = cell.locator(".widget-inline-hbox").filter(
            has=page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))
        assert control.count() == 1, f"{chapter}: no single control labelled {label!r}"
        shown = readout(control)
        before, still, after = (SHOTS / f"{chapter}-{name}.png" for name in ("before", "still", "after"))
        src = figure.get_attribute("src")
        figure.screenshot(path=before)
        page.wait_for_timeout(1500)  # a control whose value is off its grid is snapped and redrawn by now
        figure.screenshot(path=still)
        assert figure.get_attribute("src") == src and changed_share(before, still) == 0.0, \
            f"{chapter}: the figure was redrawn with nothing moved"

        move_control(page, control)
        wait_for_redraw(page, figure, src, path, f"{chapter}: the figure was not redrawn after moving {label!r}")
        figure.screenshot(path=after)
        assert readout(control) != shown, f"{chapter}: the control {label!r} did not move"
        share = changed_share(before, after)
        print(f"moving {label!r} changed {share:.1%} of the figure's pixels")
        assert share > MIN_CHANGED_SHARE, f"{chapter}: the figure did not change ({share:.2%} of pixels)"
    finally:
        page.evaluate(SHUT_DOWN_JS, path)  # the chapter's kernel; the server stops the rest at the end
        page.close()
