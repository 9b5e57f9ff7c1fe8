r"""Networks :math:`F_\theta(x_\text{in}, c_\text{noise})` for the EDM denoiser, and their configs.

Every network here is used behind :class:`~diffusion_geometry.EDMPrecond` (Karras et al. 2022,
Table 1), so the denoiser is

.. math:: D_\theta(x;\sigma) = c_\text{skip}(\sigma)\,x + c_\text{out}(\sigma)\,
          F_\theta\big(c_\text{in}(\sigma)\,x,\; c_\text{noise}(\sigma)\big),
          \qquad c_\text{noise} = \tfrac14 \ln\sigma .

* :class:`MLP` -- for toy data in :math:`\mathbb{R}^d`: residual SiLU blocks with the noise
  embedding added to every block.
* :class:`UNet` -- for small images (digits 8x8, Fashion-MNIST 28x28): a U-Net in the style of
  DDPM/EDM (Ho et al. 2020; Karras et al. 2022) reduced to what a CPU trains in an hour:
  GroupNorm + SiLU residual blocks, the noise embedding added per block, skip connections from every
  encoder stage, no attention.

Both embed :math:`c_\text{noise}` with fixed Fourier features
:math:`[\cos 2\pi f_k c, \sin 2\pi f_k c]`, :math:`f_k` geometric in ``[1/16, 2]`` cycles per unit
of :math:`c_\text{noise}` (smooth in :math:`\ln\sigma`, so that the rarely trained extremes such as
:math:`\sigma = 80` are interpolated rather than aliased), followed by a small MLP.

The same networks also serve as models of other Gaussian paths (VP, flow matching;
:mod:`diffusion_geometry.paths`): :class:`PathNet` feeds them the path's point :math:`x_t` and
:math:`c_\text{noise} = \tfrac14\ln\sigma(t)` and reads their output as the noise, the clean point
or the velocity, with no preconditioning; a config with ``"path"`` and ``"prediction"`` keys builds one.

A network is described by a JSON-like *config* dict; :func:`build_model` turns a config into an
``EDMPrecond`` (or a :class:`PathNet`), :func:`load_model` loads a checkpoint file, :func:`load_pretrained` the weights
shipped with the package (checked against their SHA-256). :data:`CONFIGS` holds the named configs
that ``python -m diffusion_geometry.training --model NAME`` trains.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checkpoint, manifest, pretrained_path
from .denoisers import EDMPrecond
from .paths import PREDICTIONS, PathDenoiser, get_path

__all__ = [
    "NoiseEmbedding",
    "MLP",
    "UNet",
    "PathNet",
    "CONFIGS",
    "build_model",
    "count_parameters",
    "sample_shape",
    "load_model",
    "load_pretrained",
    "shipped_denoisers",
    "shipped_path_models",
]


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


class NoiseEmbedding(nn.Module):
    r"""Embed the scalar :math:`c_\text{noise}` (shape ``(batch,)``) into ``dim`` features.

    Fourier features :math:`[\cos 2\pi f_k c, \sin 2\pi f_k c]_{k < n}` with ``n = dim // 2``
    frequencies :math:`f_k` geometric between ``min_freq`` and ``max_freq`` cycles per unit (fixed,
    not learned), then Linear -> SiLU -> Linear. :math:`c_\text{noise} = \tfrac14\ln\sigma` spans
    about 2.7 units for :math:`\sigma \in [0.002, 80]`, so the highest frequency resolves a factor of
    about 1.7 in :math:`\sigma` while the lowest varies slowly across the whole range.
    """

    def __init__(self, dim: int, min_freq: float = 1 / 16, max_freq: float = 2.0):
        super().__init__()
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"the embedding dimension must be an even integer >= 2, got {dim!r}")
        if not 0 < min_freq <= max_freq:
            raise ValueError(f"need 0 < min_freq <= max_freq, got {min_freq}, {max_freq}")
        freqs = torch.logspace(math.log10(min_freq), math.log10(max_freq), dim // 2)
        self.register_buffer("freqs", freqs)  # saved: a checkpoint keeps the frequencies it was trained with
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        if c_noise.ndim != 1:
            raise ValueError(f"c_noise must have shape (batch,), got {tuple(c_noise.shape)}")
        # the phases are sigma-dependent factors: formed in float32 at least (float16 rounds a phase
        # of 2 pi * 2 * 2.3 ~ 29 to 0.016 rad); only the features are cast to the layers' dtype
        work = torch.promote_types(self.freqs.dtype, torch.float32)
        phase = 2 * math.pi * c_noise[:, None].to(work) * self.freqs[None].to(work)
        feats = torch.cat([phase.cos(), phase.sin()], dim=1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class MLP(nn.Module):
    r"""A residual MLP :math:`F_\theta(x, c_\text{noise})` for data in :math:`\mathbb{R}^\text{dim}`.

    ``h = W_in x``; then ``depth`` blocks ``h <- h + W_2 SiLU(W_1 SiLU(LayerNorm(h)) + E_k e)`` where
    ``e`` is the noise embedding; output ``W_out SiLU(LayerNorm(h))``. Inputs and outputs are
    ``(batch, dim)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 32):
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim = dim
        self.embed = NoiseEmbedding(emb_dim)
        self.inp = nn.Linear(dim, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(depth))
        self.lin1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.emb = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(depth))
        self.lin2 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        e = F.silu(self.embed(c_noise))
        h = self.inp(x)
        for norm, l1, le, l2 in zip(self.norms, self.lin1, self.emb, self.lin2):
            h = h + l2(F.silu(l1(F.silu(norm(h))) + le(e)))
        return self.out(F.silu(self.out_norm(h)))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 (+ embedding) -> GroupNorm -> SiLU -> conv3x3, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(math.gcd(groups, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    r"""A small U-Net :math:`F_\theta(x, c_\text{noise})` for images ``(batch, in_channels, H, W)``.

    The layout of DDPM/EDM's U-Nets (Ho et al. 2020; Karras et al. 2022) without attention.
    Encoder: a 3x3 stem, then for each entry of ``channels`` ``blocks`` residual blocks at that
    width, followed (except at the last level) by a stride-2 convolution that halves the
    resolution (28 -> 14 -> 7 for Fashion-MNIST, 8 -> 4 -> 2 for digits); every intermediate
    feature map is kept as a skip connection. Middle: two residual blocks. Decoder: per level
    ``blocks + 1`` residual blocks, each concatenating one skip connection, then nearest-neighbour
    upsampling + 3x3 convolution. Each residual block adds a per-channel projection of the noise
    embedding. The output convolution starts at zero, so an untrained denoiser is
    :math:`c_\text{skip}(\sigma)\, x`, the optimal denoiser of data with zero mean and variance
    :math:`\sigma_d^2` per pixel.
    """

    def __init__(self, in_channels: int = 1, channels=(16, 32, 64), blocks: int = 1,
                 emb_dim: int = 64, groups: int = 8):
        super().__init__()
        channels = tuple(channels)
        if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive integers, got {channels!r}")
        for name, value in (("in_channels", in_channels), ("blocks", blocks), ("groups", groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_channels, self.channels = in_channels, channels
        self.embed = NoiseEmbedding(emb_dim)
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.enc = nn.ModuleList()
        c = channels[0]
        skip_ch = [c]
        for i, ch in enumerate(channels):
            for _ in range(blocks):
                self.enc.append(ResBlock(c, ch, emb_dim, groups))
                c = ch
                skip_ch.append(c)
            if i < len(channels) - 1:
                self.enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_ch.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, groups), ResBlock(c, c, emb_dim, groups)])
        self.dec = nn.ModuleList()
        for i, ch in reversed(list(enumerate(channels))):
            for _ in range(blocks + 1):
                self.dec.append(ResBlock(c + skip_ch.pop(), ch, emb_dim, groups))
                c = ch
            if i > 0:
                self.dec.append(nn.Conv2d(c, c, 3, padding=1))  # after a x2 nearest upsampling
        self.out_norm = nn.GroupNorm(math.gcd(groups, c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if c_noise.shape != (x.shape[0],):
            raise ValueError(f"c_noise must have shape ({x.shape[0]},), got {tuple(c_noise.shape)}")
        e = F.silu(self.embed(c_noise))
        h = self.stem(x)
        skips = [h]
        for layer in self.enc:
            h = layer(h, e) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, e)
        for layer in self.dec:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), e)
            else:  # upsample to the size of the next skip connection (7 -> 14 -> 28, 2 -> 4 -> 8)
                h = layer(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


class PathNet(nn.Module):
    r"""A network as the model of a Gaussian path: ``model(x, t) = net(x, log(sigma(t))/4)``.

    ``x`` is the path's point :math:`x_t = \alpha_t x_0 + s_t\varepsilon` (``(batch, ...)``), ``t`` its
    time (``(batch,)`` or a number); the output, of ``x``'s shape, is read as ``prediction``
    (``"eps"``, ``"x0"`` or ``"velocity"``, :mod:`~diffusion_geometry.paths`). The network is told
    the noise level as EDM's is (:math:`\sigma(t)` clamped to [1e-4, 1e4], so that flow matching's
    :math:`t = 1` is finite); what makes it a VP or a flow-matching model is its input, its target and
    its loss (:func:`~diffusion_geometry.training.path_loss`), not this embedding. :meth:`denoiser`
    gives the book's ``D(y, sigma)`` (:class:`~diffusion_geometry.paths.PathDenoiser`).
    """

    def __init__(self, net: nn.Module, path: str, prediction: str):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.net, self.path_name, self.prediction = net, get_path(path).name, prediction

    @property
    def path(self):
        return get_path(self.path_name)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not torch.isfinite(x).all():
            raise ValueError("x must be a finite floating-point tensor of shape (batch, ...)")
        t64 = torch.as_tensor(t, dtype=torch.float64, device=x.device).reshape(-1).expand(x.shape[0])
        c_noise = self.path.sigma(t64).clamp(1e-4, 1e4).log() / 4
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        out = self.net(x.to(dtype), c_noise.to(torch.promote_types(dtype, torch.float32)))
        return out.to(x.dtype)

    def denoiser(self) -> PathDenoiser:
        """This model as the book's denoiser ``D(y, sigma)`` in VE coordinates."""
        return PathDenoiser(self, self.path, self.prediction)


# --------------------------------------------------------------------------------------------------
# Configs, building and loading
# --------------------------------------------------------------------------------------------------

CONFIGS: dict[str, dict] = {
    "toy2d_mlp": {"kind": "mlp", "dim": 2, "hidden": 128, "depth": 3, "emb_dim": 32, "sigma_data": 0.5},
    "digits_unet": {"kind": "unet", "in_channels": 1, "image_size": 8, "channels": [16, 32, 64],
                    "blocks": 1, "emb_dim": 64, "groups": 8, "sigma_data": 0.5},
    "fashion_unet": {"kind": "unet", "in_channels": 1, "image_size": 28, "channels": [16, 32, 64],
                     "blocks": 1, "emb_dim": 64, "groups": 8, "sigma_data": 0.5},
    # the GPU profile's larger U-Net (14.2 M parameters; not shipped: benchmarks/gpu_profile.py --train-steps)
    "fashion_unet_large": {"kind": "unet", "in_channels": 1, "image_size": 28, "channels": [64, 128, 256],
                           "blocks": 2, "emb_dim": 256, "groups": 8, "sigma_data": 0.5},
    # the same digits U-Net as models of other Gaussian paths (chapter 11): flow matching and VP
    "digits_fm": {"kind": "unet", "in_channels": 1, "image_size": 8, "channels": [16, 32, 64],
                  "blocks": 1, "emb_dim": 64, "groups": 8, "path": "flow_matching", "prediction": "velocity"},
    "digits_vp": {"kind": "unet", "in_channels": 1, "image_size": 8, "channels": [16, 32, 64],
                  "blocks": 1, "emb_dim": 64, "groups": 8, "path": "vp", "prediction": "eps"},
}
"""Named model configs (the ``--model`` choices of the training command)."""

_ALLOWED = {
    "mlp": {"kind", "dim", "hidden", "depth", "emb_dim", "sigma_data"},
    "unet": {"kind", "in_channels", "image_size", "channels", "blocks", "emb_dim", "groups", "sigma_data"},
}


def build_model(config: dict, *, seed: int | None = None) -> EDMPrecond | PathNet:
    """An ``EDMPrecond`` around the network a config describes (``kind`` = ``"mlp"`` or ``"unet"``),
    or a :class:`PathNet` when the config names a ``"path"`` and a ``"prediction"`` (no ``sigma_data``).

    ``config`` may also be the name of an entry of :data:`CONFIGS`. With ``seed`` the initial weights
    are drawn from ``torch.manual_seed(seed)`` inside a forked RNG (the global RNG is left alone), so
    the same seed gives the same network. Unknown kinds or keys raise ``ValueError``. ``image_size``
    (UNet) is recorded for data checks and sample shapes; the network itself accepts any size.
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown model name {config!r}; choose one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict or a name in CONFIGS, got {type(config).__name__}")
    kind = config.get("kind")
    if kind not in _ALLOWED:
        raise ValueError(f"config['kind'] must be 'mlp' or 'unet', got {kind!r}")
    is_path = "path" in config or "prediction" in config
    unknown = set(config) - _ALLOWED[kind] - ({"path", "prediction"} if is_path else set())
    if is_path:
        unknown |= {"sigma_data"} & set(config)
        if not {"path", "prediction"} <= set(config):
            raise ValueError("a path model's config needs both 'path' and 'prediction'")
    if unknown:
        raise ValueError(f"unknown keys for a {kind!r} config: {sorted(unknown)}")
    args = {k: v for k, v in config.items() if k not in ("kind", "sigma_data", "image_size", "path", "prediction")}
    if kind == "unet" and "image_size" in config:
        size = config["image_size"]
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"image_size must be a positive integer, got {size!r}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = MLP(**args) if kind == "mlp" else UNet(**args)
    if is_path:
        try:
            return PathNet(net, config["path"], config["prediction"])
        except ValueError as err:
            raise ValueError(f"bad path model config: {err}") from None
    return EDMPrecond(net, sigma_data=config.get("sigma_data", 0.5))


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sample_shape(config: dict) -> tuple[int, ...]:
    """The shape of one data point for a config: ``(dim,)`` or ``(in_channels, size, size)``."""
    if config["kind"] == "mlp":
        return (config.get("dim", 2),)
    size = config.get("image_size")
    if size is None:
        raise ValueError("this UNet config does not record image_size")
    return (config.get("in_channels", 1), size, size)


def load_model(path, *, sha256: str | None = None) -> EDMPrecond:
    """The model stored in a checkpoint file (see :func:`~diffusion_geometry.checkpoints.save_checkpoint`).

    Returns the ``EDMPrecond`` in eval mode with gradients off. A state dict that does not fit the
    config (missing or unexpected parameters, mismatched shapes) raises a ``ValueError`` naming the
    file and the first problems, never a partly loaded model.
    """
    ckpt = load_checkpoint(path, sha256=sha256)
    try:
        model = build_model(ckpt["config"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: its config cannot build a model: {err}") from None
    expected = model.state_dict()
    state = ckpt["state_dict"]
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{path}: the state dict does not match its config {ckpt['config']}: "
                         f"{'; '.join(problems[:5])}{more}")
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    model.config = copy.deepcopy(ckpt["config"])
    model.meta = copy.deepcopy(ckpt["meta"])
    return model


def shipped_denoisers() -> list[str]:
    """Names of the shipped weights that are denoisers (an ``mlp`` or ``unet`` config), sorted; the
    manifest also lists other networks (the Fashion-MNIST feature classifier), which are not."""
    return sorted(name for name, entry in manifest().items()
                  if isinstance(entry.get("config"), dict) and entry["config"].get("kind") in _ALLOWED
                  and "path" not in entry["config"])


def shipped_path_models() -> list[str]:
    """Names of the shipped weights that are models of other Gaussian paths (:class:`PathNet`: call
    ``model(x, t)``, or ``model.denoiser()`` for the book's ``D(y, sigma)``), sorted."""
    return sorted(name for name, entry in manifest().items()
                  if isinstance(entry.get("config"), dict) and "path" in entry["config"])


def load_pretrained(name: str) -> EDMPrecond:
    """The shipped denoiser ``name`` (see ``weights/manifest.json``), verified against its SHA-256.

    The returned ``EDMPrecond`` (a :class:`PathNet` for the path models, :func:`shipped_path_models`)
    is in eval mode with gradients off; ``model.config`` and
    ``model.meta`` hold the checkpoint's config and training record. A name of shipped weights that
    are not a denoiser (``fashion_classifier``) or a manifest config that differs from the
    checkpoint's raises ``ValueError``; an unknown name raises ``KeyError``.
    """
    path = pretrained_path(name)
    entry = manifest()[name]
    if name not in shipped_denoisers() and name not in shipped_path_models():
        raise ValueError(f"the shipped weights {name!r} are a {entry.get('kind', 'network')}, not a denoiser; "
                         f"shipped denoisers: {shipped_denoisers()}")
    model = load_model(path, sha256=entry["sha256"])
    if entry["config"] != model.config:
        raise ValueError(f"the manifest config of {name!r} {entry['config']} differs from the "
                         f"checkpoint's {model.config}")
    return model
