r"""Interpolating latents: linear (lerp) against spherical (slerp), and the shell they should stay on.

A latent :math:`x_T \sim N(0, T^2 I_d)` lies, with overwhelming probability, on a thin shell of radius
:math:`T\sqrt d` (Vershynin 2018, Thm. 3.1.1; Chen et al. 2023, "Prop. 2"). For two independent
latents the linear interpolant :math:`(1-\alpha)x^{(1)} + \alpha x^{(2)}` is again Gaussian, but with
variance :math:`((1-\alpha)^2 + \alpha^2)T^2`, so its norm is close to
:math:`T\sqrt d\,\sqrt{(1-\alpha)^2+\alpha^2}` -- a factor :math:`1/\sqrt2` inside the shell at
:math:`\alpha = 1/2`. Spherical interpolation (Shoemake 1985; White 2016 for generative models)

.. math:: \operatorname{slerp}(a, b; \alpha) = \frac{\sin((1-\alpha)\theta)}{\sin\theta}\,a
          + \frac{\sin(\alpha\theta)}{\sin\theta}\,b, \qquad \cos\theta = \frac{\langle a, b\rangle}{\lVert a\rVert\lVert b\rVert},

moves along the great circle between :math:`a` and :math:`b` and keeps the norm when
:math:`\lVert a\rVert = \lVert b\rVert` (and close to it for two latents, whose norms agree to
:math:`O(1/\sqrt d)`).
"""
from __future__ import annotations

import math

import torch

__all__ = ["lerp", "slerp", "shell_log_cdf"]


def _check_pair(a, b, alpha):
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("a and b must be tensors")
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must have the same shape (batch, ...), got {tuple(a.shape)} and {tuple(b.shape)}")
    alpha = torch.as_tensor(alpha, dtype=a.dtype, device=a.device)
    if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.shape[0] != a.shape[0]):
        raise ValueError(f"alpha must be a number or have shape (batch,) = ({a.shape[0]},), got {tuple(alpha.shape)}")
    if not torch.isfinite(alpha).all():
        raise ValueError("alpha must be finite")
    return alpha.reshape(-1, *([1] * (a.ndim - 1))) if alpha.ndim == 1 else alpha


def lerp(a: torch.Tensor, b: torch.Tensor, alpha) -> torch.Tensor:
    r"""Linear interpolation :math:`(1-\alpha)a + \alpha b` of two batches ``(batch, ...)``.

    ``alpha`` is a number or a ``(batch,)`` tensor; 0 gives ``a``, 1 gives ``b``.
    """
    alpha = _check_pair(a, b, alpha)
    return (1 - alpha) * a + alpha * b


def slerp(a: torch.Tensor, b: torch.Tensor, alpha) -> torch.Tensor:
    r"""Spherical interpolation along the great circle from ``a`` to ``b`` (module docstring formula).

    The angle :math:`\theta` is computed per batch element over all trailing dimensions. When
    :math:`\sin\theta` is tiny (nearly parallel inputs) it falls back to :func:`lerp`, its limit.
    Zero vectors are rejected (their angle is undefined).
    """
    alpha = _check_pair(a, b, alpha)
    af, bf = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    na, nb = af.norm(dim=1), bf.norm(dim=1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("slerp needs non-zero vectors (the angle to a zero vector is undefined)")
    cos = ((af * bf).sum(1) / (na * nb)).clamp(-1.0, 1.0)
    theta = torch.acos(cos).reshape(-1, *([1] * (a.ndim - 1)))
    sin = torch.sin(theta)
    small = sin.abs() < 1e-7
    safe = torch.where(small, torch.ones_like(sin), sin)
    out = (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / safe
    return torch.where(small, (1 - alpha) * a + alpha * b, out)


def shell_log_cdf(ratio, d: int) -> float:
    r""":math:`\ln P\big(\lVert\varepsilon\rVert_2 \le r\sqrt d\big)` for :math:`\varepsilon \sim N(0, I_d)`.

    :math:`\lVert\varepsilon\rVert^2` is chi-squared with ``d`` degrees of freedom, so this is the
    log of the regularised lower incomplete gamma function :math:`P(d/2, d r^2/2)`. It says how
    atypical a latent of norm ratio ``r`` (norm over :math:`T\sqrt d`) is: e.g. the lerp midpoint.
    """
    from scipy.stats import chi2

    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    r = float(ratio)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"ratio must be a finite non-negative number, got {ratio!r}")
    return float(chi2.logcdf(d * r * r, d))
