"""Generation at scale: per-sample seeds, grids, and the command -- one process against torchrun
with two processes (same images), resuming, and the report."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import generate as G
from diffusion_geometry.checkpoints import save_checkpoint
from diffusion_geometry.networks import build_model

TINY = {"kind": "unet", "in_channels": 1, "image_size": 28, "channels": [8, 16], "blocks": 1,
        "emb_dim": 16, "groups": 4, "sigma_data": 0.5}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A small random U-Net (output layer perturbed away from its zero init, so it is not linear)."""
    model = build_model(TINY, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, config=TINY, meta={"note": "random weights for tests"})
    return path


def _run(args, *, nproc=1, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    if nproc == 1:
        cmd = [sys.executable, "-m", "diffusion_geometry.generate", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "diffusion_geometry.generate", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


# ---------------------------------------------------------------------------- seeds and noise


def test_sample_seeds_are_deterministic_distinct_and_checked():
    seeds = [G.sample_seed(s, i) for s in range(4) for i in range(50)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert G.sample_seed(3, 7) == G.sample_seed(3, 7)
    assert G.sample_seed(3, 7, stream=1) != G.sample_seed(3, 7)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            G.sample_seed(bad, 0)


def test_initial_noise_does_not_depend_on_the_batch():
    seeds = [G.sample_seed(0, i) for i in range(6)]
    whole = G.initial_noise(seeds, (1, 4, 4), 80.0)
    parts = torch.cat([G.initial_noise(seeds[:2], (1, 4, 4), 80.0), G.initial_noise(seeds[2:], (1, 4, 4), 80.0)])
    assert torch.equal(whole, parts)
    assert torch.equal(G.initial_noise(seeds[3:4], (1, 4, 4), 80.0)[0], whole[3])
    big = G.initial_noise([G.sample_seed(1, i) for i in range(200)], (50,), 2.0)
    assert big.std().item() == pytest.approx(2.0, rel=0.03)
    with pytest.raises(ValueError):
        G.initial_noise([], (2,), 1.0)
    with pytest.raises(ValueError):
        G.initial_noise([1], (2,), 0.0)


def test_make_sigmas_and_shards():
    assert torch.equal(G.make_sigmas("edm", 7, rho=5.0), dg.edm_sigmas(7, rho=5.0))
    assert torch.equal(G.make_sigmas("logsnr", 4), dg.logsnr_sigmas(4))
    zero = G.make_sigmas("uniform", 3, append_zero=True)
    assert zero.shape == (5,) and zero[-1] == 0 and torch.equal(zero[:-1], dg.uniform_sigmas(3))
    with pytest.raises(ValueError, match="unknown schedule"):
        G.make_sigmas("cosine", 5)
    with pytest.raises(ValueError, match="steps"):
        G.make_sigmas("edm", 0)
    with pytest.raises(ValueError, match="denoiser"):
        G.make_sigmas("gits", 5)
    assert G.shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError):
        G.shard_ranges(0, 4)


def test_gits_schedule_uses_its_own_warmup_noise():
    gm = dg.datasets.mixture_2d()
    den = lambda x, s: gm.denoise(x.double(), s).float()  # noqa: E731
    got = G.make_sigmas("gits", 4, denoiser=den, shape=(2,), warmup=8, seed=3)
    x_warm = G.initial_noise([G.sample_seed(3, i, stream=1) for i in range(8)], (2,), 80.0)
    want = dg.gits.gits_sigmas(den, x_warm, 4, fine_grid=dg.edm_sigmas(60), metric="dev")  # chapter 10's GITS
    assert torch.equal(got, want)
    assert got.shape == (5,) and got[0] == 80.0 and got[-1] == 0.002


def test_generate_samples_equals_the_sampler_on_the_same_noise():
    gm = dg.datasets.mixture_2d()
    den = lambda x, s: gm.denoise(x.double(), s).float()  # noqa: E731
    sig = dg.edm_sigmas(8)
    out, nfe = G.generate_samples(den, 7, (2,), sig, sampler="heun", seed=5, batch_size=3)
    x0 = G.initial_noise([G.sample_seed(5, i) for i in range(7)], (2,), 80.0)
    want = torch.cat([dg.samplers.heun(den, x0[lo:hi], sig) for lo, hi in G.shard_ranges(7, 3)])
    assert torch.equal(out, want)
    assert nfe == 16
    with pytest.raises(ValueError, match="unknown sampler"):
        G.generate_samples(den, 3, (2,), sig, sampler="rk45")
    with pytest.raises(ValueError, match="n must be"):
        G.generate_samples(den, 0, (2,), sig)
    with pytest.raises(ValueError, match="fid must be"):
        G.quality_report(torch.zeros(4, 28, 28), fid="maybe")


def test_load_denoiser_and_model_hash(tiny_ckpt):
    den, shape = G.load_denoiser(str(tiny_ckpt))
    assert shape == (1, 28, 28)
    assert den(torch.zeros(2, 1, 28, 28), 1.0).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown model"):
        G.load_denoiser("no_such_model")
    from diffusion_geometry.checkpoints import sha256_file

    assert G.model_sha256(str(tiny_ckpt)) == sha256_file(tiny_ckpt)


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_torchrun_two_processes_give_the_same_images_and_resume(tiny_ckpt, tmp_path, restore_threads, capsys):
    common = ["--model", str(tiny_ckpt), "--steps", "3", "--sampler", "heun", "--seed", "11",
              "--shard-size", "3", "--threads", "1", "--no-progress", "--report", "no"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert G.main([*common, "--n", "8", "--out", str(one)]) == 0  # one process (this one)
    _run([*common, "--num-samples", "8", "--out", str(two)], nproc=2)
    a, b = np.load(one / "samples.npz"), np.load(two / "samples.npz")
    assert a["images"].shape == (8, 1, 28, 28) and a["images"].dtype == np.uint8
    assert np.array_equal(a["images"], b["images"])
    assert np.array_equal(a["seeds"], b["seeds"])
    assert len(np.unique(a["images"].reshape(8, -1), axis=0)) == 8  # eight different images
    for j in range(3):  # the float samples are bit-identical too
        sa, sb = np.load(one / "shards" / f"shard_{j:05d}.npz"), np.load(two / "shards" / f"shard_{j:05d}.npz")
        assert np.array_equal(sa["samples"], sb["samples"])
    rep = json.loads((two / "report.json").read_text())
    assert rep["world_size"] == 2 and rep["nfe"] == 6 and rep["command"].startswith("torchrun")
    assert (two / "grid.png").stat().st_size > 0

    # resume: drop one shard and the merged file; only that shard is recomputed
    (one / "shards" / "shard_00001.npz").unlink()
    (one / "samples.npz").unlink()
    kept = {j: (one / "shards" / f"shard_{j:05d}.npz").stat().st_mtime_ns for j in (0, 2)}
    G.main([*common, "--n", "8", "--out", str(one)])
    assert {j: (one / "shards" / f"shard_{j:05d}.npz").stat().st_mtime_ns for j in (0, 2)} == kept
    assert np.array_equal(np.load(one / "samples.npz")["images"], b["images"])

    # a different setting in the same directory is refused, as a usage error (exit status 2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        G.main([*common, "--n", "9", "--out", str(one)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "other settings" in err and "Traceback" not in err


def test_command_report_on_fashion_shape(tiny_ckpt, tmp_path):
    try:
        dg.datasets.fashion_mnist("test")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    out = tmp_path / "rep"
    G.main(["--model", str(tiny_ckpt), "--n", "30", "--steps", "2", "--sampler", "euler", "--schedule",
            "logsnr", "--append-zero", "--out", str(out), "--no-progress", "--report", "yes", "--fid", "no"])
    rep = json.loads((out / "report.json").read_text())
    q = rep["quality"]
    print("random tiny net:", {k: q[k] for k in ("fd_test", "fd_train_vs_test", "precision", "recall")})
    assert rep["nfe"] == 3 and rep["sigmas"][-1] == 0.0
    assert rep["command"].startswith("python -m diffusion_geometry.generate --model")
    assert q["n"] == 30 and len(q["class_fraction"]) == 10
    assert abs(sum(q["class_fraction"]) - 1) < 1e-9
    # random weights give poor samples: far worse than real training images at the same n
    assert q["fd_test"] > 3 * q["fd_train_vs_test"]
    assert q["fid_test"] is None and q["fid_note"]


def test_quality_report_floor_is_the_mean_of_its_draws():
    """The train-vs-test floor is the mean of ``floor_draws`` independent draws of real images (each the
    FD of one draw, computed here from scratch), and its spread is their sample standard deviation."""
    try:
        test_x = dg.datasets.fashion_mnist("test")[0]
        train_x = dg.datasets.fashion_mnist("train")[0]
    except FileNotFoundError as err:
        pytest.skip(str(err))
    imgs = test_x[:40]
    q = G.quality_report(imgs, seed=7, fid="no", floor_draws=3)
    gen = torch.Generator().manual_seed(8)
    ref = dg.classifier.reference_features("test")
    draws = [dg.metrics.frechet_distance(dg.classifier.features(train_x[torch.randperm(len(train_x), generator=gen)[:40]]), ref)
             for _ in range(3)]
    assert len(set(round(d, 6) for d in draws)) == 3, "the draws are different images"
    assert q["fd_train_vs_test"] == pytest.approx(np.mean(draws), rel=1e-9)
    assert q["fd_train_vs_test_std"] == pytest.approx(np.std(draws, ddof=1), rel=1e-9)
    assert q["fd_train_vs_test_draws"] == 3
    assert G.quality_report(imgs, seed=7, fid="no", floor_draws=1)["fd_train_vs_test"] == pytest.approx(draws[0], rel=1e-9)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="floor_draws"):
            G.quality_report(imgs, floor_draws=bad)


@pytest.mark.parametrize("sampler, nfe, afs, steps", [("heun", 7, True, 4), ("ipndm", 5, False, 5), ("unipc", 6, True, 7)])
def test_command_runs_at_a_budget(tiny_ckpt, tmp_path, sampler, nfe, afs, steps):
    """--nfe spends exactly that many evaluations per sample (counted in the report), on the grid of
    dg.budget.grid_for_nfe."""
    out = tmp_path / sampler
    args = ["--model", str(tiny_ckpt), "--n", "4", "--sampler", sampler, "--nfe", str(nfe), "--out", str(out),
            "--no-progress", "--report", "no", "--threads", "1"] + (["--opt", "afs=true"] if afs else [])
    assert G.main(args) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["nfe"] == nfe
    assert rep["sigmas"] == dg.budget.grid_for_nfe(sampler, nfe, "edm", afs=afs).tolist()
    assert len(rep["sigmas"]) == steps + 1


@pytest.mark.parametrize("extra, message", [(["--nfe", "7"], "cannot spend exactly 7"),
                                            (["--nfe", "8", "--append-zero"], "cannot go with")])
def test_command_rejects_a_budget_it_cannot_meet(tiny_ckpt, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        G.main(["--model", str(tiny_ckpt), "--n", "4", "--sampler", "heun", *extra, "--out", str(tmp_path / "x"),
                "--no-progress", "--report", "no"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
