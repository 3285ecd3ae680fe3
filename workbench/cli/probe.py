"""``workbench probe``: run experiment specs (``probes/*.toml``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="probe",
    help="Probing experiments: run a spec (probes/*.toml) and print its best layers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _layers(text: str) -> Any:
    """'all', '0:10' or '0,15,-1' (kept as a string) -> what ``[extract] layers`` takes."""
    text = text.strip()
    parts = [p.strip() for p in text.split(",")]
    if ":" not in text and all(p.lstrip("-").isdigit() for p in parts):
        return [int(p) for p in parts]
    return text


@app.command("run")
def run(
    spec: Annotated[Path, typer.Argument(help="a spec file, e.g. probes/cities_truth.toml")],
    out: Annotated[Path | None, typer.Option(help="results folder (default runs/<name>)")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="use the first N rows of the dataset")
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="'all', '0,15,-1' or '5:20' instead of the spec's layers")
    ] = None,
    conllu: Annotated[
        Path | None,
        typer.Option(help="a CoNLL-U file instead of the spec's dataset (token-level specs)"),
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch and BLAS threads")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run SPEC end to end (extract, sweep every probe kind, figures, report) and print the
    best layers. Running it again reuses the stored activations and gives the same results."""
    from ..probing import load_spec, report, run_spec

    overrides: dict[str, Any] = {}
    if out is not None:
        overrides["outputs.dir"] = str(out)
    if limit is not None:
        overrides["dataset.limit"] = limit
    if layers is not None:
        overrides["extract.layers"] = _layers(layers)
    if conllu is not None:
        overrides["dataset.spec"] = str(conllu)
    if threads is not None:
        overrides["extract.threads"] = threads
    t0 = time.perf_counter()
    the_spec = load_spec(spec)
    err.print(
        f"spec {the_spec.name}: {the_spec.model.spec} on {the_spec.dataset.spec}, "
        f"probes {', '.join(the_spec.probe.kind)}"
    )
    folder = run_spec(the_spec, overrides=overrides, progress=progress)
    _print_summary(report.load_summary(folder))
    console.print(
        f"results in [bold]{folder}[/] (report.md, results.csv, summary.json, "
        f"figures/); {time.perf_counter() - t0:.1f} s"
    )


def _print_summary(summary: dict[str, Any]) -> None:
    """The best layers per probe kind (compact for a terminal; ``report.summary_rows`` has the
    wide version of ``report.md`` and the dashboard), the generalisation grid
    (``report.generalisation_grid``), timing and notes."""
    from ..probing import report

    d, m = summary["dataset"], summary["model"]
    console.print(
        f"[bold]{summary['name']}[/]: {m['name']} on {d['name']} ({d['n_rows']} rows"
        + (f", limit {d['limit']}" if d["limit"] else "")
        + f"), target "
        f"{report.target_text(summary['target'])}, {summary['n_rows']} rows probed; "
        f"store {'reused' if summary['store']['reused'] else 'extracted'}"
    )
    if summary["kinds"]:
        table = Table(
            "probe",
            "metric",
            "best layer",
            "score [95% CI]",
            "baseline",
            "control@best",
            "selectivity (layer)",
            "MDL best (compression)",
            title="best layers",
            title_justify="left",
        )
        for kind, s in summary["kinds"].items():
            b = s["by_score"]
            ci = f" [{b['low']:.3f}, {b['high']:.3f}]" if "low" in b else ""
            sel, mdl = s.get("by_selectivity"), s.get("by_codelength")
            table.add_row(
                kind,
                s["metric"],
                f"{b['layer']} ({b['pooling']})",
                f"{b['value']:.3f}{ci}",
                f"{s['baseline']['value']:.3f}" if "baseline" in s else "-",
                f"{s['control_at_best']['value']:.3f}" if "control_at_best" in s else "-",
                f"{sel['value']:.3f} ({sel['layer']})" if sel else "-",
                f"{mdl['layer']} ({mdl['compression']:.2f})" if mdl else "-",
            )
        console.print(table)
        for kind, s in summary["kinds"].items():
            if "median_km_at_best" in s:
                km = s["median_km_at_best"]
                console.print(
                    f"{kind}: median great-circle error at the best layer "
                    f"{km['value']:.0f} km [{km['low']:.0f}, {km['high']:.0f}]"
                )
    names, cells = report.generalisation_grid(summary)
    if names:
        table = Table(
            "train \\ test",
            *names,
            title="generalisation accuracy (best layer per pair; diagonal cross-validated)",
            title_justify="left",
        )
        for cells_row in cells:
            table.add_row(*cells_row)
        console.print(table)
    timing = summary["timing_s"]
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()))
    for note in summary["notes"]:
        console.print(f"[yellow]note:[/] {note}")
