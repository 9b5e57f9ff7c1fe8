"""The family of networks trained on nested, disjoint subsets (``diffusion_geometry.memorisation``, chapter 13)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusion_geometry import checkpoints, memorisation as mem
from diffusion_geometry.networks import build_model, count_parameters


@pytest.mark.parametrize("n_data, size", [(1797, 4), (1797, 898), (10, 5), (3, 1)])
def test_subsets_are_disjoint_nested_and_of_the_asked_size(n_data, size):
    a, b = mem.disjoint_subsets(n_data, size)
    assert len(a) == len(b) == size
    assert not set(a.tolist()) & set(b.tolist())
    assert set(a.tolist()) | set(b.tolist()) <= set(range(n_data))
    if size > 1:  # nested: the halves of a smaller size lie inside those of a larger one, for one seed
        a_small, b_small = mem.disjoint_subsets(n_data, size - 1)
        assert set(a_small.tolist()) <= set(a.tolist()) and set(b_small.tolist()) <= set(b.tolist())


@pytest.mark.parametrize("args, error", [((1797, 899), ValueError), ((1797, 0), ValueError), ((4, 3), ValueError),
                                         ((1797.0, 4), TypeError), ((1797, True), TypeError)])
def test_subsets_reject_sizes_that_cannot_be_disjoint(args, error):
    with pytest.raises(error, match="size|integer"):
        mem.disjoint_subsets(*args)


def test_shipped_family_has_every_member_with_the_recipe_of_the_manifest():
    entry = checkpoints.manifest()["digits_subsets"]
    assert entry["config"]["member"] == mem.CONFIG and entry["config"]["sizes"] == list(mem.SIZES)
    assert entry["config"]["snapshots"] == list(mem.SNAPSHOTS) and entry["config"]["recipe"] == mem.RECIPE
    assert "python -m diffusion_geometry.memorisation" in entry["command"]
    family = mem.load_family()
    assert count_parameters(build_model(mem.CONFIG)) == 41_257
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((3,), 1.0)
    outputs = {}
    for n in mem.SIZES:
        for h in mem.HALVES:
            for s in mem.SNAPSHOTS:
                model = family[n, h, s]
                assert not model.training and not any(p.requires_grad for p in model.parameters())
                with torch.no_grad():
                    outputs[n, h, s] = model(x, sigma)
            assert family[n, h] is family[n, h, mem.SNAPSHOTS[-1]]
        a, b = family.indices(n, "A"), family.indices(n, "B")
        assert torch.equal(a, mem.disjoint_subsets(1797, n)[0]) and torch.equal(b, mem.disjoint_subsets(1797, n)[1])
    # forty distinct networks: no two members share their weights
    values = list(outputs.values())
    assert all(not torch.allclose(values[i], values[j]) for i in range(len(values)) for j in range(i))
    for bad in ((5, "A"), (4, "C"), (4, "A", 999), (4.0, "A")):
        with pytest.raises(KeyError, match="no member"):
            family[bad]
    for bad in (4, (4,), (4, "A", 750, 0)):
        with pytest.raises(KeyError, match="family\\[size, half\\]"):
            family[bad]
    with pytest.raises(KeyError, match="half"):
        family.indices(4, "C")
    with pytest.raises(KeyError, match="size"):
        family.indices(5, "A")
    assert family[np.int64(4), "A", np.int64(750)] is family[4, "A", 750]


def test_the_smallest_members_copy_their_own_training_images():
    """The shipped weights go with family.indices: a network trained on 4 digits returns those 4 digits (each
    sample within a tenth of the distance between two of them), and not the other half's."""
    from diffusion_geometry import EmpiricalDenoiser, datasets, edm_sigmas, samplers, schedules

    digits, _ = datasets.digits()
    family = mem.load_family()
    x = 80 * torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = schedules.append_zero(edm_sigmas(18, dtype=torch.float32))
    for half, other in (("A", "B"), ("B", "A")):
        own, others = digits[family.indices(4, half)], digits[family.indices(4, other)]
        with torch.no_grad():
            out = samplers.heun(family[4, half], x, grid)
        gap = torch.pdist(own.flatten(1)).min()
        assert EmpiricalDenoiser(own).nearest(out)[0][:, 0].max() < gap / 10
        assert EmpiricalDenoiser(others).nearest(out)[0][:, 0].min() > gap / 2


def test_train_family_rejects_data_and_halves_it_cannot_train(tmp_path):
    with pytest.raises(ValueError, match="data must be a tensor"):
        mem.train_family(torch.zeros(20, 1, 28, 28), tmp_path)
    with pytest.raises(ValueError, match="halves"):
        mem.train_family(torch.zeros(2000, 1, 8, 8), tmp_path, halves=("C",))
    with pytest.raises(ValueError, match="size"):
        mem.train_family(torch.zeros(20, 1, 8, 8), tmp_path)   # 898 does not fit twice into 20


def test_the_command_trains_both_halves_apart_then_writes_a_bundle_that_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mem, "SIZES", (2, 3))
    monkeypatch.setattr(mem, "SNAPSHOTS", (2, 4))
    monkeypatch.setattr(mem, "RECIPE", dict(mem.RECIPE, batch_size=4, warmup=1))
    out, work = tmp_path / "family.pt", tmp_path / "work"
    mem.main(["--out", str(out), "--work-dir", str(work), "--halves", "A", "--threads", "1"])
    assert not out.exists() and "run again" in capsys.readouterr().out
    mem.main(["--out", str(out), "--work-dir", str(work), "--halves", "B", "--threads", "1"])
    assert out.exists()   # the call that finds every member trained writes the bundle
    sha = checkpoints.sha256_file(out)
    assert sha in capsys.readouterr().out
    stamp = {p.name: p.stat().st_mtime_ns for p in work.glob("*.pt")}
    mem.main(["--out", str(out), "--work-dir", str(work), "--threads", "1"])   # trains nothing more, same bundle
    assert {p.name: p.stat().st_mtime_ns for p in work.glob("*.pt")} == stamp
    assert checkpoints.sha256_file(out) == sha
    ckpt = checkpoints.load_checkpoint(out)
    config = ckpt["config"]
    (tmp_path / "manifest.json").write_text(json.dumps({"tiny": {
        "file": "family.pt", "sha256": sha, "command": "test", "kind": "family", "config": config, "trained": "test"}}))
    family = mem.load_family("tiny", weights_dir=tmp_path)
    saved = checkpoints.load_checkpoint(work / f"{mem.member_name(3, 'B', 4)}.pt")["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in family[3, "B"].state_dict().items())
    # a bundle that lacks a member is refused, naming it
    state = {k: v for k, v in ckpt["state_dict"].items() if k != mem.member_name(2, "A", 2)}
    torch.save({"state_dict": state, "config": config, "meta": {}}, tmp_path / "family.pt")
    (tmp_path / "manifest.json").write_text(json.dumps({"tiny": {
        "file": "family.pt", "sha256": checkpoints.sha256_file(tmp_path / "family.pt"), "command": "test",
        "kind": "family", "config": config, "trained": "test"}}))
    with pytest.raises(ValueError, match=mem.member_name(2, "A", 2)):
        mem.load_family("tiny", weights_dir=tmp_path)
