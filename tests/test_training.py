"""Training: the EDM loss, EMA, warm-up, determinism, resume and the command line."""
import copy
import hashlib
import math

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import checkpoints as ck
from diffusion_geometry import networks as nets
from diffusion_geometry import training as tr

torch.set_num_threads(1)


def _toy(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dg.datasets.mixture_2d(dtype=torch.float32).sample(n, generator=g)


def _small_mlp(seed=0):
    return nets.build_model({"kind": "mlp", "dim": 2, "hidden": 32, "depth": 2, "emb_dim": 16}, seed=seed)


def test_edm_loss_matches_a_direct_computation():
    model = _small_mlp()
    y = _toy(16)
    g = torch.Generator().manual_seed(5)
    loss = tr.edm_loss(model, y, generator=g)
    g = torch.Generator().manual_seed(5)
    sigma = torch.exp(torch.randn(16, generator=g) * 1.2 - 1.2)
    noise = torch.randn(16, 2, generator=g)
    out = torch.stack([model((y[i] + sigma[i] * noise[i])[None], sigma[i].item())[0] for i in range(16)])
    w = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    ref = (w[:, None] * (out - y) ** 2).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_edm_loss_with_log_uniform_share_matches_a_direct_computation():
    model = _small_mlp()
    y = _toy(32)
    loss = tr.edm_loss(model, y, generator=torch.Generator().manual_seed(2), p_uniform=0.25,
                       sigma_range=(0.01, 50.0))
    g = torch.Generator().manual_seed(2)
    ln_sigma = torch.randn(32, generator=g) * 1.2 - 1.2
    pick = torch.rand(32, generator=g) < 0.25
    ln_uni = math.log(0.01) + (math.log(50.0) - math.log(0.01)) * torch.rand(32, generator=g)
    assert 0 < pick.sum() < 32
    sigma = torch.where(pick, ln_uni, ln_sigma).exp()
    noise = torch.randn(32, 2, generator=g)
    w = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    ref = (w[:, None] * (model(y + sigma[:, None] * noise, sigma) - y) ** 2).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError, match="p_uniform"):
        tr.edm_loss(model, y, p_uniform=1.5)
    with pytest.raises(ValueError, match="sigma_range"):
        tr.edm_loss(model, y, sigma_range=(1.0, 0.5))


def test_edm_loss_of_the_optimal_denoiser_of_gaussian_data_is_one():
    # data ~ N(0, sd^2 I): the optimal denoiser is c_skip x (a network whose output layer is zero), and
    # lambda(sigma) * posterior variance = (s^2+sd^2)/(s sd)^2 * s^2 sd^2/(s^2+sd^2) = 1 at every sigma
    model = _small_mlp()
    with torch.no_grad():
        model.net.out.weight.zero_()
        model.net.out.bias.zero_()
    g = torch.Generator().manual_seed(0)
    y = 0.5 * torch.randn(40_000, 2, generator=g, dtype=torch.float64)
    model.double()
    loss = tr.edm_loss(model, y, generator=g).item()
    mixed = tr.edm_loss(model, y, generator=g, p_uniform=0.5).item()  # any sigma distribution
    print("loss of the optimal denoiser:", loss, mixed)
    assert loss == pytest.approx(1.0, abs=0.02)  # Monte Carlo std 1/sqrt(40000) = 0.005
    assert mixed == pytest.approx(1.0, abs=0.02)
    # and any other denoiser does worse: scale the output
    worse = tr.edm_loss(dg.EDMPrecond(nets.MLP(hidden=8, depth=1, emb_dim=4).double()), y,
                        generator=torch.Generator().manual_seed(0)).item()
    assert worse > 1.02


def test_ema_update_math():
    ema, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        ema.weight.fill_(1.0), ema.bias.fill_(-2.0)
        model.weight.fill_(3.0), model.bias.fill_(4.0)
    tr.ema_update(ema, model, 0.9)
    assert torch.allclose(ema.weight, torch.full((1, 2), 0.9 * 1 + 0.1 * 3))
    assert torch.allclose(ema.bias, torch.tensor([0.9 * -2 + 0.1 * 4]))
    tr.ema_update(ema, model, 0.0)
    assert torch.equal(ema.weight, model.weight)
    # buffers are constants, copied rather than averaged
    ema_buf, model_buf = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    model_buf.running_mean.fill_(5.0)
    tr.ema_update(ema_buf, model_buf, 0.9)
    assert torch.equal(ema_buf.running_mean, model_buf.running_mean)
    with pytest.raises(ValueError, match="decay"):
        tr.ema_update(ema, model, 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        tr.ema_update(ema, torch.nn.Linear(3, 1, bias=False), 0.5)


def test_schedules_of_lr_and_ema_decay():
    assert [tr.lr_at(s, 1e-3, 4) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert tr.lr_at(0, 1e-3, 0) == 1e-3
    assert tr.ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert tr.ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert tr.ema_decay_at(10**6, 0.999) == 0.999


def test_training_lowers_the_loss_on_a_toy_problem():
    data = _toy(1024)
    model = _small_mlp()

    def held_out(m):
        return tr.edm_loss(m, _toy(2048, seed=1), generator=torch.Generator().manual_seed(9)).item()

    before = held_out(model)
    ema, hist = tr.train(model, data, steps=150, batch_size=64, lr=3e-3, warmup=20, ema_decay=0.99,
                         seed=0, progress=False)
    after_raw, after_ema = held_out(model), held_out(ema)
    print(f"held-out loss: before {before:.3f}, after {after_raw:.3f} (raw), {after_ema:.3f} (EMA)")
    assert len(hist["loss"]) == 150 and hist["step"][-1] == 149 and hist["resumed_from"] == 0
    assert after_raw < 0.6 * before and after_ema < 0.6 * before
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())


def _train(steps, seed=0, **kw):
    model = _small_mlp(seed=0)
    ema, hist = tr.train(model, _toy(300), steps=steps, batch_size=64, seed=seed, warmup=3,
                         progress=False, **kw)
    return model, ema, hist


def test_same_seed_same_weights_other_seed_other_weights():
    m1, e1, h1 = _train(12)
    m2, e2, h2 = _train(12)
    m3, _, _ = _train(12, seed=1)
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
        assert torch.equal(e1.state_dict()[k], e2.state_dict()[k])
    assert h1["loss"] == h2["loss"]
    assert any(not torch.equal(v, m3.state_dict()[k]) for k, v in m1.state_dict().items())


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    state = tmp_path / "run.state"
    m_full, e_full, h_full = _train(10)
    _train(6, state_path=state, save_every=2)  # an interrupted run: its state file holds step 6
    m_res, e_res, h_res = _train(10, state_path=state, save_every=2)
    assert h_res["resumed_from"] == 6
    assert h_res["loss"] == pytest.approx(h_full["loss"], rel=0, abs=0)
    for k, v in m_full.state_dict().items():
        assert torch.equal(v, m_res.state_dict()[k])
        assert torch.equal(e_full.state_dict()[k], e_res.state_dict()[k])
    # a state file of another run, or one beyond the requested steps, is refused
    with pytest.raises(ValueError, match="other settings"):
        _train(10, seed=1, state_path=state)
    with pytest.raises(ValueError, match="beyond steps"):
        _train(4, state_path=state)


def test_train_rejects_bad_input():
    model = _small_mlp()
    data = _toy(64)
    with pytest.raises(TypeError, match="EDMPrecond"):
        tr.train(model.net, data, steps=1)
    with pytest.raises(ValueError, match="non-empty"):
        tr.train(model, torch.zeros(0, 2), steps=1)
    with pytest.raises(ValueError, match="finite"):
        tr.train(model, torch.full((4, 2), math.nan), steps=1)
    with pytest.raises(ValueError, match="steps"):
        tr.train(model, data, steps=0)
    with pytest.raises(ValueError, match="lr"):
        tr.train(model, data, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        tr.train(model, data, steps=1, ema_decay=1.0)
    with pytest.raises(ValueError, match="warmup"):
        tr.train(model, data, steps=1, warmup=-1)
    with pytest.raises(ValueError, match="p_uniform"):
        tr.train(model, data, steps=1, p_uniform=-0.1)
    with pytest.raises(TypeError, match="EDMPrecond"):
        tr.edm_loss(model.net, data)
    with pytest.raises(ValueError, match="batch"):
        tr.edm_loss(model, torch.zeros(3))
    with pytest.raises(ValueError, match="no training data"):
        tr.training_data("resnet")


def test_command_line_trains_and_writes_a_verified_checkpoint(tmp_path, capsys):
    out = tmp_path / "sub" / "toy.pt"
    digest = tr.run(["--model", "toy2d_mlp", "--steps", "5", "--out", str(out), "--n-data", "256",
                      "--threads", "1", "--no-progress", "--batch-size", "32"])
    printed = capsys.readouterr().out
    assert f"sha256 {digest}" in printed
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    model = nets.load_model(out, sha256=digest)
    assert model.config == nets.CONFIGS["toy2d_mlp"]
    assert model.meta["steps"] == 5 and model.meta["n_data"] == 256
    assert model.meta["command"].startswith("python -m diffusion_geometry.training --model toy2d_mlp")
    assert not (tmp_path / "sub" / "toy.pt.state").exists()
    with pytest.raises(SystemExit):
        tr.main(["--model", "nope", "--steps", "1", "--out", str(out)])
    assert tr.main(["--model", "toy2d_mlp", "--steps", "1", "--out", str(out), "--n-data", "64",
                    "--no-progress", "--batch-size", "16"]) == 0  # exit status for the dg-train script


def _losses(csv_path):
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,loss"
    return [float(line.split(",")[1]) for line in lines[1:]]


def test_torchrun_two_processes_follow_one_process_and_resume(tmp_path):
    """`torchrun --nproc_per_node=2 -m diffusion_geometry.training` (DistributedDataParallel over gloo)
    with the same global batch gives one process's loss curve to float round-off, and continues a run
    from a state file written by one process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    common = ["--model", "digits_unet", "--threads", "1", "--no-progress", "--batch-size", "64"]
    one = tr.run([*common, "--steps", "20", "--out", str(tmp_path / "one.pt"), "--loss-log", str(tmp_path / "one.csv")])
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def two_processes(*extra):
        # its own process group, so that a hang kills torchrun's workers too, not only torchrun
        proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc_per_node=2", "-m",
                                 "diffusion_geometry.training", *common, *extra], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        assert proc.returncode == 0, err[-3000:]
        return out

    printed = two_processes("--steps", "20", "--out", "two.pt", "--loss-log", "two.csv")
    assert printed.count("sha256 ") == 1  # rank 0 alone reports and writes
    reference, parallel = _losses(tmp_path / "one.csv"), _losses(tmp_path / "two.csv")
    assert len(reference) == len(parallel) == 20
    assert parallel == pytest.approx(reference, rel=1e-5, abs=0)
    assert parallel != reference[1:] + reference[:1]  # the comparison sees the steps' order
    two = nets.load_model(tmp_path / "two.pt")
    assert two.meta["processes"] == 2 and two.meta["steps"] == 20
    one_model = nets.load_model(tmp_path / "one.pt", sha256=one)
    for k, v in one_model.state_dict().items():
        torch.testing.assert_close(two.state_dict()[k], v, rtol=1e-4, atol=1e-6)

    # resume: one process trains 10 steps and leaves its state; two processes continue to 20
    state = tmp_path / "run.state"
    model = nets.build_model(nets.CONFIGS["digits_unet"], seed=0)
    tr.train(model, tr.training_data("digits_unet"), steps=10, batch_size=64, progress=False,
             state_path=state, save_every=5)
    two_processes("--steps", "20", "--out", "resumed.pt", "--state", str(state), "--loss-log", "resumed.csv")
    assert _losses(tmp_path / "resumed.csv") == pytest.approx(reference, rel=1e-5, abs=0)
    assert nets.load_model(tmp_path / "resumed.pt").meta["resumed_from"] == 10
    assert not state.exists()


def test_bf16_autocast_resumes_bit_exactly_and_follows_float32(tmp_path):
    """`bf16=True` runs the network in bfloat16 autocast: a resumed run ends with the same weights as
    an uninterrupted one, its losses stay within bfloat16's round-off of float32's over a few steps
    but are not float32's (autocast took effect), and a float32 state is not resumed in bfloat16."""
    state = tmp_path / "bf16.state"
    m_full, e_full, h_full = _train(10, bf16=True)
    _train(6, state_path=state, save_every=2, bf16=True)
    m_res, e_res, h_res = _train(10, state_path=state, save_every=2, bf16=True)
    assert h_res["resumed_from"] == 6 and h_res["loss"] == h_full["loss"]
    for k, v in m_full.state_dict().items():
        assert torch.equal(v, m_res.state_dict()[k]) and torch.equal(e_full.state_dict()[k], e_res.state_dict()[k])
    _, _, h32 = _train(10)
    assert h_full["loss"] == pytest.approx(h32["loss"], rel=0.05)  # 8 bits of mantissa, 10 steps
    assert h_full["loss"] != h32["loss"]
    with pytest.raises(ValueError, match="other settings"):
        _train(10, state_path=state)


def test_learning_rate_decay_phase_and_its_resume(tmp_path):
    """lr_decay_from: linear decay to 0 at `steps`; a constant-rate state may be continued with a decay
    phase and ends bit for bit where one run with that schedule does; a decay state needs the same decay."""
    assert [tr.lr_at(s, 1.0, 0, 6, 10) for s in range(10)] == pytest.approx([1] * 6 + [1, 0.75, 0.5, 0.25])
    state = tmp_path / "decay.state"
    m_full, e_full, h_full = _train(10, lr_decay_from=6)
    _train(6, state_path=state, save_every=2)  # a constant-rate run, stopped at step 6
    m_res, e_res, h_res = _train(10, state_path=state, save_every=2, lr_decay_from=6)
    assert h_res["resumed_from"] == 6 and h_res["loss"] == h_full["loss"]
    for k, v in m_full.state_dict().items():
        assert torch.equal(v, m_res.state_dict()[k]) and torch.equal(e_full.state_dict()[k], e_res.state_dict()[k])
    _, _, h_const = _train(10)
    assert h_const["loss"][-1] != h_full["loss"][-1]  # the decay took effect
    with pytest.raises(ValueError, match="other settings"):
        _train(12, state_path=state)
    with pytest.raises(ValueError, match="lr_decay_from"):
        _train(10, lr_decay_from=10)
    _train(6, state_path=tmp_path / "const.state", save_every=2)
    with pytest.raises(ValueError, match="decay phase must start"):  # steps 2-5 already ran at the full rate
        _train(10, state_path=tmp_path / "const.state", save_every=2, lr_decay_from=2)


def test_noise_phase_and_its_resume(tmp_path):
    """noise_from: EDM's log-normal before the step, (p_mean, p_std) from it on. The losses before the step
    are those of an EDM run and differ after it; an EDM state (also one written before the noise keys
    existed) may go on with a phase from its step on and ends bit for bit where one run does."""
    m_full, e_full, h_full = _train(10, noise_from=6, p_mean=0.8, p_std=0.5)
    _, _, h_edm = _train(10)
    assert h_full["loss"][:6] == h_edm["loss"][:6]
    assert all(a != b for a, b in zip(h_full["loss"][6:], h_edm["loss"][6:]))
    state = tmp_path / "phase.state"
    _train(6, state_path=state, save_every=2)  # EDM's noise levels, stopped at step 6
    old = torch.load(state, weights_only=True)
    for k in ("p_mean", "p_std", "noise_from"):  # as written before the noise keys existed
        del old[k]
    torch.save(old, tmp_path / "old.state")
    for path in (state, tmp_path / "old.state"):
        m_res, e_res, h_res = _train(10, state_path=path, save_every=2, noise_from=6, p_mean=0.8, p_std=0.5)
        assert h_res["resumed_from"] == 6 and h_res["loss"] == h_full["loss"]
        for k, v in m_full.state_dict().items():
            assert torch.equal(v, m_res.state_dict()[k]) and torch.equal(e_full.state_dict()[k], e_res.state_dict()[k])
    phase = tmp_path / "phase8.state"
    _train(8, state_path=phase, save_every=2, noise_from=6, p_mean=0.8, p_std=0.5)  # a phase state at step 8
    with pytest.raises(ValueError, match="other settings"):
        _train(10, state_path=phase, noise_from=6, p_mean=0.7, p_std=0.5)
    with pytest.raises(ValueError, match="other settings"):
        _train(10, state_path=phase, p_mean=0.8, p_std=0.5)
    _train(6, state_path=tmp_path / "edm.state", save_every=2)
    with pytest.raises(ValueError, match="noise phase must start"):  # steps 2-5 already ran with EDM's levels
        _train(10, state_path=tmp_path / "edm.state", noise_from=2, p_mean=0.8)
    with pytest.raises(ValueError, match="other settings"):  # a log-normal from step 0 is not what ran
        _train(10, state_path=tmp_path / "edm.state", p_mean=0.8)
    for bad in (dict(noise_from=10), dict(noise_from=-1), dict(p_std=0.0), dict(p_mean=float("nan"))):
        with pytest.raises(ValueError, match="noise_from|p_mean"):
            _train(10, **bad)


def test_stop_at_keeps_the_schedule_and_the_state(tmp_path):
    """stop_at: the run stops after that step with the schedules of a run of `steps` (so its weights are those
    of the full run at that step, not of a shorter run), keeps its state, and goes on bit for bit."""
    m_full, e_full, h_full = _train(10, lr_decay_from=4)
    state = tmp_path / "stop.state"
    m_stop, e_stop, h_stop = _train(10, lr_decay_from=4, stop_at=7, state_path=state, save_every=100)
    assert h_stop["loss"] == h_full["loss"][:7] and state.is_file()
    assert torch.load(state, weights_only=True)["step"] == 7
    _, _, h_short = _train(7, lr_decay_from=4)  # a run of 7 steps decays faster: other losses after step 4
    assert h_short["loss"][:5] == h_full["loss"][:5] and h_short["loss"][5:] != h_full["loss"][5:7]
    m_res, e_res, h_res = _train(10, lr_decay_from=4, state_path=state, save_every=100)
    assert h_res["resumed_from"] == 7 and h_res["loss"] == h_full["loss"]
    for k, v in m_full.state_dict().items():
        assert torch.equal(v, m_res.state_dict()[k]) and torch.equal(e_full.state_dict()[k], e_res.state_dict()[k])
    for bad in (0, 11, True, 2.5):
        with pytest.raises(ValueError, match="stop_at"):
            _train(10, stop_at=bad)
    with pytest.raises(ValueError, match="beyond stop_at=5"):  # the state is at step 10 after the resumed run
        _train(10, lr_decay_from=4, stop_at=5, state_path=state)


def test_command_line_stop_at_writes_the_weights_and_keeps_the_state(tmp_path):
    out, state = tmp_path / "toy.pt", tmp_path / "toy.state"
    common = ["--model", "toy2d_mlp", "--steps", "6", "--lr-decay-from", "2", "--n-data", "128", "--threads", "1",
              "--no-progress", "--batch-size", "32", "--state", str(state), "--save-every", "100"]
    tr.run([*common, "--stop-at", "4", "--out", str(out)])
    assert state.is_file() and nets.load_model(out).meta["stop_at"] == 4
    tr.run([*common, "--out", str(tmp_path / "end.pt")])  # goes on to step 6: the run has ended
    assert not state.exists()
    tr.run([*common, "--out", str(tmp_path / "one.pt")])
    assert (tmp_path / "one.pt").read_bytes() != b"" and not state.exists()
    a, b = nets.load_model(tmp_path / "end.pt"), nets.load_model(tmp_path / "one.pt")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
