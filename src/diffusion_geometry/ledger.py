r"""The reproduction ledger: every claim of the paper family a chapter checks, with our measurement.

A chapter's check cell states a finding of the papers (or a result the chapter proves about their
objects) with one call instead of a bare ``assert``::

    dg.ledger.claim(
        "ch3-straight", paper="geometric", source="Obs. 1 (v2); Sec. 2.2 of the notes",
        statement="The sampling trajectory is almost straight ...",
        ours={"median relative deviation": qx}, setting={"data": "2-D mixture", "sampler": "Euler"},
        criterion="median relative deviation from the chord < 1%", holds=qx < 0.01,
        where="ch3-sec-straight")

:func:`claim` checks its arguments, records the row, prints one line, writes the rows of the chapter
to ``<book root>/_build/ledger/<profile>/chNN.json`` and raises ``AssertionError`` when ``holds`` is
false, so a failed claim still stops the book build. The book's back-matter page *Reproduction
ledger* reads those files (:func:`read_rows`), groups the rows by paper and by Part, checks the
coverage of the papers' findings (:data:`FINDINGS`, :func:`coverage`) and publishes all rows as one
JSON file (:func:`write_ledger`) that validates against :data:`LEDGER_SCHEMA`.

Where the files go (:func:`ledger_dir`): ``<base>/<profile>/chNN.json``, one folder per compute
profile, with ``<base>`` = ``$DG_LEDGER_DIR`` when set, else ``_build/ledger`` under the book root (the
nearest parent of the working directory holding ``_toc.yml``; a chapter runs in ``book/``). Outside a
book (a student's Colab) nothing is written and :func:`claim` still asserts. Each call rewrites its
chapter's file with all rows of the kernel, so a re-run chapter replaces its old rows. In a book build
this module is also a Sphinx extension (:func:`setup`): it points ``$DG_LEDGER_DIR`` at
``<path-output>/_build/ledger``, so that each build's chapters record into their own folder, and has
the ledger page re-read whenever a chapter is. Validation with the JSON Schema needs the
``jsonschema`` package (the book's extra); :func:`claim` itself does not.

Papers (:data:`PAPERS`): Chen et al., *A Geometric Perspective on Diffusion Models* (arXiv
2305.19947); AMED-Solver (CVPR 2024, arXiv 2312.00094); GITS (ICML 2024, arXiv 2405.11326); the JSTAT
2025 "boomerang" extension (arXiv 2506.10177); EDM (Karras et al. 2022, arXiv 2206.00364); and, for chapter 11,
DDIM (arXiv 2010.02502), flow matching (arXiv 2210.02747), rectified flow (arXiv 2209.03003) and the score SDE
(arXiv 2011.13456); for chapter 12, Wang & Vastola's Gaussian score approximation (arXiv 2412.09726), Kamb &
Ganguli's local score machines (ICML 2025, arXiv 2412.20292) and Niedoba et al.'s patch-based denoisers
(arXiv 2411.19339).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from . import profiles

__all__ = [
    "Paper", "PAPERS", "COMPARISONS", "Finding", "FINDINGS", "ROW_SCHEMA", "LEDGER_SCHEMA",
    "claim", "rows", "clear", "ledger_dir", "book_root", "read_rows", "validate", "write_ledger", "coverage",
    "published_path", "setup",
]

SCHEMA_VERSION = 1
COMPARISONS = ("agree", "differs", "not comparable")
ID = re.compile(r"^ch(\d+)-[a-z0-9]+(?:-[a-z0-9]+)*$")  # "ch3-straight": chapter 3
ENV = "DG_LEDGER_DIR"


@dataclass(frozen=True)
class Paper:
    """One paper of the family: ``title``, ``short`` name, ``bibkey`` (in ``book/references.bib``), ``arxiv`` id,
    ``venue``."""

    title: str
    short: str
    bibkey: str
    arxiv: str
    venue: str


PAPERS: dict[str, Paper] = {
    "geometric": Paper("A Geometric Perspective on Diffusion Models", "geometric perspective", "chen2023geometric",
                       "2305.19947", "preprint; v2 = the ICLR 2024 submission, v3 = Aug. 2024"),
    "amed": Paper("Fast ODE-based Sampling for Diffusion Models in Around 5 Steps (AMED-Solver)", "AMED-Solver",
                  "zhou2024amed", "2312.00094", "CVPR 2024"),
    "gits": Paper("On the Trajectory Regularity of ODE-based Diffusion Sampling (GITS)", "GITS", "chen2024gits",
                  "2405.11326", "ICML 2024"),
    "boomerang": Paper("Geometric Regularity in Deterministic Sampling Dynamics of Diffusion-based Generative Models",
                       "JSTAT boomerang", "chen2025geometric", "2506.10177", "J. Stat. Mech. (JSTAT) 2025"),
    "edm": Paper("Elucidating the Design Space of Diffusion-Based Generative Models", "EDM", "karras2022edm",
                 "2206.00364", "NeurIPS 2022"),
    "ddim": Paper("Denoising Diffusion Implicit Models", "DDIM", "song2021ddim", "2010.02502", "ICLR 2021"),
    "flowmatching": Paper("Flow Matching for Generative Modeling", "flow matching", "lipman2023flow", "2210.02747",
                          "ICLR 2023"),
    "rectified": Paper("Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow",
                       "rectified flow", "liu2023rectified", "2209.03003", "ICLR 2023"),
    "wang": Paper("The Unreasonable Effectiveness of Gaussian Score Approximation for Diffusion Models and its "
                  "Applications", "Gaussian score approximation", "wang2024gaussian", "2412.09726", "preprint"),
    "kamb": Paper("An Analytic Theory of Creativity in Convolutional Diffusion Models", "local score machines",
                  "kamb2025creativity", "2412.20292", "ICML 2025"),
    "niedoba": Paper("Towards a Mechanistic Explanation of Diffusion Model Generalization", "patch-based denoisers",
                     "niedoba2025mechanistic", "2411.19339", "ICML 2025"),
    "kadkhodaie": Paper("Generalization in Diffusion Models Arises from Geometry-Adaptive Harmonic Representations",
                        "generalisation from disjoint halves", "kadkhodaie2024generalization", "2310.02557", "ICLR 2024"),
    "bonnaire": Paper("Why Diffusion Models Don't Memorize: The Role of Implicit Dynamical Regularization in Training",
                      "memorisation time", "bonnaire2025memorize", "2505.17638", "NeurIPS 2025"),
    "scoresde": Paper("Score-Based Generative Modeling through Stochastic Differential Equations", "score SDE",
                      "song2021score", "2011.13456", "ICLR 2021"),
}

# ---------------------------------------------------------------------------------------------------
# the JSON Schema of a row and of a ledger file (a chapter's file and the published file alike)

_NUMBER = {"type": "number"}
_VALUE = {"oneOf": [_NUMBER, {"type": "object", "minProperties": 1, "additionalProperties": _NUMBER}]}
_TEXT = {"type": "string", "minLength": 1}
ROW_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "a claim of the reproduction ledger",
    "type": "object",
    "required": ["id", "chapter", "paper", "source", "statement", "paper_value", "ours", "setting", "profile",
                 "criterion", "holds", "comparison", "note", "where"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": ID.pattern},
        "chapter": {"type": "integer", "minimum": 1},
        "paper": {"enum": sorted(PAPERS)},
        "source": _TEXT,
        "statement": _TEXT,
        "paper_value": {"oneOf": [{"type": "null"}, _VALUE]},
        "ours": _VALUE,
        "setting": {"type": "object", "minProperties": 1,
                    "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "profile": {"enum": list(profiles.PROFILES)},
        "criterion": _TEXT,
        "holds": {"type": "boolean"},
        "comparison": {"enum": list(COMPARISONS)},
        "note": {"oneOf": [{"type": "null"}, _TEXT]},
        "where": {"type": "string", "pattern": r"^ch\d+-[a-z0-9-]+$"},
    },
    "allOf": [{"if": {"properties": {"comparison": {"enum": ["differs", "not comparable"]}}},
               "then": {"properties": {"note": _TEXT}}}],
}
LEDGER_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "the reproduction ledger of The Geometry of Diffusion Sampling",
    "type": "object",
    "required": ["schema_version", "rows"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "chapter": {"type": "integer", "minimum": 1},
        "profile": {"enum": list(profiles.PROFILES)},
        "built": {"type": "string"},
        "rows": {"type": "array", "items": ROW_SCHEMA},
    },
}


def validate(document: Mapping) -> None:
    """Check a ledger file's content (a chapter's file or the published one) against :data:`LEDGER_SCHEMA`.

    Raises ``jsonschema.ValidationError`` (the first problem, with its path) when it does not validate,
    and ``ValueError`` when two rows share an id. Needs the ``jsonschema`` package.
    """
    import jsonschema

    jsonschema.validate(document, LEDGER_SCHEMA, cls=jsonschema.Draft202012Validator)
    ids = [r["id"] for r in document["rows"]]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate claim ids: {sorted({i for i in ids if ids.count(i) > 1})}")


# ---------------------------------------------------------------------------------------------------
# recording

_ROWS: dict[str, dict] = {}  # the claims of this kernel, by id, in the order first made
_FIXED = ("paper", "source", "statement", "criterion", "where")  # what a re-run may not change


def book_root(start: Path | None = None) -> Path | None:
    """The nearest of ``start`` (default: the working directory) and its parents that holds ``_toc.yml``."""
    here = Path.cwd() if start is None else Path(start)
    for d in (here, *here.resolve().parents):
        if (d / "_toc.yml").is_file():
            return d
    return None


def ledger_dir() -> Path | None:
    """Where chapters write their rows: ``<base>/<profile>``, with ``<base>`` = ``$DG_LEDGER_DIR``, else
    ``<book root>/_build/ledger``; ``None`` outside a book. One folder per compute profile, so that a run in
    one profile (the small-profile tests) never mixes its rows into a build in another."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return Path(env) / profiles.current()
    root = book_root()
    return None if root is None else root / "_build" / "ledger" / profiles.current()


def rows() -> list[dict]:
    """Copies of the rows recorded in this kernel, in the order the claims were first made."""
    return [dict(r) for r in _ROWS.values()]


def clear() -> None:
    """Forget the rows of this kernel (the files already written stay)."""
    _ROWS.clear()


def _number(value, what: str) -> float:
    if hasattr(value, "ndim") and getattr(value, "ndim") == 0 and hasattr(value, "item"):
        value = value.item()  # a 0-d tensor or array
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def _value(value, what: str):
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{what} must not be an empty dict")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                raise TypeError(f"{what} keys must be non-empty strings, got {k!r}")
            out[k] = _number(v, f"{what}[{k!r}]")
        return out
    return _number(value, what)


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return " ".join(value.split())


def _bool(value) -> bool:
    if hasattr(value, "ndim") and getattr(value, "ndim") == 0 and hasattr(value, "item"):
        value = value.item()
    if type(value).__name__ == "bool_":  # numpy.bool_
        value = bool(value)
    if not isinstance(value, bool):
        raise TypeError(f"holds must be a bool (the outcome of the check), got {type(value).__name__}")
    return value


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" for k, v in value.items())
    return f"{value:.4g}"


def claim(claim_id: str, *, paper: str, source: str, statement: str, ours, setting: Mapping, criterion: str,
          holds, where: str, paper_value=None, comparison: str = "agree", note: str | None = None) -> dict:
    """Check one claim of the papers, record it in the ledger and assert it.

    Parameters
    ----------
    claim_id : str
        ``"chN-name"`` (lower case, hyphens); ``N`` is the chapter that measures it.
    paper : str
        A key of :data:`PAPERS`.
    source : str
        Where in the paper ("Obs. 1 (v2)", "Sec. 3.1, Fig. 4", "Table 2").
    statement : str
        The paper's statement, with the setting of ``paper_value`` when there is one.
    ours : float or dict of str -> float
        The value the chapter measured (Python, NumPy or 0-d tensor numbers; finite).
    setting : dict of str -> str, number or bool
        Our setting (data, model, N, sampler, NFE, ...); the compute profile is added as ``profile``.
    criterion : str
        The check in words, e.g. "Heun's endpoint error < Euler's".
    holds : bool
        The outcome the chapter computed (a bool, NumPy bool or 0-d bool tensor).
    where : str
        The MyST label of the section that measures it (``"chN-..."``, same chapter as the id).
    paper_value : float or dict of str -> float, optional
        The paper's number, only where the paper gives one; ``None`` otherwise.
    comparison : {"agree", "differs", "not comparable"}
        How our result relates to the paper's; ``note`` is required unless ``"agree"``.
    note : str, optional
        Why the results differ or cannot be compared (or any remark).

    Returns the recorded row (a dict following :data:`ROW_SCHEMA`). Prints one line.

    Raises ``TypeError``/``ValueError`` on a bad argument (unknown paper, empty text, a malformed id,
    an id used before for a different claim in this kernel, a non-finite value, a missing note), and
    ``AssertionError`` naming the id, the criterion and the values when ``holds`` is false (the row is
    recorded first, with ``holds = false``).
    """
    claim_id = _text(claim_id, "claim_id")
    m = ID.match(claim_id)
    if not m:
        raise ValueError(f"claim_id must look like 'ch3-straight' (chN- then lower-case words joined by '-'), got {claim_id!r}")
    chapter = int(m.group(1))
    paper = _text(paper, "paper")
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; the ledger knows {sorted(PAPERS)}")
    if not isinstance(setting, Mapping) or not setting:
        raise TypeError("setting must be a non-empty dict (data, model, N, sampler, NFE, ...)")
    clean_setting = {}
    for k, v in setting.items():
        if not isinstance(k, str) or not k or k == "profile":
            raise ValueError(f"setting keys must be non-empty strings other than 'profile' (added by claim), got {k!r}")
        if isinstance(v, (str, bool)):
            clean_setting[k] = v
        elif isinstance(v, numbers.Integral):
            clean_setting[k] = int(v)
        else:
            clean_setting[k] = _number(v, f"setting[{k!r}]")
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}")
    if note is not None:
        note = _text(note, "note")
    if comparison != "agree" and note is None:
        raise ValueError(f"comparison {comparison!r} needs a note saying why")
    where = _text(where, "where")
    if not re.match(rf"^ch{chapter}-[a-z0-9-]+$", where):
        raise ValueError(f"where must be a MyST label of chapter {chapter} ('ch{chapter}-...'), got {where!r}")
    row = {
        "id": claim_id, "chapter": chapter, "paper": paper, "source": _text(source, "source"),
        "statement": _text(statement, "statement"),
        "paper_value": None if paper_value is None else _value(paper_value, "paper_value"),
        "ours": _value(ours, "ours"), "setting": clean_setting, "profile": profiles.current(),
        "criterion": _text(criterion, "criterion"), "holds": _bool(holds), "comparison": comparison,
        "note": note, "where": where,
    }
    old = _ROWS.get(claim_id)
    if old is not None and any(old[k] != row[k] for k in _FIXED):
        changed = [k for k in _FIXED if old[k] != row[k]]
        raise ValueError(f"claim id {claim_id!r} was already used in this kernel for a different claim ({', '.join(changed)} differ)")
    _ROWS[claim_id] = row
    _write(chapter)
    verdict = "holds" if row["holds"] else "FAILS"
    print(f"claim {claim_id} {verdict}: {row['criterion']} (ours: {_fmt(row['ours'])}; "
          f"paper: {_fmt(row['paper_value'])}; {comparison})")
    if not row["holds"]:
        raise AssertionError(f"claim {claim_id} does not hold: {row['criterion']}; ours: {_fmt(row['ours'])}")
    return dict(row)


def _write(chapter: int) -> None:
    folder = ledger_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": SCHEMA_VERSION, "chapter": chapter, "profile": profiles.current(),
           "rows": [r for r in _ROWS.values() if r["chapter"] == chapter]}
    path = folder / f"ch{chapter:02d}.json"
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)  # readers never see half a file


def read_rows(folder: Path | str | None = None) -> list[dict]:
    """All rows of the chapter files ``chNN.json`` in ``folder`` (default :func:`ledger_dir`), by chapter.

    Each file is checked with :func:`validate`. Raises ``FileNotFoundError`` when the folder is missing,
    ``ValueError`` when an id occurs in two files, ``jsonschema.ValidationError`` for a malformed file.
    """
    folder = ledger_dir() if folder is None else Path(folder)
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"no ledger folder {folder}: run the chapters first (they write it)")
    out: list[dict] = []
    for path in sorted(folder.glob("ch[0-9]*.json")):
        doc = json.loads(path.read_text())
        validate(doc)
        out += doc["rows"]
    validate({"schema_version": SCHEMA_VERSION, "rows": out})
    return out


def write_ledger(path: Path | str, all_rows: list[dict], *, built: str) -> dict:
    """Write the published ledger (``{"schema_version", "profile", "built", "rows"}``) to ``path``.

    ``built`` is the build date (ISO text). The profile is that of the rows (they must share one).
    Validates before writing (see :func:`validate`); returns the document.
    """
    found = {r["profile"] for r in all_rows}
    if len(found) > 1:
        raise ValueError(f"the rows come from several compute profiles {sorted(found)}: rebuild the chapters in one")
    doc = {"schema_version": SCHEMA_VERSION, "profile": found.pop() if found else profiles.current(),
           "built": built, "rows": list(all_rows)}
    validate(doc)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


# ---------------------------------------------------------------------------------------------------
# coverage: every finding of the paper family, reproduced by named claims or not reproduced, and why

@dataclass(frozen=True)
class Finding:
    """One finding of the papers (``paper``, ``source``, ``finding``): reproduced by the ledger rows
    ``claims`` (claim ids), or not reproduced here, with the ``reason``. Exactly one of the two is given."""

    paper: str
    source: str
    finding: str
    claims: tuple[str, ...] = ()
    reason: str | None = None

    def __post_init__(self):
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r}")
        if bool(self.claims) == bool(self.reason):
            raise ValueError(f"finding {self.finding!r}: give either the claim ids or the reason, not both or neither")
        bad = [c for c in self.claims if not ID.match(c)]
        if bad:
            raise ValueError(f"finding {self.finding!r}: malformed claim ids {bad}")


_NO_WEIGHTS = ("needs the pretrained EDM networks of CIFAR-10 / FFHQ / ImageNet-64 / LSUN, which are not available "
               "offline, and GPU-scale sampling (50k samples for FID)")

#: The findings of ``paper-notes`` sections 2-4 (the geometric paper), 6 (numbers) and 7 (AMED, GITS, JSTAT),
#: and the latent-interpolation topic of section 5, each with the claims that reproduce it or the reason it is not.
FINDINGS: tuple[Finding, ...] = (
    Finding("geometric", "Obs. 1 (v2)", "the sampling trajectory is almost straight, the denoising trajectory bent",
            claims=("ch3-sampling-straight", "ch3-denoising-bent", "ch4-quasi-linear", "ch4-denoising-bent",
                    "ch9-quasi-linear")),
    Finding("geometric", "Obs. 2 (v2)", "both trajectories move monotonically towards their final points",
            claims=("ch4-monotone-distance", "ch9-monotone-distance")),
    Finding("geometric", "Obs. 3 (v2)", "the denoising trajectory converges faster than the sampling trajectory (distance)",
            claims=("ch3-gauss-ratio", "ch3-denoising-first")),
    Finding("geometric", "Obs. 3 (v2), Fig. 3", "the denoising trajectory converges faster in FID and likelihood, per step",
            claims=("ch9-denoising-first-fd",)),
    Finding("geometric", "Obs. 4 (v2)", "the learned score matches the optimal one at large noise; three successive regions",
            claims=("ch8-digits-regimes", "ch8-fashion-regimes", "ch9-deviation-regimes")),
    Finding("geometric", "abstract (v2, v3)", "the denoising trajectory governs the curvature of the sampling trajectory",
            claims=("ch5-curvature-identity",)),
    Finding("geometric", "TL;DR (v3)", "modest score deviation preserves generation while mitigating mode collapse",
            claims=("ch8-digits-memorisation", "ch8-fashion-memorisation", "ch9-memorisation")),
    Finding("geometric", "Fig. 2b (v2, per reviewer 2)", "deviation from the chord below about 20 on a 4.4k chord (CIFAR-10)",
            claims=("ch4-quasi-linear", "ch9-quasi-linear")),
    Finding("gits", "trajectory regularity", "linear-nonlinear-linear shape of the sampling trajectory",
            claims=("ch3-linear-nonlinear-linear", "ch9-linear-nonlinear-linear")),
    Finding("amed", "Sec. 3.1, Fig. 4", "each trajectory lies almost in a 2-D plane; 2-PC projection error at most 8%",
            claims=("ch4-plane", "ch4-pca-error", "ch9-plane")),
    Finding("boomerang", "Sec. 3.2; GITS Fig. 4", "one 'boomerang' shape for all trajectories in the chord/PC projection",
            claims=("ch4-boomerang", "ch9-boomerang")),
    Finding("boomerang", "main_extend.ipynb", "trajectory calibration (rotation alignment), curvature and torsion of the "
            "projected curves", reason="not measured in chapters 1-7 (the 3-D projection is, ch4-boomerang); the "
            "rotation alignment and torsion are left out"),
    Finding("geometric", "TL;DR (v3); AMED Sec. 3.1", "monotone likelihood increase along the optimal sampler",
            claims=("ch7-monotone-likelihood",)),
    Finding("geometric", "Prop. 2 (v2)", "norm concentration: x_T on a thin shell of radius T sqrt(d)",
            claims=("ch4-shell", "ch9-shell")),
    Finding("gits", "TL;DR", "trajectory length about sigma_T sqrt(d); nearly constant magnitude of the vector field",
            claims=("ch9-shell", "ch9-eps-norm")),
    Finding("geometric", "official notebook 'Fig. 14'; AMED Sec. 3.4", "the direction points at the final sample; "
            "eps(x_T) is almost parallel to x_T", claims=("ch4-cosine-to-end", "ch6-afs-direction", "ch9-cosine-to-end")),
    Finding("geometric", "'Prop. 4' (v2); EDM App. B.3", "the optimal denoiser of finite data is the softmax-weighted "
            "mean, one Gaussian mean-shift step", claims=("ch2-kde-denoiser", "ch7-mean-shift")),
    Finding("geometric", "'Prop. 1' (v2)", "an Euler step is a convex combination of x and its denoising output "
            "(a partial mean-shift step)", claims=("ch3-euler-convex", "ch7-euler-partial-mean-shift")),
    Finding("geometric", "Theorem 1 (v2)", "monotone likelihood theorem for partial mean-shift steps",
            claims=("ch7-monotone-likelihood", "ch7-step-fraction-range")),
    Finding("geometric", "optimal sampler (official code)", "optimal sampling is annealed mean shift and reproduces "
            "training data", claims=("ch2-snap-to-data", "ch7-annealed-ends-on-data", "ch7-memorisation",
                                     "ch8-digits-memorisation", "ch8-fashion-memorisation", "ch9-memorisation")),
    Finding("geometric", "Sec. 3.5 of the notes; 'Fig. 14'", "the four score-deviation curves of learned vs optimal "
            "trajectories (CIFAR-10, r* over 50k images)",
            claims=("ch8-digits-regimes", "ch8-fashion-regimes", "ch9-deviation-regimes")),
    Finding("geometric", "Sec. 4 (v2)", "second-order samplers are finite differences of the denoising trajectory",
            claims=("ch5-finite-differences",)),
    Finding("geometric", "Sec. 4 (v2), ODE-Jump", "jumping to the denoising trajectory loses little",
            claims=("ch6-ode-jump", "ch10-ode-jump")),
    Finding("geometric", "ODE-Jump FID (v2)", "ODE-Jump FID against NFE on CIFAR-10",
            reason="the paper's values were not retrieved, and " + _NO_WEIGHTS),
    Finding("geometric", "v1 abstract; v3", "latent interpolation re-examined: lerp leaves the shell, slerp stays",
            claims=("ch4-lerp-leaves-shell",)),
    Finding("geometric", "official notebook main_mp.ipynb", "CIFAR-10, Euler 20 NFE: FID 6.07", reason=_NO_WEIGHTS),
    Finding("amed", "Table 2", "low-NFE ranking: Heun and DPM-Solver-2 lose to DDIM at 3-5 NFE, win by 9 NFE",
            claims=("ch5-second-order-low-nfe", "ch5-second-order-40-nfe")),
    Finding("amed", "Table 2; GITS table", "iPNDM beats DDIM at every NFE", claims=("ch5-ipndm-vs-euler",)),
    Finding("gits", "FID table, NFE 10; AMED Table 2", "every higher-order solver beats DDIM from about 10 NFE on",
            claims=("ch10-higher-order-beat-euler",)),
    Finding("gits", "FID table, NFE 5-6; AMED Table 2", "at the smallest budgets the one-evaluation multistep "
            "solvers beat the two-evaluation ones", claims=("ch10-multistep-smallest-budget",)),
    Finding("amed", "Table 2", "AMED beats DPM-Solver-2 at equal NFE", claims=("ch6-amed-beats-dpm2",)),
    Finding("amed", "Table 2, abstract", "FID of AMED-Solver/Plugin at NFE 3-9 (6.61 CIFAR-10, 10.74 ImageNet-64, "
            "13.20 LSUN Bedroom at 5 NFE)", reason=_NO_WEIGHTS),
    Finding("amed", "Table 3", "Stable Diffusion with AMED-Plugin on DPM-Solver++(2M)",
            reason="needs Stable Diffusion weights, MS-COCO prompts and a GPU; none is available offline"),
    Finding("amed", "Table 4", "the best teacher matches the student solver",
            reason="needs AMED predictors trained against several teachers on CIFAR-10; " + _NO_WEIGHTS),
    Finding("amed", "Table 5", "schedule ablation for DPM-Solver++(3M): logSNR best", reason="chapter 6 compares grids "
            "for Euler and DPM-Solver++(2M) on the digits (ch6-uniform-grid-worst), not this FID ablation; " + _NO_WEIGHTS),
    Finding("amed", "Sec. 3.4; Sec. 4", "AFS: harmless or helpful at 32-64 px, harmful for multistep solvers at 256 px",
            claims=("ch6-afs-effect", "ch10-afs-euler", "ch10-afs-multistep")),
    Finding("amed", "Sec. 3.2, Eq. (7)-(9)", "the mean-value step x + c h eps(x_s, s) in the 2-D plane of the trajectory; "
            "DPM-Solver-2 is the case s = sqrt(t_n t_(n+1)), c = 1", reason="derived in chapter 5 (exercise: AMED's "
            "step as a finite difference, dg.finite_differences.amed_d_eff, tested by the unit tests), not a "
            "measured claim"),
    Finding("amed", "Sec. 3.5, Table 2", "AMED-Plugin: the learned intermediate step inserted into any solver",
            reason="chapter 6 fits the AMED-Solver step only; the plug-in on iPNDM, DPM-Solver++ and UniPC is "
                   "not implemented"),
    Finding("amed", "Fig. 7", "learned r_n vary per step with means below 1/2; c_n near 1",
            claims=("ch6-amed-r-below-half", "ch5-best-r-varies")),
    Finding("amed", "Sec. 3.4, 4.1", "a ~9k-parameter predictor on U-Net bottleneck features, trained by trajectory "
            "distillation in minutes", reason="needs a U-Net and its features; chapter 6 fits (r_n, c_n) per step "
            "instead (ch6-amed-beats-dpm2)"),
    Finding("gits", "FID table", "GITS improves DDIM and iPNDM at NFE 5-10",
            claims=("ch6-gits-beats-rho7", "ch10-gits-euler", "ch10-gits-multistep", "ch10-gits-coeff-one")),
    Finding("gits", "FID table", "GITS FIDs on CIFAR-10, FFHQ, ImageNet-64, LSUN Bedroom (8.38 / 4.88 / 3.24 / 2.49 "
            "for iPNDM + GITS on CIFAR-10)", reason=_NO_WEIGHTS),
    Finding("gits", "Sec. 4 (official code gits_utils.dp)", "the schedule is the dynamic-programming optimum of a "
            "cost matrix of Euler jumps on a 61-level teacher grid ('l2' or 'dev' cost, coefficient 1.15)",
            reason="an algorithm, not a finding: chapter 6 checks the programme against brute force (a plain "
                   "assert) and compares the two costs and the coefficient in an exercise"),
    Finding("gits", "abstract", "strong shape regularity: one schedule from a small warm-up set transfers",
            claims=("ch6-gits-transfer",)),
    Finding("gits", "abstract", "negligible cost of the schedule search", reason="timings are not claims of the book "
            "(the paper's wall-clock times were not retrieved)"),
    Finding("boomerang", "abstract", "extremely low-dimensional subspace and one boomerang shape regardless of "
            "architecture, conditions or content", claims=("ch4-plane", "ch4-boomerang", "ch9-plane", "ch9-boomerang")),
    Finding("boomerang", "abstract", "closed-form properties under kernel-estimated (KDE) data modelling",
            claims=("ch2-kde-denoiser", "ch7-mean-shift", "ch7-monotone-likelihood")),
    Finding("boomerang", "abstract", "the DP schedule evaluated especially at 5-10 NFE", claims=("ch6-gits-beats-rho7",)),
    Finding("edm", "Sec. 3, Eq. 4", "any Gaussian diffusion (any sigma(t), s(t)) is the VE probability-flow ODE "
            "after the change of variables y = x/s, sigma = sigma(t)", claims=("ch11-change-of-variables",)),
    Finding("ddim", "Sec. 4.3, Eq. (14)", "DDIM is the Euler method of an ODE in x/alpha and sigma",
            claims=("ch11-ddim-is-euler",)),
    Finding("edm", "Sec. 3 ('Trajectory curvature and noise schedule')", "with sigma(t) = t, s(t) = 1 the Euler step "
            "is exact for a frozen denoiser; other time variables change the sampler",
            claims=("ch11-euler-t-affine-paths", "ch11-orders-any-coordinates")),
    Finding("edm", "Sec. 5, Table 1", "preconditioning keeps the network's error from being amplified at large sigma "
            "(eps-prediction multiplies it by sigma)", claims=("ch11-eps-amplified",)),
    Finding("geometric", "Obs. 1 (v2), across parameterisations", "the trajectory geometry holds for flow-matching "
            "and VP models read in the VE coordinates", claims=("ch11-quasi-linear-any-path", "ch11-plane-any-path")),
    Finding("flowmatching", "Sec. 4.1, Eq. (20)-(23)", "the conditional optimal-transport path x_t = (1 - t) x0 + t eps "
            "and its velocity target eps - x0", claims=("ch11-change-of-variables", "ch11-euler-t-affine-paths")),
    Finding("flowmatching", "Sec. 6, Tables 1-2", "likelihood (bits/dim) and FID on CIFAR-10 and ImageNet",
            reason=_NO_WEIGHTS.replace("pretrained EDM networks", "flow-matching networks")),
    Finding("rectified", "Sec. 2.1-2.2", "1-rectified flow is not straight; reflow straightens the trajectories and "
            "makes few-step Euler accurate", claims=("ch11-fm-curved", "ch11-reflow-straighter")),
    Finding("rectified", "Sec. 5, Table 1", "CIFAR-10 FID and recall of k-rectified flows with 1 step and distillation",
            reason=_NO_WEIGHTS.replace("pretrained EDM networks", "rectified-flow networks")),
    Finding("scoresde", "Sec. 4.3, App. D.2", "exact likelihood through the probability-flow ODE with the "
            "Skilling-Hutchinson trace estimator", claims=("ch11-likelihood-exact", "ch11-hutchinson-calibrated")),
    Finding("scoresde", "Table 2", "bits/dim through the ODE", claims=("ch11-bits-per-dim",)),
    Finding("boomerang", "main_extend.ipynb", "closed-form Gaussian / low-rank / mixture denoisers built from CIFAR-10 "
            "statistics", reason="needs the CIFAR-10 training set (not available offline); chapters 1-4 use exact "
            "mixture denoisers of toy data instead, and chapter 12 the Gaussian of Fashion-MNIST's statistics "
            "(ch12-linear-high-noise)"),
    Finding("wang", "Sec. 3", "the Gaussian model's probability-flow ODE has a closed-form solution",
            claims=("ch12-gaussian-flow-exact",)),
    Finding("wang", "abstract; Sec. 4", "the learned score is dominated by its linear (Gaussian) approximation at "
            "moderate to high noise (over 99% of its variance at high noise)", claims=("ch12-linear-high-noise",)),
    Finding("wang", "abstract; Sec. 5", "analytical teleportation skips the first 15-30% of the sampling steps at "
            "high sample quality (FID 1.93 on CIFAR-10)", claims=("ch12-teleport",)),
    Finding("wang", "Sec. 4", "at smaller noise the learned score is better described by a coarse-grained (Gaussian "
            "mixture) model than by the training set's score", reason="not measured: chapter 12 compares the linear, "
            "local and optimal denoisers; a Gaussian mixture fitted to the images is not among them"),
    Finding("kamb", "abstract", "local (LS) and equivariant local (ELS) score machines with a calibrated patch size "
            "predict trained convolutional networks' outputs (median r^2 0.94 on Fashion-MNIST)",
            claims=("ch12-local-intermediate", "ch12-local-samples")),
    Finding("kamb", "abstract; Sec. 6", "locality creates novel images as mosaics of training patches",
            claims=("ch12-local-samples",)),
    Finding("niedoba", "abstract", "network denoisers share a local inductive bias: aggregated local (patch) empirical "
            "denoisers replicate their behaviour", claims=("ch12-local-intermediate",)),
    Finding("kadkhodaie", "Sec. 2, Fig. 1", "networks trained on few images memorise them: their samples copy training "
            "images", claims=("ch13-copy-few",)),
    Finding("kadkhodaie", "Sec. 2, Fig. 2", "two networks trained on disjoint training sets of size N generate nearly the "
            "same image from the same noise once N is large, and images unlike their training images",
            claims=("ch13-disjoint-agree",)),
    Finding("kadkhodaie", "Secs. 3-4", "the generalising denoisers are shrinkage in geometry-adaptive harmonic bases "
            "(GAHBs)", reason="not measured: chapter 13 measures what the networks generate, not the eigenvectors of "
            "their Jacobians"),
    Finding("bonnaire", "abstract; Sec. 2, Fig. 2", "memorisation sets in after a training time tau_mem that grows "
            "linearly with the training-set size n", claims=("ch13-memorisation-time",)),
    Finding("bonnaire", "abstract; Sec. 2", "the time tau_gen at which samples become good does not depend on n",
            reason="not measured: chapter 13 keeps four snapshots per network, too few to time the onset of good "
            "samples, and has no quality score for 8x8 digits"),
)


def coverage(recorded: list[dict], findings: tuple[Finding, ...] = FINDINGS) -> list[dict]:
    """One row per finding: ``paper``, ``source``, ``finding``, ``status`` ("reproduced" or "not reproduced
    here"), ``claims`` and ``reason``. Raises ``ValueError`` naming every claim id that a finding cites
    but ``recorded`` (the rows of this build) lacks, so a finding cannot claim coverage no chapter measured."""
    have = {r["id"] for r in recorded}
    missing = sorted({c for f in findings for c in f.claims} - have)
    if missing:
        raise ValueError(f"findings cite claims that no chapter recorded in this build: {missing}")
    return [{"paper": f.paper, "source": f.source, "finding": f.finding,
             "status": "reproduced" if f.claims else "not reproduced here", "claims": list(f.claims),
             "reason": f.reason} for f in findings]


# ---------------------------------------------------------------------------------------------------
# the book build: a Sphinx extension (``_config.yml``: ``extra_extensions: [diffusion_geometry.ledger]``)

LEDGER_PAGE = "reproduction_ledger"  # the back-matter page (book/reproduction_ledger.ipynb)


def published_path(root: Path | None = None) -> Path:
    """Where the ledger page writes the published JSON: ``<book root>/_build/ledger/ledger.json`` (the page's
    ``{download}`` link names this path). Raises ``FileNotFoundError`` outside a book."""
    root = book_root() if root is None else Path(root)
    if root is None:
        raise FileNotFoundError("not inside a book (no _toc.yml in the working directory or its parents)")
    return root / "_build" / "ledger" / "ledger.json"


def _builder_inited(app) -> None:
    # chapters executed by this build (myst-nb's kernels inherit the environment) record into
    # <path-output>/_build/ledger, so that two builds (make test's pair, a small and a default build)
    # never mix their rows; an explicit $DG_LEDGER_DIR wins
    os.environ.setdefault(ENV, str(Path(app.outdir).parent / "ledger"))


def _outdated(app, env, added, changed, removed):
    # a chapter that is re-read re-runs its claims: re-read the ledger page too (Sphinx reads documents
    # in sorted order, so book/reproduction_ledger comes after book/01-10)
    if added or changed or removed:
        return [d for d in env.found_docs if d.rsplit("/", 1)[-1] == LEDGER_PAGE]
    return []


def setup(app) -> dict:
    """Sphinx extension: each build records its chapters' claims in its own folder, and the ledger page
    is re-read whenever any other page is."""
    app.connect("builder-inited", _builder_inited)
    app.connect("env-get-outdated", _outdated)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
