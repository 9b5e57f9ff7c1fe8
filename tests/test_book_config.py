"""The book's configuration holds together: the table of contents names existing pages, every
citation has a bibliography entry, labels are unique across chapters, and the MathJax macros the
notation page documents are defined. These are the mistakes that otherwise surface only as warnings
(errors, with -W) at the end of a full book build."""
import json
import re
from pathlib import Path

import pytest
import yaml
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
LABEL = re.compile(r"^:label:\s*(\S+)\s*$", re.M)
EQ_LABEL = re.compile(r"^\$\$\s*\((\S+)\)\s*$", re.M)
GATED_SOLUTION = re.compile(r"```\{solution-start\}\s*(\S+)")


def toc_files():
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files += [s["file"] for s in chapter.get("sections", [])]
    return files


def source(path: Path) -> Path:
    for suffix in (".md", ".ipynb"):
        if path.with_suffix(suffix).exists():
            return path.with_suffix(suffix)
    raise FileNotFoundError(path)


def markdown_text(path: Path) -> str:
    """The Markdown of a page: the file itself, or the markdown cells of a notebook."""
    if path.suffix == ".md":
        return path.read_text()
    nb = json.loads(path.read_text())
    return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


PAGES = [source(ROOT / f) for f in toc_files() if any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]


def test_toc_pages_exist_and_are_unique():
    files = toc_files()
    missing = [f for f in files if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml names pages that do not exist: {missing}"
    assert len(files) == len(set(files)), "a page appears twice in _toc.yml"


def test_toc_parts_in_book_order():
    captions = [p["caption"] for p in TOC["parts"]]
    assert captions[0] == "Front matter" and captions[-1] == "Back matter", captions
    numerals = [m.group(1) for c in captions if (m := re.match(r"Part (VI{0,3}|IV|IX|I{1,3})\b", c))]
    rank = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9}
    assert [rank[n] for n in numerals] == sorted(rank[n] for n in numerals), captions
    assert len(numerals) == len(captions) - 2, f"every part between the front and back matter is 'Part N...': {captions}"


def test_config_has_the_book_stack():
    ext = CONFIG["sphinx"]["extra_extensions"]
    assert {"sphinx_proof", "sphinx_exercise"} <= set(ext)
    assert CONFIG["execute"]["execute_notebooks"] == "force"
    assert CONFIG["execute"]["allow_errors"] is False
    assert CONFIG["only_build_toc_files"] is True
    assert {".venv", "_build"} <= set(CONFIG["exclude_patterns"])
    for bib in CONFIG["bibtex_bibfiles"]:
        assert (ROOT / bib).exists(), bib


def test_status_and_bibliography_pages():
    files = toc_files()
    assert "book/status" in files and "book/bibliography" in files
    assert "{nb-exec-table}" in markdown_text(source(ROOT / "book/status"))
    assert "{bibliography}" in markdown_text(source(ROOT / "book/bibliography"))
    pages_with_bibliography = [p.name for p in PAGES if "{bibliography}" in markdown_text(p)]
    assert pages_with_bibliography == ["bibliography.md"], (
        "only the bibliography page may hold a {bibliography} directive (others duplicate citations)")


NOTATION_MACROS = ("R", "E", "N", "I", "x", "y", "eps", "xT", "xs", "smin", "smax", "dd", "norm", "Dx", "score")


def test_mathjax_macros_of_the_notation_page_are_defined():
    macros = CONFIG["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    notation = (ROOT / "book/notation.md").read_text()
    for name in NOTATION_MACROS:
        assert name in macros, f"\\{name} is not defined in _config.yml"
        assert re.search(rf"\\{name}(?![A-Za-z])", notation), f"\\{name} is defined but the notation page never uses it"
    for name, value in macros.items():
        body = value[0] if isinstance(value, list) else value
        assert isinstance(body, str) and body, name
        if isinstance(value, list):
            assert all(f"#{k}" in body for k in range(1, value[1] + 1)), name


def test_bibliography_keys_are_unique_and_complete():
    text = (ROOT / "book/references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,\s]+),", text, re.M)
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    entries = parse_file(str(ROOT / "book/references.bib")).entries
    for key, entry in entries.items():
        assert "title" in entry.fields and "year" in entry.fields, key
        assert entry.persons.get("author"), key


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_citation_has_an_entry(page):
    keys = set(parse_file(str(ROOT / "book/references.bib")).entries.keys())
    cited = {k.strip() for group in CITE.findall(markdown_text(page)) for k in group.split(",")}
    assert cited <= keys, f"{page.name} cites unknown keys {sorted(cited - keys)}"


def test_labels_are_unique_across_pages():
    """Equation, theorem and exercise labels share one namespace in Sphinx."""
    seen = {}
    for page in PAGES:
        text = markdown_text(page)
        for label in LABEL.findall(text) + EQ_LABEL.findall(text):
            assert label not in seen, f"label {label!r} in {page.name} already used in {seen[label]}"
            seen[label] = page.name


def test_gated_solutions_are_closed():
    for page in PAGES:
        text = markdown_text(page)
        assert len(GATED_SOLUTION.findall(text)) == text.count("{solution-end}"), page.name


def test_regexes_find_what_they_should():
    """The checks above can fail: the patterns match the MyST syntax the chapters use."""
    sample = ":label: a-b\n$$ (eq-1)\n{cite}`x,y` {cite:t}`z`\n```{solution-start} ex\n"
    assert LABEL.findall(sample) == ["a-b"]
    assert EQ_LABEL.findall(sample) == ["eq-1"]
    assert CITE.findall(sample) == ["x,y", "z"]
    assert GATED_SOLUTION.findall(sample) == ["ex"]
