"""Networks: shapes, EDM preconditioning, configs, loading and the shipped weights."""
import math

import pytest
import torch

import diffusion_geometry as dg
from diffusion_geometry import checkpoints as ck
from diffusion_geometry import networks as nets


@pytest.mark.parametrize("name,shape", [("toy2d_mlp", (2,)), ("digits_unet", (1, 8, 8)),
                                        ("fashion_unet", (1, 28, 28)), ("fashion_unet_large", (1, 28, 28))])
def test_named_models_map_batches_to_the_same_shape(name, shape):
    model = nets.build_model(name, seed=0)
    assert isinstance(model, dg.EDMPrecond)
    assert nets.sample_shape(nets.CONFIGS[name]) == shape
    x = torch.randn(3, *shape)
    out = model(x, torch.tensor([0.1, 1.0, 10.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert model.net(x, torch.zeros(3)).shape == x.shape


def test_the_gpu_profile_model_is_the_larger_fashion_unet():
    small, large = (sum(p.numel() for p in nets.build_model(n, seed=0).parameters())
                    for n in ("fashion_unet", "fashion_unet_large"))
    assert small == 622_769 and large > 20 * small


def test_unet_handles_other_sizes_and_widths():
    net = nets.UNet(in_channels=3, channels=(8, 16), blocks=2, emb_dim=16, groups=4)
    for size in (7, 12, 16):
        x = torch.randn(2, 3, size, size)
        assert net(x, torch.zeros(2)).shape == x.shape


def test_fashion_config_size_matches_training_notes():
    # training-notes: channels (16, 32, 64), 1 block per resolution, about 0.67 M parameters
    n = nets.count_parameters(nets.build_model("fashion_unet"))
    assert 0.55e6 < n < 0.75e6


def test_edm_coefficients_closed_form():
    model = nets.build_model("toy2d_mlp")
    sd = 0.5
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = model.coefficients(sigma)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(sd**2 / (s**2 + sd**2), rel=1e-12)
        assert c_out[i].item() == pytest.approx(s * sd / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)
    # at sigma = sigma_data: c_skip = 1/2, c_out = sd/sqrt(2), c_in = 1/(sd sqrt(2))
    assert c_skip[1].item() == pytest.approx(0.5) and c_out[1].item() == pytest.approx(0.5 / math.sqrt(2))
    # EDM identity: c_out^2 = sigma^2 sd^2 / (sigma^2 + sd^2) = c_skip sigma^2 (the posterior variance)
    assert torch.allclose(c_out**2, c_skip * sigma**2)


def test_untrained_unet_is_the_optimal_gaussian_denoiser():
    # the output convolution starts at zero, so D(x; sigma) = c_skip x = sd^2/(sigma^2+sd^2) x,
    # the posterior mean for data ~ N(0, sd^2 I)
    model = nets.build_model("digits_unet", seed=1)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float32)
    sigma = torch.tensor([0.05, 0.5, 2.0, 40.0])
    expect = 0.25 / (sigma**2 + 0.25)
    assert torch.allclose(model(x, sigma), expect[:, None, None, None] * x, rtol=1e-6, atol=1e-7)


def test_noise_embedding_is_smooth_and_saved_with_the_weights():
    emb = nets.NoiseEmbedding(16)
    assert "freqs" in emb.state_dict()
    f = emb.freqs
    assert f[0].item() == pytest.approx(1 / 16) and f[-1].item() == pytest.approx(2.0)
    assert torch.allclose(f[1:] / f[:-1], (f[1] / f[0]).expand(len(f) - 1))  # geometric
    with pytest.raises(ValueError, match="batch"):
        emb(torch.zeros(2, 1))


def test_seeded_build_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = nets.build_model("digits_unet", seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = nets.build_model("digits_unet", seed=7)
    c = nets.build_model("digits_unet", seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_build_model_rejects_bad_configs():
    with pytest.raises(ValueError, match="unknown model name"):
        nets.build_model("resnet")
    with pytest.raises(ValueError, match="kind"):
        nets.build_model({"kind": "transformer"})
    with pytest.raises(ValueError, match="unknown keys"):
        nets.build_model({"kind": "mlp", "width": 3})
    with pytest.raises(ValueError, match="channels"):
        nets.build_model({"kind": "unet", "channels": []})
    with pytest.raises(ValueError, match="positive integer"):
        nets.build_model({"kind": "mlp", "depth": 0})
    with pytest.raises(ValueError, match="even integer"):
        nets.build_model({"kind": "mlp", "emb_dim": 5})
    with pytest.raises(ValueError, match="min_freq"):
        nets.NoiseEmbedding(8, min_freq=2.0, max_freq=1.0)
    with pytest.raises(ValueError, match="image_size"):
        nets.build_model({"kind": "unet", "image_size": -1})
    with pytest.raises(TypeError):
        nets.build_model(3)
    with pytest.raises(ValueError, match="image_size"):
        nets.sample_shape({"kind": "unet", "channels": [8]})


def test_networks_reject_bad_inputs():
    mlp = nets.MLP(dim=2)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        mlp(torch.zeros(3, 3), torch.zeros(3))
    unet = nets.UNet()
    with pytest.raises(ValueError, match="H, W"):
        unet(torch.zeros(3, 2, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="c_noise"):
        unet(torch.zeros(3, 1, 8, 8), torch.zeros(2))


def test_load_model_round_trip_and_mismatched_config(tmp_path):
    model = nets.build_model("digits_unet", seed=3)
    cfg = dict(nets.CONFIGS["digits_unet"])
    path = tmp_path / "d.pt"
    digest = ck.save_checkpoint(path, model, config=cfg, meta={"steps": 1})
    loaded = nets.load_model(path, sha256=digest)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.config == cfg and loaded.meta == {"steps": 1}
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded(x, 0.7), model(x, 0.7))
    # the same weights under a config with other widths: a clear error, not a partial load
    bad = dict(cfg, channels=[16, 32, 32])
    ck.save_checkpoint(path, model, config=bad)
    with pytest.raises(ValueError, match="does not match its config"):
        nets.load_model(path)
    ck.save_checkpoint(path, model, config={"kind": "mlp", "dim": 2})
    with pytest.raises(ValueError, match="does not match its config"):
        nets.load_model(path)
    ck.save_checkpoint(path, model, config={"kind": "vae"})
    with pytest.raises(ValueError, match="cannot build a model"):
        nets.load_model(path)


def test_load_pretrained_unknown_name():
    with pytest.raises(KeyError, match="available"):
        nets.load_pretrained("no_such_model")


@pytest.mark.parametrize("name", ["digits_unet", "fashion_unet"])
def test_shipped_models_load_in_eval_mode(name):
    model = nets.load_pretrained(name)
    assert not model.training
    assert model.config == ck.manifest()[name]["config"]
    assert nets.count_parameters(model) == 0  # gradients off
    assert sum(p.numel() for p in model.parameters()) == model.meta["parameters"]
    x = torch.randn(2, *nets.sample_shape(model.config))
    assert torch.isfinite(model(x, 1.0)).all()


def _relative_error_to_optimal(model, data, sigma, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = data[torch.randint(len(data), (n,), generator=g)]
    x = y + sigma * torch.randn(y.shape, generator=g)
    with torch.no_grad():
        learned = model(x, sigma)
    optimal = dg.EmpiricalDenoiser(data.double())(x.double(), sigma).float()
    return ((learned - optimal).flatten(1).norm(dim=1) / optimal.flatten(1).norm(dim=1)).mean().item()


def test_shipped_digits_denoiser_matches_the_optimal_one_at_large_sigma():
    # at sigma = 80 the optimal denoiser of the training set is (almost) its mean image; a trained
    # network must have learned it, an untrained one (D = c_skip x ~ 0) misses it completely
    # (measured when shipped: 0.074 at sigma = 80, 0.20 at sigma = 1, where the learned denoiser
    # departs from the optimal one -- the regime in which it generalises instead of copying)
    data = dg.datasets.digits()[0]
    model = nets.load_pretrained("digits_unet")
    trained = _relative_error_to_optimal(model, data, 80.0)
    middle = _relative_error_to_optimal(model, data, 1.0)
    untrained = _relative_error_to_optimal(nets.build_model("digits_unet", seed=0), data, 80.0)
    print(f"relative error: trained {trained:.4f} at sigma=80, {middle:.4f} at sigma=1; "
          f"untrained {untrained:.4f} at sigma=80")
    assert trained < 0.1
    assert middle > 2 * trained
    assert untrained > 0.9
