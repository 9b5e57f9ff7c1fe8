"""Compare two builds of the book: every glued value and every printed or displayed result must be equal.

    python tests/compare_builds.py BUILD_A BUILD_B

``BUILD_A`` and ``BUILD_B`` are ``--path-output`` folders of ``jupyter-book build`` (``make test`` builds
``_build/test`` and ``_build/test-again``). Each chapter executed by myst-nb lies, with its outputs, in
``<build>/_build/jupyter_execute/``, and its glued values beside it in ``<chapter>.glue.json`` (myst-nb
moves the outputs of ``glue(...)`` there). For every executed notebook this compares:

* every glued value (all its MIME representations: the number as text, a figure as PNG);
* every stream (``print`` of a measured value before its ``assert``), ``text/plain``, ``text/markdown``,
  ``text/latex`` and ``image/png`` output.

Two things are normalised first. A cell's stream output is compared as the set of its distinct,
non-blank lines per stream (the kernel splits a stream into messages as its output buffer flushes, differently from run
to run, and myst-nb's stream merging then repeats some pieces in the stored notebook), and
wall-clock durations printed beside results (``in 1.8 s``, ``(53 s)``) are replaced by ``<t> s``: a
duration is not a result of the book. HTML outputs are left out: a ``to_jshtml`` animation and an ipywidgets view carry fresh random element
and model ids in every run, so they differ by construction; the PNG frames behind the animation are
the figures the chapter draws, and those are compared through the chapter's own figure outputs.
Exits 1 and lists the differences when the builds disagree, 0 when they agree (printing the counts).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

COMPARED_MIME = ("text/plain", "text/markdown", "text/latex", "image/png")
SECONDS = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?s\b")  # "1.8 s", "145 s", "53s": a wall-clock duration


def _no_durations(text: str) -> str:
    return SECONDS.sub("<t> s", text)


def executed_notebooks(build: Path) -> dict[str, Path]:
    """``{relative path: file}`` of the notebooks myst-nb executed in a build folder."""
    root = build / "_build" / "jupyter_execute"
    if not root.is_dir():
        raise SystemExit(f"error: {root} does not exist: is {build} a jupyter-book --path-output folder?")
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*.ipynb"))}


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def results(nb_path: Path) -> dict[str, str]:
    """``{key: value}`` of the comparable outputs of one executed notebook.

    Keys name the cell, the output and the kind (``cell 12 stream:stdout``, ``cell 12 output 0 text/plain``,
    ``glue pca_share``), so a difference reads as a location. Outputs other than streams are numbered among
    themselves: a stream split into more messages in one build (under load) must not shift the number of the
    display or result after it (seen in chapter 9: a claim's returned row moved from output 4 to 5).
    """
    nb = json.loads(nb_path.read_text())
    found: dict[str, str] = {}
    for ci, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        rich = 0  # outputs other than streams, counted apart: their place must not move with the stream's messages
        for out in cell.get("outputs", []):
            kind = out["output_type"]
            where = f"cell {ci} output {rich}"
            rich += kind != "stream"
            if kind == "stream":  # one text per cell and stream, whatever the kernel's flushes
                key = f"cell {ci} stream:{out['name']}"
                found[key] = found.get(key, "") + _no_durations(_text(out["text"]))
            elif kind in ("display_data", "execute_result"):
                glue = out.get("metadata", {}).get("scrapbook", {}).get("name")
                for mime, value in out.get("data", {}).items():
                    if mime in COMPARED_MIME:
                        key = f"glue {glue} {mime}" if glue else f"{where} {mime}"
                        found[key] = _text(value)
            elif kind == "error":
                found[f"{where} error"] = out.get("ename", "") + ": " + out.get("evalue", "")
    for key in [k for k in found if " stream:" in k and k.startswith("cell ") and " output " not in k]:
        # blank lines are left out too: a print's text and its end-of-line can arrive in two messages,
        # and the lone "\n" then shows as an empty line in one build only (seen under load in chapter 9)
        found[key] = "\n".join(sorted({line for line in found[key].splitlines() if line.strip()}))
    glue_file = nb_path.with_suffix(".glue.json")
    if glue_file.is_file():
        for name, out in json.loads(glue_file.read_text()).items():
            for mime, value in out.get("data", {}).items():
                if mime in COMPARED_MIME:
                    found[f"glue {name} {mime}"] = _text(value)
    return found


def compare(build_a: Path, build_b: Path) -> list[str]:
    """The differences between two builds, as readable lines (empty when they agree)."""
    a, b = executed_notebooks(build_a), executed_notebooks(build_b)
    problems = [f"{name}: executed in only one build" for name in sorted(set(a) ^ set(b))]
    n_values = n_glue = 0
    for name in sorted(set(a) & set(b)):
        ra, rb = results(a[name]), results(b[name])
        for key in sorted(set(ra) | set(rb)):
            va, vb = ra.get(key), rb.get(key)
            if va != vb:
                short = lambda v: "(missing)" if v is None else (v if len(v) < 120 else v[:117] + "...")
                problems.append(f"{name}: {key}: {short(va)!r} != {short(vb)!r}")
        n_values += len(ra)
        n_glue += sum(k.startswith("glue ") for k in ra)
    if not problems:
        print(f"identical: {len(a)} notebooks, {n_values} outputs compared, {n_glue} of them glued values")
    if n_glue == 0 and not problems:
        problems.append("no glued value found: the comparison checked nothing")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python tests/compare_builds.py BUILD_A BUILD_B", file=sys.stderr)
        return 2
    problems = compare(Path(argv[0]), Path(argv[1]))
    for line in problems:
        print(line)
    if problems:
        print(f"error: the two builds differ in {len(problems)} places")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
