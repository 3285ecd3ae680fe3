"""Probes: layer curves with controls and selectivity, the generalisation heatmap, the lat/long
map of regression probes, and per-layer confusion matrix and worst-classified items.

Every figure is plotly (one chart library for the browser to load, not plotly.js and Vega);
the layer curves and the selectivity are lazy tabs (only the open one is built); the tables are
static (``st.table``). The lat/long map is drawn on plain longitude/latitude axes
(``latlon_scatter``: nothing is fetched, so it draws offline), at most ``MAP_POINTS`` places;
the world-outline map (``latlon_map``, scattergeo, whose outlines the browser fetches from
plotly's CDN) is a toggle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._figures import confusion_matrix, selectivity_curves
from workbench.dashboard._state import runs_dir, shown_errors

# the most places the lat/long map draws (a random sample beyond that, seed 0): each is two
# SVG markers and a stretch of one path; a thousand pairs draw in about 0.2 s in headless
# Chromium on the busy 2-core machine (benchmarks/bench_dashboard.py)
MAP_POINTS = 1000

st.title("Probes")
root = runs_dir()
experiments = _cache.scan(root)["experiments"]
if not experiments:
    st.info(
        f"No probe experiments under `{root}`: run `workbench probe run "
        "probes/cities_truth.toml` (or point `workbench dashboard --runs` at a folder)."
    )
    st.stop()

names = [e["experiment"] for e in experiments]
by_name = {e["experiment"]: e for e in experiments}
default = names.index("cities_truth") if "cities_truth" in names else 0
name = st.sidebar.selectbox("Experiment", names, index=default, key="probe_experiment")
folder = Path(by_name[name]["path"])

with shown_errors("could not read the experiment", stop=True):
    summary = _data.read_summary(folder)
    table = _cache.read_csv(folder / "results.csv")
    st.caption(
        f"{summary['model']['name']} on {summary['dataset']['name']} "
        f"({summary['n_rows']} rows), target {summary['target']}, "
        f"{summary['task']} · `{folder}`"
    )
    if summary.get("description"):
        with st.expander("About this experiment"):
            st.markdown(summary["description"])

    from workbench.probing import report
    from workbench.viz import generalisation_heatmap, latlon_map, latlon_scatter, layer_curves

    # static tables (st.table), not st.dataframe: the interactive grid is one more large
    # script for the browser to load and draw (about 1.4 CPU-seconds of a page load here)
    st.table(pd.DataFrame(report.summary_rows(summary)), hide_index=True)

    kinds = list(dict.fromkeys(table.loc[table["labels"] == "task", "probe"]))
    metrics = list(dict.fromkeys(table["metric"]))
    main_metric = "accuracy" if summary["task"] == "classification" else "r2"
    c1, c2 = st.columns(2)
    # keyed by experiment: another experiment has other probe kinds (a shared key would keep
    # the previous experiment's, which are not options here, and show no curve)
    shown = c1.multiselect("Probes", kinds, default=kinds, key=f"probe_kinds:{name}")
    metric = c2.selectbox(
        "Metric",
        metrics,
        index=metrics.index(main_metric) if main_metric in metrics else 0,
        key="probe_metric",
    )
    sub = table[table["probe"].isin(shown) | (table["labels"] == "majority")]
    # lazy tabs: only the open tab's figure is built and sent (one figure fewer to draw on load)
    curves_tab, sel_tab = st.tabs(
        ["Layer curves", "Selectivity"], key="probe_curves_tab", on_change="rerun"
    )
    if not shown:
        st.info("Pick at least one probe to draw its curves.")
    elif curves_tab.open:
        curves_tab.plotly_chart(layer_curves(sub, metric=metric), key="probe_curves")
    elif sel_tab.open:
        sel = _data.selectivity(sub, metric)
        if sel is None:
            sel_tab.info(
                f"No control task for {metric} in this experiment: selectivity is task "
                "minus control-task score"
            )
        else:
            sel_tab.plotly_chart(selectivity_curves(sel, metric), key="probe_selectivity_curves")

    gen_path = folder / "generalisation.csv"
    if gen_path.is_file():
        st.subheader("Generalisation")
        gen = _cache.read_csv(gen_path)
        gen_layers = sorted(int(v) for v in set(gen["layer"]) if v == v)
        options: list[str | int] = ["best", *gen_layers]
        pick = st.select_slider(
            "Layer (train x test)", options, value="best", key="probe_gen_layer"
        )
        st.plotly_chart(
            generalisation_heatmap(gen, None if pick == "best" else int(pick)), key="probe_gen"
        )

    st.subheader("One layer")
    task = table[(table["labels"] == "task") & (table["metric"] == main_metric)]
    layers = sorted(int(v) for v in set(task["layer"].dropna()))
    kind_col, pool_col = st.columns(2)
    kind = kind_col.selectbox("Probe", kinds, key="probe_layer_kind")
    poolings = list(dict.fromkeys(task.loc[task["probe"] == kind, "pooling"]))
    pooling = pool_col.selectbox("Pooling", poolings, key="probe_layer_pooling")
    best = summary["kinds"].get(kind, {}).get("by_score", {})
    best_layer = int(best["layer"]) if best.get("layer") is not None else layers[-1]
    layer = st.select_slider(
        "Layer",
        layers,
        value=best_layer if best_layer in layers else layers[-1],
        key=f"probe_layer:{name}:{kind}:{pooling}",
    )
    row = task[(task["probe"] == kind) & (task["pooling"] == pooling) & (task["layer"] == layer)]
    if not len(row):
        st.warning(f"layer {layer} was not swept for {kind} ({pooling}): pick another layer")
        st.stop()
    hook = row.iloc[0]["hook_point"]
    st.caption(
        f"{kind} probe, {pooling} pooling, layer {layer} (`{hook}`): stored "
        f"{main_metric} {row.iloc[0]['value']:.3f} [{row.iloc[0]['low']:.3f}, "
        f"{row.iloc[0]['high']:.3f}]"
    )


def _projection_link(row: int) -> str:
    """A Markdown link that opens ``row`` in the Projection page, on this experiment's store,
    pooling and layer, coloured by this probe's out-of-fold score (the view in the URL)."""
    from urllib.parse import urlencode

    store = _data.experiment_store(folder, _data.probe_config(folder, kind)["config"])
    try:
        name = str(store.resolve().relative_to(root))
    except ValueError:
        name = str(store)
    query = urlencode(
        {
            "store": name,
            "pooling": pooling,
            "layer": layer,
            "item": int(row),
            "colour": f"probe score: {summary.get('name', folder.name)}/{kind}",
        }
    )
    return f"[open](projection?{query})"


def _with_links(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(open=[_projection_link(r) for r in table["row"]])


def _slices(pred: dict) -> None:
    """Out-of-fold accuracy per category of a metadata column (``workbench.explore``)."""
    from workbench.explore import slice_metrics

    store = _cache.open_store(
        _data.experiment_store(folder, _data.probe_config(folder, kind)["config"])
    )
    target = (
        set(summary.get("target") or [])
        if isinstance(summary.get("target"), list)
        else {summary.get("target")}
    )
    options = [c for c in store.columns if c not in target]
    if not options:
        return
    st.write("Accuracy per slice (out of fold)")
    by = st.selectbox("Slice by", options, key=f"probe_slice:{name}")
    classes = pred["classes"]
    evaluated = (pred["pred"] >= 0) & (pred["true"] >= 0)
    true = [classes[i] if i >= 0 else None for i in pred["true"]]
    guess = [classes[i] if i >= 0 else None for i in pred["pred"]]
    table = slice_metrics(true, guess, store.column(by), evaluated=evaluated)
    if len(table) > 21:
        st.caption(f"{len(table) - 1} slices: the 10 worst and the 10 best, then all rows")
        table = pd.concat([table.iloc[:10], table.iloc[-11:]])
    st.table(table.round(3), hide_index=True)


with shown_errors("could not compute this layer's predictions"):
    pred = _cache.layer_predictions(
        str(folder), kind, pooling, hook, (folder / "results.csv").stat().st_mtime
    )
    if pred["kind"] == "classification":
        counts = _data.confusion(pred)
        left, right = st.columns([2, 3])
        fig = confusion_matrix(
            counts,
            pred["classes"],
            title=f"confusion matrix, out of fold (accuracy "
            f"{np.trace(counts) / max(counts.sum(), 1):.3f})",
        )
        left.plotly_chart(fig, key="probe_confusion")
        right.write(
            "Worst-classified items (out of fold, most confident mistakes first); "
            "'open' shows the item in Projection"
        )
        right.table(_with_links(_data.worst_items(pred)), hide_index=True)
        _slices(pred)
    else:
        true, p = np.asarray(pred["true"]), np.asarray(pred["pred"])
        keep = np.isfinite(p).all(axis=1)
        if pred["geo"] and true.shape[1] == 2:
            texts = np.asarray(pred["texts"], dtype=object)
            outlines = st.toggle(
                "World outlines",
                value=False,
                key="probe_map_outlines",
                help="Draw on a world map (plotly scattergeo): the browser fetches the country "
                "outlines from plotly's CDN, so the map stays blank without internet",
            )
            draw = latlon_map if outlines else latlon_scatter
            fig = draw(true[keep], p[keep], labels=texts[keep], max_points=MAP_POINTS)
            fig.update_layout(height=560)
            st.plotly_chart(fig, key="probe_map")
            if keep.sum() > MAP_POINTS:
                st.caption(
                    f"The map draws a random {MAP_POINTS} of the {int(keep.sum())} "
                    "held-out places (seed 0) to stay fast; its title's median error "
                    "and the table below use all of them."
                )
        st.write("Largest errors (held-out predictions); 'open' shows the item in Projection")
        st.table(_with_links(_data.worst_items(pred)), hide_index=True)
