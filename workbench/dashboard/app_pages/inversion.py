"""Inversion: embed a text, reconstruct it with each inverter (embedder-guided decoding, trained
soft-prefix inverters found under the runs folder, and their hybrid), score the reconstructions
(cosine, BLEU, token F1), and add Gaussian noise to see the leakage/defence trade-off
(``workbench.inversion``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._state import missing_api, runs_dir, shown_errors
from workbench.inversion.embedders import ST_PREFIX, EmbedderSpec, parse_embedder_spec

st.title("Inversion")
if missing_api("The Inversion page", "workbench.inversion.guided"):
    st.stop()
root = runs_dir()

POOLINGS = ["auto", "native", "mean", "last", "first", "max"]
trained = _cache.inverters(str(root))

text = st.text_area(
    "Text to embed and invert", "A man is playing a guitar on stage.", height=70, key="inv_text"
)
stores = [s for s in _cache.scan(root)["stores"] if s["status"] == "complete"]
if stores:
    with st.expander("or pick an item from a store"):
        pick_store = st.selectbox("Store", [s["store"] for s in stores], key="inv_store")
        path = next(s["path"] for s in stores if s["store"] == pick_store)
        mtime = (Path(path) / "manifest.json").stat().st_mtime
        texts = _cache.column(path, mtime, "text")
        item = st.number_input("Row", 0, len(texts) - 1, 0, key="inv_row")
        st.caption(texts[int(item)])
        st.button(
            "Use this item",
            key="inv_use",
            on_click=st.session_state.update,
            kwargs={"inv_text": texts[int(item)]},
        )

c1, c2, c3, c4 = st.columns([3, 1, 2, 3])
emb_model = c1.text_input(
    "Embedder model",
    "minilm-l6",
    key="inv_emb_model",
    help="the embedder whose vectors are inverted: any model load_model reads (bundled name, "
    "hub id, folder, .gguf), pooled at a layer; or st:NAME_OR_PATH, run by sentence-transformers",
)
is_st = emb_model.strip().startswith(ST_PREFIX)
layer = c2.number_input(
    "Layer", value=-1, step=1, key="inv_layer", disabled=is_st, help="hidden_states index"
)
pooling = c3.selectbox(
    "Pooling",
    POOLINGS,
    key="inv_pooling",
    disabled=is_st,
    help="auto: the sentence encoder's own (native), else mean",
)
proposer = c4.text_input(
    "Proposer (decoder LLM)",
    "smollm2-135m",
    key="inv_proposer",
    help="the decoder LLM that proposes tokens (any load_model decoder)",
)
budget = st.select_slider(
    "Guided search budget (CPU seconds)",
    options=[0, 5, 10, 20, 30, 60],
    value=0,
    key="inv_budget",
    help="0: one quick guided decode (a few seconds); more: the full zero-shot search (rewrite "
    "rounds and word edits) for that many CPU seconds. 30 s gives cosine about 0.9 on MiniLM "
    "(benchmarks/INVERSION_ZERO_SHOT.md)",
)
noise = st.slider(
    "Noise scale (defence)",
    0.0,
    0.3,
    0.0,
    0.01,
    key="inv_noise",
    help="the embedding is unit-normalised and N(0, scale^2) noise is added to "
    "each dimension before inversion (vec2text's defence)",
)
with shown_errors("the embedder spec is not valid", stop=True):
    spec = (
        emb_model.strip()
        if is_st
        else str(
            EmbedderSpec(emb_model.strip(), int(layer), None if pooling == "auto" else pooling)
        )
    )
    parsed = parse_embedder_spec(spec)
emb_name = (
    spec
    if parsed.sentence_transformers
    else _data.embedder_name(parsed.model, int(layer), parsed.pooling)
)
matching = [t for t in trained if t["embedder"] == emb_name]
methods = ["guided"] + [f"trained: {t['inverter']}" for t in matching]
if matching:
    methods.append(f"hybrid: {matching[0]['inverter']}")
chosen = st.multiselect(
    "Inverters",
    methods,
    default=methods[:2],
    key="inv_methods",
    help="trained inverters are listed when one under the runs folder was "
    "trained for this embedder",
)
if not matching:
    st.caption(
        f"No trained inverter for {emb_name} under `{root}` (train one with "
        "`workbench.inversion.trained.SoftPrefixInverter.fit`); guided decoding needs "
        "no training."
    )
go = st.button("Embed and invert", type="primary", key="inv_go")

if go and text.strip() and chosen:
    with shown_errors("the inversion failed"), st.status("inverting ...", expanded=True) as status:
        from workbench.inversion.embedders import load_proposer
        from workbench.inversion.guided import GuidedInverter
        from workbench.inversion.leakage import QUICK_GUIDED, add_noise
        from workbench.inversion.metrics import sentence_bleu, token_f1

        st.write(f"embedding with {spec} ...")
        emb = _cache.embedder(spec)
        clean = emb.embed([text])  # [1, dim]
        target = add_noise(clean, noise, seed=0)[0] if noise > 0 else clean[0]
        cos_noisy = float(target @ clean[0] / (np.linalg.norm(target) * np.linalg.norm(clean[0])))
        lm = load_proposer(_cache.model(proposer.strip()))
        rows = []
        for method in chosen:
            st.write(f"{method} ...")
            if method == "guided":
                opts = QUICK_GUIDED if not budget else {"budget": float(budget)}
                inv = GuidedInverter(lm, emb, **opts)
                hyp = inv.invert(target).text
            else:
                from workbench.inversion.trained import SoftPrefixInverter

                name = method.split(": ", 1)[1]
                ckpt = next(t for t in matching if t["inverter"] == name)
                soft = SoftPrefixInverter.load(ckpt["path"], _cache.model(ckpt["model"]), emb)
                if method.startswith("trained"):
                    hyp = soft.invert(target[None])[0]
                else:
                    from workbench.inversion.correction import HybridInverter

                    hyp = (
                        HybridInverter(soft, GuidedInverter(lm, emb, **QUICK_GUIDED))
                        .invert(target)
                        .text
                    )
            h_vec = emb.embed([hyp if hyp.strip() else "."])[0]
            rows.append(
                {
                    "method": method,
                    "text": hyp,
                    "cosine": float(
                        h_vec @ clean[0] / (np.linalg.norm(h_vec) * np.linalg.norm(clean[0]))
                    ),
                    "bleu": sentence_bleu(text, hyp),
                    "token_f1": token_f1(text, hyp),
                }
            )
        status.update(label=f"{len(rows)} inversions at noise {noise:.2f}", state="complete")
    if rows:
        st.session_state["inv_last"] = (text, noise, cos_noisy, rows)
        history = st.session_state.setdefault("inv_history", [])
        history.extend(
            {"reference": text, "noise": noise, "cosine(noisy, clean)": cos_noisy, **r}
            for r in rows
        )

if "inv_last" in st.session_state:
    from workbench.viz import inversion_table

    ref, level, cos_noisy, rows = st.session_state["inv_last"]
    st.plotly_chart(
        inversion_table(
            rows,
            reference=ref,
            title=f"noise {level:.2f}: the noisy vector keeps cosine "
            f"{cos_noisy:.3f} to the clean one",
        ),
        key="inv_table",
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    hist = pd.DataFrame(st.session_state.get("inv_history", []))
    hist = hist[hist["reference"] == ref]
    if hist["noise"].nunique() > 1:
        st.caption(
            "Leakage/defence trade-off for this text: reconstruction quality against the "
            "noise scale (move the slider and invert again to add points)"
        )
        curve = hist.groupby("noise")[["bleu", "token_f1", "cosine", "cosine(noisy, clean)"]].mean()
        st.line_chart(curve, x_label="noise scale", height=260)
