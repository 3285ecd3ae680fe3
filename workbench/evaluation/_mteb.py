"""MTEB adapter: any model, layer, pooling and template as an MTEB encoder.

``mteb`` is an optional dependency (``pip install mteb``) and needs the Hugging Face hub to fetch
its task data; offline, evaluate the same kind of task from local files with ``evaluate_grid``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import MissingDependencyError


class LayerEncoder:
    """An encoder with ``encode(sentences, **kwargs) -> [n, d] np.ndarray`` that reads one
    residual layer of a model with one pooling (and template), through ``extract``.

    Each ``encode`` call extracts the distinct non-empty sentences into a temporary store
    (removed afterwards) and returns one row per input sentence, in input order; empty
    sentences get a zero vector (they have no token to pool).

    Args:
        model: a ``LoadedModel`` or anything ``load_model`` accepts.
        layer: residual layer (negative from the end).
        pooling: a grid pooling name (``mean``, ``last``, ``prompteol``, ``echo``,
            ``template:...``; see ``parse_grid_poolings``).
        postprocess: ``none`` or ``center``/``whiten`` fitted on each call's own sentences.
        threads: torch threads during extraction.
        extract_options: more keyword arguments for ``extract``.

    Examples:
        >>> enc = LayerEncoder("smollm2-135m", layer=20, pooling="prompteol")  # doctest: +SKIP
        >>> enc.encode(["A man is playing a guitar."]).shape  # doctest: +SKIP
        (1, 576)
    """

    def __init__(
        self,
        model: Any,
        layer: int = -1,
        pooling: str = "mean",
        *,
        postprocess: str = "none",
        threads: int | None = None,
        extract_options: dict[str, Any] | None = None,
    ) -> None:
        from ..models import LoadedModel, load_model
        from ..models.hook_names import normalize_layers
        from ._geometry import parse_postprocess
        from ._grid import parse_grid_poolings

        (self.grid_pooling,) = parse_grid_poolings([pooling])
        (self.postprocess,) = parse_postprocess([postprocess])
        self.lm = model if isinstance(model, LoadedModel) else load_model(model)
        (self.layer,) = normalize_layers([layer], self.lm.n_layers, self.lm.name)
        self.threads = threads
        self.extract_options = extract_options or {}
        # What MTEB reads to name a run (v1 reads model_card_data, v2 mteb_model_meta).
        self.model_name = f"{self.lm.name}-L{self.layer}-{self.grid_pooling.name}"

    def encode(self, sentences: Any, **kwargs: Any) -> np.ndarray:
        """``[len(sentences), d_model]`` float32 embeddings (MTEB passes task/prompt keywords,
        which are ignored; a DataLoader of ``{"text": [...]}`` batches is accepted too)."""
        from ..activations.extract import extract
        from ._geometry import PostProcess

        texts = _as_texts(sentences)
        index: dict[str, int] = {}
        for t in texts:
            if t.strip():
                index.setdefault(t, len(index))
        out = np.zeros((len(texts), self.lm.d_model), dtype=np.float32)
        if not index:
            return out
        with tempfile.TemporaryDirectory(prefix="workbench-mteb-") as tmp:
            store = extract(
                self.lm,
                list(index),
                layers=[self.layer],
                pooling=self.grid_pooling.store_pooling,
                template=self.grid_pooling.template,
                out=os.path.join(tmp, "store"),
                threads=self.threads,
                progress=False,
                **self.extract_options,
            )
            unique = store.layer(self.layer, self.grid_pooling.store_pooling)
        unique = PostProcess(self.postprocess).fit_transform(unique)
        for i, t in enumerate(texts):
            if t in index:
                out[i] = unique[index[t]]
        return out

    def __repr__(self) -> str:
        return (
            f"LayerEncoder({self.lm.name!r}, layer={self.layer}, "
            f"pooling={self.grid_pooling.name!r}, postprocess={self.postprocess!r})"
        )


def _as_texts(sentences: Any) -> list[str]:
    if isinstance(sentences, str):
        return [sentences]
    if isinstance(sentences, Sequence) and all(isinstance(s, str) for s in sentences):
        return list(sentences)
    texts: list[str] = []
    for item in sentences if isinstance(sentences, Iterable) else []:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and "text" in item:  # an MTEB v2 batch
            batch = item["text"]
            texts.extend([batch] if isinstance(batch, str) else list(batch))
        else:
            raise TypeError(
                f"cannot read sentences from {type(item).__name__}: pass a list of strings "
                "(or batches with a 'text' field)"
            )
    return texts


def run_mteb(
    model: Any,
    tasks: Sequence[str] | str,
    *,
    layer: int = -1,
    pooling: str = "mean",
    postprocess: str = "none",
    output_folder: str | None = None,
    threads: int | None = None,
) -> Any:
    """Run MTEB ``tasks`` (names such as ``"STSBenchmark"``) on one layer and pooling.

    Needs ``pip install mteb`` and access to the Hugging Face hub (MTEB downloads its task data).
    Returns what MTEB returns (a list of task results).

    Raises:
        MissingDependencyError: ``mteb`` is not installed.
    """
    try:
        import mteb
    except ImportError as exc:
        raise MissingDependencyError(
            "run_mteb needs the optional package 'mteb', which is not installed: pip install "
            "mteb (it downloads task data from the Hugging Face hub; offline, evaluate local "
            "SICK/STS files with workbench.evaluation.evaluate_grid instead)"
        ) from exc
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    encoder = LayerEncoder(model, layer, pooling, postprocess=postprocess, threads=threads)
    task_objects = mteb.get_tasks(tasks=names)
    if hasattr(mteb, "evaluate"):  # mteb >= 2
        return mteb.evaluate(encoder, task_objects)
    evaluation = mteb.MTEB(tasks=task_objects)
    folder = output_folder or os.path.join("runs", "mteb", encoder.model_name.replace("/", "_"))
    return evaluation.run(encoder, output_folder=folder)
