"""Token heatmaps: attributions (one row per attributed text) and a logit-lens grid
(layer x position) of top tokens and their probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._embedding import require_plotly

# byte-level BPE markers (GPT-2 style byte -> unicode map) and SentencePiece's word start
_MARKERS = {"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "č": "\r", "▁": " "}
_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\u00a0": "⍽"}


def visible_token(token: str) -> str:
    r"""A token string as people can read it: spaces ``␣``, newlines ``↵``, tabs ``⇥``, other
    control characters as control pictures (``\x00`` -> ``␀``) or ``\\xNN``; byte-level
    BPE markers (``Ġ``, ``Ċ``) and SentencePiece's ``▁`` become the space/newline they stand
    for, so ``Ġthe`` and ``" the"`` both read ``␣the``; an empty token is ``∅``.

    Examples:
        >>> [visible_token(t) for t in ["Ġthe", " ", "\n\n", "▁Paris", "##ing", ""]]
        ['␣the', '␣', '↵↵', '␣Paris', '##ing', '∅']
    """
    out = []
    for ch in "".join(_MARKERS.get(c, c) for c in str(token)):
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ord(ch) < 0x20:
            out.append(chr(0x2400 + ord(ch)))
        elif ord(ch) == 0x7F or 0x80 <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out) or "∅"


_clean = visible_token


def attribution_heatmap(
    attributions: Any,
    *,
    labels: Sequence[str] | None = None,
    normalise: bool = True,
    title: str | None = None,
) -> Any:
    """Token attributions as a heatmap: one row per attribution, one cell per token, red for
    tokens that raise the output and blue for those that lower it.

    Args:
        attributions: an ``Attribution`` or a list of them (their texts may differ in length).
        labels: a row label per attribution (default: its target and convergence delta).
        normalise: divide each row by its largest absolute score (colours comparable across
            rows; hover shows the raw score).
        title: figure title.

    Returns:
        A ``plotly.graph_objects.Figure`` (``Heatmap`` with token text in the cells).
    """
    go, _ = require_plotly()
    attrs = [attributions] if hasattr(attributions, "scores") else list(attributions)
    if not attrs:
        raise ValueError("no attributions to draw: pass an Attribution or a non-empty list")
    if labels is not None and len(labels) != len(attrs):
        raise ValueError(f"{len(labels)} labels for {len(attrs)} attributions")
    width = max(len(a.tokens) for a in attrs)
    z = np.full((len(attrs), width), np.nan)
    raw = np.full((len(attrs), width), np.nan)
    text = [[""] * width for _ in attrs]
    for i, a in enumerate(attrs):
        s = np.asarray(a.scores, dtype=float)
        raw[i, : len(s)] = s
        peak = float(np.abs(s).max()) or 1.0
        z[i, : len(s)] = s / peak if normalise else s
        text[i][: len(s)] = [_clean(t) for t in a.tokens]
    rows = (
        list(labels)
        if labels is not None
        else [f"{i}: {a.target} (Δ {a.delta:+.2g})" for i, a in enumerate(attrs)]
    )
    bound = 1.0 if normalise else float(np.nanmax(np.abs(z))) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=text,
            texttemplate="%{text}",
            customdata=raw,
            y=rows,
            x=list(range(width)),
            colorscale="RdBu_r",
            zmin=-bound,
            zmax=bound,
            zmid=0.0,
            colorbar={"title": "relative score" if normalise else "score"},
            hovertemplate="position %{x}: %{text}<br>score %{customdata:.4f}<extra>%{y}</extra>",
        )
    )
    fig.update_layout(
        title=title or "token attributions",
        xaxis_title="token position",
        yaxis_autorange="reversed",
        template="plotly_white",
        height=max(320, 60 * len(attrs) + 200),
    )
    return fig


def logit_lens_grid(
    tokens: Any,
    probs: Any,
    *,
    layer_labels: Sequence[Any] | None = None,
    position_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """A logit-lens grid: layers down, positions across; each cell shows the top predicted token
    and is coloured by its probability.

    Args:
        tokens: ``[layers, positions]`` top token strings (nested lists or an array).
        probs: ``[layers, positions]`` their probabilities in ``[0, 1]``.
        layer_labels: a label per layer (default ``0..layers-1``).
        position_labels: the input token at each position (the x-axis).
        title: figure title.

    Returns:
        A ``plotly.graph_objects.Figure`` (``Heatmap``, the first layer at the top).
    """
    go, _ = require_plotly()
    tok = np.asarray(tokens, dtype=object)
    p = np.asarray(probs, dtype=float)
    if tok.ndim != 2 or p.shape != tok.shape:
        raise ValueError(
            f"tokens and probs must both be [layers, positions], got {tok.shape} and {p.shape}"
        )
    if np.nanmin(p) < 0 or np.nanmax(p) > 1:
        raise ValueError("probs must lie in [0, 1] (probabilities, not logits: apply softmax)")
    n_layers, n_pos = p.shape
    ys = [str(v) for v in (layer_labels if layer_labels is not None else range(n_layers))]
    xs = (
        [f"{i}: {_clean(str(t))}" for i, t in enumerate(position_labels)]
        if position_labels is not None
        else [str(i) for i in range(n_pos)]
    )
    if len(ys) != n_layers or len(xs) != n_pos:
        raise ValueError(
            f"{len(ys)} layer labels and {len(xs)} position labels for a {n_layers} x {n_pos} grid"
        )
    text = [[_clean(str(t)) for t in row] for row in tok]
    fig = go.Figure(
        go.Heatmap(
            z=p,
            x=xs,
            y=ys,
            text=text,
            texttemplate="%{text}",
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            colorbar={"title": "probability"},
            hovertemplate="layer %{y}, position %{x}<br>top token %{text}<br>p = %{z:.3f}"
            "<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or "logit lens: top next token by layer",
        xaxis_title="position",
        yaxis_title="layer",
        yaxis_autorange="reversed",
        template="plotly_white",
        height=max(300, 22 * n_layers + 160),
    )
    return fig
