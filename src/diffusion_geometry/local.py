r"""Local denoisers: the optimal denoiser of image *patches*, one output pixel at a time.

The optimal denoiser of a data set (:class:`~diffusion_geometry.denoisers.EmpiricalDenoiser`) can only
reproduce training images. A denoiser that sees a small window of the noisy image and is the same at
every position -- the inductive bias of a convolutional network -- is instead the optimal denoiser of
the *patches* of the data, which recombines training patches into new images. Kamb & Ganguli (2024,
arXiv 2412.20292) call it the equivariant local score (ELS) machine and find that it predicts the
outputs of trained convolutional networks; Niedoba et al. (2024, arXiv 2411.19339) explain trained
networks' denoisers by patch-based empirical denoisers whose patch size depends on the noise level.

* :class:`LocalDenoiser` -- the posterior mean of each pixel given the P x P window around it, under
  the empirical distribution of training patches: from all positions (``equivariant=True``, the ELS
  machine) or from the same position only (``equivariant=False``).
* :func:`patch_size_schedule` -- a patch size per noise level, as a ``sigma -> P`` callable for
  ``LocalDenoiser(patch_size=...)``: the size chosen at the nearest of a few calibration levels.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .denoisers import _exact_dtype, sigma_like

__all__ = ["LocalDenoiser", "patch_size_schedule"]


def patch_size_schedule(sigmas, sizes):
    r"""A patch size for every noise level from sizes chosen at a few: ``sigma -> P``.

    Returns a callable that gives, for a noise level sigma > 0, the size ``sizes[i]`` of the level
    ``sigmas[i]`` nearest to sigma in :math:`\log\sigma` (ties: the larger level). Kamb & Ganguli (2024,
    arXiv 2412.20292) and Niedoba et al. (2024, arXiv 2411.19339) calibrate one patch size per noise
    level against a trained network; this carries such a calibration to every level a sampler visits.

    Parameters
    ----------
    sigmas : positive, finite, distinct calibration levels (any order; a sequence or 1-D tensor).
    sizes : one odd integer >= 1 per level.

    Raises ``ValueError`` for lengths that differ, no level, a level that is not positive and finite
    or repeated, or a size that is not an odd positive integer; the callable raises ``ValueError`` for
    a sigma that is not positive and finite.
    """
    levels = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    sizes = list(sizes)
    if not levels or len(levels) != len(sizes):
        raise ValueError(f"need one size per level and at least one level, got {len(levels)} levels and "
                         f"{len(sizes)} sizes")
    if not all(math.isfinite(s) and s > 0 for s in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"the levels must be positive, finite and distinct, got {levels}")
    sizes = [LocalDenoiser._check_patch(P) for P in sizes]
    order = sorted(range(len(levels)), key=lambda i: -levels[i])  # largest level first: ties go to it
    logs = [(math.log(levels[i]), sizes[i]) for i in order]

    def size(sigma) -> int:
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be positive and finite, got {sigma}")
        ls = math.log(sigma)
        return min(logs, key=lambda item: abs(item[0] - ls))[1]

    return size


class LocalDenoiser:
    r"""The optimal local denoiser of a set of images: each pixel from the P x P window around it.

    For a query image :math:`x` and a pixel :math:`p`, let :math:`x_P(p) \in \mathbb{R}^{C P^2}` be the
    P x P window of all C channels centred at p (P odd; outside the image the window reads **zeros**,
    as a convolution with zero padding does). The denoised value at p is the posterior mean of the
    window's centre pixel under the empirical distribution of the candidate training windows
    :math:`\{\phi_j\}`, i.e. the optimal denoiser of the windows (EDM, App. B.3) read at the centre:

    .. math:: D(x;\sigma)_p = \sum_j w_j\,\phi_j(0), \qquad
              w = \operatorname{softmax}_j\Big(-\frac{\lVert x_P(p) - \phi_j\rVert^2}{2\sigma^2}\Big),

    where :math:`\phi_j(0) \in \mathbb{R}^C` is the centre pixel of window j (Kamb & Ganguli 2024,
    arXiv 2412.20292: the equivariant local score machine, here in the VE form of EDM; Niedoba et al.
    2024, arXiv 2411.19339: patch-based empirical denoisers). The candidate windows are

    * ``equivariant=True``: the windows of every training image at every one of its H x W positions
      (N H W windows), the same set and so the same weights at every p. The denoiser commutes with
      translations for pixels whose windows stay inside the image (the zero padding marks the border,
      as in a zero-padded convolutional network).
    * ``equivariant=False``: the N windows of the training images at the same position p: local but
      position-dependent.

    With ``equivariant=False`` and :math:`P \ge 2\max(H, W) - 1` the window at p holds the whole image
    (query and training windows zero-padded alike), so :math:`\lVert x_P(p) - \phi_j\rVert =
    \lVert x - y_j\rVert` and the denoiser is :class:`~diffusion_geometry.denoisers.EmpiricalDenoiser`.
    A window larger than :math:`2\max(H, W) - 1` only adds zeros to both sides of every distance, so
    the patch size is capped there (same answer, less work).

    **Exact in every dtype.** The windows are exact copies of the pixels in float64. Each squared
    distance is the explicit sum :math:`\sum_k (x_k - \phi_{j,k})^2` in float64 (``torch.cdist`` without
    the matrix-product expansion, which cancels; relative error about :math:`(CP^2 + 3)\,u_{64}` at most), the
    softmax runs in float64, streamed over chunks of training windows and shifted by the running
    smallest distance (a streaming log-sum-exp), and only the answer is rounded to the dtype of ``x``.
    So it equals a naive float64 computation to float64 round-off, at every sigma: as sigma -> 0 the
    weights become one-hot on the nearest window, split evenly between exact ties (also when
    :math:`\sigma^2` underflows), never NaN; as sigma -> infinity they become uniform.

    **Cost.** Every query window is compared with every candidate window: B H W x N H W pairs of
    C P^2 values in equivariant mode (repeated training windows, such as blank background, counted
    once with their multiplicity), B H W x N otherwise; about 14 ns a pair on one CPU core at P = 5
    (a batch of 16 against 300 Fashion-MNIST images: 2.1e9 pairs, 30 s; against the 1,797 digits:
    1.7 s). **Memory is bounded**: the float64 training windows (N H W C P^2 values) are kept between
    calls when they fit in ``window_bytes``; otherwise each call builds them from chunks of training
    images that fit, one chunk at a time, and carries the softmax's running sums from chunk to chunk
    (the same answer to round-off). Distances are formed ``chunk_size`` pairs at a time, never
    B H W x N H W x C P^2 at once.

    Parameters
    ----------
    data : ``(N, C, H, W)`` training images, any real dtype, N >= 1, finite.
    patch_size : an odd integer P >= 1, or a callable ``sigma -> P`` (a float noise level in, an odd
        integer out) for a patch size that depends on the noise level; which schedule is sensible
        (Niedoba et al. and Kamb & Ganguli fit one per noise level to trained networks) is the
        caller's choice. Samples of one batch with different sigmas may then use different P.
    equivariant : candidate windows from all positions (True) or from the same position (False).
    chunk_size : (query window, training window) pairs per step, at least 1 (default 2^19: 4 MB of
        float64 distances, which stay in cache).
    window_bytes : the most bytes of float64 training windows held at once, at least one image's
        windows are always taken (default 2^28 = 256 MiB; the position-dependent windows of all 60,000
        Fashion-MNIST images at P = 9 would take 30 GB).

    Call as ``D(x, sigma)``: ``x`` ``(batch, C, H, W)`` float16, bfloat16, float32 or float64 on the
    data's device; ``sigma`` a positive number, 0-d tensor or ``(batch,)`` tensor. Returns ``x``'s
    shape and dtype; not differentiable in ``x``. Raises ``ValueError`` for data or ``x`` of the wrong
    shape or with NaN or inf, an even, non-positive or non-integer patch size (also when the callable
    returns one), a zero, negative or non-finite sigma, a bad ``chunk_size`` or ``window_bytes``, or data beyond the range
    of ``x``'s dtype (the answer would overflow).
    """

    def __init__(self, data, patch_size, *, equivariant: bool = True, chunk_size: int = 1 << 19,
                 window_bytes: int = 1 << 28):
        if not isinstance(data, torch.Tensor):
            data = torch.as_tensor(data)
        if data.ndim != 4 or 0 in data.shape:
            raise ValueError(f"data must be images of shape (N, C, H, W), none of them 0, got {tuple(data.shape)}")
        self.data = data.to(_exact_dtype(data.device))  # exact from every real dtype
        if not torch.isfinite(self.data).all():
            raise ValueError("data contain NaN or inf")
        if not callable(patch_size):
            self._check_patch(patch_size)
        for name, value in (("chunk_size", chunk_size), ("window_bytes", window_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.patch_size, self.equivariant, self.chunk_size = patch_size, bool(equivariant), chunk_size
        self.window_bytes = window_bytes
        self.shape = tuple(data.shape[1:])
        self._cache = None  # (P, [its training-window chunk]) of the last patch size, when one chunk holds all

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        kind = "equivariant" if self.equivariant else "position-dependent"
        return f"LocalDenoiser(N={len(self)}, shape={self.shape}, patch_size={self.patch_size!r}, {kind})"

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _check_patch(P, sigma=None) -> int:
        if isinstance(P, bool) or not isinstance(P, numbers.Integral) or P < 1 or P % 2 == 0:
            where = "" if sigma is None else f" (returned by patch_size for sigma = {sigma:g})"
            raise ValueError(f"the patch size must be an odd integer >= 1 (a window centred on its pixel), "
                             f"got {P!r}{where}")
        return int(P)

    def _size(self, sigma: float) -> int:
        """The patch size at noise level ``sigma``, capped at 2 max(H, W) - 1 (see the class docstring)."""
        if callable(self.patch_size):
            P = self._check_patch(self.patch_size(sigma), sigma)
        else:
            P = self.patch_size
        return min(P, 2 * max(self.shape[1:]) - 1)

    @staticmethod
    def _windows(images: torch.Tensor, P: int) -> torch.Tensor:
        """The P x P windows (zero padding) of ``images`` ``(B, C, H, W)``: ``(H * W, B, C * P * P)``, in
        the images' dtype (exact copies), positions in row-major order, each window ordered (C, P, P)."""
        r = P // 2
        B, C, H, W = images.shape
        w = F.pad(images, (r, r, r, r)).unfold(2, P, 1).unfold(3, P, 1)  # (B, C, H, W, P, P)
        return w.permute(2, 3, 0, 1, 4, 5).reshape(H * W, B, C * P * P)

    def _key_chunks(self, P: int):
        """The training windows in chunks of training images that fit in ``window_bytes``: a list (kept
        between calls when all fit in one chunk) or a generator of ``(keys, centres, counts)``. Keys
        ``(G, M, C P^2)``, their centre pixels ``(G, M, C)`` and multiplicities ``(G, M)`` (or None), float64:
        G = 1 and the M distinct windows of the chunk's images at all positions (equivariant: repeated
        windows, such as blank background, are kept once with their count -- exact, since a window's
        weight depends on the window only), or G = H W positions and M = the chunk's images."""
        if self._cache is not None and self._cache[0] == P:
            return self._cache[1]
        self._cache = None  # free the last patch size's windows first
        C, H, W = self.shape
        per_image = H * W * C * P * P * self.data.element_size()
        step = max(1, self.window_bytes // per_image)
        centre = torch.arange(C, device=self.data.device) * P * P + (P // 2) * (P + 1)  # each channel's centre

        def chunk(lo):
            win = self._windows(self.data[lo:lo + step], P)  # (H W, n, C P^2)
            count = None
            if self.equivariant:
                win, count = torch.unique(win.reshape(-1, win.shape[-1]), dim=0, return_counts=True)
                win, count = win[None], count[None].to(win.dtype)
            return win, win[..., centre], count

        if step >= len(self):
            self._cache = (P, [chunk(0)])
            return self._cache[1]
        return (chunk(lo) for lo in range(0, len(self), step))

    def _posterior_mean(self, q: torch.Tensor, inv: torch.Tensor, chunks):
        """``sum_j c_j exp(-|q - k_j|^2 inv) v_j / sum_j c_j exp(-|q - k_j|^2 inv)`` for queries ``q``
        ``(G, n, D)`` and, per group, the keys ``(G, M, D)``, values ``(G, M, C)`` and multiplicities
        ``(G, M)`` (None: all 1) of each of ``chunks``; ``inv`` = 1 / (2 sigma^2) ``(n,)``. Float64
        throughout, streamed over chunks of keys with running sums shifted by the running smallest
        distance (a streaming log-sum-exp); ``(G, n, C)``. Exponents are clamped at 708 (exp of a
        larger one is 0 or subnormal, and about five times slower): a key that far out weighs
        e^-708 = 3e-308 of the nearest instead of less, which no float64 sum can see."""
        G, n, _ = q.shape
        hard = bool(torch.isinf(inv).any())  # sigma^2 underflowed: 0 * inf where a distance is the minimum
        dmin = q.new_full((G, n), math.inf)  # running smallest distance, and the shifted sums
        tot, acc = q.new_zeros(G, n), None
        for keys, vals, count in chunks:
            if acc is None:
                acc = q.new_zeros(G, n, vals.shape[-1])
            M = keys.shape[1]
            kc = min(M, 2048, self.chunk_size)  # keys per step
            rb = max(1, min(n, self.chunk_size // kc))  # query rows per step
            gb = max(1, self.chunk_size // (rb * kc))  # groups per step
            for g in range(0, G, gb):
                for r in range(0, n, rb):
                    x, iv = q[g:g + gb, r:r + rb], inv[None, r:r + rb]
                    m, t, a = dmin[g:g + gb, r:r + rb], tot[g:g + gb, r:r + rb], acc[g:g + gb, r:r + rb]
                    for lo in range(0, M, kc):
                        # explicit differences (no |x|^2 - 2 x.y + |y|^2 cancellation)
                        d2 = torch.cdist(x, keys[g:g + gb, lo:lo + kc],
                                         compute_mode="donot_use_mm_for_euclid_dist").square_()
                        new = torch.minimum(m, d2.amin(-1))  # lower the shift, rescale the sums
                        rescale = torch.where(new == m, 1.0, torch.exp((new - m) * iv))
                        t.mul_(rescale)
                        a.mul_(rescale[..., None])
                        m.copy_(new)
                        z = (d2 - new[..., None]).mul_(iv[..., None])
                        if hard:
                            z = torch.where(d2 == new[..., None], 0.0, z)
                        w = z.clamp_(max=708.0).neg_().exp_()
                        if count is not None:
                            w.mul_(count[g:g + gb, None, lo:lo + kc])
                        t.add_(w.sum(-1))
                        a.add_(w @ vals[g:g + gb, lo:lo + kc])
        return acc / tot[..., None]

    # -- public API --------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r""":math:`D(x;\sigma)`, same shape and dtype as ``x`` (computed in float64, then rounded; not
        differentiable in ``x``); see the class docstring for the definition, the inputs and the errors
        raised."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.shape or x.shape[0] == 0:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.shape))}) with batch >= 1, "
                             f"got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
        if x.device != self.data.device:
            raise ValueError(f"x is on {x.device} but the data are on {self.data.device}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        f64 = self.data.dtype
        s = sigma_like(sigma, x, dtype=f64).reshape(-1)
        if (s == 0).any():
            raise ValueError("sigma must be positive for the local denoiser")
        inv = 0.5 / s**2  # inf where sigma^2 underflows: the sigma -> 0 limit, handled exactly
        B, (C, H, W) = x.shape[0], self.shape
        sizes = [self._size(v) for v in s.tolist()] if callable(self.patch_size) else [self._size(0.0)] * B
        out = torch.empty(H * W, B, C, dtype=f64, device=x.device)
        for P in sorted(set(sizes)):
            rows = torch.tensor([b for b in range(B) if sizes[b] == P], device=x.device)
            chunks = self._key_chunks(P)
            q = self._windows(x[rows].to(f64), P)  # (H W, b, C P^2)
            if self.equivariant:  # one group: every query window against every training window
                res = self._posterior_mean(q.reshape(1, -1, q.shape[-1]), inv[rows].repeat(H * W), chunks)
                out[:, rows] = res.reshape(H * W, len(rows), C)
            else:  # one group per position
                out[:, rows] = self._posterior_mean(q, inv[rows], chunks)
        res = out.permute(1, 2, 0).reshape(x.shape).to(x.dtype)
        if not torch.isfinite(res).all():
            raise ValueError(f"the denoiser output overflows {x.dtype}: the data exceed its range; "
                             "pass x in float32 or float64")
        return res

    __call__ = denoise
