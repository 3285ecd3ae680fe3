"""Projection: PCA / UMAP / t-SNE of a store's items at every layer, aligned so that the layer
slider keeps items in place; colour by label or probe score; select a point to see its text and
tokens, logit-lens top tokens, Patchscope description, inverter reconstructions and attribution
map (``workbench.projection``, ``workbench.inversion``, ``workbench.attribution``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._state import missing_api, runs_dir, shown_errors

st.title("Projection")
if missing_api("The Projection page", "workbench.projection"):
    st.stop()
root = runs_dir()
found = _cache.scan(root)
stores = [s for s in found["stores"] if s["status"] == "complete"
          and any(p not in ("tokens", "") for p in s["poolings"].split(", "))]
if not stores:
    st.info(f"No complete activation store under `{root}`: extract one on the Runs page.")
    st.stop()

names = [s["store"] for s in stores]
# default: the store of a probe experiment (cities_truth first), so probe scores can colour it
probed = [str(Path(e["path"]) / "store") for e in sorted(
    found["experiments"], key=lambda e: e["experiment"] != "cities_truth")]
paths = [s["path"] for s in stores]
default = next((paths.index(p) for p in probed if p in paths), 0)
c1, c2, c3 = st.columns([3, 1, 2])
name = c1.selectbox("Store", names, index=default, key="proj_store")
info = stores[names.index(name)]
path = info["path"]
mtime = (Path(path) / "manifest.json").stat().st_mtime
poolings = [p for p in info["poolings"].split(", ") if p != "tokens"]
pooling = c2.selectbox("Pooling", poolings, key="proj_pooling")
method = c3.radio("Method", ["pca", "umap", "tsne"], horizontal=True, key="proj_method",
                  help="PCA is instant; UMAP and t-SNE fit every layer once (minutes for 10k "
                       "items on 2 cores) and are cached on disk under the store")

with shown_errors("the projection failed", stop=True):
    with st.status(f"projecting {info['rows']} items x {info['hook points']} layers "
                   f"({method}) ...", expanded=False) as status:
        proj = _cache.projection(path, mtime, method, pooling)
        status.update(label=f"{method}: {info['rows']} items x {len(proj['layers'])} layers"
                            f"{' (cached fit)' if proj['cached'] else ''}; mean move between "
                            f"layers {proj['displacement']:.3f}", state="complete")
    emb = proj["embeddings"]  # [layers, rows, 2]
    layer_names = [str(v) if v is not None else h for v, h in
                   zip(proj["layers"], proj["hook_points"], strict=True)]
    store = _cache.open_store(path)
    probes = _data.experiments_on(found["experiments"], path)
    colour_options = ["none", *store.columns, *[f"probe score: {p}" for p in probes]]
    default_colour = colour_options.index("label") if "label" in colour_options else 0
    c4, c5 = st.columns([3, 2])
    layer_name = c4.select_slider("Layer", layer_names, value=layer_names[len(layer_names) // 2],
                                  key="proj_layer")
    colour_by = c5.selectbox("Colour by", colour_options, index=default_colour,
                             key="proj_colour")
    li = layer_names.index(layer_name)
    hook = proj["hook_points"][li]
    texts = _cache.column(path, mtime, "text")
    if colour_by == "none":
        colour = np.zeros(len(texts), dtype=int)
    elif colour_by.startswith("probe score: "):
        exp, kind = colour_by.removeprefix("probe score: ").rsplit("/", 1)
        folder = next(e["path"] for e in found["experiments"] if e["experiment"] == exp)
        colour = _cache.probe_scores(folder, kind, pooling, hook, path, mtime)
    else:
        colour = np.asarray(_cache.column(path, mtime, colour_by), dtype=object)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in colour)
        if numeric and len(set(colour.tolist())) > 20:  # a quantity: a colour scale
            colour = colour.astype(float)
    from workbench.viz import projection_scatter

    lo, hi = emb.min(axis=(0, 1)), emb.max(axis=(0, 1))
    pad = 0.05 * (hi - lo)
    xy = emb[li].astype(np.float64)
    fig = projection_scatter(xy, None if colour_by == "none" else colour, hover=list(texts),
                             color_title=colour_by.removeprefix("probe score: "),
                             title=f"{method} of layer {layer_name} ({hook}), {pooling} pooling")
    fig.update_layout(height=560, dragmode="select", legend={"orientation": "h", "y": -0.1})
    fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]])
    fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]])
    selected = st.session_state.get("proj_row")
    if isinstance(selected, int) and 0 <= selected < len(xy):
        fig.add_scattergl(x=[xy[selected, 0]], y=[xy[selected, 1]], mode="markers",
                          name=f"row {selected}", hoverinfo="skip",
                          marker={"size": 16, "color": "rgba(0,0,0,0)",
                                  "line": {"width": 2, "color": "black"}})
    event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                            key="proj_scatter")
    points = (event.selection.points if event and event.selection else []) or []
    # a selected point is found by its coordinates (nearest item of this layer)
    picked = sorted({int(np.argmin((xy[:, 0] - p["x"]) ** 2 + (xy[:, 1] - p["y"]) ** 2))
                     for p in points if "x" in p and "y" in p})
    if picked and picked != st.session_state.get("proj_last_pick"):
        st.session_state["proj_last_pick"] = picked
        st.session_state["proj_row"] = picked[0]
        st.rerun()
    if len(picked) > 1:
        with st.expander(f"{len(picked)} selected items", expanded=False):
            st.dataframe(pd.DataFrame({"row": picked, "text": [texts[i] for i in picked]}),
                         hide_index=True)

st.subheader("Item")
row = st.number_input("Row (or select a point above)", 0, len(texts) - 1, value=None,
                      key="proj_row", placeholder="select a point")
if row is None:
    st.caption("Click or box-select a point in the scatter to inspect it.")
    st.stop()
row = int(row)
text = texts[row]
layer = proj["layers"][li]
st.markdown(f"**row {row}** (layer {layer_name}): {text}")
with shown_errors("could not read the item's labels and tokens", stop=True):
    labels = {c: _cache.column(path, mtime, c)[row] for c in store.columns}
    st.caption(" · ".join(f"{k} = {v}" for k, v in labels.items()))
    try:
        tok = store.tokens(row)
        tokens = list(tok.strings)
    except Exception:  # noqa: BLE001 - stores without token data: tokenise with the model
        tokens = None
    if tokens is not None:
        st.code(" | ".join(tokens), language=None)

model_spec = store.manifest["model"]["spec"]
if layer is None:
    st.info(f"{hook} is not a residual layer: the lens, Patchscopes and attributions read "
            "residual layers only")
    st.stop()
lens_tab, scope_tab, inv_tab, attr_tab = st.tabs(["Logit lens", "Patchscope", "Inverters",
                                                  "Attribution"])
with lens_tab, shown_errors("the logit lens failed"):
    from workbench.lens.logit import LogitLens

    lm = _cache.model(model_spec)
    if tokens is None:
        st.code(" | ".join(lm.tokenizer.convert_ids_to_tokens(lm.tokenizer(text)["input_ids"])),
                language=None)
    res = LogitLens(lm).run(text, k=10, layers=[layer])
    st.write(f"Top next tokens read at layer {layer}, after the last token:")
    st.dataframe(pd.DataFrame({"token": res.top_tokens[0][-1],
                               "prob": res.top_probs[0, -1]}), hide_index=True, key="proj_lens")

with scope_tab:
    if st.toggle("Describe with a Patchscope", key="proj_scope"):
        with shown_errors("the Patchscope failed"), st.spinner("patching and generating ..."):
            from workbench.lens.patchscopes import Patchscope

            lm = _cache.model(model_spec)
            # the last hidden state is the final norm's output: write it into the last block
            r = Patchscope(lm).run(text, layer=layer, position=-1,
                                   target_layer=min(layer, lm.n_layers - 1))
            st.write(f"The state of {r.source_token!r} at layer {r.layer}, patched into "
                     f"`{r.target_prompt}` at layer {r.target_layer}, reads:")
            st.markdown(f"> {r.description or '(empty)'}")

with inv_tab:
    st.caption("Reconstruct the text from this item's stored vector (layer "
               f"{layer_name}, {pooling} pooling) with embedder-guided decoding.")
    if st.button("Invert this vector", key="proj_invert"):
        with shown_errors("the inversion failed"), st.status("guided decoding ...") as status:
            from workbench.inversion.embedders import ModelEmbedder
            from workbench.inversion.guided import GuidedInverter
            from workbench.inversion.metrics import sentence_bleu, token_f1

            lm = _cache.model(model_spec)
            embedder = ModelEmbedder(lm, layer=layer, pooling=pooling)
            target = _cache.layer_array(path, mtime, pooling, hook)[row]
            inv = GuidedInverter(lm, embedder, beam_width=2, top_k=4, keywords=0,
                                 max_tokens=16, rewrite_rounds=0)
            out = inv.invert(target)
            status.update(label=f"guided decoding: {out.seconds:.1f} s", state="complete")
            st.dataframe(pd.DataFrame([{"inverter": "guided", "text": out.text,
                                        "cosine": out.cosine,
                                        "bleu": sentence_bleu(text, out.text),
                                        "token_f1": token_f1(text, out.text)}]),
                         hide_index=True, key="proj_inversions")

with attr_tab:
    if st.button("Attribute", key="proj_attribute"):
        with shown_errors("the attribution failed"), st.spinner("integrated gradients ..."):
            from workbench.viz import attribution_heatmap

            lm = _cache.model(model_spec)
            own = [p for p in probes if colour_by.endswith(p)] or probes
            if own:
                from workbench.attribution import attribute_probe

                exp, kind = own[0].rsplit("/", 1)
                folder = next(e["path"] for e in found["experiments"] if e["experiment"] == exp)
                probe = _data.saved_probe(Path(folder), kind, pooling, hook)
                template = store.manifest["extraction"].get("template")
                attr = attribute_probe(lm, text, probe, layer, pooling=pooling,
                                       template=template, n_steps=16)
            else:
                from workbench.attribution import attribute_next_token

                attr = attribute_next_token(lm, text, res.top_ids[0, -1, 0].item(), n_steps=16)
            st.plotly_chart(attribution_heatmap(attr), key="proj_attr")
