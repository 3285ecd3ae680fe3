"""``workbench invert``: turn sentence embeddings back into text, train an inverter, and report
how much an LLM's pooled hidden states leak."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="invert",
    help="Invert sentence embeddings (guided decoding, trained inverter, hybrid) and report "
    "leakage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


EMBEDDER_HELP = (
    "the embedder whose vectors are inverted: MODEL[:layer=N][:pooling=P] (any load_model model, "
    "e.g. minilm-l6 or smollm2-135m:layer=12:pooling=mean) or st:NAME_OR_PATH (run by "
    "sentence-transformers)"
)
LAYER_HELP = "layer of the embedder (hidden_states index; default the last)"
POOLING_HELP = "pooling of the embedder: native (default for sentence encoders), mean, last, ..."
MODEL_HELP = "decoder LLM that proposes the text (any load_model decoder)"


def _threads(threads: int | None) -> None:
    from ..settings import set_threads

    set_threads(threads)  # the command's process: nothing to restore


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _texts(data: str, limit: int | None, text_column: str | None = None) -> list[str]:
    from ..data import load_dataset

    return [t for t in load_dataset(data, limit=limit, text_column=text_column).texts if t.strip()]


@app.command("run")
def run(
    text: Annotated[str | None, typer.Argument(help="a text to embed and invert")] = None,
    vector: Annotated[
        Path | None,
        typer.Option(
            help="a .npy file with an embedding [dim] or [n, dim] to invert instead of TEXT"
        ),
    ] = None,
    embedder: Annotated[str, typer.Option(help=EMBEDDER_HELP)] = "minilm-l6",
    layer: Annotated[int | None, typer.Option(help=LAYER_HELP)] = None,
    pooling: Annotated[str | None, typer.Option(help=POOLING_HELP)] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "smollm2-135m",
    method: Annotated[str, typer.Option(help="guided, trained or hybrid")] = "guided",
    checkpoint: Annotated[
        Path | None, typer.Option(help="trained inverter folder (trained, hybrid)")
    ] = None,
    corrector: Annotated[
        Path | None,
        typer.Option(
            help="trained corrector folder (`invert train "
            "--kind corrector`): corrects the "
            "method's text for --steps rounds"
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="correction (rewrite) rounds at most; --budget may stop earlier")
    ] = 8,
    budget: Annotated[
        float, typer.Option(help="CPU seconds per text for the guided search (0: no limit)")
    ] = 30.0,
    beam_width: Annotated[int, typer.Option(help="guided beams")] = 4,
    top_k: Annotated[int, typer.Option(help="LLM proposals per beam and step")] = 16,
    keywords: Annotated[int, typer.Option(help="keyword-prior candidates per step (0: off)")] = 8,
    max_tokens: Annotated[int, typer.Option(help="tokens per decode")] = 32,
    polish: Annotated[
        str, typer.Option(help="last step of the guided search: edit, delete or none")
    ] = "edit",
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: cuda if present)")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Invert TEXT's embedding (or the vectors in --vector) and print the reconstruction, its
    cosine to the target and the bag-of-words anchor."""
    import numpy as np

    from ..errors import WorkbenchError
    from ..inversion.correction import TrainedCorrector
    from ..inversion.embedders import check_embeddings, cosine_to, load_embedder, load_proposer
    from ..inversion.metrics import bag_of_words, evaluate

    _threads(threads)
    if (text is None) == (vector is None):
        raise WorkbenchError("give a TEXT to embed and invert, or --vector FILE.npy (not both)")
    if method not in ("guided", "trained", "hybrid"):
        raise WorkbenchError(f"unknown method {method!r}: use guided, trained or hybrid")
    dev = _device(device)
    lm = load_proposer(model, device=dev)
    emb = load_embedder(embedder, layer, pooling, device=dev)
    if text is not None:
        if not text.strip():
            raise WorkbenchError("TEXT is empty: there is nothing to embed; pass a sentence")
        targets = emb.embed([text])
    else:
        assert vector is not None
        targets = check_embeddings(np.load(vector, allow_pickle=False), emb)
    inverter = _inverter(
        method,
        lm,
        emb,
        checkpoint,
        steps,
        {
            "beam_width": beam_width,
            "top_k": top_k,
            "keywords": keywords,
            "max_tokens": max_tokens,
            "budget": budget or None,
            "polish": polish,
        },
    )
    fixer = TrainedCorrector.load(corrector, lm, emb) if corrector is not None else None
    table = Table("#", "reconstruction", "cosine", "bow anchor", "seconds")
    for i, x in enumerate(targets):
        res = inverter(x)
        if fixer is not None:
            res = fixer.refine(x, res, steps)
        anchor = "-"
        if text is not None:
            anchor = f"{float(cosine_to(emb.embed([bag_of_words(text)]), x)[0]):.3f}"
        table.add_row(str(i), res.text, f"{res.cosine:.3f}", anchor, f"{res.seconds:.1f}")
        for step, t, c in res.history:
            err.print(f"  step {step}: cos {c:.3f}  {t}")
        if text is not None:
            m = evaluate([text], [res.text])
            err.print(
                f"  BLEU {m['bleu']:.1f}  token F1 {m['token_f1']:.2f}  exact "
                f"{m['exact_match']:.0f}"
            )
    console.print(table)


def _inverter(
    method: str,
    lm: Any,
    emb: Any,
    checkpoint: Path | None,
    steps: int,
    options: dict[str, Any],
) -> Any:
    """A callable: embedding [dim] -> InversionResult."""
    from ..errors import WorkbenchError
    from ..inversion.correction import HybridInverter
    from ..inversion.guided import GuidedInverter
    from ..inversion.trained import SoftPrefixInverter

    if options.get("budget") is not None and options["budget"] < 0:
        raise WorkbenchError(
            f"--budget {options['budget']:g} is negative: give CPU seconds per text (0: no limit)"
        )
    if options.get("polish") not in ("edit", "delete", "none"):
        raise WorkbenchError(
            f"unknown --polish {options.get('polish')!r}: use edit, delete or none"
        )
    guided = GuidedInverter(lm, emb, rewrite_rounds=steps, **options)
    if method == "guided":
        return guided.invert
    if checkpoint is None:
        raise WorkbenchError(
            f"--method {method} needs --checkpoint DIR (a folder written by "
            "`workbench invert train`)"
        )
    trained = SoftPrefixInverter.load(checkpoint, lm, emb)
    if method == "hybrid":
        return HybridInverter(trained, guided, steps=steps).invert
    return trained.reconstruct


@app.command("train")
def train(
    data: Annotated[
        str,
        typer.Option(
            help="training texts: a .txt file with one text per line, a data file "
            "(.csv/.jsonl/.parquet/.conllu ...), hf:NAME[:CONFIG][:SPLIT] or a built-in dataset"
        ),
    ],
    out: Annotated[Path, typer.Option(help="checkpoint folder (rerun the command to resume)")],
    kind: Annotated[
        str,
        typer.Option(
            help="inverter (embedding -> text) or corrector (target and hypothesis -> better text)"
        ),
    ] = "inverter",
    embedder: Annotated[str, typer.Option(help=EMBEDDER_HELP)] = "minilm-l6",
    layer: Annotated[int | None, typer.Option(help=LAYER_HELP)] = None,
    pooling: Annotated[str | None, typer.Option(help=POOLING_HELP)] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "smollm2-135m",
    steps: Annotated[int, typer.Option(help="total optimizer steps")] = 1000,
    batch_size: Annotated[int, typer.Option(help="texts per micro-batch")] = 16,
    grad_accum: Annotated[
        int, typer.Option(help="micro-batches per optimizer step (batch-size x this texts)")
    ] = 1,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), bf16 (autocast) or fp32")
    ] = "auto",
    prefix_length: Annotated[int, typer.Option(help="soft-prompt vectors")] = 8,
    hidden: Annotated[int, typer.Option(help="MLP hidden width")] = 1024,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (0: LLM frozen)")] = 0,
    lr: Annotated[float, typer.Option(help="learning rate")] = 1e-3,
    max_tokens: Annotated[
        int,
        typer.Option(
            help="training texts are cut to this many tokens (a warning counts the cut ones)"
        ),
    ] = 48,
    limit: Annotated[int | None, typer.Option(help="use the first N texts")] = None,
    text_column: Annotated[str | None, typer.Option(help="text column of a table")] = None,
    stream: Annotated[
        bool, typer.Option(help="hf: data read as a stream, only the first --limit rows")
    ] = False,
    eval_size: Annotated[
        int, typer.Option(help="texts held out (seeded draw) and decoded for eval.jsonl")
    ] = 64,
    eval_every: Annotated[
        int, typer.Option(help="steps between held-out evaluations (0: none)")
    ] = 200,
    hypotheses: Annotated[
        str | None,
        typer.Option(
            help="corrector drafts: a trained inverter folder or 'guided' (made once for every "
            "text, cached in --out), or a .txt with one hypothesis per text; default: "
            "corrupted copies"
        ),
    ] = None,
    real_fraction: Annotated[
        float, typer.Option(help="share of rows trained on their real hypothesis")
    ] = 1.0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 50,
    max_minutes: Annotated[
        float | None, typer.Option(help="stop (checkpointed) after this")
    ] = None,
    seed: Annotated[int, typer.Option(help="initialisation, data order and held-out draw")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: cuda if present)")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Train a soft-prefix inverter (embedding -> MLP -> soft prompt -> LLM) or, with --kind
    corrector, a vec2text-style corrector (target, hypothesis and difference embeddings -> soft
    prompt, then the hypothesis as text), with the LM loss; interrupted runs resume from the
    last checkpoint when the command is run again. Progress shows steps/s, ETA and the loss;
    held-out BLEU, token F1 and cosine go to OUT/eval.jsonl."""
    from ..errors import WorkbenchError
    from ..inversion.correction import TrainedCorrector
    from ..inversion.embedders import load_embedder, load_proposer
    from ..inversion.trained import InverterConfig, SoftPrefixInverter

    _threads(threads)
    classes = {"inverter": SoftPrefixInverter, "corrector": TrainedCorrector}
    if kind not in classes:
        raise WorkbenchError(f"unknown --kind {kind!r}: use inverter or corrector")
    if precision not in ("auto", "bf16", "fp32"):
        raise WorkbenchError(f"unknown --precision {precision!r}: use auto, bf16 or fp32")
    if hypotheses is not None and kind != "corrector":
        raise WorkbenchError("--hypotheses are drafts for a corrector: add --kind corrector")
    dev = _device(device)
    texts = _training_texts(data, limit, text_column, stream)
    train_texts, held = _held_out_split(texts, eval_size if eval_every > 0 else 0, seed)
    lm = load_proposer(model, device=dev)
    emb = load_embedder(embedder, layer, pooling, device=dev)
    config = InverterConfig(
        prefix_length=prefix_length,
        hidden=hidden,
        lora_rank=lora_rank,
        lr=lr,
        batch_size=batch_size,
        max_tokens=max_tokens,
        seed=seed,
        grad_accum=grad_accum,
        precision=_precision(precision, dev),
    )
    err.print(
        f"training a {kind} on {len(train_texts)} texts ({len(held)} held out), {emb.name} -> "
        f"{lm.name} on {dev}, {config.precision}, {batch_size} x {grad_accum} texts a step"
    )
    inv = classes[kind](lm, emb, config)
    fit_options: dict[str, Any] = {}
    if hypotheses is not None:
        drafts = _hypotheses(hypotheses, [*train_texts, *held], out, lm, emb, max_tokens)
        fit_options = {
            "drafts": drafts[: len(train_texts)],
            "held_out_drafts": drafts[len(train_texts) :],
            "real_fraction": real_fraction,
        }
    inv.fit(
        train_texts,
        out,
        steps,
        checkpoint_every=checkpoint_every,
        max_seconds=None if max_minutes is None else 60 * max_minutes,
        held_out=held,
        eval_every=eval_every,
        **fit_options,
    )
    last = inv.losses_[-10:]
    err.print(
        f"step {inv.step_}/{steps}; mean loss of the last {len(last)} steps "
        f"{sum(last) / max(1, len(last)):.3f}; checkpoint in {out}"
    )
    from ..inversion.trained import read_eval_log

    log = read_eval_log(out)
    if log:
        r = log[-1]
        err.print(
            f"held-out at step {r['step']}: BLEU {r['bleu']:.2f}, token F1 {r['token_f1']:.3f}, "
            f"cosine {r['cosine']:.3f} ({len(log)} records in {out}/eval.jsonl)"
        )


def _precision(precision: str, device: str) -> str:
    """--precision auto: bf16 autocast on CUDA, fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") else "fp32"


def _training_texts(
    data: str, limit: int | None, text_column: str | None, stream: bool
) -> list[str]:
    """Texts of --data: a .txt file whose first line has no tab is one text per line (else a
    table), everything else through ``workbench.data.load_dataset``."""
    from ..data import load_dataset
    from ..errors import WorkbenchError

    path = Path(data)
    if stream and not data.startswith("hf:"):
        raise WorkbenchError("--stream reads hf: datasets only: drop it, or pass --data hf:NAME")
    if path.suffix == ".txt" and path.is_file() and text_column is None:
        with path.open(encoding="utf-8") as f:
            first = f.readline()
        if "\t" not in first:
            lines = [t.strip() for t in path.read_text(encoding="utf-8").splitlines()]
            return [t for t in lines if t][:limit]
    options: dict[str, Any] = {"streaming": True} if stream else {}
    ds = load_dataset(data, limit=limit, text_column=text_column, **options)
    return [t for t in ds.texts if t.strip()]


def _held_out_split(texts: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """(training texts, ``n`` held-out texts drawn with ``seed``); the order of each is kept."""
    import numpy as np

    from ..errors import WorkbenchError

    if n <= 0:
        return texts, []
    if n * 2 > len(texts):
        raise WorkbenchError(
            f"{len(texts)} texts are too few to hold out --eval-size {n} for evaluation: pass a "
            f"smaller --eval-size (at most {len(texts) // 2}) or --eval-every 0"
        )
    held = set(np.random.default_rng([seed, 7]).permutation(len(texts))[:n].tolist())
    return (
        [t for i, t in enumerate(texts) if i not in held],
        [t for i, t in enumerate(texts) if i in held],
    )


def _hypotheses(
    source: str, texts: list[str], out: Path, lm: Any, emb: Any, max_tokens: int
) -> list[str]:
    """Real drafts for the corrector: a .txt (one per text), or made by a trained inverter
    folder or guided decoding and cached in ``out/hypotheses.jsonl``."""
    from ..artifacts import file_sha256
    from ..errors import WorkbenchError
    from ..inversion.correction import HYPOTHESES_FILE, cached_hypotheses
    from ..inversion.guided import GuidedInverter
    from ..inversion.trained import CONFIG_FILE, SoftPrefixInverter

    path = Path(source)
    if path.suffix == ".txt" and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) != len(texts):
            raise WorkbenchError(
                f"{path} has {len(lines)} lines for {len(texts)} texts: write one hypothesis "
                "per --data text, in order (--hypotheses)"
            )
        return [t.strip() or "." for t in lines]
    make: Any
    if source == "guided":
        from ..inversion.leakage import QUICK_GUIDED

        guided = GuidedInverter(lm, emb, **QUICK_GUIDED)
        tag = f"guided:{lm.weights_fingerprint}:{emb.fingerprint}"

        def make(part: list[str]) -> list[str]:
            return [r.text for r in guided.invert_many(emb.embed(part))]

    elif (path / CONFIG_FILE).is_file():
        base = SoftPrefixInverter.load(path, lm, emb)
        tag = f"inverter:{file_sha256(path / CONFIG_FILE)}"

        def make(part: list[str]) -> list[str]:
            return base.invert(emb.embed(part), max_new_tokens=max_tokens)

    else:
        raise WorkbenchError(
            f"--hypotheses {source!r} is neither a trained inverter folder (with {CONFIG_FILE}), "
            "'guided', nor a .txt file: pass one of those"
        )
    return cached_hypotheses(texts, out / HYPOTHESES_FILE, make, source=tag)


@app.command("leakage")
def leakage(
    data: Annotated[
        str | None,
        typer.Option(help="source texts: a data file or a built-in dataset (or give --store)"),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            help="an activation store extracted from --model: its texts and pooled vectors are "
            "read instead of embedding --data (UD PROPN words are the entities when it has them)"
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="decoder LLM whose hidden states are inverted (and proposes)")
    ] = "smollm2-135m",
    layers: Annotated[str, typer.Option(help="'0,15,-1', '10:20' or 'all'")] = "-1",
    pooling: Annotated[str, typer.Option(help="mean,last,...")] = "mean",
    n: Annotated[int | None, typer.Option(help="texts to invert (the first N)")] = 10,
    noise: Annotated[
        str, typer.Option(help="noise scales of the defence curve")
    ] = "0,0.01,0.05,0.1",
    defence_layer: Annotated[
        int | None, typer.Option(help="layer of the defence curve (default: the first)")
    ] = None,
    defence_pooling: Annotated[
        str | None, typer.Option(help="pooling of the defence curve (default: the first)")
    ] = None,
    guided: Annotated[
        str | None,
        typer.Option(
            help="GuidedInverter options over the quick defaults, e.g. "
            "'max_tokens=12,beam_width=3' (see workbench.inversion.leakage.QUICK_GUIDED)"
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples of the 95% intervals")] = 1000,
    seed: Annotated[int, typer.Option(help="seed of the noise and the bootstrap")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="folder for items.jsonl (written as items finish: rerun to resume), "
            "report.json, report.md and leakage.png"
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: cuda if present)")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Per layer and pooling: invert the pooled hidden states of the texts (or of a store) and
    report BLEU, token F1, cosine (with the bag-of-words anchor) and named-entity recall with
    bootstrap 95% intervals; then a Gaussian-noise defence curve (reconstruction and recall@k vs
    noise). With --out, results are written as they come and a rerun resumes."""
    from ..artifacts import write_json
    from ..errors import WorkbenchError
    from ..inversion.embedders import load_proposer
    from ..inversion.leakage import leakage_report, propn_entities

    _threads(threads)
    if (data is None) == (store is None):
        raise WorkbenchError("give the texts as --data FILE or an activation store as --store DIR")
    lm = load_proposer(model, device=_device(device))
    texts, entities = None, None
    if data is not None:
        from ..data import load_dataset

        ds = load_dataset(data, limit=n)
        keep = [i for i, t in enumerate(ds.texts) if t.strip()]
        texts = [ds.texts[i] for i in keep]
        found = propn_entities(ds)
        entities = None if found is None else [found[i] for i in keep]
    report = leakage_report(
        lm,
        texts,
        store=store,
        rows=None if store is None or n is None else slice(0, n),
        layers=layers,
        poolings=pooling.split(","),
        entities=entities,
        noise=[float(x) for x in noise.split(",")],
        defence_layer=defence_layer,
        defence_pooling=defence_pooling,
        guided=_options(guided),
        out=out,
        n_boot=n_boot,
        seed=seed,
    )
    md = report.to_markdown()
    console.print(md)
    if out is not None:
        from ..viz.leakage import leakage_figure

        write_json(out / "report.json", report.to_dict())
        (out / "report.md").write_text(md)
        leakage_figure(report.rows, report.defence, out / "leakage.png", title=lm.name)
        err.print(f"wrote {out}/report.json, report.md and leakage.png")


def _options(text: str | None) -> dict[str, Any]:
    """``'max_tokens=12,beam_width=3'`` -> ``{"max_tokens": 12, "beam_width": 3}`` (numbers
    parsed, the rest kept as strings)."""
    from ..errors import WorkbenchError

    opts: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise WorkbenchError(f"--guided {text!r}: write key=value pairs, e.g. max_tokens=12")
        for cast in (int, float):
            try:
                opts[key.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            opts[key.strip()] = value.strip()
    return opts
