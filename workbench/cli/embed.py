"""``workbench embed``: how good is each layer, pooling and template of a model as an embedder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="embed",
    help="Embedding quality: evaluate layers x poolings x templates x post-processing on tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="bundled name, hub id, local folder or .gguf file")],
    task: Annotated[
        str,
        typer.Option(
            help="sick / sick-test / sick-train / sick-trial (from "
            "../shared), a SICK or SemEval STS .txt/.tsv file, or "
            "a labelled table with --label-column"
        ),
    ],
    layers: Annotated[str, typer.Option(help="'all', '0,10,-1' or '5:20'")] = "all",
    pooling: Annotated[
        str,
        typer.Option(
            help="mean,last,first,max,native,prompteol,echo,echo-last"
            " or template:<string with {text}>"
        ),
    ] = "mean,last,first,max,prompteol,echo",
    postprocess: Annotated[
        str, typer.Option(help="none,center,whiten (fitted on the task's own sentences)")
    ] = "none,center,whiten",
    metrics: Annotated[
        str | None,
        typer.Option(
            help="sts,retrieval,pair-classification (pairs) or classification,clustering (labels)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default runs/embed-<model>-<task>)")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch and BLAS threads")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N pairs / rows")] = None,
    label_column: Annotated[
        str | None, typer.Option(help="label column of a labelled table")
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="text column of a labelled table")] = None,
    drop_empty: Annotated[
        bool,
        typer.Option(
            help="skip (and count) pairs with an empty sentence instead of refusing the file"
        ),
    ] = False,
    dtype: Annotated[
        str, typer.Option(help="compute dtype: float32, bfloat16, float16")
    ] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    top: Annotated[int, typer.Option(min=1, help="rows of the best-configurations table")] = 10,
    figure: Annotated[bool, typer.Option(help="write the layer x pooling heatmap")] = True,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Evaluate every (layer, pooling, post-processing) of MODEL on TASK: one forward pass per
    distinct template, a results table, a heatmap and the best configurations."""
    from ..evaluation import evaluate_grid, load_task
    from ..models import load_model

    the_task = load_task(
        task, label_column=label_column, text_column=text_column, drop_empty=drop_empty, limit=limit
    )
    info = the_task.describe()
    err.print(
        f"task {info['name']}: "
        + ", ".join(
            f"{k.removeprefix('n_').replace('_', ' ')} {v}"
            for k, v in info.items()
            if k.startswith("n_")
        )
    )
    err.print(f"loading {model} ...")
    lm = load_model(model, dtype=dtype, device=device)
    df = evaluate_grid(
        lm,
        the_task,
        layers=layers,
        poolings=pooling,
        postprocess=postprocess,
        metrics=metrics,
        out=out,
        threads=threads,
        progress=progress,
    )
    summary = df.attrs["summary"]
    out_dir = Path(df.attrs["out"])
    metric = summary["metric"]
    files = [out_dir / f for f in summary["files"]]
    if figure:
        files += _heatmap(df, metric, out_dir)
    _print_best(df, summary, top)
    console.print(
        f"{summary['forward_passes']} forward passes ({summary['timing']['extract_s']:.1f}"
        f" s) + {len(df)} cells evaluated ({summary['timing']['evaluate_s']:.1f} s)"
    )
    console.print("wrote " + ", ".join(str(f) for f in files))


def _heatmap(df: Any, metric: str, out_dir: Path) -> list[Path]:
    import warnings

    from ..errors import MissingDependencyError

    try:
        from ..viz import embedding_heatmap, write_figure

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            files = write_figure(embedding_heatmap(df, metric), out_dir / f"heatmap_{metric}")
        for w in caught:
            err.print(f"[yellow]{w.message}[/]")
        return files
    except MissingDependencyError as exc:
        err.print(f"[yellow]no figure: {exc}[/]")
        return []


def _print_best(df: Any, summary: dict[str, Any], top: int) -> None:
    metric = summary["metric"]
    best = summary["best"]
    if best is None:
        console.print(f"[red]every configuration gave NaN {metric}[/]")
        return
    console.print(
        f"[bold]best {metric}: {best[metric]:.2f}[/] — layer {best['layer']} "
        f"({best['hook_point']}), pooling {best['pooling']}, post-processing {best['postprocess']}"
    )
    shown = [
        c
        for c in (
            "spearman",
            "recall@1",
            "recall@10",
            "mrr",
            "accuracy",
            "v_measure",
            "pair_accuracy",
            "anisotropy",
            "effective_rank",
        )
        if c in df.columns
    ]
    short = {
        "recall@1": "R@1",
        "recall@10": "R@10",
        "mrr": "MRR",
        "anisotropy": "aniso",
        "effective_rank": "eff.rank",
        "pair_accuracy": "pair acc",
        "v_measure": "V",
    }
    table = Table(
        "layer",
        "pooling",
        "post",
        *[short.get(c, c) for c in shown],
        title=f"top {top} by {metric}",
        title_justify="left",
    )
    for _, row in df.sort_values(metric, ascending=False, na_position="last").head(top).iterrows():
        table.add_row(
            str(row["layer"]),
            str(row["pooling"]),
            str(row["postprocess"]),
            *[f"{row[c]:.2f}" for c in shown],
        )
    console.print(table)
    per = Table(
        "pooling", "best layer", "post", metric, title="best per pooling", title_justify="left"
    )
    for pooling, cell in summary["best_per_pooling"].items():
        per.add_row(pooling, str(cell["layer"]), cell["postprocess"], f"{cell[metric]:.2f}")
    console.print(per)
