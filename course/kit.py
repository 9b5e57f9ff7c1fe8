"""The course kit: student notebooks from the chapters, and a grader, through nbgrader.

    .venv/bin/python course/kit.py student [--out _build/course]
    .venv/bin/python course/kit.py site [--out _build/course]
    .venv/bin/python course/kit.py grade SUBMISSIONS [--course _build/course] [--profile small]

Each chapter is the single source. Its solution cells carry nbgrader's cell metadata (``solution``;
a written answer is a manually graded answer cell, a coding answer keeps its ``def`` line and has its
body between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), its grade cells call
``dg.exercises.grade`` (nbgrader "autograder tests", locked), and the Markdown cells that only hold a
``solution-start``/``solution-end`` fence of the rendered book are tagged ``student-remove``.

``student`` makes an nbgrader course folder in ``OUT/nbgrader`` (``source/<chapter>/`` holds the
chapter without its ``student-remove`` cells: the autograder version; ``gradebook.db`` records its
grade cells and checksums), runs ``nbgrader generate_assignment`` for every chapter, and copies each
released notebook -- solutions replaced by "your turn" stubs -- to ``OUT/student/<chapter>.ipynb``.

``site`` writes the book's sources without the solutions to ``OUT/site`` (for a course website, built
by ``make course-site``): written solutions and the fence cells are left out, and solution code cells
are tagged ``remove-cell`` (executed, so that the grade cells still pass, but not shown). Sphinx-
exercise's own ``hide_solutions`` cannot do this: it leaves the end node of every gated solution
behind (sphinx-exercise 1.2.1; "unknown node type: solution_end_node").

``grade`` takes a folder ``SUBMISSIONS/<student>/<chapter>.ipynb``, copies each notebook into the
course folder, runs ``nbgrader autograde`` on it in a fresh kernel (a time limit per cell and one per
notebook), and writes ``OUT/grades.csv`` and ``OUT/grades.html``: one row per student, chapter and
exercise, with the score and its status (graded, awaiting manual grading for written answers, timed
out, failed to run). Exit status 0 when every notebook was graded.
"""
from __future__ import annotations

import argparse
import csv
import html
import os
import pathlib
import shutil
import subprocess
import sys
from typing import NamedTuple

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
REMOVE_TAG = "student-remove"
CODE_STUB = "# Your turn: write the code here.\nraise NotImplementedError()"
TEXT_STUB = "*Your answer here.*"

NBGRADER_CONFIG = """# Written by course/kit.py: the nbgrader configuration of the course kit.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = {db_url!r}
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
c.Execute.timeout = {cell_timeout}
c.Execute.interrupt_on_timeout = True
"""


class Score(NamedTuple):
    """One line of the grade table."""

    student: str
    chapter: str
    exercise: str   # the grade cell's id, e.g. "ch05-heun_sampler-check"
    kind: str       # "autograded" (a grade cell calling dg.exercises.grade) or "written" (manual)
    score: float | None
    max_score: float
    status: str     # "graded", "awaiting manual grading", "timed out", "failed to run"


def chapters() -> list[str]:
    """The chapters' names (``01_ve_sde`` ...), in order."""
    return sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb"))


def _env() -> dict:
    """The environment for nbgrader, here and in its subprocesses: it runs alembic (the gradebook's
    migrations) as a command, so the venv's bin must be on PATH even when the venv is not activated."""
    bindir = str(pathlib.Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ)


def _nbgrader(args: list[str], course: pathlib.Path, timeout: float | None = None,
              env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def _write_config(course: pathlib.Path, cell_timeout: int = 240) -> None:
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(
        root=str(course), db_url=f"sqlite:///{course / 'gradebook.db'}", code_stub=CODE_STUB,
        text_stub=TEXT_STUB, cell_timeout=cell_timeout))


def source_notebook(chapter: str) -> nbformat.NotebookNode:
    """The chapter as nbgrader's source: without the cells tagged ``student-remove``."""
    nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if REMOVE_TAG not in c.metadata.get("tags", [])]
    return nb


def make_student(out: pathlib.Path) -> list[pathlib.Path]:
    """Student notebooks of every chapter in ``out/student``; the course folder in ``out/nbgrader``.

    Raises ``RuntimeError`` with nbgrader's log when it fails on a chapter."""
    out = out.resolve()
    course = out / "nbgrader"
    if course.exists():
        shutil.rmtree(course)
    (out / "student").mkdir(parents=True, exist_ok=True)
    course.mkdir(parents=True)
    _write_config(course)
    for chapter in chapters():
        src = course / "source" / chapter
        src.mkdir(parents=True)
        nbformat.write(source_notebook(chapter), src / f"{chapter}.ipynb")
    # one nbgrader process for every chapter (its assignment id is a glob): its start-up is most of the time
    run = _nbgrader(["generate_assignment", "*", "--force"], course)
    written, missing = [], []
    for chapter in chapters():
        released = course / "release" / chapter / f"{chapter}.ipynb"
        if not released.exists():
            missing.append(chapter)
            continue
        target = out / "student" / f"{chapter}.ipynb"
        shutil.copyfile(released, target)
        written.append(target)
    if run.returncode != 0 or missing:
        raise RuntimeError(f"nbgrader generate_assignment failed (no student notebook for {missing or 'none'}):\n"
                           f"{run.stdout}\n{run.stderr}")
    return written


def site_notebook(chapter: str) -> nbformat.NotebookNode:
    """The chapter for a course website: no written solution, no fence cell, and its solution code
    cells tagged ``remove-cell`` (myst-nb runs them but does not show them)."""
    nb = source_notebook(chapter)
    kept = []
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            if cell.cell_type != "code":
                continue
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "remove-cell"]
        kept.append(cell)
    nb.cells = kept
    return nb


def make_site(out: pathlib.Path) -> pathlib.Path:
    """The book's sources without solutions in ``out/site`` (with the student notebooks its chapter
    pages link to); build it with ``jupyter-book build out/site``."""
    out = out.resolve()
    site = out / "site"
    if site.exists():
        shutil.rmtree(site)
    shutil.copytree(BOOK, site / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, site / name)
    for chapter in chapters():
        nbformat.write(site_notebook(chapter), site / "book" / f"{chapter}.ipynb")
    shutil.copytree(out / "student", site / "_build" / "course" / "student")  # the pages' download links
    return site


def _collect(submissions: pathlib.Path, course: pathlib.Path) -> list[tuple[str, str]]:
    """Copy ``submissions/<student>/<chapter>.ipynb`` into the course folder; the (student, chapter)
    pairs found. Raises ``ValueError`` for a notebook that is not named after a chapter."""
    known, pairs = set(chapters()), []
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        for nb in sorted(student_dir.glob("*.ipynb")):
            if nb.stem not in known:
                raise ValueError(f"{nb}: not a chapter's notebook (expected one of {sorted(known)})")
            dest = course / "submitted" / student_dir.name / nb.stem / nb.name
            if dest.parent.exists():
                shutil.rmtree(dest.parent)
            dest.parent.mkdir(parents=True)
            shutil.copyfile(nb, dest)
            pairs.append((student_dir.name, nb.stem))
    return pairs


def _scores(course: pathlib.Path, student: str, chapter: str, status: str) -> list[Score]:
    from nbgrader.api import Gradebook, MissingEntry

    _env()
    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assignment = gb.find_assignment(chapter)
        cells = [(cell, nb.name) for nb in assignment.notebooks for cell in nb.grade_cells]
        for cell, notebook in cells:
            kind = "autograded" if cell.cell_type == "code" else "written"
            try:
                grade = gb.find_grade(cell.name, notebook, chapter, student)
            except MissingEntry:
                rows.append(Score(student, chapter, cell.name, kind, 0.0, cell.max_score, status))
                continue
            if grade.needs_manual_grade:
                rows.append(Score(student, chapter, cell.name, kind, None, cell.max_score,
                                  "awaiting manual grading"))
            else:
                rows.append(Score(student, chapter, cell.name, kind, float(grade.score), cell.max_score, status))
    return rows


def grade(submissions: pathlib.Path, course: pathlib.Path, *, profile: str = "small",
          cell_timeout: int = 240, notebook_timeout: int = 1200) -> list[Score]:
    """Autograde every submitted notebook; one :class:`Score` per grade cell of each submission."""
    course, submissions = course.resolve(), submissions.resolve()
    if not (course / "gradebook.db").exists():
        raise FileNotFoundError(f"{course} holds no gradebook: run `make student` (course/kit.py student) first")
    _write_config(course, cell_timeout)
    env = dict(_env(), DG_PROFILE=profile)
    rows = []
    for student, chapter in _collect(submissions, course):
        try:
            run = _nbgrader(["autograde", chapter, f"--student={student}", "--create", "--force"], course,
                            timeout=notebook_timeout, env=env)
            status = "graded" if run.returncode == 0 else "failed to run"
        except subprocess.TimeoutExpired:
            status = "timed out"
        rows.extend(_scores(course, student, chapter, status))
    return rows


def write_tables(rows: list[Score], out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``grades.csv`` (one row per student, chapter and exercise) and ``grades.html`` (the same, with
    each student's total of autograded points)."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / "grades.csv", out / "grades.html"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(Score._fields)
        for r in rows:
            writer.writerow([*r[:4], "" if r.score is None else f"{r.score:g}", f"{r.max_score:g}", r.status])
    totals = {}
    for r in rows:
        if r.kind == "autograded":
            got, top = totals.get(r.student, (0.0, 0.0))
            totals[r.student] = (got + (r.score or 0.0), top + r.max_score)
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in
                         (r.student, r.chapter, r.exercise, r.kind,
                          "" if r.score is None else f"{r.score:g}", f"{r.max_score:g}", r.status)) + "</tr>\n"
        for r in rows)
    total_rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{got:g} / {top:g}</td></tr>\n"
                         for s, (got, top) in sorted(totals.items()))
    header = "".join(f"<th>{f}</th>" for f in Score._fields)
    html_path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Grades</title></head><body>\n"
        "<h1>Grades</h1>\n<h2>Autograded points per student</h2>\n"
        f"<table border='1'><tr><th>student</th><th>autograded points</th></tr>\n{total_rows}</table>\n"
        f"<h2>Every exercise</h2>\n<table border='1'><tr>{header}</tr>\n{cells}</table>\n</body></html>\n")
    return csv_path, html_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The course kit: student notebooks and the grader (nbgrader).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_student = sub.add_parser("student", help="student notebooks of every chapter, and the course folder")
    p_student.add_argument("--out", type=pathlib.Path, default=ROOT / "_build" / "course")
    p_site = sub.add_parser("site", help="the book's sources without solutions, for a course website")
    p_site.add_argument("--out", type=pathlib.Path, default=ROOT / "_build" / "course")
    p_grade = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<chapter>.ipynb")
    p_grade.add_argument("submissions", type=pathlib.Path)
    p_grade.add_argument("--course", type=pathlib.Path, default=ROOT / "_build" / "course")
    p_grade.add_argument("--out", type=pathlib.Path, default=None, help="where the tables go (default: --course)")
    p_grade.add_argument("--profile", default="small", choices=["small", "default", "gpu"])
    p_grade.add_argument("--cell-timeout", type=int, default=240, help="seconds a cell may run")
    p_grade.add_argument("--notebook-timeout", type=int, default=1200, help="seconds a notebook may run")
    args = parser.parse_args(argv)
    if args.command == "student":
        written = make_student(args.out)
        print(f"{len(written)} student notebooks in {args.out / 'student'}; the course folder (autograder "
              f"version and gradebook) in {args.out / 'nbgrader'}")
        return 0
    if args.command == "site":
        print(f"the book without solutions: {make_site(args.out)}")
        return 0
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of <student>/<chapter>.ipynb")
    rows = grade(args.submissions, args.course / "nbgrader", profile=args.profile,
                 cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout)
    csv_path, html_path = write_tables(rows, args.out or args.course)
    bad = sorted({(r.student, r.chapter, r.status) for r in rows if r.status in ("timed out", "failed to run")})
    print(f"graded {len({(r.student, r.chapter) for r in rows})} notebooks: {csv_path}, {html_path}")
    for student, chapter, status in bad:
        print(f"  {student} {chapter}: {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
