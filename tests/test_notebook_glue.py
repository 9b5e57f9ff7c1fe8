"""dg.notebook.glue stores NumPy scalars and one-element tensors as the Python numbers they hold, so the
book's `{glue:text}` formats (`:.2f`) can format them (NumPy 2's repr, `np.float64(0.93)`, cannot)."""
import numpy as np
import pytest
import torch

from diffusion_geometry import notebook


@pytest.mark.parametrize("value,expected", [(np.float64(0.5), 0.5), (np.float32(0.25), 0.25), (np.int64(3), 3),
                                            (torch.tensor(1.5), 1.5), (torch.tensor([2.0]), 2.0), (0.75, 0.75)])
def test_numbers_are_glued_as_python_numbers(monkeypatch, value, expected):
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, variable, display=True: seen.update({name: variable}))
    notebook.glue("x", value, display=False)
    assert type(seen["x"]) in (float, int) and seen["x"] == expected
    assert f"{seen['x']!r}" == repr(expected)  # the text myst-nb formats


def test_other_values_pass_through(monkeypatch):
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, variable, display=True: seen.update({name: variable}))
    arr = np.arange(3)
    notebook.glue("a", arr, display=False)
    notebook.glue("s", "text", display=False)
    assert seen["a"] is arr and seen["s"] == "text"
    with pytest.raises(TypeError):
        notebook.glue(3, 1.0)
