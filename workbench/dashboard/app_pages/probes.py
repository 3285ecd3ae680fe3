"""Probes: layer curves with controls and selectivity, the generalisation heatmap, the lat/long
map of regression probes, and per-layer confusion matrix and worst-classified items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._figures import confusion_matrix
from workbench.dashboard._state import runs_dir, shown_errors

st.title("Probes")
root = runs_dir()
experiments = _cache.scan(root)["experiments"]
if not experiments:
    st.info(f"No probe experiments under `{root}`: run `workbench probe run "
            "probes/cities_truth.toml` (or point `workbench dashboard --runs` at a folder).")
    st.stop()

names = [e["experiment"] for e in experiments]
by_name = {e["experiment"]: e for e in experiments}
default = names.index("cities_truth") if "cities_truth" in names else 0
name = st.sidebar.selectbox("Experiment", names, index=default, key="probe_experiment")
folder = Path(by_name[name]["path"])

with shown_errors("could not read the experiment", stop=True):
    summary = _data.read_summary(folder)
    table = _cache.read_csv(folder / "results.csv")
    st.caption(f"{summary['model']['name']} on {summary['dataset']['name']} "
               f"({summary['n_rows']} rows), target {summary['target']}, "
               f"{summary['task']} · `{folder}`")
    if summary.get("description"):
        with st.expander("About this experiment"):
            st.markdown(summary["description"])

    from workbench.probing._spec import summary_rows
    from workbench.viz import generalisation_heatmap, latlon_map, layer_curves

    st.dataframe(pd.DataFrame(summary_rows(summary)), hide_index=True, key="probe_best")

    kinds = list(dict.fromkeys(table.loc[table["labels"] == "task", "probe"]))
    metrics = list(dict.fromkeys(table["metric"]))
    main_metric = "accuracy" if summary["task"] == "classification" else "r2"
    c1, c2, c3 = st.columns([2, 2, 1])
    shown = c1.multiselect("Probes", kinds, default=kinds, key="probe_kinds")
    metric = c2.selectbox("Metric", metrics,
                          index=metrics.index(main_metric) if main_metric in metrics else 0,
                          key="probe_metric")
    show_sel = c3.toggle("Selectivity", value=True, key="probe_selectivity")
    sub = table[table["probe"].isin(shown) | (table["labels"] == "majority")]
    if shown:
        st.plotly_chart(layer_curves(sub, metric=metric), key="probe_curves")
    if show_sel and shown:
        sel = _data.selectivity(sub, metric)
        if sel is not None:
            st.caption(f"Selectivity: task {metric} minus control-task {metric} (Hewitt & Liang)")
            st.line_chart(sel, x_label="layer", y_label=f"selectivity ({metric})", height=260)

    gen_path = folder / "generalisation.csv"
    if gen_path.is_file():
        st.subheader("Generalisation")
        gen = _cache.read_csv(gen_path)
        gen_layers = sorted(int(v) for v in set(gen["layer"]) if v == v)
        pick = st.select_slider("Layer (train x test)", ["best"] + gen_layers, value="best",
                                key="probe_gen_layer")
        st.plotly_chart(generalisation_heatmap(gen, None if pick == "best" else int(pick)),
                        key="probe_gen")

    st.subheader("One layer")
    task = table[(table["labels"] == "task") & (table["metric"] == main_metric)]
    layers = sorted(int(v) for v in set(task["layer"].dropna()))
    kind_col, pool_col = st.columns(2)
    kind = kind_col.selectbox("Probe", kinds, key="probe_layer_kind")
    poolings = list(dict.fromkeys(task.loc[task["probe"] == kind, "pooling"]))
    pooling = pool_col.selectbox("Pooling", poolings, key="probe_layer_pooling")
    best = summary["kinds"].get(kind, {}).get("by_score", {})
    best_layer = int(best["layer"]) if best.get("layer") is not None else layers[-1]
    layer = st.select_slider("Layer", layers, value=best_layer if best_layer in layers
                             else layers[-1], key=f"probe_layer:{name}:{kind}:{pooling}")
    row = task[(task["probe"] == kind) & (task["pooling"] == pooling) & (task["layer"] == layer)]
    if not len(row):
        st.warning(f"layer {layer} was not swept for {kind} ({pooling}): pick another layer")
        st.stop()
    hook = row.iloc[0]["hook_point"]
    st.caption(f"{kind} probe, {pooling} pooling, layer {layer} (`{hook}`): stored "
               f"{main_metric} {row.iloc[0]['value']:.3f} [{row.iloc[0]['low']:.3f}, "
               f"{row.iloc[0]['high']:.3f}]")

with shown_errors("could not compute this layer's predictions"):
    pred = _cache.layer_predictions(str(folder), kind, pooling, hook,
                                    (folder / "results.csv").stat().st_mtime)
    if pred["kind"] == "classification":
        counts = _data.confusion(pred)
        left, right = st.columns([2, 3])
        fig = confusion_matrix(counts, pred["classes"],
                               title=f"confusion matrix, out of fold (accuracy "
                                     f"{np.trace(counts) / max(counts.sum(), 1):.3f})")
        left.plotly_chart(fig, key="probe_confusion")
        right.write("Worst-classified items (out of fold, most confident mistakes first)")
        right.dataframe(_data.worst_items(pred), hide_index=True, key="probe_worst")
    else:
        true, p = np.asarray(pred["true"]), np.asarray(pred["pred"])
        keep = np.isfinite(p).all(axis=1)
        if pred["geo"] and true.shape[1] == 2:
            texts = np.asarray(pred["texts"], dtype=object)
            fig = latlon_map(true[keep], p[keep], labels=list(texts[keep]))
            st.plotly_chart(fig, key="probe_map")
        st.write("Largest errors (held-out predictions)")
        st.dataframe(_data.worst_items(pred), hide_index=True, key="probe_worst")
