r"""Denoisers: the posterior mean :math:`D(x;\sigma) = \mathbb{E}[x_0 \mid x_0 + \sigma\varepsilon = x]`.

Everything in the book is driven through one protocol: ``D(x, sigma) -> Tensor`` with the shape of
``x`` (batch first, any trailing shape) and ``sigma`` a float, a 0-d tensor or a ``(batch,)`` tensor.
Tweedie's formula ties a denoiser to the score of the noised marginal :math:`p_\sigma = p_0 * N(0,\sigma^2 I)`:

.. math:: \nabla_x \log p_\sigma(x) = \frac{D(x;\sigma) - x}{\sigma^2}.

* :class:`GaussianMixture` -- data drawn from a Gaussian mixture; every quantity in closed form. One
  Gaussian fitted to a data set (:meth:`GaussianMixture.fit_gaussian`) is the linear denoiser, whose
  probability-flow ODE :meth:`GaussianMixture.flow` solves exactly.
* :class:`EmpiricalDenoiser` -- the optimal denoiser of a finite data set (EDM, App. B.3), a softmax
  weighted mean of the training points, i.e. one Gaussian mean-shift step with bandwidth sigma
  (Chen et al. 2023, arXiv 2305.19947).
* :class:`EDMPrecond` -- a network wrapped in EDM's preconditioning (Karras et al. 2022, Table 1).
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = ["Denoiser", "GaussianMixture", "EmpiricalDenoiser", "Neighbours", "EDMPrecond", "sigma_like"]


@runtime_checkable
class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor: ...


def _exact_dtype(device: torch.device) -> torch.dtype:
    """float64, or float32 on a device without float64 (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def sigma_like(sigma, x: torch.Tensor, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``sigma`` as a tensor of shape ``(batch, 1, ..., 1)`` on ``x``'s device, in ``dtype``
    (default: ``x``'s dtype).

    Accepts a Python number, a 0-d tensor, or a ``(batch,)`` tensor. The values are checked in
    float64 before the cast, so a negative or non-finite sigma, a batch mismatch, or a level that
    ``dtype`` cannot hold (``sigma = 1e5`` overflows float16, whose largest value is 65504; a positive
    ``1e-8`` underflows to 0) raises ``ValueError`` naming the problem and the dtype. Sigma-dependent
    factors (``sigma**2 + sigma_data**2`` overflows float16 above sigma ~ 256) should be formed from
    ``sigma_like(sigma, x, dtype=torch.float64)`` and only the product cast back to ``x.dtype``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError("x must be a tensor with a leading batch dimension")
    dtype = x.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"sigma needs a floating-point dtype, got {dtype}")
    s = torch.as_tensor(sigma, dtype=_exact_dtype(x.device), device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    elif s.ndim != 1 or s.shape[0] != x.shape[0]:
        raise ValueError(
            f"sigma must be a scalar or have shape (batch,) = ({x.shape[0]},), got {tuple(s.shape)}"
        )
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("sigma must be finite and non-negative")
    out = s.to(dtype)
    if not torch.isfinite(out).all():
        raise ValueError(f"sigma = {s.max().item():g} overflows {dtype} (largest {torch.finfo(dtype).max:g}); "
                         "pass x in float32 or float64")
    if ((out == 0) & (s > 0)).any():
        raise ValueError(f"sigma = {s[s > 0].min().item():g} underflows to 0 in {dtype}; "
                         "pass x in float32 or float64")
    return out.reshape(-1, *([1] * (x.ndim - 1)))


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

    :meth:`fit_gaussian` builds the Gaussian approximation :math:`N(\mu, S)` of a data set (the linear
    denoiser), and :meth:`flow` solves its probability-flow ODE in closed form.

    Inputs ``x`` are ``(batch, d)`` in any floating dtype, on the device of ``means``. Every
    computation runs in float64 from explicit differences :math:`x - \mu_k` (no
    :math:`\lVert x\rVert^2 - 2x\cdot\mu + \lVert\mu\rVert^2` cancellation), so responsibilities stay
    exact to float64 round-off at tiny sigma and for means far from the origin, in every dtype
    (float16, bfloat16, float32, float64). Results are returned in the dtype of ``means`` (log-densities
    in float32 at least). Raises ``ValueError`` for a
    wrongly shaped or non-finite ``x``, a negative or non-finite sigma, a singular noised covariance
    (a degenerate component at sigma = 0, or sigma so small that :math:`\sigma^2` underflows), or a
    result that overflows the dtype of ``means`` (a float16 score at tiny sigma).
    """

    def __init__(self, means, covariances, weights=None):
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.to(torch.float64)
        if means.ndim != 2 or means.shape[0] == 0 or means.shape[1] == 0:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {tuple(means.shape)}")
        K, d = means.shape
        f64 = _exact_dtype(means.device)

        def as_f64(v):  # the user's numbers in float64, never first rounded to the dtype of ``means``
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.to(device=means.device, dtype=f64)
            return torch.as_tensor(v, dtype=f64, device=means.device)

        c64 = as_f64(covariances)  # the checks and every computation below run in float64
        if c64.ndim == 0:
            c64 = c64.expand(K).clone()
        cov = c64  # the shape checks; stored in the dtype of ``means`` below
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
            if not torch.allclose(c64, c64.transpose(-1, -2), atol=1e-8 * (1 + c64.abs().max())):
                raise ValueError("full covariances must be symmetric")
            if torch.linalg.eigvalsh(c64).min() < -1e-8 * (1 + c64.abs().max()):
                raise ValueError("full covariances must be positive semi-definite")
        else:
            raise ValueError(
                f"covariances must have shape (K,), (K, d) or (K, d, d) with K={K}, d={d}; "
                f"got {tuple(cov.shape)}"
            )
        w64 = torch.full((K,), 1.0 / K, dtype=f64, device=means.device) if weights is None else as_f64(weights)
        if w64.shape != (K,) or (w64 <= 0).any():
            raise ValueError(f"weights must be {K} positive numbers, got {w64.tolist() if w64.numel() <= 8 else tuple(w64.shape)}")
        if not (torch.isfinite(means).all() and torch.isfinite(c64).all() and torch.isfinite(w64).all()):
            raise ValueError("means, covariances and weights must be finite")
        self.means, self.covariances, self.kind = means, c64.to(means.dtype), kind
        self.weights = (w64 / w64.sum()).to(means.dtype)
        self._means64, self._cov64, self._logw64 = means.to(f64), c64, torch.log(w64 / w64.sum())
        self._w64 = w64 / w64.sum()  # the weights in float64, for cdf/quantile
        self._eig = None  # the eigendecomposition of a single component's covariance, for flow

    @classmethod
    def low_rank(cls, means, factors, noise_variance, weights=None) -> "GaussianMixture":
        r"""Components with covariance :math:`U_k U_k^\top + v I` from ``factors`` ``(K, d, r)``."""
        factors = torch.as_tensor(factors)
        means = torch.as_tensor(means, dtype=factors.dtype, device=factors.device)
        if factors.ndim != 3 or factors.shape[:2] != means.shape:
            raise ValueError(f"factors must have shape (K, d, r) matching means {tuple(means.shape)}")
        eye = torch.eye(means.shape[1], dtype=factors.dtype, device=factors.device)
        return cls(means, factors @ factors.transpose(-1, -2) + noise_variance * eye, weights)

    @classmethod
    def fit_gaussian(cls, data, *, shrinkage: float = 0.0, dtype: torch.dtype | None = None,
                     chunk_size: int = 4096) -> "GaussianMixture":
        r"""The Gaussian approximation :math:`N(\mu, S)` of a data set: one full-covariance component.

        Its denoiser is the best *linear* denoiser of the data (the Wiener filter),

        .. math:: D(x;\sigma) = \mu + S\,(S + \sigma^2 I)^{-1}(x - \mu),

        and its probability-flow ODE has the closed-form solution :meth:`flow` (Wang & Vastola 2024,
        arXiv 2412.09726). :math:`\mu = \frac1N\sum_i y_i` and :math:`S = \frac1N\sum_i (y_i - \mu)(y_i - \mu)^\top`
        are the mean and covariance of the empirical distribution :math:`\frac1N\sum_i\delta_{y_i}`
        (normalised by N, not N - 1), so this Gaussian shares the first two moments of the data that
        :class:`EmpiricalDenoiser` denoises. Both are accumulated in float64 over chunks of
        ``chunk_size`` points, the covariance from the centred points (two passes: no
        :math:`E[yy^\top] - \mu\mu^\top` cancellation), and symmetrised.

        Parameters
        ----------
        data : ``(N, *shape)``, any real dtype, N >= 1; each point is flattened to ``d = prod(shape)``.
            Like every :class:`GaussianMixture`, the result takes queries of shape ``(batch, d)``:
            pass images as ``x.reshape(len(x), -1)`` and reshape the answer back.
        shrinkage : a in [0, 1]: use :math:`(1 - a)\,S + a\,\tfrac{\operatorname{tr} S}{d}\,I` (shrinkage
            towards the isotropic covariance of the same total variance; a > 0 makes S full rank when
            N <= d). 0 (the default) keeps the sample covariance, singular when N <= d, which the
            denoiser allows at every sigma > 0.
        dtype : the dtype of ``means`` and ``covariances`` and so of the denoiser's answers (default: the
            data's floating dtype, float32 for integer data). The computations use the float64 mean
            and covariance whatever it is.

        Raises ``ValueError`` for data without a batch dimension or points, NaN or inf in the data, or a
        shrinkage outside [0, 1].
        """
        if not isinstance(data, torch.Tensor):
            data = torch.as_tensor(data)
        if data.ndim < 2 or data.shape[0] == 0 or data[0].numel() == 0:
            raise ValueError(f"data must have shape (N, ...) with N >= 1 points of size >= 1, got {tuple(data.shape)}")
        if isinstance(shrinkage, bool) or not (isinstance(shrinkage, (int, float)) and 0 <= shrinkage <= 1):
            raise ValueError(f"shrinkage must be a number in [0, 1], got {shrinkage!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        f64 = _exact_dtype(data.device)
        flat = data.reshape(data.shape[0], -1)
        if data.is_floating_point() and not torch.isfinite(flat).all():
            raise ValueError("data contain NaN or inf")
        N, d = flat.shape
        chunks = [flat[lo:lo + chunk_size] for lo in range(0, N, chunk_size)]
        mean = sum(c.to(f64).sum(0) for c in chunks) / N
        cov = torch.zeros(d, d, dtype=f64, device=data.device)
        for c in chunks:  # second pass: centred products
            yc = c.to(f64) - mean
            cov += yc.T @ yc
        cov = (cov + cov.T) / (2 * N)
        if shrinkage:
            target = torch.diagonal(cov).mean() * torch.eye(d, dtype=f64, device=data.device)
            cov = (1 - shrinkage) * cov + shrinkage * target
        if dtype is None:
            dtype = data.dtype if data.is_floating_point() else torch.float32
        gm = cls(mean[None].to(dtype), cov[None])  # the covariance is kept in float64 by the constructor
        gm._means64 = mean[None]  # and the mean too, not rounded to `dtype` first
        return gm

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        K, d = self.means.shape
        return f"GaussianMixture(K={K}, d={d}, covariances={self.kind!r}, dtype={self.means.dtype})"

    # -- helpers -----------------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked and converted to float64 (exactly, from any floating dtype)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.dim}), got {shape}")
        x64 = x.to(device=self.means.device, dtype=self._means64.dtype)
        if not torch.isfinite(x64).all():
            raise ValueError("x contains NaN or inf")
        return x64

    def _out(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """A float64 result in the dtype of the means, with a clear error instead of an overflow to inf."""
        out = t.to(self.means.dtype)
        if not torch.isfinite(out).all():
            raise ValueError(f"the {what} overflows {self.means.dtype} (largest {torch.finfo(out.dtype).max:g}); "
                             "use float32 or float64 means")
        return out

    def _noised_cov(self, s2: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-component covariance of p_sigma: iso (B,K), diag (B,K,d) or full (B,K,d,d)."""
        if self.kind == "iso":
            return self._cov64[None, :] + s2[:, None]
        if self.kind == "diag":
            return self._cov64[None] + s2[:, None, None]
        eye = torch.eye(self.dim, dtype=self._cov64.dtype, device=self._cov64.device)
        return self._cov64[None] + s2[:, None, None, None] * eye

    def _log_components(self, x: torch.Tensor, sigma):
        """log(pi_k N(x; mu_k, Sigma_k + sigma^2 I)) + d/2 log(2 pi) as (B, K) in float64, and the pieces
        the denoiser reuses (differences, solves, sigma^2, x in float64)."""
        x = self._check_x(x)
        s2 = sigma_like(sigma, x).reshape(-1) ** 2
        diff = x[:, None, :] - self._means64[None]  # (B, K, d), explicit differences
        d = self.dim
        # one sigma for the whole batch (the common case): one covariance per component, factorised
        # once and broadcast over the batch, instead of a (batch, K, d, d) stack (at d = 784, one
        # Cholesky factorisation per query would cost seconds)
        shared = self.kind == "full" and bool((s2 == s2[0]).all())
        C = self._noised_cov(s2[:1] if shared else s2)
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
            L, info = torch.linalg.cholesky_ex(C)  # (B, K, d, d), or (1, K, d, d) when shared
            if (info != 0).any():
                raise singular
            if shared:  # the batch as the right-hand sides of K solves
                sol = torch.cholesky_solve(diff.permute(1, 2, 0), L[0]).permute(2, 0, 1)
            else:
                sol = torch.cholesky_solve(diff[..., None], L)[..., 0]
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        maha = (diff * sol).sum(-1)
        # without the common constant d/2 log(2 pi) (log_prob adds it): smaller logits, less round-off
        logc = self._logw64[None] - 0.5 * (maha + logdet)
        if not (logc.detach().amax(1) > -math.inf).all():
            raise ValueError(f"sigma = {math.sqrt(s2.min().item()):g} is too small for float64: every "
                             "component's density underflows at some x; use a larger sigma")
        return logc, diff, sol, s2, x

    # -- public API --------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        r""":math:`\log p_\sigma(x)`, shape ``(batch,)``, in the means' dtype (float32 at least);
        differentiable in ``x``."""
        logc, *_ = self._log_components(x, sigma)
        out = torch.logsumexp(logc, dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return out.to(torch.promote_types(self.means.dtype, torch.float32))

    def responsibilities(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""Posterior component probabilities :math:`\gamma_k(x)`, shape ``(batch, K)``: a float64
        softmax of the log-components, one-hot on the nearest component as sigma -> 0."""
        logc, *_ = self._log_components(x, sigma)
        return self._out(torch.softmax(logc, dim=1), "responsibilities")

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""The exact posterior mean :math:`D(x;\sigma)`, shape ``(batch, d)``."""
        logc, diff, sol, s2, x64 = self._log_components(x, sigma)
        gamma = torch.softmax(logc, dim=1)  # (B, K)
        # mu_k + Sigma_k (Sigma_k + s^2 I)^{-1} (x - mu_k) = x - s^2 (Sigma_k + s^2 I)^{-1} (x - mu_k)
        post = x64[:, None, :] - s2[:, None, None] * sol
        return self._out((gamma[..., None] * post).sum(1), "denoiser output")

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r""":math:`\nabla_x \log p_\sigma(x) = -\sum_k \gamma_k (\Sigma_k + \sigma^2 I)^{-1}(x - \mu_k)`."""
        logc, diff, sol, s2, _ = self._log_components(x, sigma)
        gamma = torch.softmax(logc, dim=1)
        return self._out(-(gamma[..., None] * sol).sum(1), "score")

    def _eigen(self):
        """``(lam, U)`` of the one component's covariance in float64: ``lam`` ``(d,)`` >= 0 (eigenvalues
        at round-off level set to 0, as in :meth:`sample`), ``U`` ``(d, d)`` or None for iso/diag
        (the eigenbasis is the standard one). Computed once."""
        if self._eig is None:
            cov = self._cov64[0]
            if self.kind == "full":
                lam, U = torch.linalg.eigh(cov)
                tol = lam.abs().max() * self.dim * torch.finfo(lam.dtype).eps
                self._eig = (torch.where(lam > tol, lam, 0.0), U)
            else:
                self._eig = (cov.expand(self.dim).clone(), None)
        return self._eig

    def flow(self, x: torch.Tensor, sigma_from, sigma_to) -> torch.Tensor:
        r"""The exact solution of the probability-flow ODE of one Gaussian, from ``sigma_from`` to ``sigma_to``.

        For :math:`p_0 = N(\mu, S)` the denoiser is :math:`D(x;\sigma) = \mu + S(S + \sigma^2 I)^{-1}(x - \mu)`,
        so the ODE :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma` (Karras et al. 2022, Eqs. 1 and 3
        with :math:`\sigma(t) = t`) is linear:

        .. math:: \frac{dx}{d\sigma} = \sigma\,(S + \sigma^2 I)^{-1}(x - \mu).

        With :math:`S = U\operatorname{diag}(\lambda)U^\top` and :math:`z = U^\top(x - \mu)`, each
        coordinate obeys :math:`dz_i/d\sigma = \sigma z_i/(\lambda_i + \sigma^2)
        = z_i\,\tfrac{d}{d\sigma}\tfrac12\ln(\lambda_i + \sigma^2)`, hence

        .. math:: z_i(\sigma_\text{to}) = r_i\, z_i(\sigma_\text{from}), \qquad
                  r_i = \sqrt{\frac{\lambda_i + \sigma_\text{to}^2}{\lambda_i + \sigma_\text{from}^2}}.

        Directions of large variance keep their offset from the mean; directions of small variance
        shrink like :math:`\sigma` (a direction with :math:`\lambda_i = 0` reaches the mean exactly at
        :math:`\sigma_\text{to} = 0`). Wang & Vastola (2024, arXiv 2412.09726, "analytical teleportation")
        use this map to replace the early, nearly Gaussian part of sampling by one jump.

        Precision: the update is formed as :math:`x + U\operatorname{diag}(r - 1)\,U^\top(x - \mu)` from
        :math:`x` in float64, with

        .. math:: r_i - 1 = \frac{\sigma_\text{to} - \sigma_\text{from}}{h_i(\sigma_\text{from})}\cdot
                  \frac{\sigma_\text{to} + \sigma_\text{from}}{h_i(\sigma_\text{to}) + h_i(\sigma_\text{from})},
                  \qquad h_i(\sigma) = \operatorname{hypot}(\sqrt{\lambda_i}, \sigma),

        an expm1-style form with no cancellation: :math:`r_i - 1` has a relative error of a few float64
        ulps for every :math:`\lambda_i \ge 0` and sigma (short steps, where :math:`r \approx 1`, included;
        :math:`\sigma^2` is never formed, so it can neither underflow nor overflow), ``sigma_to ==
        sigma_from`` returns ``x`` exactly, and :math:`\lambda_i = 0` at :math:`\sigma_\text{to} = 0` gives
        :math:`r_i - 1 = -1` exactly, never NaN. Eigenvalues at round-off level
        (:math:`\le d\,\varepsilon\,\lambda_\max`) count as 0.

        Parameters
        ----------
        x : ``(batch, d)``, float16, bfloat16, float32 or float64 (converted exactly to float64).
        sigma_from : the noise level of ``x``, > 0: a number, a 0-d tensor or a ``(batch,)`` tensor.
        sigma_to : the noise level to reach, >= 0 (0: the end of sampling), same forms; it may exceed
            ``sigma_from`` (the ODE run forward, towards noise).

        Returns ``(batch, d)`` in ``x``'s dtype, on the device of the means. Raises ``ValueError`` for a
        mixture with more than one component (no closed form), a wrongly shaped or non-finite ``x``, a
        ``sigma_from <= 0``, a negative or non-finite sigma, sigmas of the wrong shape, or a result that
        overflows ``x``'s dtype.
        """
        K = self.means.shape[0]
        if K != 1:
            raise ValueError(f"flow has a closed form for a single Gaussian only; this mixture has K = {K} "
                             "components (integrate the ODE with dg.samplers instead)")
        if isinstance(x, torch.Tensor) and not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
        x64 = self._check_x(x)
        f64 = x64.dtype
        s_from = sigma_like(sigma_from, x64, dtype=f64)  # (batch, 1), checked in float64
        s_to = sigma_like(sigma_to, x64, dtype=f64)
        if (s_from == 0).any():
            raise ValueError("sigma_from must be positive (at sigma = 0 the flow is not defined: p_0 may be singular)")
        lam, U = self._eigen()
        root = lam.sqrt()
        h_from, h_to = torch.hypot(root, s_from), torch.hypot(root, s_to)  # sqrt(lam + sigma^2), (batch, d)
        m = (s_to - s_from) / h_from * ((s_to + s_from) / (h_to + h_from))  # r - 1
        z = x64 - self._means64
        out = x64 + (m * z if U is None else (m * (z @ U)) @ U.T)
        res = out.to(x.dtype)
        if not torch.isfinite(res).all():
            raise ValueError(f"the flow's result overflows {x.dtype} (largest {torch.finfo(x.dtype).max:g}); "
                             "pass x in float32 or float64")
        return res

    def sample(self, n: int, sigma=0.0, *, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""``n`` exact draws from :math:`p_\sigma` (``sigma = 0``: the data), shape ``(n, d)``, in the
        dtype of the means (drawn in float32 for half-precision means)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if float(sigma) < 0:
            raise ValueError("sigma must be non-negative")
        work = torch.promote_types(self.means.dtype, torch.float32)  # the means' dtype unless half
        opts = dict(dtype=work, device=self.means.device)
        means, cov = self.means.to(work), self.covariances.to(work)
        k = torch.multinomial(self.weights.to(work), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, **opts)
        if self.kind == "iso":
            x0 = means[k] + cov[k, None].sqrt() * z
        elif self.kind == "diag":
            x0 = means[k] + cov[k].sqrt() * z
        else:
            # eigh, not Cholesky, so that singular (low-rank) covariances sample exactly too
            evals, evecs = torch.linalg.eigh(cov)
            # eigenvalues at round-off level are zeros (their square roots would be ~1e-8, not 0)
            tol = evals.abs().amax(-1, keepdim=True) * self.dim * torch.finfo(evals.dtype).eps
            root = evecs * torch.where(evals > tol, evals, 0).sqrt()[:, None, :]
            x0 = means[k] + (root[k] @ z[..., None])[..., 0]
        out = x0 + float(sigma) * torch.randn(n, self.dim, generator=generator, **opts)
        return self._out(out, "sample")

    # -- 1-D mixtures: distribution function and quantiles ---------------------------------------------
    def _line(self, what: str):
        """Weights, means and variances ``(K,)`` in float64 on the CPU, for a 1-D mixture only."""
        if self.dim != 1:
            raise ValueError(f"{what} is defined for 1-D mixtures only; this mixture has d = {self.dim}")
        cpu = dict(device="cpu", dtype=torch.float64)
        return self._w64.to(**cpu), self._means64[:, 0].to(**cpu), self._cov64.reshape(-1).to(**cpu)

    @staticmethod
    def _values(v, name: str) -> torch.Tensor:
        """A number, array or tensor as a float64 CPU tensor (exact from every floating dtype)."""
        try:
            t = v.detach().to("cpu", torch.float64) if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a number, an array or a tensor, got {type(v).__name__}") from None
        return t

    def _noised_variances(self, v: torch.Tensor, sigma, like: torch.Tensor, name: str) -> torch.Tensor:
        """``(v_k + sigma^2, shape)``: the noised variances ``(*sigma.shape, K)``, all > 0, and the
        broadcast shape of ``like`` and ``sigma``."""
        s = self._values(sigma, "sigma")
        if not torch.isfinite(s).all() or (s < 0).any():
            raise ValueError("sigma must be finite and non-negative")
        try:
            shape = torch.broadcast_shapes(like.shape, s.shape)
        except RuntimeError:
            raise ValueError(f"sigma of shape {tuple(s.shape)} does not broadcast with {name} of shape "
                             f"{tuple(like.shape)}") from None
        var = v + (s**2)[..., None]
        if (var <= 0).any():
            raise ValueError("a component of p_sigma has zero variance (a point mass at sigma = 0): its "
                             "distribution function is a step; use sigma > 0")
        return var, shape

    @staticmethod
    def _cdf64(x: torch.Tensor, var: torch.Tensor, w: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_k w_k \Phi((x - \mu_k)/\sqrt{v_k})` in float64; ``var`` broadcasts with ``x[..., None]``.

        :math:`\Phi(t) = \tfrac12(1 + \operatorname{erf}(t/\sqrt2))` (bit for bit ``torch.special.ndtr``)
        for :math:`t \ge -1`, and :math:`\tfrac12\operatorname{erfc}(-t/\sqrt2)` below, where the first
        form would cancel (``ndtr(-9.3)`` is 0 in float64, the true value 1.0e-20): relative accuracy
        in both tails."""
        t = (x[..., None] - mu) / torch.sqrt(var)
        r = t * math.sqrt(0.5)
        phi = torch.where(t < -1.0, 0.5 * torch.special.erfc(-r), (1 + torch.special.erf(r)) * 0.5)
        return (w * phi).sum(-1)

    def cdf(self, x, sigma=0.0) -> torch.Tensor:
        r"""Distribution function of the noised 1-D mixture,

        .. math:: F_\sigma(x) = \sum_k \pi_k\, \Phi\!\Big(\frac{x - \mu_k}{\sqrt{v_k + \sigma^2}}\Big),

        with :math:`\Phi` the standard normal distribution function (accurate to a few ulps relative
        in both tails). ``x``: a number, array or tensor of any shape (points of the line);
        ``sigma``: a number or an array/tensor that broadcasts with ``x`` (e.g. ``(steps, 1)`` against
        ``(steps, N)``). Returns a float64 CPU tensor of the broadcast shape. Raises ``ValueError``
        for a mixture with ``d > 1``, NaN/inf in ``x``, a negative or non-finite ``sigma``, shapes
        that do not broadcast, or a zero-variance component at ``sigma = 0`` (a step, not a
        continuous CDF). Chapter 01 uses it for the quantile level :math:`F_\sigma(x(\sigma))`,
        constant along an exact probability-flow ODE trajectory in 1-D.
        """
        w, mu, v = self._line("cdf")
        x = self._values(x, "x")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        var, _ = self._noised_variances(v, sigma, x, "x")
        return self._cdf64(x, var, w, mu)

    def quantile(self, p, sigma=0.0) -> torch.Tensor:
        r"""The quantile function :math:`F_\sigma^{-1}(p)` of the noised 1-D mixture (see :meth:`cdf`).

        Solved elementwise by a bracketing root finder (Chandrupatla's method,
        ``scipy.optimize.elementwise.find_root``, to a few ulps) inside the exact bracket

        .. math:: \min_k\big(\mu_k + s_k\,\Phi^{-1}(p)\big) \;\le\; F_\sigma^{-1}(p) \;\le\;
                  \max_k\big(\mu_k + s_k\,\Phi^{-1}(p)\big), \qquad s_k = \sqrt{v_k + \sigma^2},

        which holds because :math:`F_\sigma` is a convex combination of the component distribution
        functions (a one-component mixture returns :math:`\mu + s\,\Phi^{-1}(p)`, exactly
        ``scipy.stats.norm.ppf``). ``p``: numbers in the open interval (0, 1), any shape;
        ``sigma`` broadcasts with ``p``. Returns a float64 CPU tensor of the broadcast shape.
        Raises ``ValueError`` for ``p`` outside (0, 1) (or NaN), ``d > 1`` and the bad ``sigma``
        of :meth:`cdf`.
        """
        from scipy.optimize.elementwise import find_root
        from scipy.special import ndtri

        w, mu, v = self._line("quantile")
        p = self._values(p, "p")
        if not ((p > 0) & (p < 1)).all():
            raise ValueError("p must lie in the open interval (0, 1) (quantiles of 0 and 1 are infinite)")
        var, shape = self._noised_variances(v, sigma, p, "p")
        var, p = var.expand(*shape, len(v)), p.expand(shape).contiguous()
        ends = mu + torch.sqrt(var) * torch.from_numpy(np.asarray(ndtri(p.numpy()), dtype=np.float64))[..., None]  # component quantiles
        lo, hi = ends.amin(-1), ends.amax(-1)

        def excess(x, p_, *var_):  # F_sigma(x) - p on numpy arrays (find_root passes the active elements)
            var_ = torch.stack([torch.tensor(c) for c in var_], -1)
            return (self._cdf64(torch.tensor(x), var_, w, mu) - torch.tensor(p_)).numpy()

        cols = [c.contiguous().numpy() for c in var.unbind(-1)]  # one array per component, shape like p
        f_lo, f_hi = (torch.from_numpy(excess(e.numpy(), p.numpy(), *cols)) for e in (lo, hi))
        # F(lo) <= p <= F(hi) exactly; where round-off already reaches p at an end, that end is the root
        out = torch.where(f_lo >= 0, lo, hi)
        todo = (f_lo < 0) & (f_hi > 0)
        if todo.any():
            m = todo.numpy()
            res = find_root(excess, (lo.numpy()[m], hi.numpy()[m]), args=(p.numpy()[m], *(c[m] for c in cols)))
            if not np.all(res.success):
                raise RuntimeError(f"the root finder did not converge (status {np.unique(res.status)})")
            out[todo] = torch.from_numpy(np.asarray(res.x, dtype=np.float64))
        return out


# --------------------------------------------------------------------------------------------------
# Exact squared distances: a fast screen, then float64 where it matters
# --------------------------------------------------------------------------------------------------


def cut_nats(n: int, dtype: torch.dtype) -> float:
    r"""How far below the largest logit a training point may lie and still count, in nats:
    :math:`\ln N + \ln(8/u)`, with u the unit round-off of ``dtype``, the dtype of the answer
    (:math:`\ln N + 38.8` for float64, :math:`\ln N + 18.7` for float32). All points beyond the cut
    together weigh less than :math:`N e^{-\text{cut}} = u/8` of the largest weight, so dropping them
    moves a weighted mean by less than u/8 of the data's spread and a log-density by less than u/8."""
    return math.log(n) + math.log(8 / _unit_roundoff(dtype))


_SLACK_U = 32  # unit round-offs for the roundings outside the dot products (see _expansion_coeff)


def _unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def _product_input_unit(dtype: torch.dtype, device: torch.device) -> float:
    """Unit round-off of the *inputs* of a matrix product in ``dtype``: 0 for IEEE float32/float64
    products (torch's default), 2**-11 when TF32 and 2**-8 when bfloat16 float32 products are allowed
    (``torch.set_float32_matmul_precision("high" / "medium")`` or the backends' ``fp32_precision``)."""
    if dtype != torch.float32:
        return 0.0
    prec = torch.get_float32_matmul_precision()
    backend = torch.backends.cuda.matmul if device.type == "cuda" else getattr(torch.backends.mkldnn, "matmul", None)
    fp = getattr(backend, "fp32_precision", "none")
    if prec == "medium" or fp == "bf16":
        return 2.0**-8
    if prec == "high" or fp == "tf32" or (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32):
        return 2.0**-11
    return 0.0


def _expansion_coeff(d: int, dtype: torch.dtype, device: torch.device) -> float:
    r"""The constant c of the screen's error bound, or ``inf`` when ``dtype`` is too coarse for ``d``.

    With u the unit round-off of ``dtype``, :math:`\gamma_d = du/(1 - du)` and :math:`u_\text{in}` the
    round-off of the matrix product's inputs (:func:`_product_input_unit`), the squared distance
    :math:`r = \lVert a\rVert^2 - 2a\cdot b + \lVert b\rVert^2` evaluated in ``dtype`` from the centred
    points a, b (rounded to ``dtype`` from float64) satisfies

    .. math:: |r - \lVert x - y\rVert^2| \le E = c\,(\lVert a\rVert^2 + \lVert b\rVert^2),
              \qquad c = 2\,(2\gamma_d + 4u_\text{in} + 32u).

    :math:`\gamma_d\lVert a\rVert^2` bounds the error of a computed squared norm and
    :math:`\gamma_d\lVert a\rVert\lVert b\rVert` that of a dot product, in any summation order (Higham,
    *Accuracy and Stability of Numerical Algorithms*, 2002, Eq. 3.5); :math:`4u_\text{in}` covers rounded
    product inputs; 32u covers the rounding of a and b from float64, the additions, and the rounding of
    the bounds and thresholds built from r; the factor 2 covers second-order terms. In float32 at
    d = 784, c = 1.9e-4.
    """
    u = _unit_roundoff(dtype)
    if d * u > 0.01:
        return math.inf
    gamma = d * u / (1 - d * u)
    return 2.0 * (2 * gamma + 4 * _product_input_unit(dtype, device) + _SLACK_U * u)


_caller_threads: list = []  # the caller's CPU thread count while _few_threads() is active


def _with_few_threads(method):
    """Decorator: run an :class:`EmpiricalDenoiser` method under :func:`_few_threads`."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _few_threads(self.data.device):
            return method(self, *args, **kwargs)
    return wrapper


@contextlib.contextmanager
def _few_threads(device: torch.device):
    """Run the enclosed small CPU tensor operations on one thread; :func:`_all_threads` gives the
    matrix products back the caller's thread count. On a busy machine each multi-threaded operation
    waits for its second thread to be scheduled (measured: 8 ms for a 1M-element sum on 2 busy cores,
    0.08 ms on one), which would cost more than the parallel work saves. Restores the count on exit.
    (``torch.set_num_threads`` is process-wide: other Python threads see the change meanwhile.)"""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1 or _caller_threads:
        yield
        return
    _caller_threads.append(n)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _caller_threads.pop()
        torch.set_num_threads(n)


@contextlib.contextmanager
def _all_threads():
    """Inside :func:`_few_threads`: the caller's thread count, for a matrix product."""
    if not _caller_threads:
        yield
        return
    torch.set_num_threads(_caller_threads[-1])
    try:
        yield
    finally:
        torch.set_num_threads(1)


def _above(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` (float64) rounded to ``dtype`` upwards: a threshold that the rounding cannot lower."""
    u = _unit_roundoff(dtype)
    return (t + 4 * u * t.abs()).to(dtype)


class _PointSet:
    r"""Points ``(N, d)`` prepared for squared distances exact to float64 round-off (private helper of
    :class:`EmpiricalDenoiser` and :func:`diffusion_geometry.metrics.precision_recall`).

    Keeps the points exactly in their dtype, their float64 mean (the centre), a centred float64 copy
    with its squared norms, and, unless the points are float64, a centred float32 copy for the *screen*.
    :meth:`bounds` gives, from one matrix product in the screen dtype, lower and upper bounds of every
    squared distance of a chunk (the bound of :func:`_expansion_coeff`); :meth:`pairs64` gives chosen
    pairs in float64 (a sampled float64 product where its error bound is within 8 times that of the
    explicit sum, the explicit sum :meth:`exact` elsewhere).
    """

    def __init__(self, flat: torch.Tensor, chunk_size: int):
        self.points, self.chunk_size = flat, chunk_size
        N, d = flat.shape
        self.f64 = f64 = _exact_dtype(flat.device)
        center = torch.zeros(d, dtype=f64, device=flat.device)
        for lo in range(0, N, chunk_size):
            center += flat[lo:lo + chunk_size].to(f64).sum(0)
        self.center = center / N
        self.y64 = torch.empty(N, d, dtype=f64, device=flat.device)  # centred, float64
        for lo in range(0, N, chunk_size):  # (a chunk at a time: no second float64 copy at once)
            self.y64[lo:lo + chunk_size] = flat[lo:lo + chunk_size].to(f64) - self.center
        self.sq64 = self.y64.pow(2).sum(1)
        if not torch.isfinite(self.sq64).all():
            raise ValueError("the points are too large: their squared norms overflow float64")
        sd = f64 if flat.dtype == f64 else torch.float32
        if sd != f64 and (self.sq64.max() > 1e30 or math.isinf(_expansion_coeff(d, sd, flat.device))):
            sd = f64  # float32 would overflow (or is too coarse for this d): screen in float64
        self.screen_dtype = sd
        self.screen = self.y64 if sd == f64 else self.y64.to(sd)
        self.sq = self.sq64.to(sd)

    def __len__(self) -> int:
        return self.points.shape[0]

    def chunks(self, size: int | None = None):
        N, size = len(self), size or self.chunk_size
        return ((lo, min(lo + size, N)) for lo in range(0, N, size))

    def queries(self, xf: torch.Tensor) -> dict:
        """Queries ``(B, d)`` (any real dtype) prepared for :meth:`bounds` and :meth:`pairs64`."""
        x64 = xf.to(self.f64)
        if not torch.isfinite(x64).all():
            raise ValueError("x contains NaN or inf")
        xc64 = x64.detach() - self.center
        na = xc64.pow(2).sum(1)
        if not torch.isfinite(na).all():
            raise ValueError("x is too large: its squared norm overflows float64")
        sd = self.screen_dtype if na.max() <= 1e30 else self.f64
        screen = self.screen if sd == self.screen_dtype else self.y64
        return dict(x64=x64, xc64=xc64, na64=na, sd=sd, xc=xc64.to(sd), na=na.to(sd), screen=screen,
                    sq=self.sq if sd == self.screen_dtype else self.sq64,
                    c=_expansion_coeff(xf.shape[1], sd, xf.device),
                    grad=torch.is_grad_enabled() and x64.requires_grad)

    def bounds(self, q: dict, lo: int, hi: int):
        """Lower and upper bounds ``(B, hi - lo)`` of the squared distances to the points lo:hi, in the
        screen dtype, from one matrix product (:func:`_expansion_coeff`)."""
        c, nb = q["c"], q["sq"][lo:hi]
        with _all_threads():
            low = torch.addmm(((1 - c) * nb)[None], q["xc"], q["screen"][lo:hi].T, alpha=-2)
        low.add_(((1 - c) * q["na"])[:, None])
        return low, low + (2 * c) * (q["na"][:, None] + nb[None])

    def exact(self, q: dict, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        r"""Squared distances ``(P,)`` in float64 of the pairs (query ``rows[p]``, point ``cols[p]``) as
        :math:`\sum_k (x_k - y_k)^2` (error below :math:`(d + 2)\,u_{64}` of the value); differentiable in x."""
        x64 = q["x64"]
        d = x64.shape[1]
        step = max(1, (1 << 21) // d)  # about 16 MB of float64 differences at a time
        out = [((x64[rows[s:s + step]] - self.points[cols[s:s + step]].to(self.f64)) ** 2).sum(1)
               for s in range(0, len(rows), step)]
        return torch.cat(out) if out else x64.new_zeros(0)

    def _accurate(self, r: torch.Tensor, na: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
        r"""Where the float64 expansion r (from squared norms na, nb of the centred points) is as exact as
        the explicit sum: its error bound :math:`1.25(2\gamma_d + 8u)(n_a + n_b)` (the dot product and the
        norms, the rounding of the centred inputs and of the two additions; u = 2^-53) is at most 8 times
        the explicit sum's worst case, :math:`\gamma_{d+2}` of the value."""
        d, u = self.points.shape[1], _unit_roundoff(self.f64)
        err = 1.25 * (2 * d * u / (1 - d * u) + 8 * u) * (na + nb)
        return err <= 8 * ((d + 2) * u / (1 - (d + 2) * u)) * (r.detach() - err)

    def pairs64(self, q: dict, rows: torch.Tensor, cols: torch.Tensor, crow: torch.Tensor) -> torch.Tensor:
        """Squared distances ``(P,)`` in float64 of the pairs (query ``rows[p]``, point ``cols[p]``), sorted
        by row with row pointers ``crow`` (CSR), exact to float64 round-off."""
        if len(rows) == 0:
            return q["x64"].new_zeros(0)
        if q["grad"]:
            return self.exact(q, rows, cols)  # differentiable in x
        try:
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                S = torch.sparse_csr_tensor(crow, cols, q["x64"].new_zeros(len(rows)),
                                            size=(q["x64"].shape[0], len(self)), check_invariants=False)
                with _all_threads():
                    dots = torch.sparse.sampled_addmm(S, q["xc64"], self.y64.T, beta=0.0).values()
        except (RuntimeError, NotImplementedError):  # a backend without sampled products
            return self.exact(q, rows, cols)
        na, nb = q["na64"][rows], self.sq64[cols]
        r = na + nb - 2 * dots
        ok = self._accurate(r, na, nb)
        if not bool(ok.all()):
            bad = ~ok
            r[bad] = self.exact(q, rows[bad], cols[bad])
        return r

    def expansion64(self, q: dict, rows: torch.Tensor, lo: int, hi: int):
        """Squared distances ``(len(rows), hi - lo)`` from a float64 product and the mask of the pairs
        where it is as exact as the explicit sum (:meth:`_accurate`); differentiable in x."""
        y64, nb = self.y64[lo:hi], self.sq64[lo:hi]
        xc = q["x64"][rows] - self.center
        with _all_threads():
            r = torch.addmm(nb[None], xc, y64.T, alpha=-2)
        r = r + xc.pow(2).sum(1)[:, None]
        return r, self._accurate(r, q["na64"][rows][:, None], nb[None])


# --------------------------------------------------------------------------------------------------
# The optimal denoiser of a finite data set
# --------------------------------------------------------------------------------------------------


class Neighbours(NamedTuple):
    """The answer of :meth:`EmpiricalDenoiser.nearest`: ``distances`` and ``indices`` of the training
    points, closest first, each ``(batch, k)`` (:func:`diffusion_geometry.meanshift.landing` answers
    with the same two fields for ``k = 1``, and the samples)."""

    distances: torch.Tensor
    indices: torch.Tensor


class EmpiricalDenoiser:
    r"""The optimal denoiser of a finite training set :math:`\{y_i\}_{i=1}^N`.

    For :math:`p_0 = \frac1N\sum_i \delta_{y_i}` the noised marginal is the Gaussian kernel density
    estimate :math:`p_\sigma(x) = \frac1N \sum_i N(x; y_i, \sigma^2 I)` and the posterior mean is

    .. math:: D^*(x;\sigma) = \sum_i w_i(x)\, y_i, \qquad
              w = \operatorname{softmax}_i\big(-\lVert x - y_i\rVert^2 / 2\sigma^2\big),

    which is one Gaussian mean-shift step with bandwidth sigma (Karras et al. 2022, App. B.3, Eq. 57;
    Chen et al. 2023, §5).

    **Exact in every dtype.** Every squared distance that carries weight is exact to float64 round-off,
    whatever the dtype of the data and of the queries (float16, bfloat16, float32, float64), and the
    softmax runs in float64. (Forming :math:`\lVert x\rVert^2 - 2x\cdot y + \lVert y\rVert^2` in float32
    alone cancels: at d = 784 its error is near 1e-4, which the softmax divides by
    :math:`2\sigma^2`.) Per chunk of ``chunk_size`` training points:

    1. *Screen*: one float32 matrix product (float64 for float64 data) of the centred points gives every
       squared distance with a rigorous error bound :math:`E = c\,(\lVert x - \bar y\rVert^2 +
       \lVert y - \bar y\rVert^2)`, :math:`c = 2(2\gamma_d + 4u_\text{in} + 32u)` (c = 1.9e-4 in float32 at
       d = 784; see ``_expansion_coeff``).
    2. *Cut*: a training point is a candidate when its lower bound is within :math:`2\sigma^2\,
       \text{cut}` of the smallest upper bound seen so far, cut = :math:`\ln N + \ln(8/u)` nats with u
       the round-off of the answer's dtype (:func:`cut_nats`: 49.8 nats for float64 at N = 60,000, 29.7
       for float32); all other points together weigh less than u/8 of the largest weight.
    3. *Exact distances* of the candidates in float64: from a float64 product of the centred points
       (sampled at the candidate pairs) where its error bound is within 8 times the worst-case
       round-off of the explicit sum :math:`\sum_k (x_k - y_k)^2`, and from the explicit sum (no
       cancellation) elsewhere, e.g. for near-duplicates at small sigma.
    4. *Streaming softmax* in float64, shifted by the running smallest squared distance (a streaming
       log-sum-exp); the weighted mean in float64. Memory is O(batch x chunk + batch x d), never
       O(batch x N x d). As sigma -> 0 the weights become one-hot on the nearest training point (split
       evenly between exact ties), also when :math:`\sigma^2` underflows; never NaN.

    Small problems (batch x N x d at most ``direct_limit``, 2^22) skip steps 1-3: every squared
    distance is an explicit float64 sum. Either way the result equals a naive float64 computation
    (explicit differences, softmax over all N) to float64 round-off, rounded to the dtype of the
    query. Float32 queries cost about one float32 matrix product per call where few points carry
    weight (``benchmarks/optimal_denoiser.py``: N = 60,000 Fashion-MNIST images at sigma = 1), and two
    float64 products where all of them do (large sigma: about 2.5 times the cost of the two float32
    products of an inexact float32 softmax). The data are kept three times: as given, centred in
    float64 and centred in float32.

    Parameters
    ----------
    data : ``(N, *shape)`` training points; queries have shape ``(batch, *shape)`` in any floating dtype.
    chunk_size : training points per chunk, at most: a call with a large batch uses smaller chunks so
        that batch x chunk stays below 2^22 (16 MB of float32 screen values), but not below 1024.
    dtype : the dtype the training points are stored in (default: the data's floating dtype, float32 for
        integer data). They are stored exactly in it; the computation runs as above whatever it is.

    The data stay on their device; queries must be on the same device. Raises ``ValueError`` for data or
    queries with NaN or inf, wrong shapes, or a zero sigma (use :meth:`nearest` there).
    """

    def __init__(self, data: torch.Tensor, *, chunk_size: int = 16384, dtype: torch.dtype | None = None):
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
        self.chunk_size = chunk_size
        self.data = flat  # (N, d): the training points, exactly, in `dtype`
        self.direct_limit = 1 << 22  # batch x N x d up to which every distance is an explicit sum
        self._set = _PointSet(flat, chunk_size)
        self.center = self._set.center  # (d,) float64 mean of the training points

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"EmpiricalDenoiser(N={len(self)}, shape={self.shape}, dtype={self.data.dtype})"

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.shape))}), got {shape}")
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch: give at least one query point")
        if x.device != self.data.device:
            raise ValueError(f"x is on {x.device} but the data are on {self.data.device}")
        return x.reshape(x.shape[0], -1)

    def _chunk(self, batch: int) -> int:
        """Training points per chunk for ``batch`` queries: batch x chunk below 2^22 unless chunk < 1024."""
        return min(self.chunk_size, max(1024, (1 << 22) // max(batch, 1)))

    def _out_dtype(self, x) -> torch.dtype:
        """The dtype of the answer for queries ``x``: theirs, or the data's for non-floating queries."""
        return x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else self.data.dtype

    def _sigma(self, sigma, q: dict) -> torch.Tensor:
        s = sigma_like(sigma, q["x64"].detach(), dtype=self._set.f64).reshape(-1)
        if (s == 0).any():
            raise ValueError("sigma must be positive for the optimal denoiser (use nearest() at 0)")
        return s

    def _stream(self, x: torch.Tensor, sigma, *, want_mean: bool, out_dtype: torch.dtype,
                collect: bool = False):
        """One pass over the chunks. Returns the running smallest exact squared distance ``dmin`` per
        query, ``tot`` = sum of exp(-(d2 - dmin) / 2 sigma^2) over the candidates and (``want_mean``) ``acc``
        = the same weights times the centred training points; with ``collect`` also the (batch, N) exact
        squared distances (inf where cut). The cut is ``ln N + ln(8 / u)`` nats, u the unit round-off of
        ``out_dtype`` (the dtype of the answer): ln N + 38.8 for float64, ln N + 18.7 for float32."""
        P = self._set
        q = P.queries(self._flatten(x))
        s = self._sigma(sigma, q)
        f64, sd, c = P.f64, q["sd"], q["c"]
        B, N, dev = s.shape[0], len(self), s.device
        inv = 0.5 / s**2  # inf when sigma^2 underflows (the sigma -> 0 limit), 0 when it overflows
        inv_inf = bool(torch.isinf(inv).any())
        window = 2 * s**2 * cut_nats(N, out_dtype)  # the cut, in squared-distance units
        st = dict(dmin=torch.full((B,), math.inf, dtype=f64, device=dev),
                  tot=torch.zeros(B, dtype=f64, device=dev),
                  acc=torch.zeros(B, P.points.shape[1], dtype=f64, device=dev) if want_mean else None,
                  d2=torch.full((B, N), math.inf, dtype=f64, device=dev) if collect else None)

        def scaled(d2, ref, r_inv, cut=False):
            # (d2 - ref) / (2 sigma^2): 0 where d2 == ref even at inv = inf; inf where d2 = inf (a cut
            # point, ``cut``) even at inv = 0 or ref = inf
            z = (d2 - ref) * r_inv
            if inv_inf:
                z = torch.where(d2 == ref, 0.0, z)
            if cut:
                z = torch.where(torch.isinf(d2), math.inf, z)
            return z

        def fold(cmin, add):
            """Lower the shift dmin to include the new minima ``cmin``, rescale the sums, then ``add(dmin)``
            the weights of new pairs (sparse) or rows (dense)."""
            with torch.no_grad():
                new = torch.minimum(st["dmin"], cmin)
                rescale = torch.exp(-scaled(st["dmin"], new, inv)).nan_to_num(nan=1.0)  # inf - inf: empty
            st["dmin"] = new
            st["tot"] = st["tot"] * rescale
            if want_mean:
                st["acc"] = st["acc"] * rescale[:, None]
            add(new)

        def fold_pairs(rows, cols, d2, crow):  # pairs sorted by row, row pointers crow
            with torch.no_grad():
                cmin = torch.full((B,), math.inf, dtype=f64, device=dev).scatter_reduce(0, rows, d2.detach(), "amin")

            def add(dmin):
                w = torch.exp(-scaled(d2, dmin[rows], inv[rows]))
                st["tot"] = st["tot"].index_add(0, rows, w)
                if want_mean and q["grad"]:
                    st["acc"] = st["acc"].index_add(0, rows, w[:, None] * P.y64[cols])
                elif want_mean:  # sum_j w_j y_j per row: a sparse (B, N) x dense (N, d) product
                    with warnings.catch_warnings():  # "sparse CSR support is in beta"
                        warnings.simplefilter("ignore", UserWarning)
                        W = torch.sparse_csr_tensor(crow, cols, w, size=(B, N), check_invariants=False)
                        with _all_threads():
                            st["acc"] = st["acc"] + W @ P.y64
                if collect:
                    st["d2"][rows, cols] = d2.detach()
            fold(cmin, add)

        def fold_dense(rows, d2, lo, hi):  # d2 (len(rows), hi - lo), inf where not a candidate
            with torch.no_grad():
                cmin = torch.full((B,), math.inf, dtype=f64, device=dev)
                cmin[rows] = d2.detach().min(1).values

            def add(dmin):
                w = torch.exp(-scaled(d2, dmin[rows, None], inv[rows, None], cut=True))
                st["tot"] = st["tot"].index_add(0, rows, w.sum(1))
                if want_mean:
                    with _all_threads():
                        wy = w @ P.y64[lo:hi]
                    st["acc"] = st["acc"].index_add(0, rows, wy)
                if collect:
                    st["d2"][rows, lo:hi] = d2.detach()
            fold(cmin, add)

        if B * N * P.points.shape[1] <= self.direct_limit:  # small: explicit differences for every pair
            if q["grad"]:  # explicit differences (torch.cdist has no double backward: chapter 05's
                # curvature differentiates the denoiser twice)
                d2 = (q["x64"][:, None, :] - P.points.to(f64)[None, :, :]).square().sum(-1)
            else:  # the same explicit sums, fused: no (batch, N, d) tensor (about 7x faster at 32 x 1,797 x 64)
                d2 = torch.cdist(q["x64"], P.points.to(f64), compute_mode="donot_use_mm_for_euclid_dist").square_()
            st["dmin"] = d2.detach().min(1).values
            w = torch.exp(-scaled(d2, st["dmin"][:, None], inv[:, None]))
            st["tot"] = w.sum(1)
            if want_mean:
                st["acc"] = w @ P.y64
            if collect:
                st["d2"] = d2.detach()
            return dict(q=q, s=s, inv=inv, scaled=scaled, **st)

        best_up = torch.full((B,), math.inf, dtype=f64, device=dev)
        na = q["na64"]
        pending: list = []  # candidate pairs (rows, cols, lower-bound term p) not yet settled
        size = self._chunk(B)
        held, budget = 0, max(1 << 16, B * size)  # pairs held: memory O(batch x chunk)

        def up_bound(pmin, lo, hi):
            # the upper bound of the squared distance of the pair with lower-bound term pmin
            return pmin.to(f64) + (1 + c) * na + 2 * c * float(P.sq64[lo:hi].max())

        def threshold():
            # the cut on p = lower bound - (1 - c) |x|^2, rounded upwards (see _expansion_coeff)
            return _above(best_up + window - (1 - c) * na, sd)

        def dense(rows, cand, lo, hi):
            """Rows with many candidates in lo:hi (``cand``: their mask, None for all): float64 products,
            a block of points at a time so that each block is read twice from cache (distances, mean);
            the pairs a product cannot settle accurately go to ``pending``."""
            nonlocal held
            blk = max(64, (1 << 19) // P.points.shape[1])  # 4 MB of float64 points
            for a in range(lo, hi, blk):
                b = min(a + blk, hi)
                r, ok = P.expansion64(q, rows, a, b)
                with torch.no_grad():
                    take = ok if cand is None else ok & cand[:, a - lo:b - lo]
                    bad = ~ok if cand is None else cand[:, a - lo:b - lo] & ~ok
                    br, bc = torch.nonzero(bad, as_tuple=True)
                    if len(br):
                        pending.append((rows[br], bc + a, torch.full((len(br),), -math.inf, dtype=sd, device=dev)))
                        held += len(br)
                fold_dense(rows, torch.where(take, r, math.inf), a, b)

        def settle():
            nonlocal pending, held
            if not pending:
                return
            with torch.no_grad():
                rows, cols, p = (torch.cat(t) for t in zip(*pending))
                keep = p <= threshold()[rows]  # the cut with the best bound found so far
                rows, cols = rows[keep], cols[keep]
                order = torch.argsort(rows * N + cols)
                rows, cols = rows[order], cols[order]
                crow = torch.zeros(B + 1, dtype=torch.long, device=dev)
                crow[1:] = torch.bincount(rows, minlength=B).cumsum(0)
            pending, held = [], 0
            fold_pairs(rows, cols, P.pairs64(q, rows, cols, crow), crow)

        all_dense = False
        for lo, hi in P.chunks(size):
            if all_dense:  # the last chunk kept most points for every query: skip the screen
                dense(torch.arange(B, device=dev), None, lo, hi)
                continue
            with torch.no_grad():
                # p = lower bound of the squared distance minus (1 - c) |x|^2, from one matrix product
                with _all_threads():
                    p = torch.addmm(((1 - c) * q["sq"][lo:hi])[None], q["xc"], q["screen"][lo:hi].T, alpha=-2)
                if lo == 0:  # a first upper bound of the smallest squared distance (later: candidates')
                    best_up = up_bound(p.amin(1), lo, hi)
                rows, cols = torch.nonzero(p <= threshold()[:, None], as_tuple=True)
                counts = torch.bincount(rows, minlength=B)
                if len(rows):
                    pmin = torch.full((B,), math.inf, dtype=sd, device=dev).scatter_reduce(
                        0, rows, p[rows, cols], "amin")
                    best_up = torch.minimum(best_up, up_bound(pmin, lo, hi))
                dense_rows = torch.nonzero(counts > max(32, (hi - lo) // 8)).reshape(-1)
                all_dense = bool((counts > (hi - lo) // 2).all())
            if len(dense_rows):  # many candidates (large sigma): float64 products for these rows
                with torch.no_grad():
                    cand = torch.zeros(B, hi - lo, dtype=torch.bool, device=dev)
                    cand[rows, cols] = True
                    in_dense = torch.zeros(B, dtype=torch.bool, device=dev)
                    in_dense[dense_rows] = True
                    keep = ~in_dense[rows]
                    rows, cols = rows[keep], cols[keep]
                dense(dense_rows, cand[dense_rows], lo, hi)
            if len(rows):
                pending.append((rows, cols + lo, p[rows, cols]))
                held += len(rows)
            if held > budget:
                settle()
        settle()
        return dict(q=q, s=s, inv=inv, scaled=scaled, **st)

    @_with_few_threads
    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r""":math:`D^*(x;\sigma)`, same shape and dtype as ``x`` (computed in float64, then rounded).

        ``sigma``: a positive number, 0-d tensor or ``(batch,)`` tensor. Raises ``ValueError`` for a wrong
        shape or device, NaN or inf in ``x``, or a zero, negative or non-finite sigma."""
        st = self._stream(x, sigma, want_mean=True, out_dtype=self._out_dtype(x))
        out = st["acc"] / st["tot"][:, None] + self.center
        return out.reshape(x.shape).to(self._out_dtype(x))

    __call__ = denoise

    @_with_few_threads
    def log_prob(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""The KDE log-density :math:`\log \frac1N\sum_i N(x; y_i, \sigma^2 I)`, shape ``(batch,)``.

        Computed in float64 and returned in the dtype of ``x`` and of the data, promoted to float32 at
        least (pass float64 queries to keep float64: at d = 784 the value is in the thousands, and
        differences of it need float64). Differentiable in ``x`` (autograd gives the score)."""
        out_dtype = torch.promote_types(torch.promote_types(self._out_dtype(x), self.data.dtype), torch.float32)
        st = self._stream(x, sigma, want_mean=False, out_dtype=out_dtype)
        s, d = st["s"], self.data.shape[1]
        # -dmin / (2 sigma^2) + log(tot): the streaming log-sum-exp of the logits
        top = torch.where(st["dmin"] == 0, 0.0, -st["dmin"] * st["inv"])
        out = top + torch.log(st["tot"]) - math.log(len(self)) - d * (torch.log(s) + 0.5 * math.log(2 * math.pi))
        return out.to(out_dtype)

    @_with_few_threads
    def weights(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""The softmax weights :math:`w_i(x) = \operatorname{softmax}_i(-\lVert x - y_i\rVert^2/2\sigma^2)`,
        shape ``(batch, N)``, float64 (exact to float64 round-off; a weight below :math:`2^{-56}/N` of the
        largest may be returned as 0, see :func:`cut_nats`). Memory O(batch x N): for the weights themselves, e.g. how much
        of the posterior sits on one training point (memorisation)."""
        st = self._stream(x, sigma, want_mean=False, out_dtype=torch.float64, collect=True)
        z = st["scaled"](st["d2"], st["dmin"][:, None], st["inv"][:, None], cut=True)
        return torch.exp(-z) / st["tot"][:, None]

    @_with_few_threads
    def nearest(self, x: torch.Tensor, k: int = 1) -> Neighbours:
        """The ``k`` nearest training points: :class:`Neighbours` ``(distances, indices)``, each ``(batch, k)``, closest first
        (exact ties: lower index first). Distances exact to float64 round-off, returned in the data's
        dtype promoted to at least float32."""
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(self):
            raise ValueError(f"k must be an integer between 1 and N={len(self)}, got {k!r}")
        P = self._set
        with torch.no_grad():
            q = P.queries(self._flatten(x))
            B, f64, dev = q["x64"].shape[0], P.f64, q["x64"].device
            best_d = torch.zeros(B, 0, dtype=f64, device=dev)
            best_i = torch.zeros(B, 0, dtype=torch.long, device=dev)
            for lo, hi in P.chunks(self._chunk(B)):
                low, up = P.bounds(q, lo, hi)
                pool = torch.cat([best_d, torch.topk(up, min(k, hi - lo), dim=1, largest=False).values.to(f64)], 1)
                thr = pool.kthvalue(k, dim=1).values if pool.shape[1] >= k else torch.full_like(pool[:, 0], math.inf)
                mask = low <= _above(thr, q["sd"])[:, None]
                keep = torch.nonzero(mask.any(0)).reshape(-1)  # columns with a candidate, in index order
                rows, cols = torch.nonzero(mask[:, keep], as_tuple=True)
                exact = torch.full((B, len(keep)), math.inf, dtype=f64, device=dev)
                exact[rows, cols] = P.exact(q, rows, keep[cols] + lo)
                cand_d = torch.cat([best_d, exact], 1)
                cand_i = torch.cat([best_i, (keep + lo).expand(B, -1)], 1)
                vals, pos = torch.sort(cand_d, dim=1, stable=True)
                kk = min(k, cand_d.shape[1])
                best_d, best_i = vals[:, :kk], torch.gather(cand_i, 1, pos[:, :kk])
        out = torch.promote_types(self.data.dtype, torch.float32)
        return Neighbours(best_d.sqrt().to(out), best_i)

    def training_points(self, indices: torch.Tensor) -> torch.Tensor:
        """The training points at ``indices``, in their original shape and dtype (exact)."""
        pts = self.data[indices]
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

    Call as ``D(x, sigma)``: ``x`` is ``(batch, ...)`` in any floating dtype, ``sigma`` a number, a 0-d
    tensor or a ``(batch,)`` tensor of positive levels; the result has ``x``'s shape and dtype.

    Precision: the four coefficients are formed in float64 from the noise levels (:meth:`coefficients`),
    the products with ``x`` and with the network output in float32 at least (float64 for float64
    ``x``), and only the result is cast to ``x.dtype``. So float16 and bfloat16 inputs work at every
    sigma: in float16, ``sigma**2 + sigma_data**2`` alone would overflow above sigma ~ 256 and the
    denoiser would return 0. The network gets ``c_in x`` in the dtype of its parameters (``x``'s dtype
    for a network without parameters) and ``c_noise`` in that dtype or float32, whichever is wider.

    Raises ``ValueError`` for a non-floating or non-finite ``x`` (float16 holds ``|x| <= 65504``, which
    noise of level sigma reaches near sigma ~ 1e4: create such ``x`` in float32), a zero, negative or
    non-finite sigma, a sigma of the wrong shape, or a network output of the wrong shape.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        if not (sigma_data > 0 and math.isfinite(sigma_data)):
            raise ValueError(f"sigma_data must be a positive finite number, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) for a tensor of noise levels, each of ``sigma``'s shape.

        Formed in float64 (float32 on a device without float64) whatever ``sigma``'s dtype, and
        returned in that precision: cast the products, not the coefficients, to a lower precision.
        """
        if not isinstance(sigma, torch.Tensor):
            sigma = torch.as_tensor(sigma, dtype=torch.float64)
        sigma = sigma.to(_exact_dtype(sigma.device))
        sd = torch.full_like(sigma, self.sigma_data)
        norm = torch.hypot(sigma, sd)  # sqrt(sigma^2 + sigma_data^2) without forming the squares
        return (sd / norm) ** 2, sigma * (sd / norm), 1 / norm, sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError("x must be a floating-point tensor of shape (batch, ...)")
        s = sigma_like(sigma, x, dtype=_exact_dtype(x.device))
        if (s == 0).any():
            raise ValueError("sigma must be positive for a preconditioned network")
        if not torch.isfinite(x).all():
            raise ValueError(f"x holds non-finite values; {x.dtype} holds |x| <= {torch.finfo(x.dtype).max:g} "
                             "(noise of level sigma reaches about 5 sigma): create x in float32 or float64")
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        work = torch.promote_types(x.dtype, torch.float32)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        xw = x.to(work)
        # c_noise = log(sigma)/4 goes in float32 at least: a float16 network embeds it itself
        out = self.net((c_in.to(work) * xw).to(dtype), c_noise.reshape(-1).to(torch.promote_types(dtype, torch.float32)))
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return (c_skip.to(work) * xw + c_out.to(work) * out.to(work)).to(x.dtype)
