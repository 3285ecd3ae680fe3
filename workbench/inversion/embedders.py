"""Embedders that inverters invert: a sentence encoder with its native pooling, or an LLM's pooled
hidden states at one layer. Pooling is ``workbench.activations.pooling`` (the same code as
``extract``), so a vector here equals the stored vector of the same layer and pooling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..activations.pooling import parse_poolings, pool
from ..errors import EmptyDatasetError, WorkbenchError
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
        """A copy computing in ``dtype`` (its own copy of the weights; the tokenizer is shared):
        e.g. a bfloat16 scorer for a search, whose winners are re-scored by this embedder."""
        import copy
        import dataclasses

        if dtype == self.lm.dtype:
            return self
        lm = dataclasses.replace(self.lm, model=copy.deepcopy(self.lm.model).to(dtype))
        return ModelEmbedder(lm, self.layer, self.pooling.name, batch_size=self.batch_size)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32; texts are batched by length.

        Raises:
            EmptyDatasetError: an empty (or whitespace-only) text, which has no token to pool.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise EmptyDatasetError(
                f"cannot embed empty text(s) at position(s) {empty[:10]}: they have no token to "
                "pool; drop them or replace them by a placeholder"
            )
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


def load_embedder(spec: Any, layer: int = -1, pooling: str | None = None) -> Embedder:
    """An embedder from a model spec (``minilm-l6``, ``smollm2-135m``, a path) or pass one
    through unchanged."""
    if isinstance(spec, Embedder):
        return spec
    return ModelEmbedder(spec, layer=layer, pooling=pooling)


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
