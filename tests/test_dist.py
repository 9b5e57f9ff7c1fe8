"""`make dist`: the wheel a student installs holds the whole package, its weights and data.

The chapters' install hint names ``diffusion_geometry-*.whl``; this builds the wheel and the sdist the
way `make dist` does (offline, from the venv's setuptools) and checks what they hold against the
source tree and the weights manifest.
"""
import json
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "diffusion_geometry"
UV = pathlib.Path(sys.executable).with_name("uv")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    if not UV.exists():
        pytest.skip("uv is not in this environment (it is in the lock)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(UV), "build", "--offline", "--no-build-isolation", "--python", sys.executable,
                    "-o", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    return out


def test_make_dist_builds_one_wheel_and_one_sdist_named_as_the_chapters_say(dist):
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == ["diffusion_geometry-0.1.0-py3-none-any.whl"]
    assert [s.name for s in sdists] == ["diffusion_geometry-0.1.0.tar.gz"]
    hint = json.loads((ROOT / "book" / "01_ve_sde.ipynb").read_text())
    assert any("diffusion_geometry-*.whl (the course wheel)" in "".join(c["source"]) for c in hint["cells"])


def test_the_wheel_holds_every_module_weight_and_data_file(dist):
    names = set(zipfile.ZipFile(next(dist.glob("*.whl"))).namelist())
    expected = {f"diffusion_geometry/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*")
                if p.is_file() and p.suffix in (".py", ".pt", ".json") and "__pycache__" not in p.parts}
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    manifest = json.loads((PACKAGE / "weights" / "manifest.json").read_text())
    assert manifest  # the manifest lists the shipped weights
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [l for l in zipfile.ZipFile(next(dist.glob("*.whl"))).read(meta).decode().splitlines()
                if l.startswith("Requires-Dist:") and "extra ==" not in l]
    assert any("ipywidgets" in r for r in requires) and any("torch" in r for r in requires), requires


def test_the_sdist_holds_the_package_sources(dist):
    names = tarfile.open(next(dist.glob("*.tar.gz"))).getnames()
    for module in ("__init__.py", "exercises.py", "notebook.py", "widgets.py"):
        assert any(n.endswith(f"src/diffusion_geometry/{module}") for n in names), module
