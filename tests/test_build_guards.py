"""Fail-fast guards of the build: a hanging cell fails in minutes, naming its notebook and cell; two
builds compare equal by tests/compare_builds.py, and that comparison can fail."""
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import compare_builds  # noqa: E402

LIMIT_S = 5 * 60  # the bound: a hang fails the build in under five minutes


def _config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_cell_timeout_is_minutes_in_the_book_and_in_nbval():
    timeout = _config()["execute"]["timeout"]
    assert 0 < timeout <= LIMIT_S - 60, f"cell timeout {timeout}s leaves no minute for start-up within {LIMIT_S}s"
    assert _config()["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert f"--nbval-cell-timeout={timeout}" in addopts.split(), "nbval must use the book's cell timeout"


def test_a_hanging_cell_fails_the_build_naming_notebook_and_cell(tmp_path):
    """The book's own configuration, with the cell timeout shortened to keep the test quick."""
    short = 15
    config = (ROOT / "_config.yml").read_text()
    config, n = re.subn(r"(?m)^(\s*timeout:)\s*\d+", rf"\g<1> {short}", config)
    assert n == 1
    (tmp_path / "_config.yml").write_text(config)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: sleeper\n")
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", tmp_path / "book" / "references.bib")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A notebook that hangs"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(3600)  # a deliberately hanging cell"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "sleeper.ipynb")
    jb = Path(sys.executable).parent / "jupyter-book"
    start = time.monotonic()
    proc = subprocess.run([str(jb), "build", str(tmp_path), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=LIMIT_S, cwd=tmp_path)
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a hanging cell must fail the build"
    assert elapsed < short + 120, f"the build took {elapsed:.0f}s to fail"
    assert "sleeper" in log, "the failure must name the notebook"
    assert "time.sleep(3600)  # a deliberately hanging cell" in log, "the failure must show the cell"
    assert "timed out" in log


# -- tests/compare_builds.py -------------------------------------------------------------------------


def _fake_build(root: Path, pi_text: str, printed: str | list[str]) -> Path:
    folder = root / "_build" / "jupyter_execute" / "book"
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("...")])
    pieces = [printed] if isinstance(printed, str) else printed
    nb.cells[0].outputs = [
        *(nbformat.v4.new_output("stream", name="stdout", text=t) for t in pieces),
        nbformat.v4.new_output("display_data", data={"text/html": f"<div id='{printed}'></div>"}),
    ]
    nbformat.write(nb, folder / "ch.ipynb")
    # myst-nb keeps the glued values beside the executed notebook
    glued = {"pi": {"output_type": "display_data", "data": {"text/plain": pi_text},
                    "metadata": {"scrapbook": {"name": "pi", "mime_prefix": "application/papermill.record/"}}}}
    (folder / "ch.glue.json").write_text(json.dumps(glued))
    return root


def test_compare_builds_accepts_equal_builds_and_ignores_html_ids(tmp_path, capsys):
    a = _fake_build(tmp_path / "a", "3.14", "measured 0.5\n")
    b = _fake_build(tmp_path / "b", "3.14", "measured 0.5\n")
    assert compare_builds.main([str(a), str(b)]) == 0
    assert "1 of them glued values" in capsys.readouterr().out


def test_compare_builds_ignores_how_the_kernel_split_a_print(tmp_path, capsys):
    """The same two prints, flushed as one message in one build and with the end-of-line of the first
    in a message of its own in the other (seen under load: chapter 9, cell 21)."""
    a = _fake_build(tmp_path / "a", "3.14", "measured 0.5\nmeasured 0.7\n")
    b = _fake_build(tmp_path / "b", "3.14", ["measured 0.5", "\n", "measured 0.7\n"])
    assert compare_builds.main([str(a), str(b)]) == 0


@pytest.mark.parametrize("pi_text, printed, where", [("3.15", "measured 0.5\n", "glue pi"),
                                                     ("3.14", "measured 0.6\n", "stream:stdout")])
def test_compare_builds_reports_a_changed_value(tmp_path, capsys, pi_text, printed, where):
    a = _fake_build(tmp_path / "a", "3.14", "measured 0.5\n")
    b = _fake_build(tmp_path / "b", pi_text, printed)
    assert compare_builds.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert where in out and "differ in 1 places" in out
