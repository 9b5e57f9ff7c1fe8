"""Drawing functions behind the book's figures and widgets, one module per kind of figure.

Layout (every public name is re-exported here, so ``dg.plotting.draw_xxx`` is the way to call it):

* :mod:`~diffusion_geometry.plotting.sigma_curves` -- quantities against the noise level sigma (norms,
  chord statistics, cosines, distance to the end point, Frechet distance per step, score deviation);
* :mod:`~diffusion_geometry.plotting.nfe_curves` -- quantities against NFE, and schedules (error and
  Frechet distance against NFE, schedule comparison, noise levels per step, the GITS programme);
* :mod:`~diffusion_geometry.plotting.fields_2d` -- the line and the plane (noised marginal and score,
  denoiser fields, 2-D trajectories and steps, basins of attraction, point clouds);
* :mod:`~diffusion_geometry.plotting.trajectory_shape` -- how straight and low-dimensional trajectories
  are (chord deviation against length, per-trajectory PCA, the boomerang in 3-D and 2-D);
* :mod:`~diffusion_geometry.plotting.images` -- image display helpers (:func:`to_unit`,
  :func:`image_grid`, :func:`log_spaced_steps`, :func:`trajectory_rows`) and image figures;
* :mod:`~diffusion_geometry.plotting._common` -- the palette :data:`OKABE_ITO`, :func:`new_figure`, and
  the one input coercion (``as_array``) and one sigma check (``check_sigma``) every module uses.

THE RULE: a drawing function draws what it is given. It may evaluate a closed form that a widget needs
to redraw cheaply (a mixture's density or score, a denoiser on a grid, a shortest path on a stored cost
matrix), but it never computes a quantity the book's prose claims: such a quantity is computed by a
package function in its concept module (``geometry``, ``meanshift``, ``deviation``, ...) and passed in
(e.g. :func:`diffusion_geometry.meanshift.basins` -> :func:`draw_basins`).

Conventions: ``draw_something(*, fig=None, **params) -> Figure``, keyword-only. With ``fig`` given
(a :class:`~matplotlib.figure.Figure`, or a ``SubFigure`` to sit beside a chapter's own panels) the
function clears it and draws into it, so :func:`diffusion_geometry.widgets.animate` and
:func:`~diffusion_geometry.widgets.interact` can reuse one figure. Arrays may be tensors (any real
dtype), numpy arrays or lists; bad input raises ``TypeError``/``ValueError`` naming the argument.
"FD" means Frechet distance. Colours: the colour-blind-safe Okabe-Ito palette.
"""
from __future__ import annotations

from ._common import OKABE_ITO, new_figure
from .fields_2d import (
    draw_basins,
    draw_denoiser,
    draw_denoiser_fields,
    draw_euler_step_2d,
    draw_finite_difference_step,
    draw_marginal_1d,
    draw_samples_vs_training,
    draw_trajectories_2d,
)
from .images import (
    draw_image_rows,
    draw_latent_interpolation,
    draw_nn_distances,
    draw_samples_at_nfe,
    image_grid,
    log_spaced_steps,
    to_unit,
    trajectory_rows,
)
from .nfe_curves import draw_error_vs_nfe, draw_fd_vs_nfe, draw_gits, draw_schedule_comparison, draw_schedules
from .sigma_curves import (
    draw_chord_statistics,
    draw_cosine_to_end,
    draw_distance_to_end,
    draw_fd_per_step,
    draw_norm_shell,
    draw_norms_vs_sigma,
    draw_score_deviation,
)
from .trajectory_shape import (
    draw_boomerang,
    draw_boomerang_profiles,
    draw_chord_vs_length,
    draw_trajectory_pca,
    draw_trajectory_step,
)

from . import fields_2d, images, nfe_curves, sigma_curves, trajectory_shape  # noqa: E402

__all__ = ["OKABE_ITO", "new_figure"]
for _module in (sigma_curves, nfe_curves, fields_2d, trajectory_shape, images):
    __all__ += _module.__all__
del _module
