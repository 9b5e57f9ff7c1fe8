"""Repository hygiene: notebooks are stored without outputs; environment.yml, requirements.txt and
pyproject.toml pin the same versions; requirements.lock pins every package of the venv, with hashes,
agrees with the direct pins, and is what the venv holds."""
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def _norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    """``{name: version}`` from ``name==version`` lines; every other requirement line is an error."""
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {raw!r}"
        name = _norm(req.name)
        assert name not in pins, f"{name} pinned twice"
        pins[name] = specs[0].version
    return pins


def requirements() -> dict[str, str]:
    return _pins((ROOT / "requirements.txt").read_text().splitlines())


def _lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """``{name: (version, [sha256, ...])}`` from a hashed lock file (``uv pip compile --generate-hashes``).

    Each entry is ``name==version \\`` followed by ``--hash=sha256:...`` continuation lines; an entry
    that is not an exact pin or carries no hash is an error.
    """
    entries: dict[str, tuple[str, list[str]]] = {}
    for chunk in re.split(r"\n(?=[^\s#])", text.strip()):
        lines = [l.split("#", 1)[0].strip().rstrip("\\").strip() for l in chunk.splitlines()]
        lines = [l for l in lines if l]
        if not lines:
            continue
        head, *rest = lines
        req = Requirement(head)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin in the lock: {head!r}"
        hashes = [h.split(":", 1)[1] for h in rest if h.startswith("--hash=sha256:")]
        assert hashes and len(hashes) == len(rest), f"{req.name}: every lock entry needs sha256 hashes only"
        name = _norm(req.name)
        assert name not in entries, f"{name} locked twice"
        entries[name] = (specs[0].version, hashes)
    return entries


def lock() -> dict[str, tuple[str, list[str]]]:
    return _lock_entries((ROOT / "requirements.lock").read_text())


# -- text files ------------------------------------------------------------------------------------

TEXT_SUFFIXES = {".py", ".ipynb", ".md", ".bib", ".yml", ".yaml", ".toml", ".txt", ".cfg", ".json", ".sh"}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # every control character but tab and newline


def _text_files():
    """The repository's tracked text files (git ls-files), or every such file outside the build and
    environment folders where the tree is not a git checkout."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / n for n in names.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "_build", "runs"}
        paths = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.suffix in TEXT_SUFFIXES and p.is_file())


def test_text_files_hold_no_control_characters():
    """A backslash escape in a string that is not raw (\\alpha, \\varepsilon, \\rVert in a docstring)
    silently becomes a control character (bell, vertical tab, carriage return) and garbles the text."""
    files = _text_files()
    assert any(p.name == "training.py" for p in files)
    bad = []
    for p in files:
        with open(p, encoding="utf-8", newline="") as f:  # newline="": a carriage return stays one
            text = f.read()
        for n, line in enumerate(text.split("\n"), 1):
            m = CONTROL.search(line)
            if m:
                bad.append(f"{p.relative_to(ROOT)}:{n}: {m.group()!r} in {line.strip()[:60]!r}")
    assert not bad, "control characters:\n" + "\n".join(bad)


# -- notebooks --------------------------------------------------------------------------------------


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs or execution counts; run "
                       f"`.venv/bin/jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`")
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} stores widget state in its metadata"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel is not python3"


# -- pins -------------------------------------------------------------------------------------------


def test_requirements_are_exact_pins_with_torch():
    pins = requirements()
    assert pins["torch"] == "2.13.0"
    assert {"numpy", "scipy", "jupyter-book", "pytest", "nbval"} <= set(pins)


def test_environment_yml_mirrors_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "diffusion-geometry"
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert "python=3.11" in conda and "pip" in conda
    assert len(pip_sections) == 1
    pip_pins = _pins(l for l in pip_sections[0] if not l.startswith("-"))  # "-e ." installs the package
    conda_pins = {}
    for dep in conda:
        if dep in ("pip", "python=3.11"):
            continue
        name, _, version = re.split(r"(==?)", dep, maxsplit=1)  # conda pins are name=version
        conda_pins[_norm(name)] = version
    assert not set(pip_pins) & set(conda_pins), "a package is pinned both by conda and by pip"
    env_pins = {**conda_pins, **pip_pins}
    req = requirements()
    assert env_pins == req, (
        f"only in environment.yml: {sorted(set(env_pins.items()) - set(req.items()))}; "
        f"only in requirements.txt: {sorted(set(req.items()) - set(env_pins.items()))}"
    )
    assert env_pins["torch"] == req["torch"]


def test_pyproject_agrees_with_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    req = requirements()
    extras = project["project"]["optional-dependencies"]
    assert {"book", "test"} <= set(extras)
    named = set()
    for group in ("book", "course", "test", "dev"):
        for name, version in _pins(extras[group]).items():
            assert req.get(name) == version, f"[{group}] {name}=={version} but requirements.txt pins {req.get(name)}"
            named.add(name)
    # the open ranges of the core dependencies (and the build backend) admit the pinned versions
    for spec in project["project"]["dependencies"] + project["build-system"]["requires"]:
        r = Requirement(spec)
        name = _norm(r.name)
        assert name in req, f"{name} is a dependency but not pinned in requirements.txt"
        assert r.specifier.contains(req[name]), f"pinned {name}=={req[name]} violates {spec!r}"
        named.add(name)
    assert set(req) <= named, f"pinned but never named in pyproject.toml: {sorted(set(req) - named)}"


def test_lock_holds_every_direct_pin_at_its_version():
    """requirements.lock was compiled from the current requirements.txt (else: run `make lock`)."""
    from packaging.version import Version

    locked = lock()
    for name, version in requirements().items():
        assert name in locked, f"{name} is pinned in requirements.txt but missing from requirements.lock; run `make lock`"
        # the lock may carry a local label (torch 2.13.0+cpu) that the direct pin leaves open
        assert Version(locked[name][0]).public == Version(version).public, (
            f"{name}: requirements.txt pins {version}, requirements.lock has {locked[name][0]}; run `make lock`")
    assert len(locked) > 2 * len(requirements()), "the lock should hold the dependencies too, not only the direct pins"
    header = (ROOT / "requirements.lock").read_text().splitlines()[:3]
    assert any("make lock" in l for l in header), "the lock's header should name the command that regenerates it"


def test_venv_is_the_locked_environment():
    """What is installed is what the lock says (make setup installs with --require-hashes from it)."""
    from importlib import metadata

    wrong = {}
    for name, (version, _) in lock().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}; run `make setup`"


def test_lock_parser_rejects_entries_without_hashes():
    with pytest.raises(AssertionError, match="needs sha256 hashes"):
        _lock_entries("numpy==2.4.6\n    # via -r requirements.txt\n")
    with pytest.raises(AssertionError, match="not an exact pin"):
        _lock_entries("numpy>=2 \\\n    --hash=sha256:ab\n")
    ok = _lock_entries("# header\nnumpy==2.4.6 \\\n    --hash=sha256:ab \\\n    --hash=sha256:cd\n    # via scipy\n")
    assert ok == {"numpy": ("2.4.6", ["ab", "cd"])}


def test_pin_parser_rejects_loose_requirements():
    """The checks above can fail: a range or a bare name is not a pin."""
    with pytest.raises(AssertionError, match="not an exact pin"):
        _pins(["torch>=2.1"])
    with pytest.raises(AssertionError, match="not an exact pin"):
        _pins(["numpy"])
    assert _pins(["Scikit_Learn==1.9.1  # comment", ""]) == {"scikit-learn": "1.9.1"}


# -- the compute-profile switch (DG_PROFILE) ---------------------------------------------------------


def test_profile_switch(monkeypatch):
    from diffusion_geometry import profiles

    for name in ("small", "default", "gpu"):
        monkeypatch.setenv("DG_PROFILE", f" {name.upper()} ")  # case and spaces are forgiven
        assert profiles.current() == name
        assert profiles.choose(1, 2, 3) == {"small": 1, "default": 2, "gpu": 3}[name]
    monkeypatch.setenv("DG_PROFILE", "gpu")
    assert profiles.choose(1, 2) == 2  # gpu falls back to default
    expect = "cuda" if profiles.torch.cuda.is_available() else "cpu"
    assert profiles.device().type == expect
    monkeypatch.setenv("DG_PROFILE", "small")
    assert profiles.device().type == "cpu"
    monkeypatch.delenv("DG_PROFILE")
    assert profiles.current() == ("gpu" if profiles.torch.cuda.is_available() else "default")


def test_profile_switch_rejects_unknown_names(monkeypatch):
    from diffusion_geometry import profiles

    monkeypatch.setenv("DG_PROFILE", "huge")
    with pytest.raises(ValueError, match="DG_PROFILE must be one of"):
        profiles.current()
