"""The shared pieces of diffusion_geometry.plotting: the one coercion helper, the one sigma check, figure
reuse, and the conventions every drawing function follows (keyword-only, ``fig=None``, no ``ax=``)."""
import inspect
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import diffusion_geometry as dg  # noqa: E402
from diffusion_geometry import plotting  # noqa: E402
from diffusion_geometry.plotting import _common  # noqa: E402
from diffusion_geometry.plotting._common import as_array, check_dict, check_sigma, new_figure  # noqa: E402


pytestmark = pytest.mark.usefixtures("close_figures")  # tests/conftest.py

# values exactly representable in float16 and bfloat16 (8 significant bits), so widening is exact
EXACT = [[0.5, -1.25, 3.0], [1024.0, -0.0078125, 96.0]]


# --- as_array ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64])
def test_as_array_widens_every_tensor_dtype_exactly(dtype):
    t = torch.tensor(EXACT, dtype=torch.float64).to(dtype) if dtype.is_floating_point else torch.tensor([[1, -2, 3]])
    a = as_array(t, "t", 2)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == tuple(t.shape)
    want = [[float(v) for v in row] for row in t.tolist()]  # python floats of the stored values
    assert a.tolist() == want


def test_as_array_accepts_arrays_lists_and_grad_tensors():
    assert as_array(np.array(EXACT, dtype=np.float32), "a").tolist() == EXACT
    assert as_array(EXACT, "a", 2, 3).tolist() == EXACT
    assert as_array([1, 2], "a", 1).dtype == np.float64
    w = torch.tensor(EXACT, requires_grad=True)
    assert as_array(w * 2, "w").tolist() == [[2 * v for v in row] for row in EXACT]


def test_as_array_returns_a_copy():
    t = torch.zeros(3, dtype=torch.float64)
    a = as_array(t, "t")
    a[0] = 5.0
    assert t[0] == 0.0
    arr = np.zeros(3)
    as_array(arr, "arr")[0] = 5.0
    assert arr[0] == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", ["tensor", "array", "list", "float16"])
def test_as_array_rejects_nan_and_inf_by_name(bad, kind):
    v = [1.0, bad]
    v = {"tensor": torch.tensor(v), "array": np.array(v), "list": v, "float16": torch.tensor(v, dtype=torch.float16)}[kind]
    with pytest.raises(ValueError, match="curve contains NaN or inf"):
        as_array(v, "curve")
    assert np.isinf(as_array(torch.tensor([1.0, float("inf")]), "cost", finite=False)).sum() == 1


@pytest.mark.parametrize("v, ndim, last, match", [
    (torch.zeros(3, 2), 3, None, r"x must be a non-empty 3-D array, got shape \(3, 2\)"),
    (torch.zeros(3, 2), 2, 3, r"x must be a non-empty 2-D array with last axis 3"),
    (np.zeros(4), None, 2, "last axis 2"),
    (torch.zeros(0, 2), 2, 2, "non-empty"),
    ([], None, None, "non-empty"),
    (5.0, None, 1, "last axis 1"),
])
def test_as_array_rejects_wrong_shapes_by_name(v, ndim, last, match):
    with pytest.raises(ValueError, match=match):
        as_array(v, "x", ndim, last)


@pytest.mark.parametrize("v", [object(), "abc", [[1.0, 2.0], [3.0]], {"a": 1.0}, torch.zeros(2, dtype=torch.complex64)])
def test_as_array_rejects_non_numbers_with_a_type_error(v):
    with pytest.raises(TypeError, match="x must be"):
        as_array(v, "x")


# --- check_sigma, check_dict, new_figure ---------------------------------------------------------------


def test_check_sigma():
    assert check_sigma(0) == 0.0 and check_sigma(torch.tensor(0.5)) == 0.5 and check_sigma(np.float32(2.0)) == 2.0
    assert isinstance(check_sigma(1), float)
    for bad, err in [(-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
                     ("1", TypeError), (True, TypeError), (None, TypeError), ([1.0, 2.0], TypeError)]:
        with pytest.raises(err, match="sigma"):
            check_sigma(bad)
    with pytest.raises(ValueError, match="positive"):
        check_sigma(0.0, positive=True)
    with pytest.raises(ValueError, match="bandwidth must be finite"):
        check_sigma(-1.0, name="bandwidth")


def test_check_dict():
    d = {"a": 1}
    assert check_dict(d, "curves") is d
    for bad in ({}, [("a", 1)], None):
        with pytest.raises(ValueError, match="curves must be a non-empty dict of label -> values"):
            check_dict(bad, "curves")


def test_new_figure_reuses_figures_and_subfigures():
    fig = plt.figure()
    fig.add_subplot(1, 1, 1)
    assert new_figure(fig) is fig and not fig.axes
    assert new_figure(None, figsize=(3.0, 2.0)).get_size_inches().tolist() == [3.0, 2.0]
    parent = plt.figure(layout="constrained")
    left, right = parent.subfigures(1, 2)
    rows = [{"method": "Euler", "schedule": "rho=7", "nfe": n, "error": 1.0 / n} for n in (2, 4)]
    assert plotting.draw_error_vs_nfe(fig=right, rows=rows) is right
    assert len(right.axes) == 1 and len(parent.axes) == 1
    parent.canvas.draw()
    with pytest.raises(TypeError, match="Figure or SubFigure"):
        new_figure(plt.gca())


# --- the package's conventions ------------------------------------------------------------------------


def _draw_functions():
    return [getattr(plotting, n) for n in plotting.__all__ if n.startswith("draw_")]


def test_every_drawing_function_is_keyword_only_with_fig_none():
    fns = _draw_functions()
    defined = set()  # every top-level draw_ function of the subpackage's modules is exported
    for path in Path(plotting.__file__).parent.glob("*.py"):
        defined |= set(re.findall(r"^def (draw_\w+)\(", path.read_text(), re.M))
    assert {f.__name__ for f in fns} == defined and len(fns) == 29
    for f in fns:
        params = list(inspect.signature(f).parameters.values())
        assert all(p.kind is p.KEYWORD_ONLY for p in params), f.__name__
        assert params[0].name == "fig" and params[0].default is None, f.__name__
        assert "ax" not in inspect.signature(f).parameters, f.__name__
        assert f.__doc__ and len(f.__doc__.split()) > 15, f.__name__


def test_the_package_re_exports_every_public_name_once():
    mods = [plotting.sigma_curves, plotting.nfe_curves, plotting.fields_2d, plotting.trajectory_shape,
            plotting.images]
    names = [n for m in mods for n in m.__all__]
    assert len(names) == len(set(names))
    assert set(plotting.__all__) == set(names) | {"OKABE_ITO", "new_figure"}
    for m in mods:
        for n in m.__all__:
            assert getattr(plotting, n) is getattr(m, n)
    assert plotting.OKABE_ITO is _common.OKABE_ITO and len(set(plotting.OKABE_ITO)) == 8
    assert dg.plotting.draw_finite_difference_step is plotting.fields_2d.draw_finite_difference_step
    assert not hasattr(plotting, "draw_fd_step")  # "FD" is the Frechet distance


def test_the_package_docstring_states_the_rule():
    doc = plotting.__doc__
    assert "THE RULE" in doc and "never computes" in doc
    for m in ("sigma_curves", "nfe_curves", "fields_2d", "trajectory_shape", "images", "_common"):
        assert m in doc
