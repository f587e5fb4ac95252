"""Figure builders return the expected traces, colours and axis titles (no pixels)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from morl_core import colors, plots
from morl_core import relations as R

METHODS = ["morlhf", "dynaopt", "soups", "mod", "ric", "panacea", "emorl", "metapolicy"]
OBJECTIVES = ["sentiment", "nontoxic", "readability", "brevity", "diversity", "relevance"]
OBJECTIVES += ["formality", "synth_a", "synth_b"]

# --- colour registry -------------------------------------------------------------------------


def test_every_known_name_has_its_own_colour():
    method_colours = [plots.method_color(m) for m in METHODS]
    objective_colours = [plots.objective_color(o) for o in OBJECTIVES]
    assert len(set(method_colours)) == len(METHODS)
    assert len(set(objective_colours)) == len(OBJECTIVES)
    assert plots.method_color("EMORL") == plots.method_color(" emorl ") == "#E377C2"
    assert colors.DOMINATED_COLOR not in method_colours


def test_an_objective_with_settings_keeps_its_base_colour():
    assert plots.objective_color("brevity(target_words=20)") == plots.objective_color("brevity")
    assert plots.objective_color("brevity(target_words=20)") not in colors.FALLBACK_COLORS


def test_fallback_colours_are_deterministic():
    # SHA-256 of the name, so the value is the same in every process (no PYTHONHASHSEED).
    assert plots.method_color("my_new_method") == plots.method_color("My_New_Method")
    assert plots.method_color("my_new_method") in colors.FALLBACK_COLORS
    script = "from morl_core.colors import method_color; print(method_color('my_new_method'))"
    other = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert other.stdout.strip() == plots.method_color("my_new_method")


def test_register_is_loud(monkeypatch):
    monkeypatch.setattr(colors, "METHOD_COLORS", dict(colors.METHOD_COLORS))
    colors.register_method_color("pcgrad", "#123456")
    assert plots.method_color("PCGrad") == "#123456"
    with pytest.raises(ValueError, match="already has colour"):
        colors.register_method_color("pcgrad", "#654321")
    with pytest.raises(ValueError, match="hex colour"):
        colors.register_method_color("other", "red")
    with pytest.raises(ValueError, match="non-empty string"):
        colors.register_objective_color("", "#123456")


# --- fronts ----------------------------------------------------------------------------------

POINTS_2D = np.array(
    [[0.9, 0.1], [0.1, 0.9], [0.5, 0.5], [0.3, 0.3], [0.2, 0.8], [0.4, 0.4], [np.nan, 1.0]]
)
METHOD_PER_POINT = ["soups", "soups", "soups", "soups", "emorl", "emorl", "emorl"]


def test_front_2d_traces_and_axes():
    fig = plots.front_2d_figure(
        POINTS_2D,
        ["sentiment", "brevity"],
        methods=METHOD_PER_POINT,
        runs=[f"run{i}" for i in range(7)],
        preferences=np.full((7, 2), 0.5),
        title="front",
    )
    assert [t.name for t in fig.data] == ["soups front", "soups dominated", "emorl front"]
    assert fig.layout.xaxis.title.text == "sentiment"
    assert fig.layout.yaxis.title.text == "brevity"
    front, dominated, emorl = fig.data
    assert front.mode == "lines+markers" and front.line.color == plots.method_color("soups")
    assert list(front.x) == [0.1, 0.5, 0.9]  # sorted along x so the line reads left to right
    assert list(front.customdata) == [1, 2, 0]  # input row indices, for click-through
    assert dominated.marker.color == colors.DOMINATED_COLOR and list(dominated.customdata) == [3]
    assert list(emorl.customdata) == [4, 5]  # the NaN row (6) is not drawn
    assert "run: run1" in front.hovertext[0] and "w = (0.50, 0.50)" in front.hovertext[0]


def test_front_2d_single_method_without_extras():
    fig = plots.front_2d_figure([[1, 0], [0, 1]], ["synth_a", "synth_b"], methods="ric")
    assert [t.name for t in fig.data] == ["ric front"]
    assert fig.data[0].hovertext[0].startswith("method: ric<br>synth_a: 0<br>synth_b: 1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": np.zeros((3, 3))}, "points: expected 2 columns"),
        ({"objective_names": ["a"]}, "objective_names: expected 2 names"),
        ({"methods": ["a", "b"]}, r"methods: expected one entry per point \(3\)"),
        ({"preferences": np.ones((2, 2))}, "preferences: expected 3 rows"),
    ],
)
def test_front_2d_bad_input(kwargs, message):
    args = {"points": np.zeros((3, 2)), "objective_names": ["a", "b"]} | kwargs
    with pytest.raises(ValueError, match=message):
        plots.front_2d_figure(**args)


def test_front_3d():
    pts = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.4, 0]])
    fig = plots.front_3d_figure(pts, ["sentiment", "brevity", "nontoxic"], methods="mod")
    assert [t.name for t in fig.data] == ["mod front", "mod dominated"]
    assert all(isinstance(t, go.Scatter3d) for t in fig.data)
    assert fig.layout.scene.xaxis.title.text == "sentiment"
    assert fig.layout.scene.zaxis.title.text == "nontoxic"
    assert list(fig.data[1].customdata) == [4]


# --- k > 3 -----------------------------------------------------------------------------------


def test_parallel_coordinates():
    pts = np.random.default_rng(0).random((6, 5))
    names = OBJECTIVES[:5]
    fig = plots.parallel_coordinates_figure(pts, names, methods=["mod"] * 3 + ["ric"] * 3)
    (trace,) = fig.data
    assert isinstance(trace, go.Parcoords)
    assert [d.label for d in trace.dimensions] == names
    assert list(trace.line.color) == [0, 0, 0, 1, 1, 1]
    assert plots.method_color("ric") in fig.layout.title.text


# --- relations -------------------------------------------------------------------------------


def test_correlation_heatmap():
    matrix = np.array([[1.0, -0.5, np.nan], [-0.5, 1.0, 0.25], [np.nan, 0.25, 1.0]])
    names = ["sentiment", "brevity", "readability"]
    fig = plots.correlation_heatmap_figure(matrix, names, lower=matrix - 0.1, upper=matrix + 0.1)
    (trace,) = fig.data
    assert isinstance(trace, go.Heatmap)
    assert trace.zmid == 0 and trace.zmin == -1 and trace.zmax == 1
    assert trace.texttemplate == "%{text}"
    assert list(trace.text[0]) == ["1.00", "-0.50", "n/a"]  # numbers on the cells
    assert "CI [-0.60, -0.40]" in trace.hovertext[0][1]
    assert list(trace.x) == names and fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.xaxis.title.text == "objective"
    with pytest.raises(ValueError, match="square"):
        plots.correlation_heatmap_figure(np.ones((2, 3)), names)
    with pytest.raises(ValueError, match="both confidence bounds"):
        plots.correlation_heatmap_figure(matrix, names, lower=matrix)


def test_dependency_graph_from_relations():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    rewards = np.column_stack([a, -a + 0.5 * rng.normal(size=500), rng.normal(size=500)])
    names = ["sentiment", "brevity", "diversity"]
    edges = R.dependency_graph(rewards, names)
    fig = plots.dependency_graph_figure(edges, names, title="graph")
    assert len(fig.data) == len(edges) + 1 == 2
    assert fig.data[0].line.color == colors.NEGATIVE_COLOR  # sentiment-brevity trade-off
    nodes = fig.data[-1]
    assert list(nodes.text) == names
    assert list(nodes.marker.color) == [plots.objective_color(n) for n in names]
    tuples = plots.dependency_graph_figure([("sentiment", "diversity", 0.4)], names)
    assert tuples.data[0].line.color == colors.POSITIVE_COLOR
    with pytest.raises(ValueError, match="expected objectives from"):
        plots.dependency_graph_figure([("sentiment", "nope", 0.4)], names)


def test_hypervolume_curve():
    curves = {
        "emorl seed 0": ([0, 10, 20], [0.1, 0.3, 0.4]),
        "emorl seed 1": ([0, 10, 20], [0.1, 0.2, 0.5]),
        "soups": ([0, 10], [0.2, 0.25]),
    }
    methods = {"emorl seed 0": "emorl", "emorl seed 1": "emorl"}
    fig = plots.hypervolume_curve_figure(curves, methods=methods, ref=[-0.1, -0.1])
    assert [t.name for t in fig.data] == list(curves)
    assert fig.data[0].line.color == fig.data[1].line.color == plots.method_color("emorl")
    assert fig.data[0].line.dash != fig.data[1].line.dash
    assert fig.data[2].line.color == plots.method_color("soups")
    assert fig.layout.xaxis.title.text == "training step"
    assert fig.layout.yaxis.title.text == "hypervolume (ref = (-0.1, -0.1))"
    with pytest.raises(ValueError, match=r"hypervolume: expected shape \(2,\)"):
        plots.hypervolume_curve_figure({"x": ([0, 1], [0.1, 0.2, 0.3])})


# --- layering --------------------------------------------------------------------------------


def test_numeric_core_never_imports_streamlit():
    modules = ["pareto", "weights", "scalarize", "relations", "plots", "colors", "array_checks"]
    script = "import sys\n" + "".join(f"import morl_core.{m}\n" for m in modules)
    script += "assert 'streamlit' not in sys.modules, 'streamlit imported'\n"
    subprocess.run([sys.executable, "-c", script], check=True)


def test_preference_posterior_figure_for_two_three_and_more_objectives():
    from morl_core import elicit

    two = elicit.prior(2).update([1.0, 0.0], [0.0, 1.0], chose_a=True)
    e = two.estimate()
    fig = plots.preference_posterior_figure(
        two.particles, two.probabilities, ["a", "b"], e.mean, e.lower, e.upper, truth=[0.7, 0.3]
    )
    assert fig.data[0].type == "scatter" and len(fig.data[0].x) == len(two.particles)
    assert any("estimate" in (a.text or "") for a in fig.layout.annotations)
    assert "weight on a" in fig.layout.xaxis.title.text
    three = elicit.prior(3)
    fig = plots.preference_posterior_figure(
        three.particles, three.probabilities, ["a", "b", "c"], three.estimate().mean
    )
    assert [t.type for t in fig.data] == ["scatterternary", "scatterternary"]
    four = elicit.prior(4, rng=np.random.default_rng(0), particles=200)
    e = four.estimate()
    fig = plots.preference_posterior_figure(
        four.particles, four.probabilities, list("abcd"), e.mean, e.lower, e.upper
    )
    assert fig.data[0].type == "bar" and len(fig.data[0].error_y.array) == 4


def test_zoomed_overlay_fits_the_data_and_notes_the_reference_point():
    from morl_core.app import figures

    series = [
        {"label": "soups · demo", "method": "soups", "source": "demo", "offset": 0,
         "points": [[0.6, 0.7], [0.7, 0.65], [0.65, 0.6]]},
        {"label": "soups · run 1", "method": "soups", "source": "run", "offset": 3,
         "points": [[0.62, 0.71], [0.72, 0.66]]},
    ]  # fmt: skip
    fig = figures.overlay_fronts_figure(series, ["a", "b"], ref=[-0.1, -0.1], zoom=True)
    assert 0.5 < fig.layout.xaxis.range[0] < 0.6 and 0.72 < fig.layout.xaxis.range[1] < 0.8
    assert "reference point" in fig.layout.annotations[0].text
    fronts = [t for t in fig.data if t.showlegend]
    assert [t.line.color for t in fronts][0] == [t.line.color for t in fronts][1]  # one method
    assert [t.line.dash for t in fronts] == ["dot", "solid"]  # two sources
    assert fronts[0].marker.symbol != fronts[1].marker.symbol
    assert not any(t.name == "reference point" for t in fig.data)
    fixed = figures.overlay_fronts_figure(series, ["a", "b"], ref=[-0.1, -0.1])
    assert fixed.layout.xaxis.range[0] < -0.1  # snapshots keep the fixed axes


def test_scatter_matrix_keeps_rows_for_clicks():
    from morl_core.app import figures

    series = [
        {
            "label": "x",
            "method": "mod",
            "offset": 5,
            "points": np.random.default_rng(0).random((4, 4)),
        }
    ]
    fig = figures.scatter_matrix_figure(series, list("abcd"), selected=6)
    assert fig.data[0].type == "splom" and fig.data[0].customdata.tolist() == [5, 6, 7, 8]
    assert fig.data[0].marker.line.width[1] == 2
