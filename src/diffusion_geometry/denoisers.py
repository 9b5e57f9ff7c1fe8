r"""Denoisers: the posterior mean :math:`D(x;\sigma) = \mathbb{E}[x_0 \mid x_0 + \sigma\varepsilon = x]`.

Everything in the book is driven through one protocol: ``D(x, sigma) -> Tensor`` with the shape of
``x`` (batch first, any trailing shape) and ``sigma`` a float, a 0-d tensor or a ``(batch,)`` tensor.
Tweedie's formula ties a denoiser to the score of the noised marginal :math:`p_\sigma = p_0 * N(0,\sigma^2 I)`:

.. math:: \nabla_x \log p_\sigma(x) = \frac{D(x;\sigma) - x}{\sigma^2}.

* :class:`GaussianMixture` -- data drawn from a Gaussian mixture; every quantity in closed form.
* :class:`EmpiricalDenoiser` -- the optimal denoiser of a finite data set (EDM, App. B.3), a softmax
  weighted mean of the training points, i.e. one Gaussian mean-shift step with bandwidth sigma
  (Chen et al. 2023, arXiv 2305.19947).
* :class:`EDMPrecond` -- a network wrapped in EDM's preconditioning (Karras et al. 2022, Table 1).
"""
from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["Denoiser", "GaussianMixture", "EmpiricalDenoiser", "EDMPrecond", "sigma_like"]


@runtime_checkable
class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor: ...


def sigma_like(sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a tensor of shape ``(batch, 1, ..., 1)`` on ``x``'s device and dtype.

    Accepts a Python number, a 0-d tensor, or a ``(batch,)`` tensor; rejects negative or non-finite
    values and batch mismatches with a clear message.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError("x must be a tensor with a leading batch dimension")
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    elif s.ndim != 1 or s.shape[0] != x.shape[0]:
        raise ValueError(
            f"sigma must be a scalar or have shape (batch,) = ({x.shape[0]},), got {tuple(s.shape)}"
        )
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("sigma must be finite and non-negative")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


# --------------------------------------------------------------------------------------------------
# Gaussian mixtures: the exact denoiser
# --------------------------------------------------------------------------------------------------


class GaussianMixture:
    r"""A Gaussian mixture :math:`p_0 = \sum_k \pi_k N(\mu_k, \Sigma_k)` in :math:`\mathbb{R}^d`.

    Noising keeps it a mixture: :math:`p_\sigma = \sum_k \pi_k N(\mu_k, \Sigma_k + \sigma^2 I)`, so
    the marginal density, the score and the denoiser are exact. With responsibilities
    :math:`\gamma_k(x) \propto \pi_k N(x; \mu_k, \Sigma_k + \sigma^2 I)`,

    .. math:: D(x;\sigma) = \sum_k \gamma_k(x)\,\big[\mu_k + \Sigma_k(\Sigma_k + \sigma^2 I)^{-1}(x - \mu_k)\big].

    Parameters
    ----------
    means : ``(K, d)``
    covariances : one of ``(K,)`` (isotropic variances :math:`v_k I`), ``(K, d)`` (diagonal) or
        ``(K, d, d)`` (full, symmetric positive semi-definite; use :meth:`low_rank` for
        :math:`U U^\top + v I`). A float gives the same isotropic variance to every component.
    weights : ``(K,)`` positive, normalised here; uniform if omitted.

    Inputs ``x`` are ``(batch, d)``. Computations run in the dtype and on the device of ``means``.
    """

    def __init__(self, means, covariances, weights=None):
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.to(torch.float64)
        if means.ndim != 2 or means.shape[0] == 0 or means.shape[1] == 0:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {tuple(means.shape)}")
        K, d = means.shape
        cov = torch.as_tensor(covariances, dtype=means.dtype, device=means.device)
        if cov.ndim == 0:
            cov = cov.expand(K).clone()
        if cov.shape == (K,):
            kind = "iso"
            if (cov < 0).any():
                raise ValueError("isotropic variances must be non-negative")
        elif cov.shape == (K, d):
            kind = "diag"
            if (cov < 0).any():
                raise ValueError("diagonal variances must be non-negative")
        elif cov.shape == (K, d, d):
            kind = "full"
            if not torch.allclose(cov, cov.transpose(-1, -2), atol=1e-8 * (1 + cov.abs().max())):
                raise ValueError("full covariances must be symmetric")
            if torch.linalg.eigvalsh(cov).min() < -1e-8 * (1 + cov.abs().max()):
                raise ValueError("full covariances must be positive semi-definite")
        else:
            raise ValueError(
                f"covariances must have shape (K,), (K, d) or (K, d, d) with K={K}, d={d}; "
                f"got {tuple(cov.shape)}"
            )
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=means.dtype, device=means.device)
        weights = torch.as_tensor(weights, dtype=means.dtype, device=means.device)
        if weights.shape != (K,) or (weights <= 0).any():
            raise ValueError(f"weights must be {K} positive numbers, got shape {tuple(weights.shape)}")
        self.means, self.covariances, self.kind = means, cov, kind
        self.weights = weights / weights.sum()

    @classmethod
    def low_rank(cls, means, factors, noise_variance, weights=None) -> "GaussianMixture":
        r"""Components with covariance :math:`U_k U_k^\top + v I` from ``factors`` ``(K, d, r)``."""
        factors = torch.as_tensor(factors)
        means = torch.as_tensor(means, dtype=factors.dtype, device=factors.device)
        if factors.ndim != 3 or factors.shape[:2] != means.shape:
            raise ValueError(f"factors must have shape (K, d, r) matching means {tuple(means.shape)}")
        eye = torch.eye(means.shape[1], dtype=factors.dtype, device=factors.device)
        return cls(means, factors @ factors.transpose(-1, -2) + noise_variance * eye, weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        K, d = self.means.shape
        return f"GaussianMixture(K={K}, d={d}, covariances={self.kind!r}, dtype={self.means.dtype})"

    # -- helpers -----------------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.dim}), got {shape}")
        return x

    def _noised_cov(self, s2: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-component covariance of p_sigma: iso (B,K), diag (B,K,d) or full (B,K,d,d)."""
        if self.kind == "iso":
            return self.covariances[None, :] + s2[:, None]
        if self.kind == "diag":
            return self.covariances[None] + s2[:, None, None]
        eye = torch.eye(self.dim, dtype=self.means.dtype, device=self.means.device)
        return self.covariances[None] + s2[:, None, None, None] * eye

    def _log_components(self, x: torch.Tensor, sigma):
        """log(pi_k N(x; mu_k, Sigma_k + sigma^2 I)) as (B, K), and the pieces the denoiser reuses."""
        x = self._check_x(x).to(self.means)
        s2 = sigma_like(sigma, x).reshape(-1) ** 2
        diff = x[:, None, :] - self.means[None]  # (B, K, d)
        d = self.dim
        C = self._noised_cov(s2)
        singular = ValueError("the covariance of p_sigma is singular (a degenerate component at "
                              "sigma = 0); use sigma > 0")
        if self.kind == "iso":
            if (C <= 0).any():
                raise singular
            sol = diff / C[..., None]
            logdet = d * torch.log(C)
        elif self.kind == "diag":
            if (C <= 0).any():
                raise singular
            sol = diff / C
            logdet = torch.log(C).sum(-1)
        else:
            L, info = torch.linalg.cholesky_ex(C)  # (B, K, d, d)
            if (info != 0).any():
                raise singular
            sol = torch.cholesky_solve(diff[..., None], L)[..., 0]
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        maha = (diff * sol).sum(-1)
        logc = torch.log(self.weights)[None] - 0.5 * (maha + logdet + d * math.log(2 * math.pi))
        return logc, diff, sol, s2

    # -- public API --------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        r""":math:`\log p_\sigma(x)`, shape ``(batch,)``."""
        logc, *_ = self._log_components(x, sigma)
        return torch.logsumexp(logc, dim=1)

    def responsibilities(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""Posterior component probabilities :math:`\gamma_k(x)`, shape ``(batch, K)``."""
        logc, *_ = self._log_components(x, sigma)
        return torch.softmax(logc, dim=1)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""The exact posterior mean :math:`D(x;\sigma)`, shape ``(batch, d)``."""
        logc, diff, sol, s2 = self._log_components(x, sigma)
        gamma = torch.softmax(logc, dim=1)  # (B, K)
        # mu_k + Sigma_k (Sigma_k + s^2 I)^{-1} (x - mu_k) = x - s^2 (Sigma_k + s^2 I)^{-1} (x - mu_k)
        post = x.to(self.means)[:, None, :] - s2[:, None, None] * sol
        return (gamma[..., None] * post).sum(1)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r""":math:`\nabla_x \log p_\sigma(x) = -\sum_k \gamma_k (\Sigma_k + \sigma^2 I)^{-1}(x - \mu_k)`."""
        logc, diff, sol, s2 = self._log_components(x, sigma)
        gamma = torch.softmax(logc, dim=1)
        return -(gamma[..., None] * sol).sum(1)

    def sample(self, n: int, sigma=0.0, *, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""``n`` exact draws from :math:`p_\sigma` (``sigma = 0``: the data), shape ``(n, d)``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if float(sigma) < 0:
            raise ValueError("sigma must be non-negative")
        opts = dict(dtype=self.means.dtype, device=self.means.device)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, **opts)
        if self.kind == "iso":
            x0 = self.means[k] + self.covariances[k, None].sqrt() * z
        elif self.kind == "diag":
            x0 = self.means[k] + self.covariances[k].sqrt() * z
        else:
            # eigh, not Cholesky, so that singular (low-rank) covariances sample exactly too
            evals, evecs = torch.linalg.eigh(self.covariances)
            # eigenvalues at round-off level are zeros (their square roots would be ~1e-8, not 0)
            tol = evals.abs().amax(-1, keepdim=True) * self.dim * torch.finfo(evals.dtype).eps
            root = evecs * torch.where(evals > tol, evals, 0).sqrt()[:, None, :]
            x0 = self.means[k] + (root[k] @ z[..., None])[..., 0]
        return x0 + float(sigma) * torch.randn(n, self.dim, generator=generator, **opts)


# --------------------------------------------------------------------------------------------------
# The optimal denoiser of a finite data set
# --------------------------------------------------------------------------------------------------


class EmpiricalDenoiser:
    r"""The optimal denoiser of a finite training set :math:`\{y_i\}_{i=1}^N`.

    For :math:`p_0 = \frac1N\sum_i \delta_{y_i}` the noised marginal is the Gaussian kernel density
    estimate :math:`p_\sigma(x) = \frac1N \sum_i N(x; y_i, \sigma^2 I)` and the posterior mean is

    .. math:: D^*(x;\sigma) = \sum_i w_i(x)\, y_i, \qquad
              w = \operatorname{softmax}_i\big(-\lVert x - y_i\rVert^2 / 2\sigma^2\big),

    which is one Gaussian mean-shift step with bandwidth sigma (Karras et al. 2022, App. B.3; Chen
    et al. 2023, §5). The softmax runs over chunks of ``chunk_size`` training points with a streaming
    log-sum-exp, so memory is O(batch x chunk + batch x d), never O(batch x N x d); the squared
    distances of a chunk come from one matrix product,
    :math:`\lVert x\rVert^2 - 2 x\cdot y + \lVert y\rVert^2`, computed on data centred at their mean
    (distances do not change, round-off does).

    Parameters
    ----------
    data : ``(N, *shape)`` training points; queries have shape ``(batch, *shape)``.
    chunk_size : training points per chunk.
    dtype : computation dtype (default: the data's floating dtype, float32 for integer data).

    The data stay on their device; queries must be on the same device.
    """

    def __init__(self, data: torch.Tensor, *, chunk_size: int = 4096, dtype: torch.dtype | None = None):
        if not isinstance(data, torch.Tensor):
            data = torch.as_tensor(data)
        if data.ndim < 2 or data.shape[0] == 0:
            raise ValueError(f"data must have shape (N, ...) with N >= 1, got {tuple(data.shape)}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if dtype is None:
            dtype = data.dtype if data.is_floating_point() else torch.float32
        flat = data.reshape(data.shape[0], -1).to(dtype)
        if not torch.isfinite(flat).all():
            raise ValueError("data contain NaN or inf")
        self.shape = tuple(data.shape[1:])
        self.center = flat.mean(0)
        self.data = flat - self.center  # (N, d), centred
        self.sq_norms = (self.data**2).sum(1)  # (N,)
        self.chunk_size = chunk_size

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"EmpiricalDenoiser(N={len(self)}, shape={self.shape}, dtype={self.data.dtype})"

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.shape))}), got {shape}")
        if x.device != self.data.device:
            raise ValueError(f"x is on {x.device} but the data are on {self.data.device}")
        return x.reshape(x.shape[0], -1).to(self.data.dtype) - self.center

    def _sq_dists(self, xc: torch.Tensor, x_sq: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Squared distances (batch, hi - lo) from one matrix product, clamped at 0 against round-off."""
        y = self.data[lo:hi]
        return (x_sq[:, None] - 2 * xc @ y.T + self.sq_norms[None, lo:hi]).clamp_min_(0)

    def _stream(self, x: torch.Tensor, sigma, want_mean: bool):
        """One pass over the data: running max m, running sum s of exp(logit - m), running mean acc."""
        xc = self._flatten(x)
        s = sigma_like(sigma, xc).reshape(-1)
        if (s == 0).any():
            raise ValueError("sigma must be positive for the optimal denoiser (use nearest() at 0)")
        inv = 0.5 / s**2
        x_sq = (xc**2).sum(1)
        B = xc.shape[0]
        m = torch.full((B,), -math.inf, dtype=xc.dtype, device=xc.device)
        tot = torch.zeros(B, dtype=xc.dtype, device=xc.device)
        acc = torch.zeros_like(xc) if want_mean else None
        for lo in range(0, len(self), self.chunk_size):
            hi = min(lo + self.chunk_size, len(self))
            logits = -self._sq_dists(xc, x_sq, lo, hi) * inv[:, None]  # (B, chunk)
            m_new = torch.maximum(m, logits.max(1).values)
            rescale = torch.exp(m - m_new)  # exp(-inf) = 0 on the first chunk
            w = torch.exp(logits - m_new[:, None])
            tot = tot * rescale + w.sum(1)
            if want_mean:
                acc = acc * rescale[:, None] + w @ self.data[lo:hi]
            m = m_new
        return xc, s, m, tot, acc

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r""":math:`D^*(x;\sigma)`, same shape and dtype as ``x``."""
        _, _, _, tot, acc = self._stream(x, sigma, want_mean=True)
        out = acc / tot[:, None] + self.center
        return out.reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def log_prob(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""The KDE log-density :math:`\log \frac1N\sum_i N(x; y_i, \sigma^2 I)`, shape ``(batch,)``."""
        xc, s, m, tot, _ = self._stream(x, sigma, want_mean=False)
        d = xc.shape[1]
        return m + torch.log(tot) - math.log(len(self)) - d * (torch.log(s) + 0.5 * math.log(2 * math.pi))

    def nearest(self, x: torch.Tensor, k: int = 1):
        """The ``k`` nearest training points: ``(distances, indices)``, each ``(batch, k)``, closest first."""
        if not isinstance(k, int) or not 1 <= k <= len(self):
            raise ValueError(f"k must be an integer between 1 and N={len(self)}, got {k!r}")
        xc = self._flatten(x)
        x_sq = (xc**2).sum(1)
        best_d = best_i = None
        for lo in range(0, len(self), self.chunk_size):
            hi = min(lo + self.chunk_size, len(self))
            d2 = self._sq_dists(xc, x_sq, lo, hi)
            idx = torch.arange(lo, hi, device=xc.device).expand_as(d2)
            if best_d is not None:
                d2, idx = torch.cat([best_d, d2], 1), torch.cat([best_i, idx], 1)
            kk = min(k, d2.shape[1])
            best_d, pos = torch.topk(d2, kk, dim=1, largest=False)
            best_i = torch.gather(idx, 1, pos)
        return best_d.sqrt(), best_i

    def training_points(self, indices: torch.Tensor) -> torch.Tensor:
        """The training points at ``indices``, in their original shape."""
        pts = self.data[indices] + self.center
        return pts.reshape(*indices.shape, *self.shape)


# --------------------------------------------------------------------------------------------------
# EDM preconditioning of a network
# --------------------------------------------------------------------------------------------------


class EDMPrecond(nn.Module):
    r"""A network :math:`F_\theta` wrapped in the EDM preconditioning (Karras et al. 2022, Table 1):

    .. math:: D_\theta(x;\sigma) = c_\text{skip}(\sigma)\,x + c_\text{out}(\sigma)\,
              F_\theta\big(c_\text{in}(\sigma)\,x,\; c_\text{noise}(\sigma)\big),

    with :math:`c_\text{skip} = \sigma_d^2/(\sigma^2+\sigma_d^2)`,
    :math:`c_\text{out} = \sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}`,
    :math:`c_\text{in} = 1/\sqrt{\sigma^2+\sigma_d^2}`, :math:`c_\text{noise} = \tfrac14\ln\sigma`.
    ``net(x_in, c_noise)`` takes ``c_noise`` of shape ``(batch,)`` and returns the shape of ``x_in``.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) for a tensor of noise levels."""
        sd = self.sigma_data
        norm = (sigma**2 + sd**2).sqrt()
        return sd**2 / norm**2, sigma * sd / norm, 1 / norm, sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = sigma_like(sigma, x)
        if (s == 0).any():
            raise ValueError("sigma must be positive for a preconditioned network")
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        out = self.net((c_in * x).to(dtype), c_noise.reshape(-1).to(dtype))
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return c_skip * x + c_out * out.to(x.dtype)
