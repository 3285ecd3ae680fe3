"""The ``workbench`` command line: ``models``, ``datasets``, ``extract``, ``info``.

Every failure prints one line (the problem, then the fix) and exits 2 for a usage error or 1
for a runtime error; ``--debug`` shows the traceback instead. Ctrl-C (or SIGTERM) says what was
kept and how to resume, and exits 130 (143).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help="Look inside LLM embeddings: extract per-layer, per-token hidden states into a store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
from .embed import app as embed_app  # noqa: E402, I001

app.add_typer(embed_app, name="embed")
from .probe import app as probe_app  # noqa: E402, I001

app.add_typer(probe_app, name="probe")
from .project import app as project_app  # noqa: E402, I001

app.add_typer(project_app, name="project")
from .invert import app as invert_app  # noqa: E402, I001

app.add_typer(invert_app, name="invert")
from .lens import app as lens_app  # noqa: E402, I001

app.add_typer(lens_app, name="lens")
from .dashboard import dashboard as _dashboard  # noqa: E402, I001

app.command("dashboard")(_dashboard)
console = Console()
err = Console(stderr=True)
_DEBUG: dict[str, bool] = {"on": False}


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks instead of one-line errors")
    ] = False,
) -> None:
    """Look inside LLM embeddings: extract per-layer, per-token hidden states into a store."""
    _DEBUG["on"] = bool(_DEBUG["on"]) or debug


@app.command()
def models() -> None:
    """List the bundled models (usable offline) with their layer count and width."""
    from ..models import bundled_models

    table = Table("name", "kind", "blocks", "hidden states", "d_model", "installed", "description")
    for m in bundled_models():
        try:
            m.path()
            installed = "yes"
        except WorkbenchError:
            installed = f"no: {m.install_hint()}"
        table.add_row(
            m.name,
            m.kind,
            str(m.n_layers),
            f"0..{m.n_layers}",
            str(m.d_model),
            installed,
            m.description,
        )
    console.print(table)
    console.print(
        "Any Hugging Face hub id, local folder or .gguf file works too (online for hub ids)."
    )


@app.command()
def datasets() -> None:
    """List the built-in datasets."""
    from ..data import builtin_datasets

    table = Table("name", "description")
    for name, description in builtin_datasets().items():
        table.add_row(name, description)
    console.print(table)
    console.print("Files: .csv .tsv .jsonl .parquet (--text-column, --label-columns) and .conllu.")


@app.command()
def extract(
    model: Annotated[str, typer.Option(help="bundled name, hub id, local folder or .gguf file")],
    dataset: Annotated[str, typer.Option(help="built-in name (cities, ...) or a data file")],
    out: Annotated[
        Path | None, typer.Option(help="run folder (default runs/<model>-<data>-<hash>)")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            help="'all' (default unless --hook-points), '0,10,-1' or '5:20' (hidden-state indices)"
        ),
    ] = None,
    hook_points: Annotated[
        str | None,
        typer.Option(
            help="hook names/patterns instead of layers, comma separated, e.g. 'blocks.*.hook_mlp_out'"
        ),
    ] = None,
    pooling: Annotated[
        str, typer.Option(help="mean,last,first,max,tokens,pos:K,native")
    ] = "mean,last",
    template: Annotated[
        str | None, typer.Option(help="'prompteol', 'echo' or a string with {text}")
    ] = None,
    pool_over: Annotated[
        str | None, typer.Option(help="input or text (default: text for echo templates)")
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="text column of a data file")] = None,
    label_columns: Annotated[
        str | None, typer.Option(help="label columns to keep, comma separated")
    ] = None,
    drop_empty: Annotated[
        bool, typer.Option("--drop-empty", help="drop rows whose text is empty or whitespace")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="use the first N rows")] = None,
    storage_dtype: Annotated[str, typer.Option(help="float32 or float16")] = "float32",
    dtype: Annotated[
        str, typer.Option(help="compute dtype: float32, bfloat16, float16")
    ] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    max_length: Annotated[
        int | None, typer.Option(help="truncate to N tokens (default: context)")
    ] = None,
    truncation: Annotated[str, typer.Option(help="warn (truncate and count) or error")] = "warn",
    batch_tokens: Annotated[int, typer.Option(min=1, help="padded tokens per batch")] = 4096,
    max_batch_size: Annotated[int, typer.Option(min=1, help="texts per batch at most")] = 64,
    shard_size: Annotated[
        int, typer.Option(min=1, help="texts per shard (unit of resumption)")
    ] = 1024,
    padding_side: Annotated[
        str, typer.Option(help="right or left (vectors do not depend on it)")
    ] = "right",
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads (default: torch's)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of built-in datasets")] = 0,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="replace an out folder holding another workbench run (nothing else is ever replaced)"
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            help="check the sha256 of kept shards before reusing them (a damaged shard is recomputed)"
        ),
    ] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (Ray actors, one model replica each)")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address (auto, ray://head:10001); default: start a local one"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray actors (model replicas); default: GPUs, or CPUs")
    ] = None,
) -> None:
    """Extract activations of MODEL over DATASET into a resumable store (rerun to resume)."""
    from ..activations.extract import extract as run_extract
    from ..data import load_dataset
    from ..models import load_model

    if engine == "ray":  # URLs (s3://, gs://, file://...) are read by Ray Data
        from ..activations.ray_engine import read_texts

        load_dataset = partial(read_texts, address=address)  # noqa: F811
    options: dict[str, Any] = {"drop_empty": True} if drop_empty else {}
    data = load_dataset(
        dataset,
        text_column=text_column,
        label_columns=label_columns.split(",") if label_columns else None,
        limit=limit,
        seed=seed,
        **options,
    )
    err.print(f"loading {model} ...")
    lm = load_model(model, dtype=dtype, device=device)
    err.print(
        f"loaded {lm.name} in {lm.load_seconds:.1f} s: {lm.n_layers} blocks, d_model "
        f"{lm.d_model}, {lm.kind}"
    )
    try:
        store = run_extract(
            lm,
            data,
            layers=layers,
            hook_points=hook_points.split(",") if hook_points else None,
            pooling=pooling,
            template=template,
            pool_over=pool_over,
            out=out,
            storage_dtype=storage_dtype,
            max_length=max_length,
            truncation=truncation,
            batch_tokens=batch_tokens,
            max_batch_size=max_batch_size,
            shard_size=shard_size,
            padding_side=padding_side,
            threads=threads,
            overwrite=overwrite,
            verify_resume=verify,
            progress=progress,
            engine=engine,
            ray_address=address,
            num_workers=workers,
        )
    except KeyboardInterrupt as exc:
        interrupted(exc)
    _print_info(store, stats=False)


@app.command()
def info(
    run: Annotated[Path, typer.Argument(help="a run folder written by extract")],
    stats: Annotated[
        bool, typer.Option(help="per-layer norm statistics (reads the store)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw manifest")] = False,
    verify: Annotated[
        bool, typer.Option(help="with --stats: check the sha256 of every file first")
    ] = True,
) -> None:
    """Print a run's manifest in a readable form."""
    from ..activations.store import ActivationStore

    store = ActivationStore(run)
    if stats and verify:
        store.verify(progress=True)
    if as_json:
        console.print_json(json.dumps(store.manifest))
        return
    _print_info(store, stats=stats)


def _print_info(store: Any, stats: bool) -> None:
    m = store.manifest
    model, data, spec = m["model"], m["dataset"], m["extraction"]
    s = m.get("stats", {})
    table = Table(show_header=False, title=f"run {store.path}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("status", f"{m['status']}  ({len(store.shards)}/{spec['n_shards']} shards)"),
        (
            "model",
            f"{model['spec']}  [{model['class']}, {model['kind']}, {model['n_layers']} blocks, "
            f"d_model {model['d_model']}, {model['dtype']} on {model['device']}]",
        ),
        ("weights", f"fingerprint {model['weights_fingerprint'][:16]}  from {model['source']}"),
        (
            "dataset",
            f"{data['name']}: {data['n_rows']} rows, columns {data['columns']}  "
            f"(fingerprint {data['fingerprint'][:16]})",
        ),
        ("hook points", _summarise_hooks(spec["hook_points"])),
        ("layers", _ranges(sorted(int(k) for k in spec["layers"])) or "-"),
        ("poolings", ", ".join(spec["poolings"])),
        (
            "template",
            f"{spec['template']!r}, pooling over {spec.get('pool_over', 'input')}"
            if spec["template"]
            else "-",
        ),
        (
            "storage",
            f"{spec['storage_dtype']}, shards of {spec['shard_size']} rows, "
            f"{_size(store.path)} on disk",
        ),
        (
            "tokens",
            f"{s.get('n_tokens', '?')} (max_length {spec['max_length']}, "
            f"truncated {s.get('n_truncated', 0)})",
        ),
        (
            "speed",
            f"{s.get('tokens_per_s', '?')} tokens/s, {s.get('texts_per_s', '?')} texts/s, "
            f"{s.get('seconds', '?')} s, {spec.get('threads', '?')} threads",
        ),
        (
            "written",
            f"{m.get('created')} -> {m.get('finished', '-')} by workbench {m['workbench_version']}",
        ),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    if stats and store.complete:
        pooled = [p for p in store.pooling_names if p != "tokens"]
        if not pooled:
            return
        import numpy as np

        st = Table(
            "hook point",
            *[f"|{p}| mean" for p in pooled],
            f"{pooled[0]} mean cos",
            title="per-layer statistics",
            title_justify="left",
        )
        for name in store.hook_points:
            cells = []
            for p in pooled:
                x = store.get(p, hook_points=[name])[:, 0].astype(np.float64)
                cells.append(f"{np.linalg.norm(x, axis=1).mean():.2f}")
            x = store.get(pooled[0], hook_points=[name])[:, 0].astype(np.float64)
            cells.append(f"{_mean_cosine(x):.3f}")
            st.add_row(name, *cells)
        console.print(st)


def _mean_cosine(x: Any, pairs: int = 2000) -> float:
    """Anisotropy: mean cosine similarity of random pairs of rows."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(x), pairs), rng.integers(0, len(x), pairs)
    keep = a != b
    xa, xb = x[a[keep]], x[b[keep]]
    denom = np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1)
    return (
        float(np.mean((xa * xb).sum(1) / np.maximum(denom, 1e-12))) if keep.any() else float("nan")
    )


def _summarise_hooks(names: list[str]) -> str:
    kinds: dict[str, int] = {}
    for n in names:
        kind = n.split(".")[-1]
        kinds[kind] = kinds.get(kind, 0) + 1
    return f"{len(names)}: " + ", ".join(f"{k} x{v}" for k, v in kinds.items())


def _ranges(values: list[int]) -> str:
    out, start, prev = [], None, None
    for v in values + [None]:  # type: ignore[list-item]
        if start is None:
            start = prev = v
        elif v is not None and prev is not None and v == prev + 1:
            prev = v
        else:
            out.append(f"{start}" if start == prev else f"{start}..{prev}")
            start = prev = v
    return ", ".join(out)


def _size(path: Path) -> str:
    total: float = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1024:
            return f"{total:.0f} {unit}"
        total /= 1024
    return f"{total:.1f} TB"


_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
}


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"warning: {message}\n"


def _on_sigterm(signum: int, frame: Any) -> None:
    _DEBUG["sigterm"] = True
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure prints as one line (problem, then fix), exit code 2 for usage
    errors and 1 for runtime errors; ``--debug`` (anywhere) or ``WORKBENCH_DEBUG=1`` shows the
    traceback instead."""
    from ..artifacts import output_error
    from ..errors import usage_error, use_cli_names

    args = list(sys.argv[1:] if argv is None else argv)
    _DEBUG["on"] = "--debug" in args or os.environ.get("WORKBENCH_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    use_cli_names(True)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(args=args, prog_name="workbench", standalone_mode=False)
    except typer.Abort:  # end of input at a prompt
        _fail("aborted", 1)
    except typer.TyperException as exc:  # usage errors found by the parser: exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":
            err.print(exc.format_message(), markup=False)  # type: ignore[attr-defined]
        else:
            _fail(f"{exc.format_message()} (see --help)", exc.exit_code)  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except Exception as exc:
        if _DEBUG["on"]:
            raise
        if isinstance(exc, WorkbenchError):
            _fail(str(exc), 2 if usage_error(exc) else 1)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            _fail(str(output_error(exc, exc.filename or ".")), 1)
        if isinstance(exc, OSError) and exc.strerror:
            _fail(f"{exc.strerror}: {exc.filename or ''} (check the path; --debug shows where)", 1)
        _fail(
            f"{type(exc).__name__}: {exc} (an unexpected failure: rerun with --debug for the "
            "traceback and report it)",
            1,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        use_cli_names(False)
        warnings.formatwarning = formatwarning
    if code == 130:  # Ctrl-C (or SIGTERM), turned into an exit code by Typer
        if not _DEBUG.get("said"):
            err.print(
                "interrupted: what was completed is kept; run the same command again to resume",
                soft_wrap=True,
                markup=False,
            )
        sys.exit(143 if _DEBUG.get("sigterm") else 130)
    if isinstance(code, int) and code:
        sys.exit(code)


def interrupted(exc: KeyboardInterrupt) -> None:
    """Print what an interrupted command kept and how to resume (its message), then exit."""
    text = str(exc)
    if text and text != "SIGTERM":
        err.print(text, soft_wrap=True, markup=False)
        _DEBUG["said"] = True
    raise KeyboardInterrupt from exc


if __name__ == "__main__":
    main()
