"""The course kit (`make student`, `make grade`, `make dist`): course/kit.py over nbgrader.

What must hold: every chapter gives a student notebook in which no solution text appears; the chapters
mark every solution (a solution that is not marked would leak); a student notebook runs top to bottom
with its stubs unfilled, only its graded cells failing, in a virtual environment that has the wheel of
`make dist` instead of the repository; the grader gives the chapter itself full marks and the student
version as generated zero. Chapter 2 (the cheapest to run) is the one executed; the text checks cover
every chapter.
"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "course"))
import kit  # noqa: E402

RUN_CHAPTER = "02_denoiser"
FENCE = re.compile(r"^\s*(`{3,}|:{3,})\s*\{solution-(start|end)\}")


def _is_solution(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def _is_grade(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade")) and cell.cell_type == "code"


def _solution_lines(cell) -> list[str]:
    """The lines of a solution cell a student must not see: the region between nbgrader's markers when
    the cell has them (the ``def`` line and docstring stay), else the whole cell."""
    lines = cell.source.splitlines()
    marked = [i for i, l in enumerate(lines) if "BEGIN SOLUTION" in l or "END SOLUTION" in l]
    if len(marked) == 2:
        lines = lines[marked[0] + 1:marked[1]]
    return [l.strip() for l in lines]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    kit.make_student(out)
    return out


@pytest.fixture(scope="module", params=kit.chapters())
def chapter(request):
    return request.param


def test_every_chapter_marks_its_solutions(chapter):
    """Every `{solution}` directive is in a solution cell, and every cell of a gated solution block is a
    solution cell or a bare fence tagged ``student-remove``: an unmarked solution would reach students."""
    nb = nbformat.read(kit.BOOK / f"{chapter}.ipynb", as_version=4)
    inside, solutions, unmarked = False, 0, []
    for i, cell in enumerate(nb.cells):
        fence = [m.group(2) for m in map(FENCE.match, cell.source.splitlines()) if m]
        removable = kit.REMOVE_TAG in cell.metadata.get("tags", [])
        if removable:
            assert fence and all(FENCE.match(l) or re.fullmatch(r"\s*(`{3,}|:{3,})?\s*(:\w+:.*)?", l)
                                 for l in cell.source.splitlines()), f"cell {i}: tagged {kit.REMOVE_TAG} but not a bare fence"
        if "{solution}" in cell.source and not _is_solution(cell):
            unmarked.append(i)
        if inside and not (_is_solution(cell) or removable):
            unmarked.append(i)
        if "start" in fence:
            inside = True
        if "end" in fence:
            inside = False
        solutions += _is_solution(cell)
    assert unmarked == [], f"{chapter}: solution cells without nbgrader solution metadata: {unmarked}"
    assert solutions >= 2, f"{chapter}: {solutions} solution cells"
    grades = [c for c in nb.cells if _is_grade(c)]
    assert any("dg.exercises.grade(" in c.source for c in grades), f"{chapter}: no autograded exercise"


def test_one_student_notebook_per_chapter(course):
    assert sorted(p.stem for p in (course / "student").glob("*.ipynb")) == kit.chapters()


def test_no_solution_text_appears_in_a_student_notebook(course, chapter):
    source = nbformat.read(kit.BOOK / f"{chapter}.ipynb", as_version=4)
    student = nbformat.read(course / "student" / f"{chapter}.ipynb", as_version=4)
    public = {l.strip() for c in source.cells if not _is_solution(c) for l in c.source.splitlines()}
    secret = {l for c in source.cells if _is_solution(c) for l in _solution_lines(c)
              if len(l) >= 8 and l not in public}
    assert secret, f"{chapter}: no solution text to look for"
    text = "\n".join(l.strip() for c in student.cells for l in c.source.splitlines())
    leaked = sorted(l for l in secret if l in text.splitlines())
    assert leaked == [], f"{chapter}: solution lines in the student notebook: {leaked[:5]}"
    assert "BEGIN SOLUTION" not in text and "{solution-start}" not in text and "{solution}" not in text


def test_student_notebooks_keep_the_tasks_and_the_grade_cells(course, chapter):
    source = nbformat.read(kit.BOOK / f"{chapter}.ipynb", as_version=4)
    student = nbformat.read(course / "student" / f"{chapter}.ipynb", as_version=4)
    assert [c.source for c in student.cells if _is_grade(c)] == [c.source for c in source.cells if _is_grade(c)]
    stubs = [c for c in student.cells if c.cell_type == "code" and _is_solution(c)]
    defs = [c.source.splitlines()[0] for c in source.cells  # the coding exercises: a def with a marked body
            if c.cell_type == "code" and _is_solution(c) and c.source.startswith("def ") and "BEGIN SOLUTION" in c.source]
    assert defs, f"{chapter}: no coding exercise"
    for line in defs:
        stub = next(c for c in stubs if c.source.startswith(line))
        assert "raise NotImplementedError()" in stub.source and "Your turn" in stub.source


# --- a student's laptop: the wheel in a fresh venv, a student notebook run there ---------------------


@pytest.fixture(scope="module")
def wheel_kernel(tmp_path_factory):
    """A kernel whose Python is a new venv holding the wheel of `make dist` (not the repository). The
    package's dependencies come from this environment's site-packages through a .pth line (no download
    at test time); that line does not run this environment's .pth files, so its editable install of the
    repository stays out."""
    import site

    tmp = tmp_path_factory.mktemp("wheel")
    uv = pathlib.Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "build", "--offline", "--no-build-isolation", "--python",
                    sys.executable, "-o", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(uv), "pip", "install", "--offline", "--no-deps", "--python", str(python),
                    *map(str, (tmp / "dist").glob("*.whl"))], check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    pathlib.Path(purelib, "book-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    spec = tmp / "jupyter" / "kernels" / "wheel"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "wheel venv", "language": "python"}))
    return tmp / "jupyter", venv


def test_a_student_notebook_runs_from_the_wheel_with_only_its_graded_cells_failing(course, wheel_kernel, tmp_path,
                                                                                    monkeypatch):
    jupyter_path, venv = wheel_kernel
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("DG_PROFILE", "small")
    nb = nbformat.read(course / "student" / f"{RUN_CHAPTER}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import diffusion_geometry\nprint(diffusion_geometry.__file__)"))
    nbclient.NotebookClient(nb, kernel_name="wheel", allow_errors=True, timeout=240,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    where = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert where.startswith(str(venv)), f"the package came from {where!r}, not the wheel's venv"
    failed = [(i, o.ename) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    graded = {i for i, c in enumerate(nb.cells) if _is_grade(c) or (c.cell_type == "code" and _is_solution(c))}
    assert failed, "the stubs raised nothing: the student version is not a student version"
    assert {i for i, _ in failed} <= graded, f"cells other than stubs and grade cells failed: {failed}"
    assert {e for _, e in failed} <= {"NotImplementedError", "AssertionError"}, failed
    grade_out = "".join(o.get("text", "") for c in nb.cells if _is_grade(c) for o in c.outputs)
    assert "NOT ATTEMPTED" in grade_out


# --- the grader -----------------------------------------------------------------------------------


def test_the_grader_gives_the_chapter_full_marks_and_the_student_version_zero(course, tmp_path):
    submissions = tmp_path / "submissions"
    (submissions / "author").mkdir(parents=True)
    (submissions / "fresh").mkdir()
    (submissions / "author" / f"{RUN_CHAPTER}.ipynb").write_bytes((kit.BOOK / f"{RUN_CHAPTER}.ipynb").read_bytes())
    (submissions / "fresh" / f"{RUN_CHAPTER}.ipynb").write_bytes(
        (course / "student" / f"{RUN_CHAPTER}.ipynb").read_bytes())
    rows = kit.grade(submissions, course / "nbgrader", profile="small", notebook_timeout=600)
    auto = [r for r in rows if r.kind == "autograded"]
    assert {r.student for r in auto} == {"author", "fresh"} and all(r.status == "graded" for r in auto), rows
    assert all(r.score == r.max_score > 0 for r in auto if r.student == "author"), auto
    assert all(r.score == 0 for r in auto if r.student == "fresh"), auto
    csv_path, html_path = kit.write_tables(rows, tmp_path / "out")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ",".join(kit.Score._fields) and len(lines) == len(rows) + 1
    assert "<table" in html_path.read_text() and "author" in html_path.read_text()


def test_the_grader_refuses_a_notebook_that_is_not_a_chapter(course, tmp_path):
    (tmp_path / "s" / "someone").mkdir(parents=True)
    (tmp_path / "s" / "someone" / "homework.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="not a chapter's notebook"):
        kit.grade(tmp_path / "s", course / "nbgrader")


def test_every_chapter_page_links_the_student_version_that_make_student_writes(chapter):
    first = nbformat.read(kit.BOOK / f"{chapter}.ipynb", as_version=4).cells[0].source
    target = (kit.ROOT / "_build" / "course" / "student" / f"{chapter}.ipynb").relative_to(kit.ROOT)
    assert f"<../{target.as_posix()}>" in first and "{download}" in first


def test_the_course_site_shows_no_solution_but_still_runs_the_solution_code(chapter):
    """`make course-site`'s chapter: written solutions and fences gone; code solutions kept (the grade
    cells need them) but tagged remove-cell, so the page shows none of them."""
    site = kit.site_notebook(chapter)
    shown = [c for c in site.cells if "remove-cell" not in c.metadata.get("tags", [])]
    assert not any(_is_solution(c) for c in shown)
    assert not any("{solution" in c.source for c in site.cells)
    hidden = [c for c in site.cells if _is_solution(c)]
    assert hidden and all(c.cell_type == "code" for c in hidden)
    assert any(_is_grade(c) for c in shown)
