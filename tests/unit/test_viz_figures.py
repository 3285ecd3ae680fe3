"""Figure builders: valid plotly figures with the expected traces, labels and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.attribution import Attribution
from workbench.viz import (
    attribution_heatmap,
    generalisation_heatmap,
    inversion_table,
    latlon_map,
    latlon_scatter,
    layer_curves,
    layer_projection_slider,
    logit_lens_grid,
    projection_scatter,
    write_figure,
)


def _attr(tokens: list[str], scores: list[float], target: str = "logit(' Paris')") -> Attribution:
    return Attribution(
        text=" ".join(tokens),
        tokens=tokens,
        offsets=np.zeros((len(tokens), 2), int),
        scores=np.asarray(scores),
        target=target,
        output=1.0,
        baseline_output=0.0,
        delta=0.01,
        n_steps=8,
        baseline_token="<pad>",
    )


def test_projection_scatter_colour_kinds():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(30, 2))
    labels = np.array(["true", "false"] * 15)
    fig = projection_scatter(
        xy,
        labels,
        hover=[f"text {i}" for i in range(30)],
        axis_titles=["probe direction", "PC 1"],
        title="t",
    )
    assert [t.name for t in fig.data] == ["true", "false"]
    assert all(t.type == "scattergl" for t in fig.data)
    assert fig.layout.xaxis.title.text == "probe direction" and "text 0" in fig.data[0].text[0]
    fig = projection_scatter(xy, rng.normal(size=30), color_title="probe score")
    assert len(fig.data) == 1 and fig.data[0].marker.colorbar.title.text == "probe score"
    assert "probe score" in fig.data[0].text[0]
    fig3 = projection_scatter(rng.normal(size=(30, 3)))
    assert fig3.data[0].type == "scatter3d" and fig3.layout.scene.zaxis.title.text == "dim 3"
    with pytest.raises(ValueError, match=r"\[n, 2\] or \[n, 3\]"):
        projection_scatter(rng.normal(size=(30, 4)))
    with pytest.raises(ValueError, match="one value per point"):
        projection_scatter(xy, labels[:5])


def test_layer_projection_slider():
    E = np.random.default_rng(0).normal(size=(4, 20, 2))
    fig = layer_projection_slider(E, ["L0", "L1", "L2", "L3"], np.arange(20) % 2 == 0, active=1)
    assert [f.name for f in fig.frames] == ["L0", "L1", "L2", "L3"]
    assert len(fig.layout.sliders[0].steps) == 4 and fig.layout.sliders[0].active == 1
    np.testing.assert_allclose(fig.data[0].x, E[1][np.arange(20) % 2 == 0][:, 0])
    assert fig.layout.xaxis.range[0] <= E[..., 0].min()  # fixed axes over all layers
    with pytest.raises(ValueError, match=r"\[layers, n, 2\]"):
        layer_projection_slider(E[0])


def test_attribution_heatmap():
    a = _attr(["The", "Ġcapital", "Ġof", "ĠFrance"], [0.0, 0.5, -0.2, 2.0])
    b = _attr(["Hi"], [1.0], target="probe")
    fig = attribution_heatmap([a, b])
    hm = fig.data[0]
    assert hm.type == "heatmap" and np.asarray(hm.z).shape == (2, 4)
    assert hm.text[0][1] == "␣capital" and hm.text[1][1] == ""
    assert np.nanmax(np.abs(np.asarray(hm.z, float))) == pytest.approx(1.0)
    assert hm.customdata[0][3] == 2.0 and "logit(' Paris')" in hm.y[0]
    assert len(attribution_heatmap(a, normalise=False).data[0].y) == 1
    with pytest.raises(ValueError, match="labels for"):
        attribution_heatmap([a, b], labels=["one"])


def test_logit_lens_grid():
    tokens = [["a", "b", "c"], ["Paris", "is", "Ġthe"]]
    probs = [[0.1, 0.2, 0.3], [0.9, 0.5, 0.4]]
    fig = logit_lens_grid(
        tokens, probs, layer_labels=[10, 20], position_labels=["The", "Ġcity", "Ġis"]
    )
    hm = fig.data[0]
    assert list(hm.y) == ["10", "20"] and list(hm.x) == ["0: The", "1: ␣city", "2: ␣is"]
    assert hm.text[1][2] == "␣the" and hm.zmax == 1.0
    with pytest.raises(ValueError, match="probabilities"):
        logit_lens_grid(tokens, [[2.0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"\[layers, positions\]"):
        logit_lens_grid(tokens, [[0.1, 0.2]])


def test_inversion_table():
    rows = [
        {
            "method": "vec2text",
            "text": "The city of Paris",
            "cosine": 0.91,
            "bleu": 40.2,
            "token_f1": 0.8,
            "steps": 3,
        },
        {
            "method": "logit lens",
            "text": "city Paris",
            "cosine": 0.5,
            "bleu": 3.0,
            "token_f1": 0.4,
            "steps": None,
        },
    ]
    fig = inversion_table(pd.DataFrame(rows), reference="The city of Paris is in France.")
    t = fig.data[0]
    assert t.type == "table"
    assert [h.replace("<b>", "").replace("</b>", "") for h in t.header.values] == [
        "method",
        "text",
        "cosine",
        "bleu",
        "token_f1",
        "steps",
    ]
    assert list(t.cells.values[0]) == ["original", "vec2text", "logit lens"]
    assert t.cells.values[2][1] == "0.910" and t.cells.values[5][2] == ""  # NaN shows empty
    with pytest.raises(KeyError, match="token_f1"):
        inversion_table([{"method": "x", "text": "y", "cosine": 1.0, "bleu": 2.0}])


def test_probing_figures_have_ci_control_and_baseline():
    rows = []
    for layer in range(4):
        for labels, value in (("task", 0.6 + 0.1 * layer), ("control", 0.5)):
            rows.append(
                {
                    "pooling": "last",
                    "hook_point": f"blocks.{layer}.hook_resid_post",
                    "layer": layer,
                    "probe": "logistic",
                    "labels": labels,
                    "metric": "accuracy",
                    "value": value,
                    "low": value - 0.05,
                    "high": value + 0.05,
                }
            )
    rows.append(
        {
            "pooling": "last",
            "hook_point": "",
            "layer": np.nan,
            "probe": "majority",
            "labels": "majority",
            "metric": "accuracy",
            "value": 0.5,
            "low": np.nan,
            "high": np.nan,
        }
    )
    fig = layer_curves(pd.DataFrame(rows))
    names = [t.name for t in fig.data]
    assert names == ["logistic 95% CI", "logistic", "logistic control task"]
    assert fig.data[0].fill == "toself" and fig.layout.shapes  # CI band and baseline line
    assert "best logistic: layer 3" in fig.layout.title.text
    gen = pd.DataFrame(
        {
            "train": ["a", "a", "b", "b"],
            "test": ["a", "b", "a", "b"],
            "layer": [1, 1, 1, 1],
            "accuracy": [0.9, 0.7, 0.6, 0.95],
        }
    )
    hm = generalisation_heatmap(gen, layer=1).data[0]
    assert list(hm.x) == ["a", "b"] and hm.z[0][1] == 0.7
    geo = latlon_map(
        [[48.85, 2.35], [40.7, -74.0]], [[47.0, 3.0], [41.0, -70.0]], ["Paris", "New York"]
    )
    assert [t.name for t in geo.data] == ["error", "true", "predicted"]
    assert "median error" in geo.layout.title.text


def test_latlon_scatter_and_sampled_maps():
    rng = np.random.default_rng(0)
    true = rng.uniform([-60, -180], [60, 180], size=(50, 2))
    pred = true + rng.normal(size=(50, 2))
    fig = latlon_scatter(true, pred, [f"p{i}" for i in range(50)])
    assert [t.name for t in fig.data] == ["true", "predicted"]
    assert {t.type for t in fig.data} == {"scatter"}  # SVG markers for a few places
    assert fig.layout.shapes[0].name == "error" and fig.layout.shapes[0].path.count("M") == 50
    assert "50 places" in fig.layout.title.text and "showing" not in fig.layout.title.text
    assert latlon_scatter(true, pred, webgl=True).data[0].type == "scattergl"
    small = latlon_scatter(true, pred, max_points=10)
    assert len(small.data[0].x) == 10 and "50 places" in small.layout.title.text
    assert "showing a random 10" in small.layout.title.text
    geo, full = latlon_map(true, pred, max_points=10), latlon_map(true, pred)
    assert len(geo.data[1].lat) == 10 and len(geo.data[0].lat) == 30  # 10 lines with gaps
    assert len(full.data[1].lat) == 50 and "showing" not in full.layout.title.text
    assert geo.layout.title.text.split(";")[0] == full.layout.title.text.rstrip(")")
    with pytest.raises(ValueError, match="max_points=0"):
        latlon_scatter(true, pred, max_points=0)


def test_write_figure_html(tmp_path):
    fig = projection_scatter(np.random.default_rng(0).normal(size=(10, 2)))
    written = write_figure(fig, tmp_path / "scatter", png=False)
    assert written == [tmp_path / "scatter.html"]
    assert "plotly" in written[0].read_text()[:5000].lower()


def test_embedding_layer_curves_draws_one_line_per_pooling_and_postprocess():
    import pandas as pd

    from workbench.viz import embedding_layer_curves

    df = pd.DataFrame(
        {
            "layer": [0, 1, 0, 1],
            "pooling": ["mean"] * 2 + ["last"] * 2,
            "postprocess": ["none"] * 4,
            "spearman": [10.0, 20.0, 5.0, 30.0],
        }
    )
    fig = embedding_layer_curves(df, "spearman", reference=("MiniLM", 77.1))
    assert [t.name for t in fig.data] == ["mean (none)", "last (none)"]
    assert list(fig.data[1].y) == [5.0, 30.0]
    assert fig.layout.shapes and fig.layout.shapes[0].y0 == 77.1
    with pytest.raises(KeyError, match="accuracy"):
        embedding_layer_curves(df, "accuracy")


def test_point_colours_match_projection_scatter() -> None:
    from workbench.viz import point_colours, projection_scatter

    labels = ["b", "a", "b", "c"]
    fig = projection_scatter(np.zeros((4, 2)), labels)
    enc = point_colours(labels, 4)
    assert enc.kind == "categorical" and enc.values.tolist() == [0, 1, 0, 2]
    # the same colour per label as the plotly traces
    assert {tr.name: tr.marker.color for tr in fig.data} == {
        lab: enc.palette[int(code)] for lab, code in zip(labels, enc.values, strict=True)
    }
    scores = np.array([-2.0, 0.5, 1.0, np.nan])
    enc = point_colours(scores, 4, color_midpoint=0.0)
    # symmetric around the midpoint: -2 at the bottom, 0 in the middle, +2 at the top
    np.testing.assert_allclose(enc.values[:3], [0.0, 0.625, 0.75])
    assert enc.values[3] == 0.5  # not scored: the midpoint's colour
