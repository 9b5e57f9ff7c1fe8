"""The reproduction ledger (dg.ledger): one call per claim asserts and records it; the rows follow the
JSON Schema; a chapter's file is rewritten at each call; nothing is written outside a book; the findings'
coverage cannot cite a claim that was not recorded; and a changed measurement changes the ledger on the
next run of a notebook."""
import json
import re
from pathlib import Path

import jsonschema
import nbformat
import pytest
import yaml

from diffusion_geometry import ledger

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def args(**over):
    base = dict(paper="geometric", source="Obs. 1 (v2)", statement="The sampling trajectory is almost straight.",
                ours={"median relative deviation": 0.003}, setting={"data": "toy", "NFE": 20},
                criterion="median relative deviation < 1%", holds=True, where="ch3-sec-straight")
    return {**base, **over}


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    """Each test starts with no rows in memory and writes into its own folder."""
    ledger.clear()
    monkeypatch.setenv("DG_LEDGER_DIR", str(tmp_path / "ledger"))
    monkeypatch.setenv("DG_PROFILE", "small")
    yield tmp_path / "ledger"
    ledger.clear()


def chapter_file(folder, n, profile="small"):
    return json.loads((folder / profile / f"ch{n:02d}.json").read_text())


# --- the call -------------------------------------------------------------------------------------

def test_claim_records_writes_and_prints(fresh, capsys):
    row = ledger.claim("ch3-straight", **args())
    assert row["chapter"] == 3 and row["profile"] == "small" and row["holds"] is True
    assert row["paper_value"] is None and row["comparison"] == "agree" and row["note"] is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "ch3-straight holds" in out and "0.003" in out
    doc = chapter_file(fresh, 3)
    ledger.validate(doc)
    assert doc["rows"] == [row] == ledger.rows()


def test_false_claim_raises_with_id_criterion_and_value(fresh):
    with pytest.raises(AssertionError, match=r"ch3-straight.*median relative deviation < 1%.*0\.02"):
        ledger.claim("ch3-straight", **args(ours=0.02, holds=False))
    assert chapter_file(fresh, 3)["rows"][0]["holds"] is False  # recorded, then the build stops


def test_numpy_and_torch_values_are_accepted():
    np, torch = pytest.importorskip("numpy"), pytest.importorskip("torch")
    row = ledger.claim("ch3-straight", **args(ours={"a": np.float64(0.5), "b": torch.tensor(0.25)},
                                              holds=torch.tensor(0.25) < 1, setting={"N": np.int64(4)}))
    assert row["ours"] == {"a": 0.5, "b": 0.25} and row["holds"] is True and row["setting"] == {"N": 4}


@pytest.mark.parametrize("bad, error, message", [
    (dict(paper="chen2023"), ValueError, "unknown paper"),
    (dict(statement="   "), ValueError, "statement must not be empty"),
    (dict(source=3), TypeError, "source must be a string"),
    (dict(ours="small"), TypeError, "ours must be a real number"),
    (dict(ours={}), ValueError, "must not be an empty dict"),
    (dict(ours=float("nan")), ValueError, "finite"),
    (dict(paper_value={"FID": float("inf")}), ValueError, "finite"),
    (dict(holds=1), TypeError, "holds must be a bool"),
    (dict(setting={}), TypeError, "setting must be a non-empty dict"),
    (dict(setting={"profile": "gpu"}), ValueError, "added by claim"),
    (dict(comparison="agrees"), ValueError, "comparison must be one of"),
    (dict(comparison="differs"), ValueError, "needs a note"),
    (dict(where="ch4-sec-plane"), ValueError, "label of chapter 3"),
])
def test_bad_arguments_get_clear_errors(bad, error, message):
    with pytest.raises(error, match=message):
        ledger.claim("ch3-straight", **args(**bad))
    assert ledger.rows() == []


@pytest.mark.parametrize("claim_id", ["straight", "ch3_straight", "Ch3-straight", "ch-straight", "ch3-"])
def test_malformed_ids_are_refused(claim_id):
    with pytest.raises(ValueError, match="claim_id must look like"):
        ledger.claim(claim_id, **args())


def test_rerun_replaces_the_row_but_an_id_cannot_name_two_claims(fresh):
    ledger.claim("ch3-straight", **args(ours=0.003))
    ledger.claim("ch3-straight", **args(ours=0.004))  # the same claim re-run: its new value replaces the old
    assert [r["ours"] for r in chapter_file(fresh, 3)["rows"]] == [0.004]
    with pytest.raises(ValueError, match="already used in this kernel for a different claim \\(statement"):
        ledger.claim("ch3-straight", **args(statement="Another finding."))


def test_each_call_rewrites_its_chapter_file_with_the_kernels_rows(fresh):
    ledger.claim("ch3-straight", **args())
    ledger.claim("ch3-bent", **args(criterion="bent"))
    ledger.claim("ch4-shell", **args(where="ch4-sec-shell"))
    assert [r["id"] for r in chapter_file(fresh, 3)["rows"]] == ["ch3-straight", "ch3-bent"]
    assert [r["id"] for r in chapter_file(fresh, 4)["rows"]] == ["ch4-shell"]
    ledger.clear()  # a fresh kernel: the chapter re-run without ch3-bent leaves no stale row behind
    ledger.claim("ch3-straight", **args())
    assert [r["id"] for r in chapter_file(fresh, 3)["rows"]] == ["ch3-straight"]
    assert [r["id"] for r in ledger.read_rows(fresh / "small")] == ["ch3-straight", "ch4-shell"]
    assert ledger.read_rows() == ledger.read_rows(fresh / "small")


def test_each_profile_records_into_its_own_folder(fresh, monkeypatch):
    ledger.claim("ch3-straight", **args())
    monkeypatch.setenv("DG_PROFILE", "default")
    ledger.clear()
    ledger.claim("ch3-straight", **args(ours=0.004))
    assert chapter_file(fresh, 3, "small")["rows"][0]["profile"] == "small"
    assert chapter_file(fresh, 3, "default")["rows"][0]["ours"] == 0.004


def test_nothing_is_written_outside_a_book(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DG_LEDGER_DIR")
    monkeypatch.chdir(tmp_path)
    assert ledger.book_root() is None and ledger.ledger_dir() is None
    ledger.claim("ch3-straight", **args())
    with pytest.raises(AssertionError):
        ledger.claim("ch3-bent", **args(holds=False))
    assert list(tmp_path.rglob("*.json")) == []
    with pytest.raises(FileNotFoundError):
        ledger.published_path()


def test_inside_a_book_the_rows_go_to_its_build_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DG_LEDGER_DIR")
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # myst-nb and nbval run a chapter in its folder
    assert ledger.ledger_dir() == tmp_path / "_build" / "ledger" / "small"
    ledger.claim("ch3-straight", **args())
    assert (tmp_path / "_build" / "ledger" / "small" / "ch03.json").is_file()
    assert ledger.published_path() == tmp_path / "_build" / "ledger" / "ledger.json"


# --- the schema and the published file -------------------------------------------------------------

def valid_ledger():
    rows = [ledger.claim("ch3-straight", **args()),
            ledger.claim("ch5-ipndm", **args(where="ch5-sec-digits", paper="amed", paper_value={"FID": 13.59},
                                              comparison="differs", note="toy problem"))]
    return {"schema_version": 1, "profile": "small", "built": "2026-11-30", "rows": rows}


def test_a_valid_ledger_validates():
    ledger.validate(valid_ledger())
    jsonschema.Draft202012Validator.check_schema(ledger.LEDGER_SCHEMA)


@pytest.mark.parametrize("spoil", [
    lambda row: row.pop("criterion"),
    lambda row: row.pop("where"),
    lambda row: row.update(comparison="similar"),
    lambda row: row.update(comparison="not comparable", note=None),
    lambda row: row.update(paper="ddpm"),
    lambda row: row.update(ours="0.1"),
    lambda row: row.update(holds="yes"),
    lambda row: row.update(extra=1),
])
def test_a_malformed_row_does_not_validate(spoil):
    doc = valid_ledger()
    spoil(doc["rows"][1])
    with pytest.raises(jsonschema.ValidationError):
        ledger.validate(doc)


def test_duplicate_ids_do_not_validate():
    doc = valid_ledger()
    doc["rows"].append(dict(doc["rows"][0]))
    with pytest.raises(ValueError, match="duplicate claim ids"):
        ledger.validate(doc)


def test_write_ledger_validates_and_refuses_mixed_profiles(tmp_path):
    rows = valid_ledger()["rows"]
    doc = ledger.write_ledger(tmp_path / "out" / "ledger.json", rows, built="2026-11-30")
    assert json.loads((tmp_path / "out" / "ledger.json").read_text()) == doc and doc["profile"] == "small"
    with pytest.raises(ValueError, match="several compute profiles"):
        ledger.write_ledger(tmp_path / "x.json", [rows[0], {**rows[1], "profile": "default"}], built="2026-11-30")


# --- registries and coverage -----------------------------------------------------------------------

def test_papers_cite_entries_of_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    for key, paper in ledger.PAPERS.items():
        assert re.search(rf"@\w+\{{{paper.bibkey},", bib), key
        assert re.fullmatch(r"\d{4}\.\d{5}", paper.arxiv), key


def test_a_finding_needs_claims_or_a_reason():
    with pytest.raises(ValueError, match="either the claim ids or the reason"):
        ledger.Finding("gits", "Table", "x")
    with pytest.raises(ValueError, match="either the claim ids or the reason"):
        ledger.Finding("gits", "Table", "x", claims=("ch6-gits",), reason="GPU")
    with pytest.raises(ValueError, match="unknown paper"):
        ledger.Finding("ddpm", "Table", "x", reason="GPU")


def test_coverage_refuses_a_claim_that_was_not_recorded():
    findings = (ledger.Finding("gits", "Table", "GITS beats rho = 7", claims=("ch6-gits-beats-rho7",)),
                ledger.Finding("gits", "Table", "FIDs on CIFAR-10", reason="weights not available offline"))
    with pytest.raises(ValueError, match="ch6-gits-beats-rho7"):
        ledger.coverage([], findings)
    rows = [{"id": "ch6-gits-beats-rho7"}]
    assert [f["status"] for f in ledger.coverage(rows, findings)] == ["reproduced", "not reproduced here"]


def chapter_claims():
    """{claim id: (chapter file, where label)} of every dg.ledger.claim call in the chapters' sources."""
    found = {}
    call = re.compile(r'dg\.ledger\.claim\(\s*"([^"]+)".*?where="([^"]+)"', re.S)
    for path in CHAPTERS:
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for claim_id, where in call.findall(code):
            assert claim_id not in found, f"{claim_id} claimed twice"
            found[claim_id] = (path, where)
    return found


def test_chapters_claims_link_to_their_own_sections_and_cover_the_findings():
    claims = chapter_claims()
    assert len(claims) >= 35
    for claim_id, (path, where) in claims.items():
        assert path.name.startswith(f"{int(claim_id[2:].split('-')[0]):02d}_"), claim_id
        markdown = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert re.search(rf"^\({re.escape(where)}\)=$", markdown, re.M), f"{claim_id}: no label ({where})= in {path.name}"
    cited = {c for f in ledger.FINDINGS for c in f.claims}
    assert cited <= set(claims), f"findings cite claims no chapter makes: {sorted(cited - set(claims))}"


def test_the_ledger_page_is_back_matter_after_the_instructor_guide():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    back = [c["file"] for c in toc["parts"][-1]["chapters"]]
    assert back.index("book/reproduction_ledger") == back.index("book/instructor_guide") + 1
    # Sphinx reads documents in sorted order: the page must come after every chapter
    assert all(p.with_suffix("").name < "reproduction_ledger" for p in CHAPTERS)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "diffusion_geometry.ledger" in config["sphinx"]["extra_extensions"]


def test_the_extension_rereads_the_page_when_a_chapter_changes(monkeypatch, tmp_path):
    class Env:
        found_docs = {"book/01_ve_sde", "book/reproduction_ledger", "book/status"}

    assert ledger._outdated(None, Env, set(), {"book/01_ve_sde"}, set()) == ["book/reproduction_ledger"]
    assert ledger._outdated(None, Env, set(), set(), set()) == []

    class App:
        outdir = str(tmp_path / "_build" / "html")

    monkeypatch.delenv("DG_LEDGER_DIR")
    ledger._builder_inited(App)
    assert ledger.ledger_dir() == tmp_path / "_build" / "ledger" / "small"


# --- a changed measurement changes the ledger on the next run --------------------------------------

def test_a_changed_measurement_changes_the_ledger_on_the_next_run(fresh, tmp_path):
    nbclient = pytest.importorskip("nbclient")

    def run(measured):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            "import diffusion_geometry as dg\n"
            f"measured = {measured}\n"
            'dg.ledger.claim("ch3-straight", paper="geometric", source="Obs. 1 (v2)",\n'
            '                statement="The sampling trajectory is almost straight.", ours=measured,\n'
            '                setting={"data": "toy"}, criterion="deviation < 1%", holds=measured < 0.01,\n'
            '                where="ch3-sec-straight")\n')])
        nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
        doc = chapter_file(fresh, 3)
        ledger.validate(doc)
        return doc["rows"]

    first, second = run(0.003), run(0.005)
    assert [r["ours"] for r in first] == [0.003] and [r["ours"] for r in second] == [0.005]
