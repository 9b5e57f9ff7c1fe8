"""JupyterLab driven by a real browser (Debian's Chromium through Playwright): the helpers of
``tests/test_browser.py`` and of ``benchmarks/reading_interactively.py``.

``Lab`` starts a JupyterLab server on 127.0.0.1 with a token and throw-away settings and stops it with
its kernels; the JavaScript snippets drive JupyterLab's own commands in the page (``window.jupyterapp``,
exposed by the server's ``expose_app_in_browser``); the other helpers read and move widget controls.
Nothing here downloads anything: the browser is ``/usr/bin/chromium``.
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

CHROMIUM = pathlib.Path(os.environ.get("DG_CHROMIUM", "/usr/bin/chromium"))
REDRAW_TIMEOUT_S = 60     # the kernel redraws the figure after a control moves

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

# JupyterLab settings for the throw-away user: no news or update checks (the machine is offline), and
# every cell kept in the page (no windowing), so that the test can find the widget's cell.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on 127.0.0.1 serving ``notebooks``; stopped (with its kernels) by ``stop``."""

    def __init__(self, home: pathlib.Path, notebooks: pathlib.Path, profile: str = "small"):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        settings = home / "settings"
        for name, value in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ, DG_PROFILE=profile, JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"))
        self.log = home / "server.log"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={notebooks}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.allow_root=True"]
        self.process = subprocess.Popen(cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url("api/status"), timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"JupyterLab did not answer in 60 s:\n{self.log.read_text()}")
                time.sleep(0.2)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # the server and the kernels it started
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)


# JavaScript run in the page (JupyterLab's own commands, exposed as window.jupyterapp).
# The chapter's panel is found by its path (a restored workspace may hold other tabs).
_PANEL = "Array.from(window.jupyterapp.shell.widgets('main')).find((w) => w.context && w.context.path === path)"
KERNEL_IDLE_JS = """(path) => {
  const w = window.jupyterapp && PANEL;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === 'idle' && w.content.widgets.length);
}""".replace("PANEL", _PANEL)
RUN_ALL_JS = """(path) => {
  const app = window.jupyterapp, w = PANEL;
  window.dgRun = 'running';
  app.shell.activateById(w.id);
  app.commands.execute('notebook:run-all-cells')
    .then(() => { window.dgRun = 'done'; }, (e) => { window.dgRun = 'failed: ' + e; });
  return w.id;
}""".replace("PANEL", _PANEL)
RUN_TO_JS = """([path, index]) => {
  const app = window.jupyterapp, w = PANEL;
  window.dgRun = 'running';
  app.shell.activateById(w.id);
  w.content.activeCellIndex = index;
  app.commands.execute('notebook:run-all-above')
    .then(() => app.commands.execute('notebook:run-cell'))
    .then(() => { window.dgRun = 'done'; }, (e) => { window.dgRun = 'failed: ' + e; });
  return w.id;
}""".replace("PANEL", _PANEL)
SHUT_DOWN_JS = """(path) => { const w = window.jupyterapp && PANEL; return w && w.sessionContext.shutdown(); }""".replace(
    "PANEL", _PANEL)
ERRORS_JS = """([path, index]) => {
  const all = PANEL.content.widgets, cells = all.slice(0, index === null ? all.length : index + 1);
  const errors = [];
  cells.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    if (cell.model.executionCount === null) errors.push(`cell ${i} did not run`);
    for (const out of cell.model.outputs.toJSON())
      if (out.output_type === 'error') errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
  });
  return errors;
}""".replace("PANEL", _PANEL)


def changed_share(a: pathlib.Path, b: pathlib.Path) -> float:
    """Share of pixels that differ between two screenshots (1.0 when their sizes differ)."""
    from PIL import Image

    x, y = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (a, b))
    if x.shape != y.shape:
        return 1.0
    return float(np.any(x != y, axis=-1).mean())


def readout(control) -> str:
    """What the control shows: the selected option of a drop-down, or a slider's readout."""
    select = control.locator("select")
    if select.count():
        return select.evaluate("s => s.options[s.selectedIndex].text")
    return control.locator(".widget-readout").inner_text()


def wait_for_redraw(page, figure, src: str, path: str, message: str) -> None:
    """Wait until the figure's image differs from ``src`` and the chapter's kernel has been idle, the
    image unchanged, for a second (a dragged slider sends several values; the kernel redraws for each,
    and a slow figure is still being redrawn long after the first new image arrived)."""
    deadline = time.monotonic() + REDRAW_TIMEOUT_S
    last, since = src, time.monotonic()
    while True:
        now_src, idle = figure.get_attribute("src"), page.evaluate(KERNEL_IDLE_JS, path)
        if now_src != last or not idle:
            last, since = now_src, time.monotonic()
        elif last != src and time.monotonic() - since > 1.0:
            return
        assert time.monotonic() < deadline, message
        page.wait_for_timeout(100)


def move_control(page, control) -> None:
    """Change a widget control as a reader would: another option of a drop-down, or drag a slider."""
    select = control.locator("select")
    if select.count():
        options = select.locator("option").all_inner_texts()
        select.select_option(label=next(o for o in reversed(options) if o != readout(control)))
        return
    track = control.locator(".noUi-target").bounding_box()
    handle = control.locator(".noUi-handle").first.bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    to_right = x < track["x"] + track["width"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + (0.3 if to_right else -0.3) * track["width"], y, steps=8)
    page.mouse.up()


