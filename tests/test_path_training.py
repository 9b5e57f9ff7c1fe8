"""Models of other Gaussian paths (PathNet): building, the path loss, training, the shipped digits models."""
import math

import pytest
import torch
from torch import nn

import diffusion_geometry as dg
from diffusion_geometry import networks, paths, training

MLP_FM = {"kind": "mlp", "dim": 2, "hidden": 64, "depth": 2, "emb_dim": 16, "path": "flow_matching",
          "prediction": "velocity"}


class ExactNet(nn.Module):
    """A 'network' that returns the exact prediction of a mixture, reading the noise level from c_noise."""

    def __init__(self, mixture, path, prediction, scale=1.0):
        super().__init__()
        self.model = paths.PathModel(mixture.denoise, path, prediction)
        self.path, self.scale = paths.get_path(path), scale
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, c_noise):
        sigma = torch.exp(4 * c_noise.to(torch.float64))
        return self.scale * self.model(x.to(torch.float64), self.path.time(sigma)) + 0 * self.dummy


def test_configs_with_a_path_build_a_path_net():
    model = networks.build_model(MLP_FM, seed=0)
    assert isinstance(model, networks.PathNet) and model.path.name == "flow_matching"
    out = model(torch.zeros(4, 2), torch.full((4,), 0.5))
    assert out.shape == (4, 2)
    assert isinstance(model.denoiser(), paths.PathDenoiser)
    with pytest.raises(ValueError, match="needs both"):
        networks.build_model({k: v for k, v in MLP_FM.items() if k != "prediction"})
    with pytest.raises(ValueError, match="sigma_data"):
        networks.build_model({**MLP_FM, "sigma_data": 0.5})
    with pytest.raises(ValueError, match="prediction must be one of"):
        networks.build_model({**MLP_FM, "prediction": "score"})
    with pytest.raises(ValueError, match="unknown path"):
        networks.build_model({**MLP_FM, "path": "ddpm"})


@pytest.mark.parametrize("name,prediction", [("flow_matching", "velocity"), ("vp", "eps"), ("cosine", "x0"),
                                             ("vp", "velocity")])
def test_the_exact_prediction_minimises_the_path_loss(name, prediction):
    """The loss's minimiser is the posterior prediction: scaling the exact model by 1 +- 5% raises the
    loss on the same draws (a wrong target, e.g. eps for velocity, would not be minimised there)."""
    mix = dg.datasets.mixture_2d(n_modes=4, radius=1.0, std=0.2)
    y = mix.sample(4096, generator=torch.Generator().manual_seed(0))
    losses = {}
    for scale in (0.95, 1.0, 1.05):
        model = networks.PathNet(ExactNet(mix, name, prediction, scale), name, prediction)
        losses[scale] = training.path_loss(model, y, generator=torch.Generator().manual_seed(1)).item()
    assert losses[1.0] < losses[0.95] and losses[1.0] < losses[1.05], losses


def test_path_loss_shards_average_to_the_whole_batch():
    model = networks.build_model(MLP_FM, seed=0).double()
    y = dg.datasets.mixture_2d().sample(64, generator=torch.Generator().manual_seed(0))
    whole = training.path_loss(model, y, generator=torch.Generator().manual_seed(2))
    parts = [training.path_loss(model, y, generator=torch.Generator().manual_seed(2), shard=(r, 2)) for r in range(2)]
    torch.testing.assert_close((parts[0] + parts[1]) / 2, whole, rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match="PathNet"):
        training.path_loss(networks.build_model("toy2d_mlp"), y)


def test_training_a_flow_matching_mlp_learns_the_mixture_denoiser():
    mix = dg.datasets.mixture_2d(n_modes=4, radius=1.0, std=0.2)
    data = mix.sample(2048, generator=torch.Generator().manual_seed(0)).float()
    model = networks.build_model(MLP_FM, seed=0)
    x = mix.sample(256, sigma=1.0, generator=torch.Generator().manual_seed(3)).float()

    def error(m):
        with torch.no_grad():
            return ((m.denoiser()(x, 1.0).double() - mix.denoise(x.double(), 1.0)).norm(dim=1).mean()).item()

    before = error(model)
    ema, hist = training.train(model, data, steps=400, batch_size=128, lr=3e-3, progress=False, ema_decay=0.99)
    after = error(ema)
    print(f"mean |D_theta - D*| at sigma = 1: {before:.3f} -> {after:.3f}; loss {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.3f}")
    assert after < before / 3
    assert isinstance(ema, networks.PathNet)


@pytest.mark.parametrize("name", ["digits_fm", "digits_vp"])
def test_shipped_path_models_load_and_denoise(name):
    model = networks.load_pretrained(name)
    assert name in networks.shipped_path_models() and name not in networks.shipped_denoisers()
    images = dg.datasets.digits()[0][:64]
    gen = torch.Generator().manual_seed(0)
    x = images + 0.5 * torch.randn(images.shape, generator=gen)
    with torch.no_grad():
        d = model.denoiser()(x, 0.5)
    # denoising at sigma = 0.5 brings the points closer to the clean digits than the noisy input was
    assert (d - images).norm() < 0.6 * (x - images).norm()
    assert math.isclose(float(model.path.sigma(model.path.time(0.5))), 0.5, rel_tol=1e-12)
