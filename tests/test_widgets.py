"""The live widget wrapper: it redraws in place, and headless execution never takes the path that hung builds.

A build hung (the kernel idle, the client waiting for the whole cell timeout) when a widget cell wrote
into an ``ipywidgets.Output`` with ``with out: display(...)``: nbclient, which myst-nb and jupyter-book
execute chapters with, mimics the Output widget and answers every output routed into it with a
``comm_msg`` sent on the shell socket while it awaits the cell's ``execute_reply`` on that socket;
that send can swallow pyzmq's edge-triggered wake-up for the reply. ``dg.widgets.interact`` sets the
Output widget's ``outputs`` state instead, so the mimic never sends. The test counts those sends.
"""
import matplotlib
import nbformat
import pytest

import diffusion_geometry as dg

matplotlib.use("Agg")


def _draw(*, fig=None, a=1.0):
    import matplotlib.pyplot as plt

    fig = fig or plt.figure()
    fig.clear()
    fig.add_subplot().plot([0, 1], [0, a])
    return fig


def test_interact_shows_one_figure_and_redraws_in_place(close_figures):
    ipywidgets = pytest.importorskip("ipywidgets")
    box = dg.widgets.interact(_draw, a=(0.0, 2.0))
    ui, out = box.children
    assert isinstance(out, ipywidgets.Output)
    assert len(out.outputs) == 1 and out.outputs[0]["output_type"] == "display_data"
    slider = ui.children[0]
    slider.value = 0.5  # what a reader's drag does: interactive calls update with the new value
    assert len(out.outputs) == 1, "a redraw must replace the figure, not stack a second one"


NB_HEAD = "import matplotlib\nmatplotlib.use('Agg')\nimport ipywidgets\nimport diffusion_geometry as dg\n" \
          "from IPython.display import display\n" \
          "def draw(*, fig=None, a=1.0):\n    import matplotlib.pyplot as plt\n" \
          "    fig = fig or plt.figure(); fig.clear(); fig.add_subplot().plot([0, 1], [0, a]); return fig\n"
PACKAGE_CELL = "dg.widgets.interact(draw, a=(0.0, 2.0))"
CONTEXT_CELL = "out = ipywidgets.Output()\nwith out:\n    display(draw())\nout"


def _shell_sends_of_output_mimic(cell_source: str, n_cells: int = 3) -> int:
    """Execute a notebook headless with nbclient and count the Output-widget mimic's shell sends."""
    nbclient = pytest.importorskip("nbclient")
    from nbclient import output_widget

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NB_HEAD)]
                                  + [nbformat.v4.new_code_cell(cell_source) for _ in range(n_cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    sends = []
    original = output_widget.OutputWidget.sync_state

    def counting_sync_state(self):
        sends.append(self.comm_id)
        return original(self)

    output_widget.OutputWidget.sync_state = counting_sync_state
    try:
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        output_widget.OutputWidget.sync_state = original
    return len(sends)


def test_headless_execution_of_interact_sends_nothing_on_the_shell_socket():
    assert _shell_sends_of_output_mimic(PACKAGE_CELL) == 0


def test_the_shell_send_count_sees_the_hanging_pattern():
    """The count above can fail: the pattern that hung builds makes the mimic send once per output."""
    assert _shell_sends_of_output_mimic(CONTEXT_CELL) >= 3


# A control's first value must be on its own grid: a browser snaps it and redraws at once otherwise
# (tests/test_browser.py found chapter 2's sigma = 0.5 redrawn at 0.501 with nothing touched).
def _draw_v(*, fig=None, v=0.0):
    import matplotlib.pyplot as plt

    fig = fig or plt.figure()
    fig.clf()
    fig.suptitle(f"{v}")
    return fig


@pytest.mark.parametrize("make", [
    lambda w: w.FloatLogSlider(value=0.5, base=10, min=-2, max=1, step=0.05),  # exponent -0.30103
    lambda w: w.FloatLogSlider(value=3.0, base=2, min=0, max=3, step=0.5),     # exponent 1.585
    lambda w: w.FloatSlider(value=0.33, min=0.0, max=1.0, step=0.1),
    lambda w: w.IntSlider(value=5, min=0, max=10, step=2),
], ids=["log10", "log2", "float", "int"])
def test_interact_refuses_a_control_whose_value_is_off_its_grid(make, close_figures):
    import ipywidgets

    with pytest.raises(ValueError, match="not on its grid"):
        dg.widgets.interact(_draw_v, v=make(ipywidgets))


@pytest.mark.parametrize("make", [
    lambda w: w.FloatLogSlider(value=0.1, base=10, min=-2, max=1, step=0.05),
    lambda w: w.FloatLogSlider(value=4.0, base=2, min=0, max=3, step=0.5),
    lambda w: w.FloatSlider(value=1.15, min=0.8, max=1.5, step=0.05),
    lambda w: w.IntSlider(value=6, min=0, max=10, step=2),
    lambda w: w.SelectionSlider(options=[0.1, 0.3], value=0.3),
    lambda w: (0.0, 1.0, 0.1),  # an ipywidgets abbreviation: a FloatSlider at the middle, 0.5
], ids=["log10", "log2", "float", "int", "selection", "abbreviation"])
def test_interact_accepts_controls_on_their_grid(make, close_figures):
    import ipywidgets

    dg.widgets.interact(_draw_v, v=make(ipywidgets))


def test_log_slider_holds_round_values_and_its_value_exactly():
    s = dg.widgets.log_slider(0.5, 0.01, 20)
    values = [v for _, v in s.options]
    assert s.value == 0.5 and s.label == "0.5"
    assert values[0] == 0.01 and values[-1] == 20.0 and len(values) == 3 * 10 + 4  # 3 decades, 1 1.2 1.5 2
    assert values == sorted(values)
    ratios = [b / a for a, b in zip(values, values[1:])]
    assert max(ratios) <= 1.34 and min(ratios) >= 1.19  # about evenly spaced in log, 10 per decade
    assert [label for label, _ in s.options][:4] == ["0.01", "0.012", "0.015", "0.02"]


@pytest.mark.parametrize("args", [(0.45, 0.01, 20), (0.5, 1.0, 20), (0.5, 0.01, 0.2), (0.5, 0.0, 20)])
def test_log_slider_rejects_a_value_it_cannot_hold(args):
    with pytest.raises(ValueError, match="log_slider"):
        dg.widgets.log_slider(*args)
