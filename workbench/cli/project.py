"""``workbench project``: layer-aligned projections of a run, written as a figure with a layer
slider (HTML, and PNG when kaleido and Chromium are available)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    name="project",
    help="Project a run's layers (PCA, UMAP, t-SNE), aligned across layers, into a figure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _layers(text: str | None) -> Any:
    if text is None or text == "all":
        return None if text is None else "all"
    parts = [p.strip() for p in text.split(",")]
    if ":" not in text and all(p.lstrip("-").isdigit() for p in parts):
        return [int(p) for p in parts]
    return text


@app.command("map")
def map_(
    run: Annotated[Path, typer.Argument(help="a run folder written by extract")],
    method: Annotated[str, typer.Option(help="pca, umap or tsne")] = "pca",
    pooling: Annotated[
        str, typer.Option(help="a pooled view of the run (last, mean, ...)")
    ] = "last",
    layers: Annotated[
        str | None,
        typer.Option(help="'all', '0,15,-1' or '5:20' (default: every stored hook point)"),
    ] = None,
    color_by: Annotated[
        str | None, typer.Option(help="a label column of the run to colour by")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="project the first N rows")] = None,
    align: Annotated[str, typer.Option(help="procrustes or none")] = "procrustes",
    seed: Annotated[int, typer.Option(help="random_state of the projection")] = 0,
    cache_dir: Annotated[
        Path | None, typer.Option(help="cache folder (default <run>/projections)")
    ] = None,
    refit: Annotated[bool, typer.Option(help="ignore a cached fit")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="figure path without suffix (default <run>/figures/projection_<method>_<pooling>)"
        ),
    ] = None,
    png: Annotated[bool, typer.Option(help="also write a PNG (needs kaleido and Chromium)")] = True,
) -> None:
    """Fit (or reuse) an aligned projection of RUN and write a layer-slider figure."""
    from ..activations.store import ActivationStore
    from ..projection import project_store
    from ..viz import layer_projection_slider, write_figure

    store = ActivationStore(run)
    rows = slice(0, limit) if limit else None
    res = project_store(
        store,
        method,
        pooling=pooling,
        layers=_layers(layers),
        rows=rows,
        align=align,
        random_state=seed,
        cache_dir=cache_dir,
        refit=refit,
        progress=True,
    )
    texts = [store.texts[i] for i in res.rows]
    color = None
    if color_by:
        values = store.column(color_by)
        color = [values[i] for i in res.rows]
    names = [
        f"{layer}" if layer is not None else h
        for layer, h in zip(res.layers, res.hook_points, strict=True)
    ]
    fig = layer_projection_slider(
        res.embeddings,
        names,
        color,
        hover=texts,
        color_title=color_by or "label",
        active=len(names) // 2,  # the reference layer (a PNG shows the frame that is active)
        title=f"{method.upper()} of {store.manifest['model']['spec']} ({pooling}), aligned by "
        f"{align}; mean move per layer {res.displacement:.3f}",
    )
    target = out or store.path / "figures" / f"projection_{method}_{pooling}"
    written = write_figure(fig, target, png=png)
    err.print(
        f"{'reused cached' if res.cached else 'fitted'} projection {res.key[:12]} "
        f"({res.path}); {len(res.rows)} rows x {len(res.hook_points)} layers"
    )
    for path in written:
        err.print(f"wrote {path}")
