"""Embedders that inverters invert: a sentence encoder with its native pooling, or an LLM's pooled
hidden states at one layer. Pooling is ``workbench.activations.pooling`` (the same code as
``extract``), so a vector here equals the stored vector of the same layer and pooling.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..activations.pooling import parse_poolings, pool
from ..errors import (
    EmptyDatasetError,
    MissingDependencyError,
    UnknownModelError,
    WorkbenchError,
    arg,
)
from ..models import hooks
from ..models.hook_names import normalize_layers


class EmbeddingInputError(WorkbenchError, ValueError):
    """An embedding to invert with the wrong dimension, NaN/inf values or no norm."""


@runtime_checkable
class Embedder(Protocol):
    """Anything that maps texts to vectors.

    Attributes:
        name: readable name (``minilm-l6:native``, ``smollm2-135m:L15:mean``).
        dim: the vector width.
        fingerprint: sha256 of the weights and the layer/pooling, recorded in checkpoints.
    """

    name: str
    dim: int
    fingerprint: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 vectors."""
        ...


class ModelEmbedder:
    """The pooled hidden state of one residual layer of a loaded model.

    Args:
        model: a ``LoadedModel`` or anything ``load_model`` accepts.
        layer: residual layer (``hidden_states`` index, negative from the end); the default is
            the last (for a sentence-transformers model, its output).
        pooling: ``native`` (sentence-transformers' own; default when the model has one),
            ``mean``, ``last``, ``first``, ``max`` or ``pos:K``.
        batch_size: texts per forward pass.

    Examples:
        >>> emb = ModelEmbedder("minilm-l6")  # doctest: +SKIP
        >>> emb.embed(["A man plays a guitar."]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self, model: Any, layer: int = -1, pooling: str | None = None, *, batch_size: int = 64
    ) -> None:
        from ..models import LoadedModel, load_model

        self.lm = model if isinstance(model, LoadedModel) else load_model(model)
        if pooling is None:
            pooling = "native" if self.lm.sentence_pooling is not None else "mean"
        (self.pooling,) = parse_poolings([pooling], self.lm.sentence_pooling)
        if self.pooling.ragged:
            raise EmbeddingInputError(
                "pooling 'tokens' gives one vector per token, not per text: choose mean, last, "
                "first, max, pos:K or native"
            )
        (self.layer,) = normalize_layers([layer], self.lm.n_layers, self.lm.name)
        self.batch_size = batch_size
        self.dim = self.lm.d_model
        self.name = f"{self.lm.name}:L{self.layer}:{self.pooling.name}"
        h = hashlib.sha256(f"{self.lm.weights_fingerprint}:{self.layer}:{self.pooling}".encode())
        self.fingerprint = h.hexdigest()
        self.n_calls = 0

    def __repr__(self) -> str:
        return f"ModelEmbedder({self.name!r}, dim={self.dim})"

    def with_dtype(self, dtype: torch.dtype) -> ModelEmbedder:
        """A copy computing in ``dtype`` (``LoadedModel.with_dtype``: the cast weights are made
        once per model and reused; the tokenizer is shared): e.g. a bfloat16 scorer for a search,
        whose winners are re-scored by this embedder."""
        if dtype == self.lm.dtype:
            return self
        return ModelEmbedder(
            self.lm.with_dtype(dtype), self.layer, self.pooling.name, batch_size=self.batch_size
        )

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32; texts are batched by length.

        Raises:
            EmptyDatasetError: an empty (or whitespace-only) text, which has no token to pool.
        """
        texts = _checked_texts(texts)
        x = self.embed_layers(texts, [self.layer], [self.pooling.name])[
            (self.layer, self.pooling.name)
        ]
        bad = np.where(~np.isfinite(x).all(axis=1))[0]
        if len(bad):
            raise EmbeddingInputError(
                f"pooling {self.pooling.name!r} reads a position outside text(s) at row(s) "
                f"{bad[:10].tolist()} (too few tokens): use 'last', 'first' or 'mean', or a "
                "position within every text"
            )
        return x

    @torch.inference_mode()
    def embed_layers(
        self, texts: Sequence[str], layers: Sequence[int], poolings: Sequence[str]
    ) -> dict[tuple[int, str], np.ndarray]:
        """Every (layer, pooling) in one pass: ``{(layer, pooling): [len(texts), dim]}``."""
        layers = normalize_layers(list(layers), self.lm.n_layers, self.lm.name)
        pools = parse_poolings(list(poolings), self.lm.sentence_pooling)
        self.n_calls += 1
        out = {
            (la, p.name): np.zeros((len(texts), self.dim), np.float32)
            for la in layers
            for p in pools
        }
        if not texts:
            return out
        tok = self.lm.tokenizer
        _warn_truncation(tok, texts, self.lm.max_length, self.lm.name)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = tok(
                [texts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.lm.max_length,
            )
            inputs = hooks.forward_inputs(self.lm, enc["input_ids"], enc["attention_mask"])
            mask = inputs["attention_mask"]
            res = self.lm.base_model(**inputs, output_hidden_states=True)
            for la in layers:
                hidden = res.hidden_states[la]
                for p in pools:
                    out[(la, p.name)][idx] = pool(hidden, mask, p).float().cpu().numpy()
        return out


def _warn_truncation(tok: Any, texts: Sequence[str], limit: int, name: str) -> None:
    """Warn, with the token counts, when texts are longer than the model's ``limit`` tokens
    (they are embedded truncated)."""
    lengths = [len(ids) for ids in tok(list(texts), truncation=False)["input_ids"]]
    long_rows = [(i, n) for i, n in enumerate(lengths) if n > limit]
    if long_rows:
        import warnings

        warnings.warn(
            f"{len(long_rows)} of {len(texts)} texts are longer than {name}'s {limit} tokens and "
            f"are embedded truncated to their first {limit} (row, tokens): {long_rows[:5]}"
            f"{' ...' if len(long_rows) > 5 else ''}; split long texts to embed all of them",
            stacklevel=3,
        )


#: The keys a model embedder spec takes after the model (``MODEL:layer=N:pooling=P``).
SPEC_KEYS = ("layer", "pooling")
ST_PREFIX = "st:"


class EmbedderSpecError(WorkbenchError, ValueError):
    """An embedder spec string that cannot be parsed."""


@dataclass(frozen=True)
class EmbedderSpec:
    """A parsed embedder spec: ``MODEL[:layer=N][:pooling=P]`` (a ``ModelEmbedder`` over any
    ``load_model`` model) or ``st:NAME_OR_PATH`` (a sentence-transformers model run by the
    sentence-transformers library itself).

    Attributes:
        model: the model spec or sentence-transformers name or path.
        layer: the residual layer (None: the last).
        pooling: the pooling (None: native for a sentence encoder, else mean).
        sentence_transformers: whether the spec was ``st:...``.
    """

    model: str
    layer: int | None = None
    pooling: str | None = None
    sentence_transformers: bool = False

    def __str__(self) -> str:
        if self.sentence_transformers:
            return ST_PREFIX + self.model
        opts = [f"layer={self.layer}"] if self.layer is not None else []
        opts += [f"pooling={self.pooling}"] if self.pooling is not None else []
        return ":".join([self.model, *opts])


def parse_embedder_spec(
    spec: str, layer: int | None = None, pooling: str | None = None
) -> EmbedderSpec:
    """Parse ``minilm-l6``, ``smollm2-135m:layer=12:pooling=mean`` or ``st:NAME_OR_PATH``;
    ``layer`` and ``pooling`` fill what the string leaves out (the CLI's --layer and --pooling).

    Raises:
        EmbedderSpecError: an empty model, an unknown key, a layer that is not an integer,
            a key given twice (in the string and as an argument, with different values), or
            layer/pooling for an ``st:`` model.

    Examples:
        >>> parse_embedder_spec("smollm2-135m:layer=12:pooling=mean")
        EmbedderSpec(model='smollm2-135m', layer=12, pooling='mean', sentence_transformers=False)
        >>> str(parse_embedder_spec("st:minilm-l6"))
        'st:minilm-l6'
    """
    text = str(spec).strip()
    fix = "write MODEL[:layer=N][:pooling=P] or st:NAME_OR_PATH"
    if text.startswith(ST_PREFIX):
        name = text[len(ST_PREFIX) :].strip()
        if not name:
            raise EmbedderSpecError(f"embedder spec {spec!r} names no model after 'st:': {fix}")
        if layer is not None or (pooling is not None and pooling != "native"):
            raise EmbedderSpecError(
                f"embedder {spec!r} is a sentence-transformers model, which embeds with its own "
                "layers and pooling: drop the layer/pooling, or name the model without 'st:' "
                "to pool one of its layers"
            )
        return EmbedderSpec(name, sentence_transformers=True)
    model, *parts = re.split(r":(?=\s*[A-Za-z_]\w*\s*=)", text)  # values may hold ':' (pos:-2)
    opts: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in SPEC_KEYS:
            raise EmbedderSpecError(
                f"embedder spec {spec!r} has unknown key {key!r}: the keys are "
                f"{', '.join(SPEC_KEYS)} ({fix})"
            )
        opts[key] = value.strip()
    model = model.strip()
    if not model:
        raise EmbedderSpecError(f"embedder spec {spec!r} names no model: {fix}")
    parsed_layer: int | None = None
    if "layer" in opts:
        try:
            parsed_layer = int(opts["layer"])
        except ValueError:
            raise EmbedderSpecError(
                f"embedder spec {spec!r}: layer={opts['layer']!r} is not an integer (a "
                "hidden_states index, negative from the end)"
            ) from None
    for key, given, own in (
        ("layer", layer, parsed_layer),
        ("pooling", pooling, opts.get("pooling")),
    ):
        if given is not None and own is not None and str(given) != str(own):
            raise EmbedderSpecError(
                f"embedder spec {spec!r} says {key}={own} but {key} {given} was also given: "
                "give it once"
            )
    return EmbedderSpec(
        model,
        parsed_layer if parsed_layer is not None else layer,
        opts.get("pooling") or pooling,
    )


class SentenceTransformerEmbedder:
    """A sentence-transformers model run by the sentence-transformers library (all its modules:
    pooling, Dense, Normalize, prompts), for encoders that ``ModelEmbedder``'s native pooling
    does not reproduce. A bundled name (``minilm-l6``) resolves to its local folder.

    Args:
        model: a sentence-transformers hub name, a local folder or a bundled model name.
        device: ``cpu`` or ``cuda``.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError(
                f"embedder 'st:{model}' needs sentence-transformers: pip install "
                "'workbench[st]', or name the model without 'st:' (a ModelEmbedder)"
            ) from None
        from ..models import BUNDLED

        source = str(BUNDLED[model].path()) if model in BUNDLED else model
        try:
            self.model = SentenceTransformer(source, device=device)
        except (OSError, ValueError) as exc:
            raise UnknownModelError(
                f"cannot load sentence-transformers model {model!r} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): pass "
                "a local folder, a bundled name or (online) a hub id"
            ) from None
        self.batch_size = batch_size
        st = self.model  # get_sentence_embedding_dimension was renamed in sentence-transformers 6
        get_dim = (
            getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        self.name = f"{ST_PREFIX}{model}"
        h = hashlib.sha256(self.name.encode())
        for key, p in sorted(self.model.state_dict().items()):
            flat = p.detach().reshape(-1)
            h.update(f"{key}:{tuple(p.shape)}".encode())
            h.update(flat[:: max(1, flat.numel() // 4096)].cpu().float().numpy().tobytes())
        self.fingerprint = h.hexdigest()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, dim={self.dim})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32."""
        texts = _checked_texts(texts)
        x = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(x, dtype=np.float32).reshape(len(texts), self.dim)


def load_embedder(
    spec: Any,
    layer: int | None = None,
    pooling: str | None = None,
    *,
    device: str = "cpu",
) -> Embedder:
    """An embedder from a spec string (:func:`parse_embedder_spec`), a ``LoadedModel`` (its
    ``layer`` and ``pooling``), or an ``Embedder`` passed through unchanged.

    Examples:
        >>> emb = load_embedder("smollm2-135m:layer=12:pooling=mean")  # doctest: +SKIP
        >>> emb.name  # doctest: +SKIP
        'smollm2-135m:L12:mean'
    """
    if isinstance(spec, Embedder):
        return spec
    if not isinstance(spec, str | os.PathLike):
        return ModelEmbedder(spec, layer=-1 if layer is None else layer, pooling=pooling)
    parsed = parse_embedder_spec(str(spec), layer, pooling)
    if parsed.sentence_transformers:
        return SentenceTransformerEmbedder(parsed.model, device=device)
    from ..models import load_model

    return ModelEmbedder(
        load_model(parsed.model, device=device),
        layer=-1 if parsed.layer is None else parsed.layer,
        pooling=parsed.pooling,
    )


def load_proposer(spec: Any, *, device: str = "cpu") -> Any:
    """The decoder LLM that proposes tokens (a ``load_model`` spec or a ``LoadedModel``).

    Raises:
        UnknownModelError: the model is an encoder (it cannot write text).
    """
    from ..models import LoadedModel, load_model

    lm = spec if isinstance(spec, LoadedModel) else load_model(spec, device=device)
    if lm.kind != "decoder":
        raise UnknownModelError(
            f"{lm.name} is an encoder and cannot propose text: pass a decoder LLM as "
            f"{arg('the proposer', '--model')} (e.g. smollm2-135m); an encoder is an "
            f"{arg('embedder', '--embedder')}"
        )
    return lm


def _checked_texts(texts: Sequence[str] | str) -> list[str]:
    """``texts`` as a list; an empty (or whitespace-only) text has no token to embed.

    Raises:
        EmptyDatasetError: naming the positions of the empty texts.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise EmptyDatasetError(
            f"cannot embed empty text(s) at position(s) {empty[:10]}: they have no token to "
            "pool; drop them or replace them by a placeholder"
        )
    return texts


def check_embeddings(vectors: Any, embedder: Embedder | int) -> np.ndarray:
    """Validate target embeddings: ``[dim]`` or ``[n, dim]`` -> ``[n, dim]`` float32.

    Raises:
        EmbeddingInputError: a dimension other than the embedder's (both are named), NaN or inf
            values, or an all-zero vector (no direction to invert).
    """
    dim = embedder if isinstance(embedder, int) else embedder.dim
    name = "" if isinstance(embedder, int) else f" of {embedder.name}"
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise EmbeddingInputError(
            f"embedding has shape {tuple(np.shape(vectors))} but the embedder{name} expects "
            f"vectors of dimension {dim} (shape [{dim}] or [n, {dim}]); embed with the same "
            "model, layer and pooling the inverter was built for"
        )
    bad = np.where(~np.isfinite(x).all(axis=1))[0]
    if len(bad):
        raise EmbeddingInputError(
            f"embedding row(s) {bad[:10].tolist()} contain NaN or inf: a pooling over no token "
            "(an empty text, or a position beyond the text) gives NaN; re-embed a non-empty text"
        )
    zero = np.where(np.linalg.norm(x, axis=1) == 0)[0]
    if len(zero):
        raise EmbeddingInputError(
            f"embedding row(s) {zero[:10].tolist()} are all zeros: cosine similarity is undefined;"
            " pass the embedding of a non-empty text"
        )
    return x


def cosine_to(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``x`` ``[n, d]`` to ``target`` ``[d]`` -> ``[n]``."""
    from ..evaluation._metrics import cosine_pairs

    x = np.asarray(x, np.float64)
    return cosine_pairs(x, np.broadcast_to(np.asarray(target, np.float64), x.shape))
