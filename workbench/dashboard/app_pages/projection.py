"""Projection: PCA / UMAP / t-SNE of a store's items, per layer (aligned across the layer
slider), coloured by a label or a probe's out-of-fold score. Click a point to open it, box or
lasso to select many; search, filter, nearest neighbours, a second linked panel, export; the view
lives in the URL. Every computation is a library call (``workbench.projection``,
``workbench.explore``, ``workbench.inversion``, ``workbench.attribution``)."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._selection import (
    SELECTION,
    apply_url,
    chart_selected,
    plain,
    select_rows,
    set_item,
    write_url,
)
from workbench.dashboard._state import kept, missing_api, remembered, runs_dir, shown_errors

# hover texts are cut to this many characters (the figure's JSON grows with every character of
# every point: 100k points x 60 characters is 6 MB)
HOVER_CHARS = 60
# plotly's scattergl draws up to this many points (axes, a legend that hides labels); above it
# the WebGL component (regl-scatterplot, ``workbench.dashboard._scatter``), measured 4 s faster
# to load than plotly at 10k points and 6 s at 100k (benchmarks/README.md, "the Projection
# scatter at 10k and 100k")
PLOTLY_MAX_POINTS = 5_000
RENDERERS = ("auto", "plotly", "webgl")

st.title("Projection")
if missing_api("The Projection page", "workbench.projection"):
    st.stop()
root = runs_dir()
found = _cache.scan(root)
stores = [
    s
    for s in found["stores"]
    if s["status"] == "complete" and any(p not in ("tokens", "") for p in s["poolings"].split(", "))
]
if not stores:
    st.info(f"No complete activation store under `{root}`: extract one on the Runs page.")
    st.stop()

names = [s["store"] for s in stores]
by_name = {s["store"]: s for s in stores}
apply_url(names)
# default: the store of a probe experiment (cities_truth first), so probe scores can colour it
probed = [
    str(Path(e["path"]) / "store")
    for e in sorted(found["experiments"], key=lambda e: e["experiment"] != "cities_truth")
]
paths = [s["path"] for s in stores]
default = next((paths.index(p) for p in probed if p in paths), 0)
if st.session_state.get("proj_store") not in names:
    st.session_state["proj_store"] = names[default]
c1, c2, c3 = st.columns([3, 1, 2])
name = c1.selectbox("Store", names, key="proj_store")
info = by_name[name]
path = info["path"]
mtime = (Path(path) / "manifest.json").stat().st_mtime
store = _cache.open_store(path)
poolings = [p for p in info["poolings"].split(", ") if p != "tokens"]
if st.session_state.get("proj_pooling") not in poolings:
    st.session_state["proj_pooling"] = poolings[0]
pooling = c2.selectbox("Pooling", poolings, key="proj_pooling")
if st.session_state.get("proj_method") not in ("pca", "umap", "tsne"):
    st.session_state["proj_method"] = "pca"
method = c3.radio(
    "Method",
    ["pca", "umap", "tsne"],
    horizontal=True,
    key="proj_method",
    help="PCA is instant. UMAP and t-SNE (openTSNE) fit the shown layer only, "
    "unless 'every layer' is on; fits are cached on disk under the store",
)

layers = _cache.projected_layers(store, pooling)
layer_names = [str(v) for v in layers]
if st.session_state.get("proj_layer") not in layer_names:  # another store or pooling
    st.session_state["proj_layer"] = layer_names[len(layer_names) // 2]
c4, c5, c6 = st.columns([3, 2, 1])
layer_name = c4.select_slider("Layer", layer_names, key="proj_layer")
texts = _cache.column(path, mtime, "text")
n_rows = len(texts)
probes = _data.experiments_on(found["experiments"], path)
colour_options = ["none", *store.columns, *[f"probe score: {p}" for p in probes]]
if st.session_state.get("proj_colour") not in colour_options:
    st.session_state["proj_colour"] = "label" if "label" in colour_options else "none"
colour_by = c5.selectbox("Colour by", colour_options, key="proj_colour")
every = c6.toggle(
    "Every layer",
    value=method == "pca",
    key=f"proj_every:{method}",
    help="fit every layer (aligned, so points keep their place as the slider "
    "moves); off: only the shown layer (and layer B when comparing)",
)
layer = int(layer_name)
hook = store.layers[layer]


def _project(hooks: list[str]) -> dict[str, Any]:
    """The aligned projection of ``hooks``, with a per-layer progress bar and ETA."""
    bar = st.progress(0.0, text=f"{method}: fitting {len(hooks)} layer(s) of {n_rows} items ...")
    t0 = time.perf_counter()

    def tick(done: int, total: int) -> None:
        spent = time.perf_counter() - t0
        eta = spent / max(done, 1) * (total - done)
        bar.progress(
            done / total,
            text=f"{method}: layer {done}/{total} fitted, {spent:.0f} s, about {eta:.0f} s left",
        )

    try:
        return _cache.projection(path, mtime, method, pooling, tuple(hooks), progress=tick)
    finally:
        bar.empty()


def _coords(target_layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``[rows, 2]`` coordinates of one layer (from the all-layer fit or its own) and the
    ``[2, 2]`` axis bounds (over every fitted layer, so the axes stay put on the slider)."""
    hooks = [store.layers[v] for v in layers] if every else [store.layers[target_layer]]
    proj = _project(hooks)
    emb = proj["embeddings"]
    bounds = np.stack([np.nanmin(emb, axis=(0, 1)), np.nanmax(emb, axis=(0, 1))])
    return emb[proj["hook_points"].index(store.layers[target_layer])], bounds


def _colour(target_hook: str) -> tuple[Any, float | None]:
    """Colour values ``[rows]`` and the midpoint of a diverging scale (probe scores)."""
    if colour_by == "none":
        return None, None
    if colour_by.startswith("probe score: "):
        exp, kind = colour_by.removeprefix("probe score: ").rsplit("/", 1)
        folder = next(e["path"] for e in found["experiments"] if e["experiment"] == exp)
        scores = _cache.probe_scores(folder, kind, pooling, target_hook)
        classification = (
            _cache.layer_predictions(
                folder, kind, pooling, target_hook, (Path(folder) / "results.csv").stat().st_mtime
            )["kind"]
            == "classification"
        )
        return np.asarray(scores, dtype=float), 0.0 if classification else None
    values = np.asarray([plain(v) for v in _cache.column(path, mtime, colour_by)], dtype=object)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and len(set(values.tolist())) > 20:  # a quantity: a colour scale
        return values.astype(float), None
    return values, None


# -- find: search, filters ---------------------------------------------------------------------
with st.expander("Find and filter", expanded=bool(st.session_state.get("proj_search"))):
    f1, f2 = st.columns([4, 1])
    query = f1.text_input(
        "Search texts and metadata",
        key="proj_search",
        placeholder="substring, or a regular expression",
    )
    regex = f2.toggle("Regex", key="proj_regex")
    columns = {c: _cache.column(path, mtime, c) for c in store.columns}
    matches = np.zeros(0, dtype=np.int64)
    with shown_errors("search"):
        from workbench.explore import filter_rows, highlight, search

        matches = search(texts, query, columns=columns, regex=regex)
    equals: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    filter_cols = st.multiselect("Filter by", list(columns), key="proj_filter_cols")
    for c in filter_cols:
        values = [plain(v) for v in columns[c]]
        numeric = [
            float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if len(numeric) == len(values) and len(set(numeric)) > 20:
            lo, hi = float(min(numeric)), float(max(numeric))
            ranges[c] = st.slider(c, lo, hi, (lo, hi), key=f"proj_range:{c}")
        else:
            options = sorted({str(v) for v in values})
            equals[c] = st.multiselect(c, options, default=options, key=f"proj_in:{c}")
    keep = filter_rows(columns, equals=equals, ranges=ranges)
    if query:
        st.caption(f"{len(matches)} matches (ringed in the scatter)")
        shown = [f"**{i}** {highlight(str(texts[i]), query, regex=regex)}" for i in matches[:10]]
        if shown:
            st.markdown("  \n".join(shown), unsafe_allow_html=True)
        st.button(
            f"Select the {len(matches)} matches",
            key="proj_select_matches",
            disabled=not len(matches),
            on_click=select_rows,
            args=(matches.tolist(),),
        )
    if not keep.all():
        st.caption(f"showing {int(keep.sum())} of {n_rows} rows")

# -- the scatter(s) ----------------------------------------------------------------------------
if st.session_state.get("proj_renderer") not in RENDERERS:
    st.session_state["proj_renderer"] = "auto"
t1, t2 = st.columns([3, 2])
renderer = (
    t2.segmented_control(
        "Renderer",
        RENDERERS,
        key="proj_renderer",
        help=f"auto: plotly up to {PLOTLY_MAX_POINTS:,} points, the WebGL scatter above; "
        "webgl: regl-scatterplot (Box and Lasso in its toolbar, shift+drag lassos)",
    )
    or "auto"  # (a click on the chosen option clears it)
)
compare = t1.toggle(
    "Compare with a second panel",
    key="proj_compare",
    help="side by side: another layer, pooling or store over the same rows; "
    "the selection is shared",
)
selection: list[int] = [r for r in st.session_state.get(SELECTION, []) if 0 <= r < n_rows]
item = st.session_state.get("proj_row")
item = int(item) if item is not None and 0 <= int(item) < n_rows else None
neighbours = np.zeros(0, dtype=np.int64)
neighbour_dist = np.zeros(0)
k_neighbours = int(st.session_state.get("proj_knn_k", 10) or 0)
if item is not None and k_neighbours:
    with shown_errors("nearest neighbours"):
        from workbench.explore import nearest_neighbors

        neighbours, neighbour_dist = nearest_neighbors(
            _cache.layer_array(path, mtime, pooling, hook), item, k_neighbours
        )


def _figure(
    xy: np.ndarray, bounds: np.ndarray, colour: Any, midpoint: float | None, title: str
) -> Any:
    from workbench.viz import projection_scatter

    rows = np.flatnonzero(keep)
    hover = [str(texts[i])[:HOVER_CHARS] for i in rows]
    c = None if colour is None else np.asarray(colour)[rows]
    fig = projection_scatter(
        xy[rows],
        c,
        hover=hover,
        ids=rows,
        color_midpoint=midpoint,
        color_title=colour_by.removeprefix("probe score: "),
        title=title,
        size=4 if len(rows) > 20_000 else 5,
    )
    fig.update_layout(
        height=560,
        # dragmode and clickmode left to Streamlit: pan, and "event+select" so that a click
        # picks one point (in box/lasso mode a click would only clear the selection)
        legend={"orientation": "h", "y": -0.1},
        uirevision=name,
    )
    lo, hi = bounds
    pad = 0.05 * (hi - lo + 1e-9)
    fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]])
    fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]])
    for label, marked, style in (
        (
            "search matches",
            matches,
            {"size": 11, "color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": "#f5a623"}},
        ),
        (
            "selection",
            np.asarray(selection, dtype=np.int64),
            {"size": 10, "color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": "black"}},
        ),
        (
            "neighbours",
            np.asarray(neighbours, dtype=np.int64),
            {"size": 12, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#2ca02c"}},
        ),
        (
            "current item",
            np.asarray([item] if item is not None else [], dtype=np.int64),
            {"size": 18, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "black"}},
        ),
    ):
        if len(marked):
            fig.add_scattergl(
                x=xy[marked, 0],
                y=xy[marked, 1],
                mode="markers",
                name=label,
                customdata=marked,
                marker=style,
                text=[str(texts[i])[:HOVER_CHARS] for i in marked],
                hovertemplate="%{text}<extra>" + label + "</extra>",
            )
    return fig


def _webgl(
    where: Any, xy: np.ndarray, bounds: np.ndarray, colour: Any, midpoint: float | None,
    title: str, key: str,
) -> None:  # fmt: skip
    from workbench.dashboard._scatter import Mark, webgl_scatter

    rows = np.flatnonzero(keep)
    with where:
        webgl_scatter(
            xy[rows],
            None if colour is None else np.asarray(colour)[rows],
            ids=rows,
            hover=[str(texts[i])[:HOVER_CHARS] for i in rows],
            bounds=bounds,
            color_title=colour_by.removeprefix("probe score: "),
            color_midpoint=midpoint,
            selected=selection,
            marks=[
                Mark("search matches", matches.tolist(), "#f5a623", 5.5),
                Mark("neighbours", neighbours.tolist(), "#2ca02c", 6.0, 2.0),
                Mark("current item", [item] if item is not None else [], "#000000", 9.0, 3.0),
            ],
            title=title,
            point_size=3 if len(rows) > 20_000 else 4,
            key=key,
            on_change=partial(chart_selected, key),
        )


def _panel(
    where: Any,
    xy: np.ndarray,
    bounds: np.ndarray,
    colour: Any,
    midpoint: float | None,
    title: str,
    key: str,
) -> None:
    """One scatter: plotly up to ``PLOTLY_MAX_POINTS`` shown points, else (or when chosen)
    the WebGL component; both report selections to ``chart_selected``."""
    shown = int(keep.sum())
    if renderer == "webgl" or (renderer == "auto" and shown > PLOTLY_MAX_POINTS):
        _webgl(where, xy, bounds, colour, midpoint, title, f"{key}_webgl")
        return
    where.plotly_chart(
        _figure(xy, bounds, colour, midpoint, title),
        key=key,
        on_select=partial(chart_selected, key),
        selection_mode=("points", "box", "lasso"),
        config={"scrollZoom": True},
    )


with shown_errors("the projection failed", stop=True):
    xy, bounds = _coords(layer)
    colour, midpoint = _colour(hook)
    title = f"{method} of layer {layer_name} ({hook}), {pooling} pooling"
    if not compare:
        _panel(st.container(), xy, bounds, colour, midpoint, title, "proj_scatter")
    else:
        k1, k2, k3 = st.columns(3)
        against = k1.radio(
            "Panel B", ["layer", "pooling", "store"], horizontal=True, key="proj_b_kind"
        )
        b_path, b_pooling, b_layer = path, pooling, layer
        if against == "layer":
            b_layer = int(
                k2.select_slider("Layer B", layer_names, value=layer_names[-1], key="proj_b_layer")
            )
        elif against == "pooling":
            b_pooling = k2.selectbox(
                "Pooling B", poolings, index=len(poolings) - 1, key="proj_b_pooling"
            )
        else:
            same = [s for s in stores if s["rows"] == n_rows and s["store"] != name]
            if not same:
                st.info(
                    f"No other complete store has the same {n_rows} rows: extract another "
                    "model or template over the same dataset to compare them."
                )
                st.stop()
            b_name = k2.selectbox("Store B", [s["store"] for s in same], key="proj_b_store")
            b_path = by_name[b_name]["path"]
        left, right = st.columns(2)
        _panel(left, xy, bounds, colour, midpoint, title, "proj_scatter")
        with shown_errors("panel B failed"):
            b_store = _cache.open_store(b_path)
            b_mtime = (Path(b_path) / "manifest.json").stat().st_mtime
            b_layers = _cache.projected_layers(b_store, b_pooling)
            if b_layer not in b_layers:
                b_layer = b_layers[len(b_layers) // 2]
            b_hooks = [b_store.layers[v] for v in b_layers] if every else [b_store.layers[b_layer]]
            b_proj = _cache.projection(b_path, b_mtime, method, b_pooling, tuple(b_hooks))
            b_emb = b_proj["embeddings"]
            b_xy = b_emb[b_proj["hook_points"].index(b_store.layers[b_layer])]
            b_bounds = np.stack([np.nanmin(b_emb, axis=(0, 1)), np.nanmax(b_emb, axis=(0, 1))])
            b_colour = (
                colour
                if b_path == path and b_pooling == pooling and b_layer == layer
                else (colour if not colour_by.startswith("probe score: ") else None)
            )
            _panel(
                right,
                b_xy,
                b_bounds,
                b_colour,
                midpoint,
                f"B: {method} of layer {b_layer}, {b_pooling} pooling"
                + (f", {Path(b_path).name}" if b_path != path else ""),
                "proj_scatter_b",
            )
    st.caption(
        "Click a point to open it; box or lasso (toolbar) selects many. Scroll to zoom. "
        "The selection stays across layers, methods and panels."
    )

# -- the selection -----------------------------------------------------------------------------
scores = None
if colour_by.startswith("probe score: "):
    scores = {colour_by.removeprefix("probe score: "): np.asarray(colour, dtype=float)}
if selection:
    from workbench.explore import export_selection, selection_frame

    frame = selection_frame(selection, texts, coords=xy, columns=columns, scores=scores)
    st.subheader(f"Selection: {len(selection)} item{'' if len(selection) == 1 else 's'}")
    e1, e2, e3 = st.columns([1, 1, 4])
    e1.download_button(
        "CSV",
        export_selection(frame, format="csv"),
        "selection.csv",
        "text/csv",
        key="proj_export_csv",
        icon=":material/download:",
    )
    with shown_errors("Parquet export"):
        e2.download_button(
            "Parquet",
            export_selection(frame, format="parquet"),
            "selection.parquet",
            "application/vnd.apache.parquet",
            key="proj_export_parquet",
            icon=":material/download:",
        )
    e3.button("Clear the selection", key="proj_clear", on_click=select_rows, args=([],))
    st.dataframe(
        frame,
        hide_index=True,
        key="proj_selection_table",
        on_select=partial(set_item, "proj_selection_table", selection),
        selection_mode="single-row",
        height=min(400, 36 + 35 * len(frame)),
    )
    st.caption("Pick a row to open it as the current item.")

write_url(
    {
        "store": name,
        "pooling": pooling,
        "method": method,
        "layer": layer_name,
        "colour": colour_by,
        "renderer": None if renderer == "auto" else renderer,
        "rows": selection,
        "item": item,
    }
)

# -- the current item --------------------------------------------------------------------------
st.subheader("Item")
row = st.number_input(
    "Row (or click a point above)",
    0,
    n_rows - 1,
    value=None,
    key="proj_row",
    placeholder="select a point",
)
if row is None:
    st.caption("Click a point in the scatter, or a row of the selection, to inspect it.")
    st.stop()
row = int(row)
text = texts[row]
st.markdown(f"**row {row}** (layer {layer_name}): {text}")
with shown_errors("could not read the item's labels and tokens", stop=True):
    from workbench.viz import visible_token

    labels = {c: plain(columns[c][row]) for c in store.columns}
    st.caption(" · ".join(f"{k} = {v}" for k, v in labels.items()))
    if scores is not None:
        s = float(next(iter(scores.values()))[row])
        st.caption(f"out-of-fold probe score {s:+.3f} (0 is the decision boundary)")
    tokens: list[str] | None
    try:
        tokens = [visible_token(t) for t in store.tokens(row).strings]
    except Exception:  # noqa: BLE001 - stores without token data: tokenise with the model
        tokens = None
    if tokens is not None:
        st.code(" | ".join(tokens), language=None)

k = st.number_input(
    "Nearest neighbours (cosine, in the layer's d_model space)", 0, 100, 10, key="proj_knn_k"
)
if k and row == item and len(neighbours):
    knn = pd.DataFrame(
        {
            "row": neighbours,
            "cosine distance": neighbour_dist,
            "text": [texts[i] for i in neighbours],
        }
    )
    for c in store.columns:
        knn[c] = [plain(columns[c][i]) for i in neighbours]
    st.dataframe(
        knn,
        hide_index=True,
        key="proj_knn",
        selection_mode="single-row",
        on_select=partial(set_item, "proj_knn", neighbours.tolist()),
    )
    st.caption(
        f"the {int(k)} nearest rows to row {row} at layer {layer_name} ({pooling} "
        "pooling), ringed green in the scatter; pick one to open it"
    )

model_spec = store.manifest["model"]["spec"]

st.subheader("Logit lens")
with shown_errors("the logit lens failed"):
    from workbench.lens.logit import LogitLens

    lm = _cache.model(model_spec)
    res = kept(
        "proj_lens_result",
        (model_spec, text, layer),
        lambda: LogitLens(lm).run(text, k=10, layers=[layer]),
    )
    if tokens is None:
        st.code(" | ".join(visible_token(t) for t in res.input_tokens), language=None)
    st.write(f"Top next tokens read at layer {layer}, after the last token:")
    st.dataframe(
        pd.DataFrame(
            {
                "token": [visible_token(t) for t in res.top_tokens[0][-1]],
                "prob": res.top_probs[0, -1],
            }
        ),
        hide_index=True,
        key="proj_lens",
    )

st.subheader("Patchscope")
if st.toggle("Describe with a Patchscope", key="proj_scope"):
    with shown_errors("the Patchscope failed"), st.spinner("patching and generating ..."):
        from workbench.lens.patchscopes import Patchscope

        lm = _cache.model(model_spec)
        # the last hidden state is the final norm's output: write it into the last block
        r = kept(
            "proj_scope_result",
            (model_spec, text, layer),
            lambda: Patchscope(lm).run(
                text, layer=layer, position=-1, target_layer=min(layer, lm.n_layers - 1)
            ),
        )
        st.write(
            f"The state of {visible_token(r.source_token)!r} at layer {r.layer}, patched "
            f"into `{r.target_prompt}` at layer {r.target_layer}, reads:"
        )
        st.markdown(f"> {r.description or '(empty)'}")

st.subheader("Inversion")
st.caption(
    f"Reconstruct the text from this item's stored vector (layer {layer_name}, "
    f"{pooling} pooling) with embedder-guided decoding."
)
inv_inputs = (path, pooling, hook, row)
if st.button("Invert this vector", key="proj_invert"):
    with shown_errors("the inversion failed"), st.spinner("guided decoding ..."):
        from workbench.inversion.embedders import ModelEmbedder
        from workbench.inversion.guided import GuidedInverter
        from workbench.inversion.metrics import sentence_bleu, token_f1

        lm = _cache.model(model_spec)
        embedder = ModelEmbedder(lm, layer=layer, pooling=pooling)
        target = _cache.layer_array(path, mtime, pooling, hook)[row]
        inv = GuidedInverter(
            lm,
            embedder,
            beam_width=2,
            top_k=4,
            keywords=0,
            max_tokens=16,
            rewrite_rounds=0,
            polish="delete",
        )

        def _invert() -> list[dict[str, Any]]:
            out = inv.invert(target)
            return [
                {
                    "inverter": "guided",
                    "text": out.text,
                    "cosine": out.cosine,
                    "bleu": sentence_bleu(text, out.text),
                    "token_f1": token_f1(text, out.text),
                    "seconds": out.seconds,
                }
            ]

        kept("proj_invert_result", inv_inputs, _invert)
inverted = remembered("proj_invert_result", inv_inputs)
if inverted is not None:
    st.dataframe(pd.DataFrame(inverted), hide_index=True, key="proj_inversions")

st.subheader("Attribution")
attr_inputs = (path, pooling, layer, row, colour_by)
if st.button("Attribute", key="proj_attribute"):
    with shown_errors("the attribution failed"), st.spinner("integrated gradients ..."):
        from workbench.attribution import attribute_until_converged

        lm = _cache.model(model_spec)
        own = [p for p in probes if colour_by.endswith(p)] or probes
        if own:
            from workbench.attribution import attribute_probe

            exp, kind = own[0].rsplit("/", 1)
            folder = next(e["path"] for e in found["experiments"] if e["experiment"] == exp)
            probe = _data.saved_probe(Path(folder), kind, pooling, hook)
            template = store.manifest["extraction"].get("template")

            def attribute(n: int) -> Any:
                """The probe's attribution with ``n`` integration steps."""
                return attribute_probe(
                    lm, text, probe, layer, pooling=pooling, template=template, n_steps=n
                )
        else:
            from workbench.attribution import attribute_next_token

            def attribute(n: int) -> Any:
                """The next-token attribution with ``n`` integration steps."""
                return attribute_next_token(lm, text, res.top_ids[0, -1, 0].item(), n_steps=n)

        kept(
            "proj_attr_result",
            attr_inputs,
            lambda: attribute_until_converged(attribute, n_steps=32, max_steps=256),
        )
attr = remembered("proj_attr_result", attr_inputs)
if attr is not None:
    from workbench.viz import attribution_heatmap

    if attr.relative_delta >= 0.05:
        st.warning(
            f"Unreliable map: integrated gradients miss the attributed change by "
            f"{100 * attr.relative_delta:.0f}% even at {attr.n_steps} steps; read only "
            "the largest scores.",
            icon=":material/warning:",
        )
    st.plotly_chart(attribution_heatmap(attr), key="proj_attr")
    st.caption(
        f"{attr.target}: convergence delta {attr.delta:+.2e} "
        f"({100 * attr.relative_delta:.1f}% of the change) at {attr.n_steps} steps"
    )
