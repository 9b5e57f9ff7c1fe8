"""One registry per idea: samplers are declared in ``samplers.SAMPLERS`` and schedules in
``schedules.SCHEDULES``, and nothing else in the package or its scripts keeps its own list of them.

The scan reads every module of ``src/diffusion_geometry`` and every script of ``benchmarks/`` and fails
on any literal collection (tuple, list, set, or dict keys/values) that holds two or more sampler names
or labels, or two or more schedule names, outside the registry's own module: such a collection is a
second statement of a fact the registry holds (which samplers exist, their labels, which take two
evaluations) and drifts from it. A *selection* (which samplers an experiment compares) is stated
through the registry instead, as validated names (``get_sampler(name)``, ``benchmarking.labelled``,
``image_experiments``' selections), so an unknown or renamed sampler fails at once rather than
drifting. Chapters may choose which samplers to compare (their lists are selections); they are not
scanned.
"""
import ast
from pathlib import Path

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import samplers, schedules

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "diffusion_geometry"
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))

# every word that names a sampler (its registry name or its label) -> the sampler it names
SAMPLER_WORDS = {**{name: name for name in samplers.SAMPLERS},
                 **{spec.label: name for name, spec in samplers.SAMPLERS.items()}}
SCHEDULE_WORDS = {name: name for name in schedules.SCHEDULES}


def _strings(node) -> list[str]:
    if isinstance(node, ast.Dict):
        items = [*node.keys, *node.values]
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = node.elts
    else:
        return []
    out = []
    for item in items:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            out.append(item.value)
        elif isinstance(item, (ast.Tuple, ast.List)):  # ("Euler", "euler") pairs inside a collection
            out += [e.value for e in item.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return out


def _parallel_lists(source: str, filename: str = "<source>") -> list[str]:
    """Literal collections in ``source`` naming two or more different samplers (or schedules)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        words = _strings(node)
        for kind, vocabulary in (("sampler", SAMPLER_WORDS), ("schedule", SCHEDULE_WORDS)):
            named = sorted({vocabulary[w] for w in words if w in vocabulary})
            if len(named) >= 2:
                found.append(f"{filename}:{node.lineno}: a {kind} list {named}")
    return found


@pytest.mark.parametrize("snippet", [
    'EVALS_PER_STEP = {"euler": 1, "heun": 2, "dpm_solver_2": 2}',         # imaging.py before the registry
    'two_evals = method in ("heun", "dpm_solver_2", "amed")',              # finite_differences.py before
    'SAMPLERS = {"Euler": "euler", "iPNDM": "ipndm"}',                      # benchmarks/gpu_profile.py before
    'LABELS = ["DPM-Solver++(2M)", "Heun"]',
    '_SCHEDULES = ("edm", "logsnr", "uniform")',                            # imaging.py before
])
def test_the_scan_finds_the_parallel_lists_the_registry_replaced(snippet):
    assert _parallel_lists(snippet)


def test_the_scan_lets_one_sampler_and_its_label_pass():
    assert _parallel_lists('{"AMED": ("amed", opts)}') == []
    assert _parallel_lists('f(sampler="heun")') == []


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_module_keeps_its_own_list_of_samplers_or_schedules(path):
    if path.name in ("samplers.py", "schedules.py") and path.parent == PACKAGE:
        pytest.skip("the registries' own module")
    assert _parallel_lists(path.read_text(), str(path.relative_to(ROOT))) == []


def test_every_sampler_name_reaches_every_consumer():
    """A registered sampler is accepted wherever the package takes a sampler: the trajectory recorder,
    the budget module, the generation command's choices and ODE-Jump."""
    from diffusion_geometry import budget, generate

    x = 80 * torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gm = dg.datasets.mixture_2d()
    choices = next(a for a in generate._parser()._actions if "--sampler" in a.option_strings).choices
    for name in samplers.SAMPLERS:
        assert dg.sample(gm, x, dg.edm_sigmas(4), sampler=name).sampler == name
        assert budget.steps_for_nfe(name, 4) >= 1
        assert name in choices
        samplers.ode_jump(gm, x, dg.edm_sigmas(4), k=2, sampler=name)


@pytest.mark.parametrize("name", list(schedules.SCHEDULES))
def test_get_sigmas_is_the_registered_function(name):
    spec = schedules.SCHEDULES[name]
    assert torch.equal(schedules.get_sigmas(name, 7, 0.01, 50.0), spec.fn(7, 0.01, 50.0))
    assert schedules.get_sigmas(name, 7).numel() == 8


def test_get_sigmas_rejects_bad_schedules():
    assert torch.equal(schedules.get_sigmas("edm", 5, rho=3.0), dg.edm_sigmas(5, rho=3.0))
    assert torch.equal(schedules.get_sigmas(lambda n: dg.edm_sigmas(n), 5), dg.edm_sigmas(5))
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        schedules.get_sigmas("cosine", 5)
    with pytest.raises(ValueError, match="6 levels for 4 steps"):
        schedules.get_sigmas(lambda n: dg.edm_sigmas(n + 1), 4)
    with pytest.raises(ValueError, match="only n_steps"):
        schedules.get_sigmas(lambda n: dg.edm_sigmas(n), 4, rho=3.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        schedules.get_sigmas(lambda n: dg.edm_sigmas(n).flip(0), 4)
