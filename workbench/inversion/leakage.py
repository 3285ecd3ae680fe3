"""Leakage report: how much text the pooled hidden states of an LLM give away, per layer and
pooling, and a Gaussian-noise defence curve (reconstruction and retrieval recall@k against the
noise scale, as in vec2text's defence experiment), every figure with a bootstrap 95% interval.

Each (layer, pooling) is an embedder (``ModelEmbedder``); its vectors are inverted zero-shot by
guided decoding scored with that same embedder, so no inverter is trained per layer. The vectors
come from the texts, or from an activation store (read, not extracted again).

With ``out``, every inverted item is appended to ``OUT/items.jsonl`` as soon as it is done
(flushed and fsynced, under the folder's lock), so an interrupted run resumes where it stopped;
``OUT/meta.json`` records what the items depend on (model weights, layers, poolings, noise
scales, inverter options, text and entity hashes) and a rerun with other values is refused.
The report is computed from the items, so a resumed run reports what an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmptyDatasetError, WorkbenchError, arg
from ..intervals import bootstrap, with_ci
from ..models.hook_names import normalize_layers
from .embedders import ModelEmbedder, cosine_to
from .guided import GuidedInverter
from .metrics import bag_of_words, exact_match, token_f1

#: Guided-decoding options of the leakage report and the dashboard's quick inversion: cheap
#: enough for many layers on a CPU (``GuidedInverter`` keyword arguments; ``guided=`` overrides).
QUICK_GUIDED: dict[str, Any] = {
    "beam_width": 2,
    "top_k": 4,
    "keywords": 6,
    "max_tokens": 20,
    "rewrite_rounds": 0,
    "prior_words": 3000,
    "polish": "delete",
    "common_words": 0,
}
ITEMS = "items.jsonl"
META = "meta.json"
FORMAT_VERSION = 1
_CAPITAL = re.compile(r"\b[A-Z][a-zA-Z]+\b")


class LeakageMismatchError(WorkbenchError, ValueError):
    """A leakage output folder that holds a run with other settings, texts or model."""


def default_entities(text: str) -> list[str]:
    """Capitalised words that do not start the text: a crude stand-in for named entities when
    none are given (pass real ones, e.g. UD ``PROPN`` words, when you have them)."""
    found = [(m.start(), m.group()) for m in _CAPITAL.finditer(text)]
    first = re.search(r"\w", text)
    return [w for s, w in found if first is None or s != first.start()]


def propn_entities(dataset: Any) -> list[list[str]] | None:
    """Named entities of a word-annotated dataset (a UD ``.conllu`` file): each run of
    consecutive ``PROPN`` words is one entity (``["New York", "Obama"]``); None when the
    dataset has no ``upos`` column."""
    cols = getattr(dataset, "word_columns", None) or {}
    if "upos" not in cols or getattr(dataset, "words", None) is None:
        return None
    out = []
    for words, tags in zip(dataset.words, cols["upos"], strict=True):
        ents: list[str] = []
        run: list[str] = []
        for w, t in [*zip(words, tags, strict=True), ("", "")]:
            if t == "PROPN":
                run.append(w)
            elif run:
                ents.append(" ".join(run))
                run = []
        out.append(ents)
    return out


def add_noise(x: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Unit-normalise rows of ``x`` ``[n, d]`` and add ``scale * N(0, 1)`` per dimension."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    return (x + scale * rng.standard_normal(x.shape)).astype(np.float32)


@dataclass
class LeakageReport:
    """Per-(layer, pooling) reconstruction metrics and the noise defence curve, each metric
    followed by its bootstrap 95% interval (``bleu``, ``bleu_low``, ``bleu_high``, ...).

    Attributes:
        rows: ``[{"layer", "pooling", "n", "bleu", "bleu_low", "bleu_high", "token_f1", ...,
            "cosine", ..., "cosine_bow_anchor", ..., "entity_recall", ..., "exact_match",
            "seconds_per_text"}]``.
        defence: ``[{"layer", "pooling", "noise", "n", "bleu", ..., "token_f1", ...,
            "cosine", ..., "recall@1", "recall@1_low", "recall@1_high", ...,
            "cosine_noisy_clean"}]``; ``cosine`` is the reconstruction's cosine to the clean
            vector.
        examples: per ``"layer:pooling"``, the first reconstructions ``[(reference, text)]``.
        meta: what the items depend on (model, layers, poolings, noise, inverter options).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    defence: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (without the per-text hashes)."""
        meta = {k: v for k, v in self.meta.items() if not k.endswith("_hashes")}
        return {"rows": self.rows, "defence": self.defence, "examples": self.examples, "meta": meta}

    def to_markdown(self) -> str:
        """Both tables as Markdown, each metric as ``value [low, high]``."""

        def table(rows: list[dict[str, Any]]) -> str:
            if not rows:
                return "(none)\n"
            cols = [c for c in rows[0] if not c.endswith(("_low", "_high"))]
            lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in rows:
                cells = []
                for c in cols:
                    v = r[c]
                    cell = f"{v:.3f}" if isinstance(v, float) else str(v)
                    if f"{c}_low" in r:
                        cell += f" [{r[f'{c}_low']:.3f}, {r[f'{c}_high']:.3f}]"
                    cells.append(cell)
                lines.append("| " + " | ".join(cells) + " |")
            return "\n".join(lines) + "\n"

        return (
            "## Reconstruction per layer and pooling (95% bootstrap intervals)\n\n"
            + table(self.rows)
            + "\n## Gaussian-noise defence\n\n"
            + table(self.defence)
        )


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _source(
    lm: Any, texts: Sequence[str] | None, store: Any, rows: Any
) -> tuple[list[str], Any, str]:
    """``(texts, vectors(layer, pooling) -> [n, d], source name)`` from texts or a store."""
    if store is None:
        if texts is None:
            raise EmptyDatasetError(
                f"leakage_report needs texts or a store: pass {arg('texts=', '--data')} or "
                f"{arg('store=', '--store')}"
            )
        texts = list(texts) if rows is None else [texts[i] for i in np.arange(len(texts))[rows]]
        cache: dict[tuple[int, str], np.ndarray] = {}

        def from_texts(layer: int, pooling: str) -> np.ndarray:
            if (layer, pooling) not in cache:
                emb = ModelEmbedder(lm, layer=layer, pooling=pooling)
                cache[(layer, pooling)] = emb.embed(texts)
            return cache[(layer, pooling)]

        return list(texts), from_texts, "texts"
    from ..activations.store import ActivationStore

    st = store if isinstance(store, ActivationStore) else ActivationStore(store)
    model = st.manifest["model"]
    if model.get("weights_fingerprint") != lm.weights_fingerprint:
        raise LeakageMismatchError(
            f"{st.path} holds activations of {model.get('spec')}, not of {lm.name} (other "
            f"weights): pass {arg('lm=load_model(...)', '--model')} {model.get('spec')}, or "
            "another store"
        )
    idx = st.row_index(rows)

    def from_store(layer: int, pooling: str) -> np.ndarray:
        return np.asarray(st.get(pooling, layers=[layer], rows=idx)[:, 0], np.float32)

    texts_all = st.texts
    return [texts_all[i] for i in idx], from_store, str(st.path)


def _store_entities(store: Any, rows: Any) -> list[list[str]] | None:
    """PROPN entities of a store's rows, when its dataset has UD tags."""
    from ..activations.store import ActivationStore

    st = store if isinstance(store, ActivationStore) else ActivationStore(store)
    ds = st.dataset()
    found = propn_entities(ds)
    return None if found is None else [found[i] for i in st.row_index(rows)]


def _check_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write ``OUT/meta.json``, or check that the one there matches ``meta``.

    Raises:
        LeakageMismatchError: naming the first setting that differs.
    """
    from ..artifacts import read_json, write_json

    path = out / META
    if not path.exists():
        write_json(path, meta)
        return
    old = read_json(path, "leakage metadata", fix=f"delete {out} to start over")
    for key, value in meta.items():
        if old.get(key) == value:
            continue
        if key.endswith("_hashes") and isinstance(old.get(key), list):
            prev = old[key]
            diff = next(
                (i for i, (a, b) in enumerate(zip(prev, value, strict=False)) if a != b),
                min(len(prev), len(value)),
            )
            what = f"other {key.removesuffix('_hashes')} (first difference at row {diff})"
        else:
            what = f"{key} {json.dumps(old.get(key))[:80]}, not {json.dumps(value)[:80]}"
        raise LeakageMismatchError(
            f"{out} holds a leakage run with {what}: rerun with the same settings to resume it, "
            f"or pass another {arg('out=', '--out')}"
        )


def _item_key(r: dict[str, Any]) -> tuple[int, str, float, int]:
    return (int(r["layer"]), str(r["pooling"]), float(r["noise"]), int(r["row"]))


def leakage_report(
    lm: Any,
    texts: Sequence[str] | None = None,
    *,
    store: Any = None,
    rows: Any = None,
    layers: Any = (-1,),
    poolings: Sequence[str] = ("mean",),
    entities: Sequence[Sequence[str]] | None = None,
    noise: Sequence[float] = (0.0, 0.01, 0.05, 0.1),
    defence_layer: int | None = None,
    defence_pooling: str | None = None,
    ks: Sequence[int] = (1, 5),
    guided: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> LeakageReport:
    """Invert the pooled hidden states of ``lm`` at each layer and pooling.

    Args:
        lm: a decoder ``LoadedModel`` (embeds the texts and proposes tokens).
        texts: the source texts (non-empty), when no ``store`` is given.
        store: an ``ActivationStore`` (or its folder) extracted from ``lm``: its texts and
            pooled vectors are used instead of embedding ``texts``.
        rows: the rows to use (a slice or indices; default all).
        layers: the layers to invert (``hidden_states`` indices).
        poolings: the poolings to invert (pooling names).
        entities: per text, named entities; default the store's UD ``PROPN`` runs when it has
            them, else :func:`default_entities`.
        noise: noise scales of the defence curve (on unit-normalised vectors; 0 is always in).
        defence_layer: the layer where the defence curve is measured (default: the first).
        defence_pooling: the pooling where the defence curve is measured (default: the first).
        ks: recall@k cut-offs (noisy vector against every clean one).
        guided: keyword arguments of :class:`GuidedInverter` over :data:`QUICK_GUIDED`.
        out: a folder for ``items.jsonl`` and ``meta.json``: results are written as they come
            and a rerun resumes (None: nothing is written).
        n_boot: bootstrap resamples of the 95% intervals (0: none).
        seed: seed of the noise and of the bootstrap.
        progress: show a progress bar (items done, rate and ETA).

    Raises:
        EmptyDatasetError: no texts or an empty text.
        LayerOutOfRangeError: a layer outside the model.
        LeakageMismatchError: ``out`` holds a run with other settings, or ``store`` is of
            another model.
        StoreSelectionError: a layer or pooling the store does not hold.
    """
    from tqdm.auto import tqdm

    from ..activations.pooling import parse_poolings
    from ..artifacts import FolderLock, append_jsonl, read_jsonl

    texts, vectors_of, source = _source(lm, texts, store, rows)
    if not texts or any(not t.strip() for t in texts):
        raise EmptyDatasetError("leakage_report needs non-empty texts: drop the empty ones")
    layers = normalize_layers(layers, lm.n_layers, lm.name)
    pnames = [p.name for p in parse_poolings(list(poolings), lm.sentence_pooling)]
    if entities is None and store is not None:
        entities = _store_entities(store, rows)
    ents = [default_entities(t) for t in texts] if entities is None else [list(e) for e in entities]
    if len(ents) != len(texts):
        raise EmptyDatasetError(f"{len(ents)} entity lists for {len(texts)} texts: give one each")
    opts = {**QUICK_GUIDED, **(guided or {})}
    valid = [k for k in inspect.signature(GuidedInverter).parameters if k not in ("lm", "embedder")]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise LeakageMismatchError(
            f"unknown inverter option(s) {unknown}: GuidedInverter takes {', '.join(valid)}"
        )
    dl = (
        layers[0]
        if defence_layer is None
        else normalize_layers([defence_layer], lm.n_layers, lm.name)[0]
    )
    dp = (
        pnames[0]
        if defence_pooling is None
        else parse_poolings([defence_pooling], lm.sentence_pooling)[0].name
    )
    scales = sorted({0.0, *(float(s) for s in noise)})
    n = len(texts)
    grid = {(la, p) for la in layers for p in pnames}
    work = [(la, p, 0.0, i) for la in layers for p in pnames for i in range(n)]
    work += [(dl, dp, s, i) for s in scales if s > 0 or (dl, dp) not in grid for i in range(n)]
    meta = {
        "format": FORMAT_VERSION,
        "model": lm.name,
        "weights": lm.weights_fingerprint,
        "source": source,
        "layers": layers,
        "poolings": pnames,
        "noise": scales,
        "defence": [dl, dp],
        "noise_seed": seed,
        "guided": json.loads(json.dumps(opts)),
        "text_hashes": [_hash(t) for t in texts],
        "entity_hashes": [_hash(e) for e in ents],
    }
    clean: dict[tuple[int, str], np.ndarray] = {}
    noisy: dict[tuple[int, str, float], np.ndarray] = {}

    def target(la: int, p: str, s: float) -> np.ndarray:
        if (la, p) not in clean:
            clean[(la, p)] = vectors_of(la, p)
        if s == 0:
            return clean[(la, p)]
        if (la, p, s) not in noisy:
            noisy[(la, p, s)] = add_noise(clean[(la, p)], s, seed)
        return noisy[(la, p, s)]

    folder = Path(out) if out is not None else None
    done: dict[tuple[int, str, float, int], dict[str, Any]] = {}
    with FolderLock(folder) if folder is not None else contextlib.nullcontext():
        if folder is not None:
            _check_meta(folder, meta)
            done = {_item_key(r): r for r in read_jsonl(folder / ITEMS, repair=True)}
        todo = [w for w in work if w not in done]
        inverters: dict[tuple[int, str], GuidedInverter] = {}
        bar = tqdm(
            total=len(work),
            initial=len(work) - len(todo),
            disable=not progress,
            desc="leakage",
            unit="text",
        )
        with bar:
            for la, p, s, i in todo:
                bar.set_postfix(layer=la, pooling=p, noise=s, refresh=False)
                if (la, p) not in inverters:
                    inverters[(la, p)] = GuidedInverter(lm, ModelEmbedder(lm, la, p), **opts)
                inv = inverters[(la, p)]
                t0 = time.time()
                hyp = inv.invert(target(la, p, s)[i]).text
                rec = _score(inv.embedder, texts[i], hyp, target(la, p, 0.0)[i], ents[i], s)
                rec = {"layer": la, "pooling": p, "noise": s, "row": i, **rec}
                rec["seconds"] = time.time() - t0
                done[(la, p, s, i)] = rec
                if folder is not None:
                    append_jsonl(folder / ITEMS, [rec])
                bar.update(1)
    return _summarise(done, texts, meta, target, ks, n_boot, seed)


def _score(
    emb: Any, reference: str, hyp: str, clean: np.ndarray, entities: list[str], noise: float
) -> dict[str, Any]:
    """One item's metrics: cosine of the reconstruction (and, clean, of the bag-of-words
    anchor) to the clean vector, token F1, exact match, BLEU sufficient statistics and entity
    recall (None without entities)."""
    from sacrebleu.metrics import BLEU

    from .metrics import entity_recall

    texts = [hyp if hyp.strip() else "."]
    if noise == 0:
        texts.append(bag_of_words(reference))
    cos = cosine_to(emb.embed(texts), clean)
    b = BLEU().corpus_score([hyp], [[reference]])
    rec: dict[str, Any] = {
        "hypothesis": hyp,
        "cosine": float(cos[0]),
        "token_f1": token_f1(reference, hyp),
        "exact_match": float(exact_match(reference, hyp)),
        "bleu_stats": [*b.counts, *b.totals, b.sys_len, b.ref_len],
        "entity_recall": entity_recall(entities, hyp) if entities else None,
    }
    if noise == 0:
        rec["cosine_bow_anchor"] = float(cos[1])
    return rec


def _mean(y: np.ndarray, _: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean over rows, NaN rows left out: ``[b]``."""
    ok = np.isfinite(y)
    count = w @ ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (w @ np.where(ok, y, 0.0)) / count, np.nan)


def _bleu(stats: np.ndarray, _: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Corpus BLEU (sacrebleu's defaults: exponential smoothing) of each resample from the
    per-sentence sufficient statistics ``[n, 10]`` (4 matches, 4 totals, hyp and ref length)."""
    from sacrebleu.metrics import BLEU

    tot = np.rint(w @ stats).astype(np.int64).tolist()  # resample counts are whole numbers
    return np.array(
        [BLEU.compute_bleu(t[:4], t[4:8], t[8], t[9], smooth_method="exp").score for t in tot]
    )


def _summarise(
    done: dict[tuple[int, str, float, int], dict[str, Any]],
    texts: list[str],
    meta: dict[str, Any],
    target: Any,
    ks: Sequence[int],
    n_boot: int,
    seed: int,
) -> LeakageReport:
    """The report, computed from the per-item records alone."""
    n = len(texts)
    boot = bootstrap(n, n_boot, seed) if n_boot > 0 else None

    def ci(name: str, metric: Any, y: np.ndarray) -> dict[str, float]:
        e = with_ci(metric, y, y, boot)
        return {name: e.value, f"{name}_low": e.low, f"{name}_high": e.high}

    def column(recs: list[dict[str, Any]], key: str) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else r[key] for r in recs], np.float64)

    def common(recs: list[dict[str, Any]]) -> dict[str, float]:
        return {
            **ci("bleu", _bleu, np.array([r["bleu_stats"] for r in recs], np.float64)),
            **ci("token_f1", _mean, column(recs, "token_f1")),
            **ci("cosine", _mean, column(recs, "cosine")),
        }

    report = LeakageReport(meta=meta)
    for la in meta["layers"]:
        for p in meta["poolings"]:
            recs = [done[(la, p, 0.0, i)] for i in range(n)]
            report.rows.append(
                {
                    "layer": la,
                    "pooling": p,
                    "n": n,
                    **common(recs),
                    **ci("cosine_bow_anchor", _mean, column(recs, "cosine_bow_anchor")),
                    **ci("entity_recall", _mean, column(recs, "entity_recall")),
                    "exact_match": float(column(recs, "exact_match").mean()),
                    "seconds_per_text": float(column(recs, "seconds").mean()),
                }
            )
            report.examples[f"{la}:{p}"] = [
                (texts[i], recs[i]["hypothesis"]) for i in range(min(5, n))
            ]
    dl, dp = meta["defence"]
    clean = target(dl, dp, 0.0)
    unit = clean / np.maximum(np.linalg.norm(clean, axis=1, keepdims=True), 1e-12)
    for s in meta["noise"]:
        recs = [done[(dl, dp, s, i)] for i in range(n)]
        x = target(dl, dp, s)
        sims = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)) @ unit.T
        rank = (sims > np.diag(sims)[:, None]).sum(axis=1)  # clean rows closer than the own one
        row = {"layer": dl, "pooling": dp, "noise": s, "n": n, **common(recs)}
        for k in ks:
            row.update(ci(f"recall@{k}", _mean, (rank < k).astype(np.float64)))
        row["cosine_noisy_clean"] = float(np.mean(np.diag(sims)))
        report.defence.append(row)
    return report
