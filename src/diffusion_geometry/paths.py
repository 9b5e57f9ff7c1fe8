r"""Gaussian paths: every Gaussian diffusion is the VE probability-flow ODE after a change of variables.

A *Gaussian path* noises data as

.. math:: x_t = \alpha_t\, x_0 + s_t\, \varepsilon, \qquad \varepsilon \sim N(0, I),
   \qquad t \in [0, 1]. \qquad (1)

Dividing by :math:`\alpha_t` gives :math:`x_t/\alpha_t = x_0 + (s_t/\alpha_t)\,\varepsilon`: the VE
(EDM) noising of the book with

.. math:: y = x_t / \alpha_t, \qquad \sigma(t) = s_t / \alpha_t. \qquad (2)

So the marginals are :math:`p_t(x) = \alpha_t^{-d}\, p_{\sigma(t)}(x/\alpha_t)`, the posterior mean of
:math:`x_0` is the book's denoiser :math:`D(y;\sigma)`, and the probability-flow ODE of (1) is the VE
ODE :math:`dy/d\sigma = (y - D(y;\sigma))/\sigma` written in other coordinates (Karras et al. 2022,
Eq. 4 and §3; Chen et al. 2023, arXiv 2305.19947, App. A, convert VP checkpoints this way). A network
trained on (1) predicts, in its own time :math:`t`, one of

* ``"eps"`` -- the noise :math:`\hat\varepsilon(x_t, t)` (DDPM, Ho et al. 2020): :math:`D = y - \sigma\hat\varepsilon`;
* ``"x0"`` -- the clean point :math:`\hat x_0(x_t, t)`: :math:`D = \hat x_0`;
* ``"velocity"`` -- :math:`\hat v(x_t, t) = \mathbb{E}[dx_t/dt \mid x_t] = \dot\alpha_t \hat x_0 + \dot s_t \hat\varepsilon`
  (flow matching, Lipman et al. 2023; rectified flow, Liu et al. 2023). With
  :math:`x_t = \alpha_t y` and :math:`s_t = \sigma\alpha_t`,

  .. math:: \hat v = g\, x_t + \alpha_t \dot\sigma\, \hat\varepsilon, \qquad
     g = \frac{d\log\alpha_t}{dt}, \quad \dot\sigma = \frac{d\sigma}{dt}. \qquad (3)

:class:`PathDenoiser` turns such a model into a book ``Denoiser`` ``D(y, sigma)``; :class:`PathModel`
turns a book denoiser into the model's prediction ``model(x, t)``; :meth:`GaussianPath.sigma` and
:meth:`GaussianPath.time` convert time grids and sigma grids. The paths, one registry :data:`PATHS`:

=================  ============================  =================================  ======================
name               :math:`\alpha_t`              :math:`\sigma(t)`                  source
=================  ============================  =================================  ======================
``ve``             1                             :math:`t` (``t`` *is* sigma)        Song et al. 2021 (VE)
``vp``             :math:`e^{-B(t)/2}`           :math:`\sqrt{e^{B(t)} - 1}`          Song et al. 2021 (VP), DDPM
``cosine``         :math:`\cos\phi_t/\cos\phi_0`  :math:`\sqrt{\cos^2\phi_0/\cos^2\phi_t - 1}`  Nichol & Dhariwal 2021
``flow_matching``  :math:`1 - t`                 :math:`t/(1-t)`                     Lipman et al. 2023, Liu et al. 2023
=================  ============================  =================================  ======================

with :math:`B(t) = \beta_\min t + \tfrac12(\beta_\max-\beta_\min)t^2` (DDPM's linear betas in continuous
time: :math:`\beta_\min = 0.1`, :math:`\beta_\max = 20` is DDPM's 1,000 betas from 1e-4 to 0.02) and
:math:`\phi_t = \frac{\pi}{2}\frac{t + c}{1 + c}`, :math:`c = 0.008`. VP and cosine keep
:math:`\alpha_t^2 + s_t^2 = 1`; flow matching keeps :math:`\alpha_t + s_t = 1`.

Precision: every coefficient is formed in float64 *from sigma* where the time form would cancel
(:math:`\alpha = 1/(1+\sigma)` rather than :math:`1 - t` near :math:`t = 1`;
:math:`\sqrt{\mathrm{expm1}(B)}` rather than :math:`\sqrt{e^B - 1}` near :math:`t = 0`; the VP inverse
:math:`t = 2B/(\beta_\min + \sqrt{\beta_\min^2 + 2\Delta\beta B})` rather than the textbook root, which
cancels; the cosine inverse through the tangent difference), and only products are cast to the dtype of ``x``.
"""
from __future__ import annotations

import math
import torch

from .denoisers import _exact_dtype, sigma_like

__all__ = [
    "GaussianPath", "VEPath", "VPPath", "CosinePath", "FlowMatchingPath", "PATHS", "PREDICTIONS",
    "get_path", "PathDenoiser", "PathModel", "convert_prediction", "sample_in_time",
]

PREDICTIONS = ("eps", "x0", "velocity")
"""What a model of a Gaussian path can predict: the noise, the clean point, or the velocity dx_t/dt."""


def _f64(v, device=None) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.float64 if device is None else _exact_dtype(device), device=device)


class GaussianPath:
    r"""A Gaussian path :math:`x_t = \alpha_t x_0 + s_t\varepsilon` on :math:`t \in [0, t_\max]`.

    Subclasses give :math:`\sigma(t)`, its inverse, :math:`\alpha` as a function of sigma, and the two
    rates of (3) as functions of sigma. All take and return float64 tensors (any shape); the public
    methods :meth:`sigma` and :meth:`time` check their input and raise ``ValueError`` for a time outside
    ``[0, t_max]`` or a negative, non-finite or out-of-range sigma.
    """

    name = "path"
    t_max = 1.0

    # -- to be given by each path (float64 in, float64 out) ---------------------------------------
    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _time(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def alpha(self, sigma: torch.Tensor) -> torch.Tensor:
        r""":math:`\alpha` at noise level ``sigma`` (float64 tensor, any shape)."""
        raise NotImplementedError

    def dlog_alpha_dt(self, sigma: torch.Tensor) -> torch.Tensor:
        r""":math:`g = d\log\alpha_t/dt` at the time whose noise level is ``sigma``."""
        raise NotImplementedError

    def dsigma_dt(self, sigma: torch.Tensor) -> torch.Tensor:
        r""":math:`\dot\sigma = d\sigma/dt` at the time whose noise level is ``sigma``."""
        raise NotImplementedError

    # -- derived ---------------------------------------------------------------------------------
    def s(self, sigma: torch.Tensor) -> torch.Tensor:
        r""":math:`s_t = \sigma\alpha_t` at noise level ``sigma``."""
        return sigma * self.alpha(sigma)

    @property
    def sigma_max(self) -> float:
        """The largest noise level of the path, sigma(t_max) (``inf`` when the path reaches pure noise)."""
        return float(self._sigma(_f64(self.t_max)))

    def sigma(self, t) -> torch.Tensor:
        r"""Noise levels :math:`\sigma(t) = s_t/\alpha_t` of times ``t`` (number or tensor), float64.

        Maps a time grid of the model to the book's sigma grid (Eq. 2)."""
        t = _f64(t) if not isinstance(t, torch.Tensor) else t.to(_exact_dtype(t.device))
        if not torch.isfinite(t).all() or (t < 0).any() or (t > self.t_max).any():
            raise ValueError(f"{self.name} path: times must lie in [0, {self.t_max:g}], "
                             f"got range [{t.min().item():g}, {t.max().item():g}]")
        return self._sigma(t)

    def time(self, sigma) -> torch.Tensor:
        r"""Times :math:`t(\sigma)` of noise levels ``sigma`` (number or tensor), float64: the inverse of
        :meth:`sigma`, mapping a sigma grid to the model's time grid."""
        s = _f64(sigma) if not isinstance(sigma, torch.Tensor) else sigma.to(_exact_dtype(sigma.device))
        if torch.isnan(s).any() or (s < 0).any() or (s > self.sigma_max).any() or \
                (torch.isinf(s).any() and math.isfinite(self.sigma_max)):
            raise ValueError(f"{self.name} path: sigma must lie in [0, {self.sigma_max:g}], "
                             f"got range [{s.min().item():g}, {s.max().item():g}]")
        return self._time(s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class VEPath(GaussianPath):
    r"""The variance-exploding path of the book: :math:`\alpha = 1`, :math:`\sigma(t) = t`."""

    name = "ve"
    t_max = math.inf

    def _sigma(self, t):
        return t.clone()

    def _time(self, sigma):
        return sigma.clone()

    def alpha(self, sigma):
        return torch.ones_like(sigma)

    def dlog_alpha_dt(self, sigma):
        return torch.zeros_like(sigma)

    def dsigma_dt(self, sigma):
        return torch.ones_like(sigma)


class _VariancePreserving(GaussianPath):
    r""":math:`\alpha^2 + s^2 = 1`, so :math:`\alpha = 1/\sqrt{1+\sigma^2}` and
    :math:`\dot\sigma = -(1+\sigma^2)\,g/\sigma` with :math:`g = d\log\alpha/dt`."""

    def alpha(self, sigma):
        return torch.rsqrt(1 + sigma * sigma)

    def dsigma_dt(self, sigma):
        # sigma -> 0: -g (1 + sigma^2)/sigma -> inf, as the VP velocity does at t = 0
        return -(1 + sigma * sigma) * self.dlog_alpha_dt(sigma) / sigma


class VPPath(_VariancePreserving):
    r"""Variance-preserving path with linear betas (DDPM in continuous time; Song et al. 2021, Eq. 11,
    App. B): :math:`\beta(t) = \beta_\min + (\beta_\max - \beta_\min)t`,
    :math:`B(t) = \int_0^t\beta = \beta_\min t + \frac12\Delta\beta\, t^2`, :math:`\alpha_t = e^{-B/2}`,
    :math:`\sigma(t) = \sqrt{\mathrm{expm1}(B(t))}` (about 152 at ``t = 1`` with the defaults)."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 <= beta_min < beta_max and math.isfinite(beta_max)):
            raise ValueError(f"need 0 <= beta_min < beta_max < inf, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def _B(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def _sigma(self, t):
        return torch.sqrt(torch.expm1(self._B(t)))

    def _time(self, sigma):
        # B = log1p(sigma^2); the positive root of (dbeta/2) t^2 + beta_min t - B = 0, in the form that
        # does not cancel for small B
        B = torch.log1p(sigma * sigma)
        db = self.beta_max - self.beta_min
        return 2 * B / (self.beta_min + torch.sqrt(self.beta_min ** 2 + 2 * db * B))

    def dlog_alpha_dt(self, sigma):
        t = self._time(sigma)
        return -0.5 * (self.beta_min + (self.beta_max - self.beta_min) * t)

    def __repr__(self):
        return f"VPPath(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class CosinePath(_VariancePreserving):
    r"""Cosine schedule (Nichol & Dhariwal 2021, Eq. 17): :math:`\bar\alpha_t = \alpha_t^2 =
    \cos^2\phi_t/\cos^2\phi_0`, :math:`\phi_t = \frac{\pi}{2}\frac{t+c}{1+c}`; sigma is infinite at
    ``t = 1``. Inverse: :math:`\tan\phi = \sqrt{\sigma^2 + \sin^2\phi_0}/\cos\phi_0`, taken as the
    difference :math:`\phi - \phi_0` (no cancellation at small sigma)."""

    name = "cosine"

    def __init__(self, offset: float = 0.008):
        if not (0 <= offset < 1):
            raise ValueError(f"offset must lie in [0, 1), got {offset}")
        self.offset = float(offset)
        self._phi0 = math.pi / 2 * offset / (1 + offset)

    def _phi(self, t):
        return math.pi / 2 * (t + self.offset) / (1 + self.offset)

    def _sigma(self, t):
        # sigma^2 = cos^2(phi0)/cos^2(phi) - 1 = (sin^2 phi - sin^2 phi0)/cos^2 phi, and
        # sin^2 a - sin^2 b = sin(a - b) sin(a + b): no cancellation near t = 0
        # cos(phi) = sin(pi/2 - phi) = sin(pi/2 (1 - t)/(1 + c)), exact near t = 1 where cos(phi) would cancel
        # and phi - phi0 = pi/2 t/(1 + c) formed from t, not as a difference
        phi = self._phi(t)
        num = torch.sin(math.pi / 2 * t / (1 + self.offset)) * torch.sin(phi + self._phi0)
        return torch.sqrt(num.clamp_min(0)) / torch.sin(math.pi / 2 * (1 - t) / (1 + self.offset))

    def _time(self, sigma):
        # t = (phi - phi0)(1 + c)/(pi/2), with phi - phi0 from the tangent difference formula:
        # tan(phi) - tan(phi0) = sigma^2/((r + sin phi0) cos phi0), r = sqrt(sigma^2 + sin^2 phi0), so that
        # small sigma does not cancel
        sin0, cos0 = math.sin(self._phi0), math.cos(self._phi0)
        r = torch.sqrt(sigma * sigma + sin0 ** 2)
        delta = torch.atan2(sigma * sigma / ((r + sin0) * cos0), 1 + r * sin0 / cos0 ** 2)
        if torch.isinf(sigma).any():
            delta = torch.where(torch.isinf(sigma), torch.full_like(sigma, math.pi / 2 - self._phi0), delta)
        return delta * (1 + self.offset) / (math.pi / 2)

    def dlog_alpha_dt(self, sigma):
        # log alpha = log cos(phi) - log cos(phi0): g = -tan(phi) dphi/dt, and
        # tan(phi) = sqrt(sigma^2 + sin^2 phi0)/cos phi0
        tan_phi = torch.sqrt(sigma * sigma + math.sin(self._phi0) ** 2) / math.cos(self._phi0)
        return -tan_phi * (math.pi / 2) / (1 + self.offset)

    def __repr__(self):
        return f"CosinePath(offset={self.offset:g})"


class FlowMatchingPath(GaussianPath):
    r"""The straight (rectified-flow / conditional optimal-transport) path:
    :math:`x_t = (1-t)x_0 + t\varepsilon`, so :math:`\sigma = t/(1-t)`, :math:`t = \sigma/(1+\sigma)`,
    :math:`\alpha = 1/(1+\sigma)`, :math:`g = -(1+\sigma)`, :math:`\dot\sigma = (1+\sigma)^2`
    (Lipman et al. 2023; Liu et al. 2023). Its velocity is :math:`v = \varepsilon - x_0`."""

    name = "flow_matching"

    def _sigma(self, t):
        return t / (1 - t)

    def _time(self, sigma):
        return torch.where(torch.isinf(sigma), torch.ones_like(sigma), sigma / (1 + sigma))

    def alpha(self, sigma):
        return 1 / (1 + sigma)

    def dlog_alpha_dt(self, sigma):
        return -(1 + sigma)

    def dsigma_dt(self, sigma):
        return (1 + sigma) ** 2


PATHS: dict[str, GaussianPath] = {p.name: p for p in (VEPath(), VPPath(), CosinePath(), FlowMatchingPath())}
"""The registry of Gaussian paths, by name (default parameters)."""


def get_path(path) -> GaussianPath:
    """A :class:`GaussianPath` from itself or a registry name; ``ValueError`` lists the names otherwise."""
    if isinstance(path, GaussianPath):
        return path
    if path in PATHS:
        return PATHS[path]
    raise ValueError(f"unknown path {path!r}; choose one of {sorted(PATHS)} or pass a GaussianPath")


def _check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction


def _work(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def convert_prediction(prediction, *, to: str, x: torch.Tensor, sigma, path) -> torch.Tensor:
    r"""Convert a model's prediction at point ``x`` (path coordinates, ``(batch, ...)``) and noise level
    ``sigma`` from one kind to another: ``"eps"``, ``"x0"`` or ``"velocity"`` (the ``to`` argument;
    the kind given is ``prediction[0]`` when ``prediction`` is a ``(kind, tensor)`` pair).

    Uses :math:`x = \alpha x_0 + s\varepsilon` and Eq. (3). Sigma-dependent factors in float64, the
    result in the dtype of the prediction (float32 at least for the arithmetic). At ``sigma = 0``
    the noise is undefined: converting to ``"eps"`` or from ``"eps"``/``"velocity"`` raises
    ``ValueError``, except ``"x0"`` from ``"velocity"`` for flow matching, which is finite.
    """
    kind, value = prediction
    _check_prediction(kind)
    _check_prediction(to)
    path = get_path(path)
    if kind == to:
        return value
    s64 = sigma_like(sigma, x, dtype=_exact_dtype(x.device))
    alpha, g = path.alpha(s64), path.dlog_alpha_dt(s64)
    work = _work(torch.promote_types(value.dtype, x.dtype))
    xw, vw = x.to(work), value.to(work)
    c = lambda t: t.to(work)  # noqa: E731  (cast one float64 coefficient)
    # to the clean point first: x0 = (x - s eps)/alpha, or from the velocity through Eq. (3)
    if kind == "x0":
        x0 = vw
    elif kind == "eps":
        if (s64 == 0).any():
            raise ValueError("the noise prediction does not determine x0 at sigma = 0")
        x0 = c(1 / alpha) * xw - c(s64) * vw
    else:  # velocity: eps = (v - g x)/(alpha dsigma); x0 = x/alpha - sigma eps
        k = s64 / (alpha * path.dsigma_dt(s64))  # sigma/(alpha dsigma): finite at sigma = 0 for flow matching
        x0 = c(1 / alpha + k * g) * xw - c(k) * vw
    if to == "x0":
        return x0.to(value.dtype)
    if (s64 == 0).any():
        raise ValueError(f"the {to} prediction is undefined at sigma = 0")
    eps = (c(1 / alpha) * xw - x0) / c(s64)
    if to == "eps":
        return eps.to(value.dtype)
    return (c(g) * xw + c(alpha * path.dsigma_dt(s64)) * eps).to(value.dtype)


def _time_input(t64: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The model's time as a ``(batch,)`` tensor in ``x``'s dtype (float32 for half precision)."""
    return t64.reshape(x.shape[0]).to(_work(x.dtype))


class PathDenoiser:
    r"""A model of a Gaussian path, seen as the book's denoiser :math:`D(y;\sigma)` (Eq. 2).

    ``model(x, t) -> prediction`` takes points ``x`` of shape ``(batch, ...)`` in the path's
    coordinates and times ``t`` of shape ``(batch,)`` (float32, or float64 for float64 ``x``) and
    returns a tensor of ``x``'s shape: the noise (``prediction="eps"``), the clean point (``"x0"``) or
    the velocity :math:`dx_t/dt` (``"velocity"``). The wrapper evaluates it at
    :math:`x = \alpha(\sigma)\, y` and :math:`t = t(\sigma)` and returns :math:`\hat x_0`, in the
    dtype of the model's output. Raises ``ValueError`` for an unknown prediction or path, a sigma
    outside the path's range, and (``"eps"``) at ``sigma = 0``, where the noise cannot be undone.
    """

    def __init__(self, model, path, prediction: str):
        self.model, self.path, self.prediction = model, get_path(path), _check_prediction(prediction)

    def __call__(self, y: torch.Tensor, sigma) -> torch.Tensor:
        s64 = sigma_like(sigma, y, dtype=_exact_dtype(y.device))
        t64 = self.path.time(s64)
        x = (self.path.alpha(s64) * y.to(s64.dtype)).to(y.dtype)
        out = self.model(x, _time_input(t64, y))
        return convert_prediction((self.prediction, out), to="x0", x=x, sigma=s64.flatten(), path=self.path)

    def __repr__(self):
        return f"PathDenoiser({self.path!r}, prediction={self.prediction!r})"


class PathModel:
    r"""The book's denoiser seen as a model of a Gaussian path: ``PathModel(D, path, prediction)(x, t)``
    returns the noise, the clean point or the velocity at path coordinates ``x`` (``(batch, ...)``) and
    times ``t`` (a number or ``(batch,)``), computed from :math:`D(x/\alpha_t;\ \sigma(t))` (the inverse of
    :class:`PathDenoiser`). Output in the denoiser's dtype. Raises ``ValueError`` as
    :meth:`GaussianPath.sigma` does, and at ``t = 0`` for ``"eps"``/``"velocity"``.
    """

    def __init__(self, denoiser, path, prediction: str):
        self.denoiser, self.path, self.prediction = denoiser, get_path(path), _check_prediction(prediction)

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        s64 = self.path.sigma(sigma_like(t, x, dtype=_exact_dtype(x.device)))
        y = (x.to(s64.dtype) / self.path.alpha(s64)).to(x.dtype)
        x0 = self.denoiser(y, s64.flatten())
        return convert_prediction(("x0", x0), to=self.prediction, x=x, sigma=s64.flatten(), path=self.path)

    def __repr__(self):
        return f"PathModel({self.path!r}, prediction={self.prediction!r})"


SAMPLE_IN_TIME_METHODS = ("euler_t", "heun_t", "ddim")
"""Integrators of :func:`sample_in_time`: Euler and Heun on the path's ODE dx/dt = v in its own time t,
and DDIM (the step that is exact when the predicted x0 is frozen over the step)."""


def sample_in_time(model, path, prediction: str, ts, x: torch.Tensor, *, method: str = "euler_t",
                   callback=None) -> torch.Tensor:
    r"""Integrate the probability-flow ODE of a Gaussian path *in the path's own time*
    :math:`dx/dt = \hat v(x, t)` from ``ts[0]`` down to ``ts[-1]`` (a decreasing 1-D grid of times).

    ``method``: ``"euler_t"`` (Euler in t, :math:`x' = x + (t'-t)\hat v`), ``"heun_t"`` (Heun in t: Euler then the trapezoid
    with the slope at the Euler point; 2 evaluations a step) or ``"ddim"``
    (:math:`x' = \alpha_{t'}\hat x_0 + s_{t'}\hat\varepsilon`, Song, Meng & Ermon 2021, Eq. 12 with
    :math:`\eta = 0`). The model is ``model(x, t)`` as in :class:`PathDenoiser`. A step to a time with
    sigma = 0 is an Euler step for ``"heun_t"`` too (the VP velocity is singular there); DDIM's step to
    sigma = 0 outputs :math:`\hat x_0`, and so does Euler's in flow-matching time. A velocity model can
    start at flow matching's ``t = 1`` (sigma infinite); the other predictions cannot be converted there
    and raise ``ValueError``. ``callback`` gets ``{"i", "t", "t_next", "x"}`` before each step.

    Under :math:`y = x/\alpha`, ``"ddim"`` is the book's Euler sampler in sigma on the VE wrapper,
    for every path; ``"euler_t"`` is that too for flow matching, whose :math:`\alpha_t, s_t` are linear
    in :math:`t`, and not for VP (chapter 11). Returns a tensor like ``x``. Raises ``ValueError`` for
    an unknown method, a grid that is not strictly decreasing, or times outside the path's range.
    """
    path = get_path(path)
    _check_prediction(prediction)
    if method not in SAMPLE_IN_TIME_METHODS:
        raise ValueError(f"method must be one of {SAMPLE_IN_TIME_METHODS}, got {method!r}")
    ts = _f64(ts, x.device).flatten()
    if ts.numel() < 2 or not (ts[1:] < ts[:-1]).all():
        raise ValueError("ts must be a strictly decreasing grid of at least 2 times")
    sig = path.sigma(ts)
    dtype, work = x.dtype, _work(x.dtype)

    def predict(xc, i):
        t_in = torch.full((xc.shape[0],), float(ts[i]), dtype=work, device=xc.device)
        return model(xc.to(dtype), t_in)

    def velocity(xc, i):
        return convert_prediction((prediction, predict(xc, i)), to="velocity", x=xc, sigma=float(sig[i]),
                                  path=path).to(work)

    x = x.to(work)
    for i in range(len(ts) - 1):
        if callback is not None:
            callback({"i": i, "t": float(ts[i]), "t_next": float(ts[i + 1]), "x": x})
        h = float(ts[i + 1] - ts[i])
        if method == "ddim":
            out = predict(x, i)
            x0 = convert_prediction((prediction, out), to="x0", x=x, sigma=float(sig[i]), path=path).to(work)
            a_i = float(path.alpha(sig[i]))
            a_n = float(path.alpha(sig[i + 1]))
            # x' = alpha' x0 + s' eps with eps = (x/alpha - x0)/sigma: x' = alpha' [x0 + sigma' (x/alpha - x0)/sigma]
            r = float(sig[i + 1] / sig[i])
            x = a_n * (x0 + r * (x / a_i - x0))
            continue
        v = velocity(x, i)
        if method == "euler_t" or float(sig[i + 1]) == 0:  # no corrector at sigma = 0, where VP's velocity is singular
            x = x + h * v
        else:
            x_euler = x + h * v
            x = x + h / 2 * (v + velocity(x_euler, i + 1))
    return x.to(dtype)
