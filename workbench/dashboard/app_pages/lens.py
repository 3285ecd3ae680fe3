"""Lens: type a prompt and read every layer and position through the logit lens (and the tuned
lens when one is trained), with ``workbench.inversion``."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from workbench.dashboard import _cache
from workbench.dashboard._state import (
    allowed_path,
    missing_api,
    prompt_fits,
    runs_dir,
    shown_errors,
)

st.title("Lens")
if missing_api("The Lens page", "workbench.lens.logit"):
    st.stop()


def _decoders() -> list[str]:
    from workbench.models import bundled_models

    return [m.name for m in bundled_models() if m.kind == "decoder"]


c1, c2, c3 = st.columns([4, 2, 1])
prompt = c1.text_input("Prompt", "The city of Paris is in", key="lens_prompt")
model_name = c2.selectbox("Model", _decoders(), key="lens_model")
k = c3.number_input("Top k", 1, 20, 5, key="lens_k")
c4, c5 = st.columns([2, 3])
target = c4.text_input("Target token (optional, one token, e.g. ' France')", "", key="lens_target")
tuned_dir = c5.text_input(
    "Tuned lens folder (optional)",
    "",
    key="lens_tuned",
    help=f"a folder written by TunedLens.save, e.g. under {runs_dir()}",
)


@st.cache_data(show_spinner="reading every layer ...", max_entries=32)
def _read(model: str, text: str, k: int, target: str, tuned: str) -> dict:
    from workbench.lens.logit import LogitLens

    lm = _cache.model(model)
    out = {"logit": LogitLens(lm).run(text, k=k, target=target or None)}
    if tuned:
        from workbench.lens.tuned import TunedLens

        out["tuned"] = TunedLens.load(Path(tuned), lm).run(text, k=k, target=target or None)
    return out


if prompt.strip() and prompt_fits(_cache.model(model_name).tokenizer, prompt):
    with shown_errors("the lens failed"):
        tuned = str(allowed_path(tuned_dir, "tuned lens folder")) if tuned_dir.strip() else ""
        results = _read(model_name, prompt, int(k), target, tuned)
        tabs = st.tabs([f"{name} lens" for name in results])
        for tab, (name, res) in zip(tabs, results.items(), strict=True):
            with tab:
                from workbench.viz import logit_lens_grid

                grid = logit_lens_grid(
                    res.top1(),
                    res.top_probs[:, :, 0],
                    layer_labels=[int(v) for v in res.layers],
                    position_labels=res.input_tokens,
                    title=f"{name} lens of {res.model}: top next token per layer and position",
                )
                st.plotly_chart(grid, key=f"lens_grid_{name}")
                if res.target_rank is not None:
                    st.caption(f"rank of {res.target!r} after the last token, per layer")
                    st.line_chart(
                        {"rank": res.target_rank[:, -1].tolist()},
                        x_label="layer",
                        y_label="rank (1 = top)",
                        height=220,
                    )
                with st.expander("Table (layer, position, rank)"):
                    st.dataframe(res.to_frame(), hide_index=True)
elif not prompt.strip():
    st.info("type a prompt")
