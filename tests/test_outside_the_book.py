"""A chapter opened outside the book's environment: without the package, and without myst-nb.

Readers open chapters in Colab or a bare Jupyter. Without the package, a chapter's set-up cell must say
in one line how to install it (no traceback); with the package but without the book's tools (myst-nb,
jupyter-book), the chapter must run, ``dg.notebook.glue`` showing values instead of gluing them.
Each notebook is executed from a copy in a temporary folder, in a fresh kernel whose import system
refuses the named modules (as if they were not installed).
"""
import json
import pathlib

import nbclient
import nbformat
import pytest

import diffusion_geometry as dg

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _refusing(*modules: str) -> nbformat.NotebookNode:
    """A cell that makes ``import`` of ``modules`` (and their submodules) fail as if not installed."""
    return nbformat.v4.new_code_cell(f"""import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {set(modules)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NotInstalled())""")


def _execute(cells, cwd, timeout=120) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, allow_errors=True, timeout=timeout, resources={"metadata": {"path": str(cwd)}},
                            kernel_name="python3").execute()
    return nb


def _setup_cell(chapter: pathlib.Path) -> nbformat.NotebookNode:
    """The chapter's first code cell: the set-up cell (only Markdown comes before it)."""
    nb = nbformat.read(chapter, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code")


def test_there_are_chapters():
    assert len(CHAPTERS) >= 10


@pytest.mark.parametrize("missing", ["diffusion_geometry", "torch"])
def test_without_the_package_every_chapter_says_in_one_line_how_to_install_it(tmp_path, missing):
    """Every chapter's set-up cell, the package (or a dependency it brings) missing: one line, an
    error (so that "Run all" stops there), naming the missing module and the install command."""
    nb = _execute([_refusing(missing)] + [_setup_cell(c) for c in CHAPTERS], tmp_path)
    for chapter, cell in zip(CHAPTERS, nb.cells[1:]):
        assert len(cell.outputs) == 1, f"{chapter.name}: {cell.outputs}"
        out = cell.outputs[0]
        assert out.output_type == "error" and out.ename == "ModuleNotFoundError", f"{chapter.name}: {out}"
        assert len(out.traceback) == 1 and "\n" not in out.traceback[0], f"{chapter.name}: not one line"
        line = out.traceback[0]
        assert f"No module named '{missing}'" in line, line
        assert "%pip install diffusion_geometry-" in line and "%pip install <path or git URL" in line, line
        assert "Traceback" not in line


def test_a_chapter_runs_without_myst_nb(tmp_path):
    """Chapter 2, whole, with myst-nb and jupyter-book refused: it runs, and a glued value shown."""
    chapter = ROOT / "book" / "02_denoiser.ipynb"
    nb = nbformat.read(chapter, as_version=4)
    nb.cells.insert(0, _refusing("myst_nb", "jupyter_book", "sphinx"))
    nb.cells.append(nbformat.v4.new_code_cell('glue("outside", 12345)'))
    nb = _execute(nb.cells, tmp_path, timeout=240)
    errors = [(i, o.ename, o.evalue) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert errors == []
    shown = nb.cells[-1].outputs
    assert [o.data["text/plain"] for o in shown if "data" in o] == ["12345"]
    glued = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "scrapbook" in o.get("metadata", {})]
    assert glued == [], "myst-nb's glue ran although myst-nb was refused"


def test_glue_is_myst_nb_glue_where_myst_nb_is_installed(monkeypatch):
    calls = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, variable, display=True: calls.append((name, variable, display)))
    dg.notebook.glue("x", 3, display=False)
    assert calls == [("x", 3, False)]


def test_glue_without_myst_nb_shows_the_value_or_nothing(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setitem(__import__("sys").modules, "myst_nb", None)  # import myst_nb -> ModuleNotFoundError
    monkeypatch.setattr(IPython.display, "display", lambda v: shown.append(v))
    dg.notebook.glue("x", 3)
    dg.notebook.glue("y", 4, display=False)
    assert shown == [3]


def test_glue_rejects_a_name_that_is_not_a_string():
    with pytest.raises(TypeError, match="must be a string"):
        dg.notebook.glue(3, 3)
