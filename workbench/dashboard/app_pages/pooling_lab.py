"""Pooling lab: compare pooling strategies (mean, last token, PromptEOL-style template, ...) per
layer on a task, with ``workbench.evaluation.evaluate_grid``; earlier grids under the runs folder
are listed too."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._state import runs_dir, shown_errors

st.title("Pooling lab")
st.write(
    "Which layer and pooling make the model a good text embedder on a task? Each distinct "
    "template costs one forward pass; every (layer, pooling) cell is read from the stores."
)
root = runs_dir()


def _show(df: pd.DataFrame, key: str, task: dict | None) -> None:
    """Metric per layer (one line per pooling, 95% intervals, the majority-class or chance
    baseline) and the layer x pooling heatmap. ``task`` is the grid summary's task record."""
    from workbench.evaluation import METRICS
    from workbench.viz import embedding_heatmap, embedding_layer_curves

    names = [m for group in METRICS.values() for m in group] + ["anisotropy", "effective_rank"]
    metrics = [m for m in names if m in df.columns and df[m].notna().any()]
    c1, c2 = st.columns(2)
    metric = c1.selectbox("Metric", metrics, key=f"{key}_metric")
    posts = list(dict.fromkeys(df["postprocess"]))
    post = c2.selectbox("Post-processing", posts, key=f"{key}_post")
    sub = df[df["postprocess"] == post]
    task = task or {}
    n = task.get("n_rows") or task.get("n_pairs")
    reference = None
    if metric == "accuracy" and task.get("majority") is not None:
        reference = ("majority baseline", 100 * float(task["majority"]))
    elif metric in ("spearman", "v_measure"):
        reference = ("chance", 0.0)
    elif metric == "accuracy":
        st.caption(
            "this grid's summary records no label counts, so no majority baseline (run "
            "the comparison again to record it)"
        )
    st.plotly_chart(
        embedding_layer_curves(sub, metric, reference=reference, n_items=n), key=f"{key}_curves"
    )
    best = sub.loc[sub[metric].idxmax()]
    note = ""
    if reference is not None:
        note = f"; {reference[0]} {reference[1]:.1f}"
    st.caption(
        f"best: {best['pooling']} pooling at layer {int(best['layer'])}, {metric} "
        f"{float(best[metric]):.2f} ({post}){note}; n = {n or 'unknown'}"
    )
    st.plotly_chart(embedding_heatmap(df, metric, postprocess=post), key=f"{key}_heatmap")


def _tasks() -> list[str]:
    from workbench.data import builtin_datasets

    return [*builtin_datasets(), "sick-test", "sick-trial"]


def _bundled() -> list[str]:
    from workbench.models import bundled_models

    return [m.name for m in bundled_models()]


run_tab, saved_tab = st.tabs(["Compare poolings", "Saved grids"])
with run_tab, st.form("pooling_form"):
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", _bundled(), key="pool_model")
    task = c2.selectbox(
        "Task",
        _tasks(),
        key="pool_task",
        help="built-in datasets are labelled tasks (linear-probe accuracy, "
        "clustering); SICK is a pair task (STS Spearman) read from ../shared",
    )
    poolings = c1.multiselect(
        "Poolings",
        ["mean", "last", "first", "max", "prompteol", "echo", "echo-last", "native"],
        default=["mean", "last", "prompteol"],
        key="pool_poolings",
    )
    layers = c2.text_input("Layers", "all", key="pool_layers")
    post = c1.multiselect(
        "Post-processing", ["none", "center", "whiten"], default=["none"], key="pool_post"
    )
    limit = c2.number_input(
        "First N rows / pairs", min_value=10, value=200, step=50, key="pool_limit"
    )
    go = st.form_submit_button("Compare", type="primary")

if go:
    with run_tab, shown_errors("the comparison failed"):
        if not poolings or not post:
            raise ValueError("pick at least one pooling and one post-processing")
        from workbench.evaluation import evaluate_grid

        out = root / f"pooling-lab-{model}-{task}-{int(limit)}"
        with st.status(f"{model} on {task}: {len(poolings)} poolings ...", expanded=True) as status:
            st.write("loading the model ...")
            lm = _cache.model(model)
            st.write(
                f"extracting and scoring {int(limit)} rows into `{out}` (stores are reused "
                "when the same comparison runs again) ..."
            )
            df = evaluate_grid(
                lm,
                task,
                layers=layers,
                poolings=",".join(poolings),
                postprocess=",".join(post),
                limit=int(limit),
                out=out,
                progress=False,
                threads=1,
            )
            status.update(label=f"{len(df)} cells computed", state="complete")
        st.session_state["pool_result"] = (str(out), df, df.attrs["summary"].get("task"))

with run_tab:
    if "pool_result" in st.session_state:
        out, df, task_info = st.session_state["pool_result"]
        st.caption(f"results in `{out}`")
        _show(df, "pool_run", task_info)

with saved_tab:
    grids = _cache.scan(root)["grids"]
    if not grids:
        st.caption("no saved grids (`workbench embed eval ...` or the Compare tab write them)")
    else:
        labels = [g["grid"] for g in grids]
        pick = st.selectbox("Grid", labels, key="pool_grid")
        with shown_errors("could not read the grid"):
            folder = Path(grids[labels.index(pick)]["path"])
            task_info = _data.read_summary(folder).get("task")
            _show(
                _cache.read_csv(folder / "results.csv"),
                "pool_saved",
                task_info if isinstance(task_info, dict) else None,
            )
