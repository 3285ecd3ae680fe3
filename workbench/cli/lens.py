"""``workbench lens``: logit lens, tuned lens and Patchscopes from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="lens",
    help="Decode hidden states: logit lens, tuned lens (train, report) and Patchscopes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

UD_DEV = (
    Path(__file__).resolve().parents[2].parent / "shared/data/ud_english_ewt/en_ewt-ud-dev.conllu"
)


def _load(model: str, threads: int | None) -> Any:
    from ..models import load_model
    from ..settings import set_threads

    set_threads(threads)  # the command's process: nothing to restore
    err.print(f"loading {model} ...")
    return load_model(model)


def _split(
    dataset: str, holdout: int, min_words: int, max_words: int
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Texts of ``dataset`` with ``min_words..max_words`` words; the last ``holdout`` are
    held out (never trained on)."""
    from ..data import load_dataset
    from ..errors import DatasetOptionError

    data = load_dataset(dataset)
    texts = [t for t in data.texts if min_words <= len(t.split()) <= max_words]
    if len(texts) <= holdout:
        raise DatasetOptionError(
            f"{dataset} has {len(texts)} texts of {min_words}-{max_words} words, not more than "
            f"--holdout {holdout}: lower --holdout or use a larger dataset"
        )
    info = {
        "spec": dataset,
        "name": data.name,
        "min_words": min_words,
        "max_words": max_words,
        "n_texts": len(texts),
        "holdout": holdout,
    }
    return texts[:-holdout] if holdout else texts, texts[-holdout:] if holdout else [], info


@app.command("logit")
def logit(
    prompt: Annotated[str, typer.Argument(help="the text to read at every layer")],
    model: Annotated[
        str, typer.Option(help="bundled name, hub id, local folder or .gguf")
    ] = "smollm2-135m",
    k: Annotated[int, typer.Option(help="top tokens per cell")] = 3,
    target: Annotated[str | None, typer.Option(help="a one-token target, e.g. ' Paris'")] = None,
    layers: Annotated[str, typer.Option(help="'all', '0,15,-1' or '10:20'")] = "all",
    tuned: Annotated[
        Path | None, typer.Option(help="a tuned lens folder to read with instead")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Print, per layer, the top-k next tokens at every position of PROMPT (and the target's
    rank after the last token)."""
    from ..lens.logit import LogitLens
    from ..lens.tuned import TunedLens

    lm = _load(model, threads)
    lens = TunedLens.load(tuned, lm) if tuned is not None else LogitLens(lm)
    res = lens.run(prompt, k=k, target=target, layers=layers)
    title = f"{res.lens} lens of {lm.name}: top-{k} next tokens (probability) per layer"
    table = Table("layer", *[repr(t) for t in res.input_tokens], title=title, title_justify="left")
    if res.target_rank is not None:
        table.add_column(f"rank of {res.target!r} (last)")
    for li, layer in enumerate(res.layers):
        cells = [
            "\n".join(
                f"{tok!r} {p:.2f}"
                for tok, p in zip(res.top_tokens[li][pos], res.top_probs[li, pos], strict=True)
            )
            for pos in range(len(res.input_tokens))
        ]
        if res.target_rank is not None and res.target_prob is not None:
            cells.append(f"{int(res.target_rank[li, -1])} ({res.target_prob[li, -1]:.3f})")
        table.add_row(str(int(layer)), *cells)
    console.print(table)


@app.command("train-tuned")
def train_tuned(
    out: Annotated[Path, typer.Option(help="folder for the lens (rerun to resume)")],
    model: Annotated[
        str, typer.Option(help="bundled name, hub id, local folder or .gguf")
    ] = "smollm2-135m",
    dataset: Annotated[
        str, typer.Option(help="built-in name or data file (.conllu, .csv, ...)")
    ] = str(UD_DEV),
    steps: Annotated[
        int, typer.Option(help="KL steps after the least-squares start (0: none)")
    ] = 20,
    layers: Annotated[
        str, typer.Option(help="layers with a translator: 'all', '5,10' or '5:25'")
    ] = "all",
    init: Annotated[str, typer.Option(help="lstsq or identity")] = "lstsq",
    init_texts: Annotated[int, typer.Option(help="texts for the least-squares fit")] = 128,
    holdout: Annotated[int, typer.Option(help="last N texts held out for `lens report`")] = 100,
    min_words: Annotated[int, typer.Option(help="shortest text kept (words)")] = 5,
    max_words: Annotated[int, typer.Option(help="longest text kept (words)")] = 25,
    batch_size: Annotated[int, typer.Option(help="texts per step")] = 8,
    max_length: Annotated[int, typer.Option(help="tokens per text at most")] = 24,
    tokens_per_step: Annotated[int, typer.Option(help="tokens sampled per KL step")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW learning rate of the KL steps")] = 1e-4,
    seed: Annotated[int, typer.Option(help="order of texts and tokens")] = 0,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Train a tuned lens for MODEL on DATASET (position 0, the attention sink, left out)."""
    from ..lens.tuned import TunedLens

    train, _, info = _split(dataset, holdout, min_words, max_words)
    lm = _load(model, threads)
    err.print(f"{len(train)} training texts ({holdout} held out) from {info['name']}")
    lens = TunedLens(lm, layers=layers).fit(
        train,
        steps=steps,
        init=init,
        init_texts=init_texts,
        batch_size=batch_size,
        max_length=max_length,
        tokens_per_step=tokens_per_step,
        lr=lr,
        seed=seed,
        out=out,
        dataset=info,
    )
    t = lens.config_["training"]
    console.print(
        f"tuned lens for {lm.name} ({len(lens.layers)} layers) in [bold]{out}[/]: "
        f"{t['seconds']} s, final KL {t['final_kl']}"
    )


@app.command("report")
def report(
    lens: Annotated[
        Path | None, typer.Option(help="a tuned lens folder (omit: logit lens only)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="model (default: the lens's own)")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="texts (default: the lens's held-out texts)")
    ] = None,
    holdout: Annotated[int | None, typer.Option(help="evaluate the last N texts")] = None,
    limit: Annotated[int | None, typer.Option(help="evaluate at most N of them")] = None,
    max_length: Annotated[int, typer.Option(help="tokens per text at most")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Per-layer KL to the model's output and perplexity, logit lens vs tuned lens, on held-out
    text (by default the texts the lens held out when it was trained)."""
    from ..lens.tuned import CONFIG, TunedLens, lens_report

    info: dict[str, Any] = {}
    if lens is not None and (lens / CONFIG).is_file():
        from ..artifacts import read_json

        config = read_json(
            lens / CONFIG,
            "tuned-lens config",
            "train it again (`workbench lens train-tuned --out`)",
        )
        info = ((config.get("training") or {}).get("dataset")) or {}
        model = model or config["model"]["spec"]
    spec = dataset or info.get("spec") or str(UD_DEV)
    n_hold = holdout if holdout is not None else int(info.get("holdout", 100))
    _, held, _ = _split(spec, n_hold, int(info.get("min_words", 5)), int(info.get("max_words", 25)))
    held = held[:limit] if limit else held
    lm = _load(model or "smollm2-135m", threads)
    tuned = TunedLens.load(lens, lm) if lens is not None else None
    rep = lens_report(lm, held, tuned, max_length=max_length)
    if as_json:
        console.print_json(rep.table.to_json(orient="records"))
        return
    cols = [c for c in rep.table.columns if c != "layer"]
    table = Table(
        "layer",
        *cols,
        title=f"{lm.name} on {len(held)} held-out texts of {spec} "
        f"({rep.n_tokens} tokens, position 0 left out; model perplexity "
        f"{rep.ppl_model:.1f})",
        title_justify="left",
    )
    for _, row in rep.table.iterrows():
        table.add_row(
            str(int(row["layer"])),
            *[f"{row[c]:.3f}" if c.startswith("kl") else f"{row[c]:.4g}" for c in cols],
        )
    console.print(table)


@app.command("patchscope")
def patchscope(
    source: Annotated[str, typer.Argument(help="the source prompt")],
    layer: Annotated[str, typer.Option(help="source layer(s): 12, '4,8,12' or 'all'")],
    position: Annotated[int, typer.Option(help="token index in SOURCE (-1: last)")] = -1,
    target_layer: Annotated[
        int | None, typer.Option(help="layer to patch into (default: same)")
    ] = None,
    target_prompt: Annotated[str | None, typer.Option(help="prompt with the placeholder")] = None,
    placeholder: Annotated[str, typer.Option(help="text in the target prompt to overwrite")] = "?",
    model: Annotated[
        str, typer.Option(help="bundled name, hub id, local folder or .gguf")
    ] = "smollm2-135m",
    max_new_tokens: Annotated[int, typer.Option(help="greedy tokens at most")] = 10,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Patch the hidden state of SOURCE at LAYER and POSITION into an identity few-shot prompt
    and print what the model generates from it."""
    from ..lens.patchscopes import IDENTITY_PROMPT, Patchscope

    lm = _load(model, threads)
    scope = Patchscope(lm, target_prompt=target_prompt or IDENTITY_PROMPT, placeholder=placeholder)
    layers: Any = (
        layer
        if layer.strip().lower() == "all" or ":" in layer
        else [int(x) for x in layer.split(",")]
    )
    results = scope.run_layers(source, layers, position, target_layer, max_new_tokens)
    first = results[0]
    table = Table(
        "layer",
        "target layer",
        "description",
        "generated",
        title=f"Patchscope of {first.source_token!r} (position {first.position} of "
        f"{source!r}) into {scope.target_prompt!r}",
        title_justify="left",
    )
    for r in results:
        table.add_row(str(r.layer), str(r.target_layer), r.description, repr(r.text))
    console.print(table)
