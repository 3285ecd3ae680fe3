"""Attribution: token heatmaps (layer integrated gradients, captum) for a probe's score, the
similarity of a text pair, or the next token (``workbench.attribution``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from workbench.dashboard import _cache, _data
from workbench.dashboard._state import kept, missing_api, prompt_fits, runs_dir, shown_errors

st.title("Attribution")
if missing_api("The Attribution page", "workbench.attribution"):
    st.stop()
root = runs_dir()
found = _cache.scan(root)

target_kind = st.radio(
    "Attribute", ["next token", "probe", "similarity pair"], horizontal=True, key="attr_kind"
)
c_steps, c_max = st.columns(2)
steps = c_steps.slider(
    "Integration steps (first try)",
    8,
    128,
    32,
    8,
    key="attr_steps",
    help="integrated gradients start here and double the steps until the "
    "convergence delta is under 5% of the attributed change",
)
max_steps = c_max.select_slider(
    "At most",
    [16, 32, 64, 128, 256, 512, 1024],
    value=512,
    key="attr_max_steps",
    help="the step budget; past it the map is shown with a warning",
)
max_steps = max(int(max_steps), int(steps))


def _bundled(kind: str | None = None) -> list[str]:
    from workbench.models import bundled_models

    return [m.name for m in bundled_models() if kind is None or m.kind == kind]


def _converged(name: str, inputs: tuple, attribute) -> list:
    """Attributions for ``inputs``, steps raised until converged, kept until inputs change."""
    from workbench.attribution import attribute_until_converged

    def run() -> list:
        out = attribute_until_converged(attribute, n_steps=int(steps), max_steps=max_steps)
        return [out] if hasattr(out, "scores") else list(out)

    with st.spinner("integrated gradients ..."):
        return kept(name, (*inputs, int(steps), max_steps), run)


def _show(attrs: list, key: str) -> None:
    """The heatmap, each map's convergence delta, and a banner when it did not converge."""
    from workbench.attribution import worst_delta
    from workbench.viz import attribution_heatmap, visible_token

    worst = worst_delta(attrs)
    if worst >= 0.05:
        st.warning(
            f"Unreliable map: integrated gradients miss the attributed change by "
            f"{100 * worst:.0f}% even at {attrs[0].n_steps} steps (the budget). Raise "
            "'At most', or read only the largest scores.",
            icon=":material/warning:",
        )
    st.plotly_chart(attribution_heatmap(attrs), key=key)
    for a in attrs:
        st.caption(
            f"{a.target}: output {a.output:.3f}, baseline {a.baseline_output:.3f}, "
            f"convergence delta {a.delta:+.2e} ({100 * a.relative_delta:.1f}% of the "
            f"change) at {a.n_steps} steps; top tokens "
            f"{', '.join(f'{visible_token(t)} {s:+.3f}' for t, s in a.top(3))}"
        )


if target_kind == "next token":
    c1, c2, c3 = st.columns([4, 1, 1])
    text = c1.text_input("Prompt", "The city of Paris is in", key="attr_prompt")
    target = c2.text_input("Next token", " France", key="attr_target")
    foil = c3.text_input("Foil (optional)", " Germany", key="attr_foil")
    model = st.selectbox("Model", _bundled("decoder"), key="attr_model")
    if text.strip() and target and prompt_fits(_cache.model(model).tokenizer, text):
        with shown_errors("the attribution failed"):
            from workbench.attribution import attribute_next_token

            lm = _cache.model(model)
            attrs = _converged(
                "attr_next_result",
                (model, text, target, foil),
                lambda n: attribute_next_token(lm, text, target, foil or None, n_steps=n),
            )
            _show(attrs, "attr_next")

elif target_kind == "probe":
    experiments = found["experiments"]
    if not experiments:
        st.info(
            f"No probe experiments under `{root}`: run `workbench probe run "
            "probes/cities_truth.toml` first."
        )
        st.stop()
    names = [e["experiment"] for e in experiments]
    c1, c2 = st.columns(2)
    exp = c1.selectbox("Experiment", names, key="attr_exp")
    e = experiments[names.index(exp)]
    folder = Path(e["path"])
    kind = c2.selectbox("Probe", e["probes"].split(", "), key="attr_probe")
    with shown_errors("could not read the probe", stop=True):
        cfg = _data.probe_config(folder, kind)
        store = _cache.open_store(_data.experiment_store(folder, cfg["config"]))
        layers = sorted(v for v in store.layers if v > 0)
        best = cfg.get("best", {}).get("by_score", {})
        c3, c4 = st.columns([3, 1])
        layer = c3.select_slider(
            "Layer", layers, value=best.get("layer", layers[-1]), key="attr_layer"
        )
        poolings = cfg["config"]["poolings"]
        pooling = c4.selectbox("Pooling", poolings, key="attr_pooling")
        texts = store.texts
        text = st.text_input("Text", texts[0], key="attr_text")
    lm = _cache.model(store.manifest["model"]["spec"])
    if text.strip() and prompt_fits(lm.tokenizer, text):
        with shown_errors("the attribution failed"):
            from workbench.attribution import attribute_probe

            probe = _data.saved_probe(folder, kind, pooling, store.layers[layer])
            outputs = probe.classes_.tolist() or list(cfg["config"]["target"])
            output = (
                None
                if probe.coef_.shape[0] == 1
                else (probe.classes_[-1] if len(probe.classes_) else 0)
            )
            if probe.coef_.shape[0] > 1:
                st.caption(
                    f"attributing output {outputs[-1] if len(probe.classes_) else outputs[0]}"
                    f" of {outputs}"
                )
            template = store.manifest["extraction"].get("template")
            attrs = _converged(
                "attr_probe_result",
                (str(folder), kind, layer, pooling, text),
                lambda n: attribute_probe(
                    lm,
                    text,
                    probe,
                    layer,
                    pooling=pooling,
                    output=output,
                    n_steps=n,
                    template=template,
                ),
            )
            _show(attrs, "attr_probe_map")

else:
    c1, c2 = st.columns(2)
    a = c1.text_input("Text A", "A man is playing a guitar.", key="attr_a")
    b = c2.text_input("Text B", "Someone plays an instrument.", key="attr_b")
    model = st.selectbox("Model", _bundled(), key="attr_sim_model")
    if a.strip() and b.strip() and prompt_fits(_cache.model(model).tokenizer, a, b):
        with shown_errors("the attribution failed"):
            from workbench.attribution import attribute_similarity

            lm = _cache.model(model)
            attrs = _converged(
                "attr_sim_result",
                (model, a, b),
                lambda n: attribute_similarity(lm, a, b, n_steps=n),
            )
            _show(attrs, "attr_sim")
