r"""Evaluation tasks and their loaders: sentence pairs (SICK-R, SemEval STS) and labelled texts.

Pair files are tab separated and read without quoting rules (sentences keep their quotes):

- SICK (``SICK_test_annotated.txt``): a header ``pair_ID, sentence_A, sentence_B,
  relatedness_score, entailment_judgment``; other headers are read when they name two sentence
  columns and a score column (see :data:`PAIR_COLUMNS`).
- SemEval STS 2012-2016: ``score \t sentence1 \t sentence2`` per line, no header; further
  columns are ignored. A line with an empty score (STS 2016 leaves unscored pairs blank) is
  skipped and counted in :attr:`PairTask.n_skipped`. The official layout, one input file of
  sentence pairs and one gold-standard file of scores, is read with ``load_sts(input, gs=...)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import (
    DatasetNotFoundError,
    EmptyDatasetError,
    EvaluationOptionError,
    TaskFormatError,
    arg,
)
from ..intervals import majority_share

#: Header names accepted for each role of a pair file with a header (first match wins).
PAIR_COLUMNS: dict[str, tuple[str, ...]] = {
    "sentence1": ("sentence_A", "sentence1", "sentence_1", "sentence 1", "s1", "text1", "text_a"),
    "sentence2": ("sentence_B", "sentence2", "sentence_2", "sentence 2", "s2", "text2", "text_b"),
    "score": ("relatedness_score", "score", "similarity", "similarity_score", "gold_score"),
    "label": ("entailment_judgment", "entailment_label", "gold_label"),
}

#: Short names of the SICK 2014 files, looked up under ``../shared/data/sick2014``.
SICK_FILES: dict[str, str] = {
    "sick": "SICK_test_annotated.txt",
    "sick-test": "SICK_test_annotated.txt",
    "sick-train": "SICK_train.txt",
    "sick-trial": "SICK_trial.txt",
}

_SHOWN = 5


@dataclass(frozen=True)
class PairTask:
    """Sentence pairs with similarity scores (and optional pair labels).

    Attributes:
        name: a short name (``"SICK_test_annotated"``).
        sentences1, sentences2: ``[pairs]`` the two sides of each pair.
        scores: ``[pairs]`` float human similarity scores.
        labels: ``[pairs]`` pair labels (SICK's entailment judgment) or None.
        source: the file(s) it was read from.
        n_skipped: pairs skipped because they had no score.
        n_dropped_empty: pairs dropped because a sentence was empty (``drop_empty=True``).

    Examples:
        >>> task = PairTask("toy", ["a cat", "a dog"], ["a kitten", "a car"], np.array([4.5, 1.0]))
        >>> len(task), task.unique_sentences()[0]
        (2, ['a cat', 'a dog', 'a kitten', 'a car'])
    """

    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    labels: list[str] | None = None
    source: str = ""
    n_skipped: int = 0
    n_dropped_empty: int = 0
    kind: str = field(default="pairs", init=False)

    def __post_init__(self) -> None:
        n = len(self.sentences1)
        if (
            len(self.sentences2) != n
            or len(self.scores) != n
            or (self.labels is not None and len(self.labels) != n)
        ):
            raise TaskFormatError(
                f"task {self.name!r}: sentences1, sentences2, scores (and labels) must have one "
                f"entry per pair; got {len(self.sentences1)}, {len(self.sentences2)}, "
                f"{len(self.scores)}" + (f", {len(self.labels)}" if self.labels is not None else "")
            )
        if n == 0:
            raise EmptyDatasetError(
                f"task {self.name!r} has no scored pairs ({self.n_skipped} skipped without a "
                f"score) in {self.source or 'the input'}"
            )
        empty = [
            i
            for i, (a, b) in enumerate(zip(self.sentences1, self.sentences2, strict=True))
            if not a.strip() or not b.strip()
        ]
        if empty:
            raise TaskFormatError(
                f"task {self.name!r}: {len(empty)} pairs have an empty sentence (pairs "
                f"{empty[:_SHOWN]}{' ...' if len(empty) > _SHOWN else ''}); an empty text has "
                "no token to pool: drop those pairs"
            )

    def __len__(self) -> int:
        return len(self.sentences1)

    def unique_sentences(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Distinct sentences (first-seen order) and each pair's two indices into them.

        Returns:
            ``(texts, ids1 [pairs], ids2 [pairs])``: ``texts[ids1[i]] == sentences1[i]``.
        """
        index: dict[str, int] = {}
        for s in (*self.sentences1, *self.sentences2):
            index.setdefault(s, len(index))
        ids1 = np.fromiter((index[s] for s in self.sentences1), dtype=np.int64, count=len(self))
        ids2 = np.fromiter((index[s] for s in self.sentences2), dtype=np.int64, count=len(self))
        return list(index), ids1, ids2

    def head(self, n: int) -> PairTask:
        """The first ``n`` pairs."""
        return replace(
            self,
            sentences1=self.sentences1[:n],
            sentences2=self.sentences2[:n],
            scores=self.scores[:n],
            labels=self.labels[:n] if self.labels is not None else None,
        )

    def describe(self) -> dict[str, Any]:
        texts, _, _ = self.unique_sentences()
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "n_pairs": len(self),
            "n_sentence_slots": 2 * len(self),
            "n_unique_sentences": len(texts),
            "n_skipped_no_score": self.n_skipped,
            "n_dropped_empty": self.n_dropped_empty,
            "has_labels": self.labels is not None,
        }


@dataclass(frozen=True)
class LabelTask:
    """Texts with one class label each (classification by a linear probe, clustering).

    Attributes:
        name: a short name.
        texts: ``[rows]`` the texts.
        labels: ``[rows]`` class labels (any hashable values).
        source: where it was read from.

    Examples:
        >>> task = LabelTask("toy", ["good", "bad", "fine"], [1, 0, 1])
        >>> len(task), task.n_classes
        (3, 2)
    """

    name: str
    texts: list[str]
    labels: list[Any]
    source: str = ""
    kind: str = field(default="labels", init=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise TaskFormatError(
                f"task {self.name!r}: {len(self.texts)} texts but {len(self.labels)} labels"
            )
        if not self.texts:
            raise EmptyDatasetError(f"task {self.name!r} has no rows ({self.source})")
        empty = [i for i, t in enumerate(self.texts) if not t or not t.strip()]
        if empty:
            raise TaskFormatError(
                f"task {self.name!r}: {len(empty)} texts are empty (rows {empty[:_SHOWN]}"
                f"{' ...' if len(empty) > _SHOWN else ''}): drop them first"
            )
        missing = [i for i, y in enumerate(self.labels) if y is None]
        if missing:
            raise TaskFormatError(
                f"task {self.name!r}: {len(missing)} rows have no label (rows "
                f"{missing[:_SHOWN]}): drop them or fill the label column"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_classes(self) -> int:
        return len(set(self.labels))

    def unique_sentences(self) -> tuple[list[str], np.ndarray]:
        """Distinct texts and each row's index into them."""
        index: dict[str, int] = {}
        for s in self.texts:
            index.setdefault(s, len(index))
        return list(index), np.fromiter((index[s] for s in self.texts), np.int64, len(self))

    def head(self, n: int) -> LabelTask:
        return replace(self, texts=self.texts[:n], labels=self.labels[:n])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "n_rows": len(self),
            "n_unique_sentences": len(self.unique_sentences()[0]),
            "n_classes": self.n_classes,
            "majority": majority_share(self.labels),
        }


Task = PairTask | LabelTask


# ----------------------------------------------------------------------------------------------
# reading pair files


def _lines(path: Path) -> list[str]:
    from ..data._tables import check_path, read_utf8

    check_path(path)
    return [line.rstrip("\r") for line in read_utf8(path).split("\n")]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _columns_message(found: Sequence[str]) -> str:
    return (
        f"columns found: {list(found)}. A pair file needs a header naming two sentence columns "
        f"and a score column ({PAIR_COLUMNS['sentence1'][0]}/{PAIR_COLUMNS['sentence1'][1]}, "
        f"{PAIR_COLUMNS['sentence2'][0]}/{PAIR_COLUMNS['sentence2'][1]}, "
        f"{PAIR_COLUMNS['score'][0]}/{PAIR_COLUMNS['score'][1]}; SICK's header is pair_ID, "
        "sentence_A, sentence_B, relatedness_score, entailment_judgment), or no header at all "
        "(SemEval STS: score<TAB>sentence1<TAB>sentence2). For texts with class labels, pass "
        "label_column= (--label-column)"
    )


def _find(header: list[str], role: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in PAIR_COLUMNS[role]:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    return None


def _finish(
    name: str,
    source: str,
    records: list[tuple[int, str, str, str, str | None]],
    drop_empty: bool,
    limit: int | None,
    score_name: str,
) -> PairTask:
    """Build a PairTask from ``(line, score_text, s1, s2, label)`` records."""
    bad = [(ln, s) for ln, s, *_ in records if s.strip() and _number(s.strip()) is None]
    if bad:
        shown = ", ".join(f"line {ln}: {s!r}" for ln, s in bad[:_SHOWN])
        raise TaskFormatError(
            f"{source}: {len(bad)} values of the score column ({score_name}) are not numbers "
            f"({shown}{' ...' if len(bad) > _SHOWN else ''}). Scores must be plain numbers such "
            "as 3.7; leave the field empty for a pair without a score (it is skipped and counted)"
        )
    scored = [r for r in records if r[1].strip()]
    n_skipped = len(records) - len(scored)
    empty = [r[0] for r in scored if not r[2].strip() or not r[3].strip()]
    if empty and not drop_empty:
        raise TaskFormatError(
            f"{source}: {len(empty)} pairs have an empty sentence (lines {empty[:_SHOWN]}"
            f"{' ...' if len(empty) > _SHOWN else ''}); an empty text has no token to pool. Fix "
            f"the file, or pass {arg('drop_empty=True', '--drop-empty')} to skip and count them"
        )
    kept = [r for r in scored if r[2].strip() and r[3].strip()]
    if limit is not None:
        kept = kept[:limit]
    labels = [r[4] for r in kept if r[4] is not None]  # kept only when every pair has one
    return PairTask(
        name=name,
        sentences1=[r[2] for r in kept],
        sentences2=[r[3] for r in kept],
        scores=np.array([float(r[1]) for r in kept], dtype=np.float64),
        labels=labels if kept and len(labels) == len(kept) else None,
        source=source,
        n_skipped=n_skipped,
        n_dropped_empty=len(empty),
    )


def _read_headered(
    path: Path, lines: list[str], name: str, drop_empty: bool, limit: int | None
) -> PairTask:
    header = lines[0].split("\t")
    cols = {role: _find(header, role) for role in PAIR_COLUMNS}
    missing = [r for r in ("sentence1", "sentence2", "score") if cols[r] is None]
    if missing:
        raise TaskFormatError(
            f"{path}: the header does not name the {', '.join(missing)} column(s); "
            + _columns_message(header)
        )
    width = max(c for c in cols.values() if c is not None) + 1
    # the three required columns exist (checked above); the label column is optional
    i_score, i_s1, i_s2 = (cast(int, cols[r]) for r in ("score", "sentence1", "sentence2"))
    records: list[tuple[int, str, str, str, str | None]] = []
    short: list[int] = []
    for ln, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) < width:
            short.append(ln)
            continue
        label = f[cols["label"]].strip() if cols["label"] is not None else None
        records.append(
            (
                ln,
                f[i_score],
                f[i_s1],
                f[i_s2],
                label or None,
            )
        )
    if short:
        raise TaskFormatError(
            f"{path}: {len(short)} lines have fewer than {width} tab-separated fields (lines "
            f"{short[:_SHOWN]}); the header has {len(header)} columns: {header}"
        )
    return _finish(name, str(path), records, drop_empty, limit, header[i_score])


def _read_sts_lines(
    path: Path, lines: list[str], name: str, drop_empty: bool, limit: int | None
) -> PairTask:
    records: list[tuple[int, str, str, str, str | None]] = []
    short: list[int] = []
    for ln, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) < 3:
            short.append(ln)
            continue
        records.append((ln, f[0], f[1], f[2], None))
    if short:
        raise TaskFormatError(
            f"{path}: {len(short)} lines have fewer than 3 tab-separated fields (lines "
            f"{short[:_SHOWN]}); the SemEval STS format is score<TAB>sentence1<TAB>sentence2"
        )
    return _finish(name, str(path), records, drop_empty, limit, "score, field 1")


def _looks_like_header(first: str) -> bool:
    head = first.split("\t")[0].strip()
    return bool(head) and _number(head) is None


def read_pair_task(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    name: str | None = None,
    drop_empty: bool = False,
    limit: int | None = None,
) -> PairTask:
    r"""Read a tab-separated sentence-pair file with similarity scores.

    Args:
        path: the file.
        format: ``"sick"`` (a header naming the sentence and score columns), ``"sts"``
            (SemEval: ``score \t s1 \t s2``, no header) or ``"auto"`` (a first line whose
            first field is not a number is a header).
        name: task name (default: the file's stem).
        drop_empty: skip pairs with an empty sentence (counted in ``n_dropped_empty``) instead
            of raising.
        limit: keep the first ``limit`` scored pairs.

    Raises:
        TaskFormatError: an unexpected header (the columns found are named), a score that is
            not a number, too few fields on a line, or a pair with an empty sentence.
        DatasetNotFoundError, DatasetEncodingError: a missing file, a file that is not UTF-8.
    """
    p = Path(path).expanduser()
    lines = _lines(p)
    content = [ln for ln in lines if ln.strip()]
    if not content:
        raise EmptyDatasetError(f"{p} is empty: a pair file needs at least one scored pair")
    task_name = name or p.stem
    fmt = format.lower()
    if fmt not in ("auto", "sick", "sts"):
        raise EvaluationOptionError(f"format={format!r}: use 'auto', 'sick' or 'sts'")
    header = _looks_like_header(lines[0]) if lines[0].strip() else False
    if fmt == "sts" and header:
        raise TaskFormatError(
            f"{p}: line 1 looks like a header ({_columns_message(lines[0].split(chr(9)))}); "
            "the SemEval STS format has no header. Remove that line, or read the file with "
            "format='sick'"
        )
    if fmt == "sick" or (fmt == "auto" and header):
        return _read_headered(p, lines, task_name, drop_empty, limit)
    return _read_sts_lines(p, lines, task_name, drop_empty, limit)


def load_sick(path: str | os.PathLike[str], **kwargs: Any) -> PairTask:
    """Read a SICK 2014 file (``pair_ID, sentence_A, sentence_B, relatedness_score,
    entailment_judgment``); ``labels`` holds the entailment judgment. See :func:`read_pair_task`."""
    return read_pair_task(path, format="sick", **kwargs)


def load_sts(
    path: str | os.PathLike[str],
    gs: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    drop_empty: bool = False,
    limit: int | None = None,
) -> PairTask:
    r"""Read SemEval STS 2012-2016 data.

    Args:
        path: either one file of ``score \t s1 \t s2`` lines (no header), or, with ``gs``,
            the official ``STS.input.*.txt`` file of ``s1 \t s2 [\t ...]`` lines.
        gs: the official ``STS.gs.*.txt`` file: one score per line, empty for unscored pairs.
        name: as in :func:`read_pair_task`.
        drop_empty: as in :func:`read_pair_task`.
        limit: as in :func:`read_pair_task`.

    Pairs without a score are skipped and counted in ``n_skipped``.
    """
    if gs is None:
        return read_pair_task(path, format="sts", name=name, drop_empty=drop_empty, limit=limit)
    p, g = Path(path).expanduser(), Path(gs).expanduser()
    inputs = _lines(p)
    scores = _lines(g)
    while inputs and not inputs[-1].strip():
        inputs.pop()
    while scores and not scores[-1]:
        scores.pop()
    scores += [""] * max(0, len(inputs) - len(scores))  # trailing unscored pairs
    if len(scores) != len(inputs):
        raise TaskFormatError(
            f"{g} has {len(scores)} lines but {p} has {len(inputs)} pairs: the gold-standard file "
            "needs one line (a score, or empty) per input line"
        )
    records: list[tuple[int, str, str, str, str | None]] = []
    short: list[int] = []
    for ln, (line, score) in enumerate(zip(inputs, scores, strict=True), start=1):
        f = line.split("\t")
        if len(f) < 2:
            short.append(ln)
            continue
        records.append((ln, score.split("\t")[0], f[0], f[1], None))
    if short:
        raise TaskFormatError(
            f"{p}: {len(short)} lines have fewer than 2 tab-separated fields (lines "
            f"{short[:_SHOWN]}); an STS input file has sentence1<TAB>sentence2 per line"
        )
    return _finish(name or p.stem, f"{p} + {g}", records, drop_empty, limit, f"{g.name}, field 1")


# ----------------------------------------------------------------------------------------------
# one entry point


def sick_path(spec: str, cwd: str | os.PathLike[str] | None = None) -> Path:
    """The SICK file for ``sick``/``sick-test``/``sick-train``/``sick-trial``, looked up in
    ``../shared/data/sick2014`` and ``./shared/data/sick2014`` from ``cwd`` (default: the current
    folder); a clear error when it is in neither."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    filename = SICK_FILES[spec.lower()]
    tried = [base / ".." / "shared" / "data" / "sick2014", base / "shared" / "data" / "sick2014"]
    for folder in tried:
        if (folder / filename).is_file():
            return (folder / filename).resolve()
    raise DatasetNotFoundError(
        f"task {spec!r} is SICK 2014's {filename}, which is not in "
        f"{[str(t.resolve()) for t in tried]}: run from a checkout next to shared/, or pass the "
        "file's path as the task"
    )


def load_task(
    spec: str | os.PathLike[str] | PairTask | LabelTask,
    *,
    label_column: str | None = None,
    text_column: str | None = None,
    drop_empty: bool = False,
    limit: int | None = None,
) -> PairTask | LabelTask:
    """A task from a name or a file.

    Args:
        spec: ``sick``/``sick-test``/``sick-train``/``sick-trial`` (the SICK 2014 files in
            ``../shared``); a ``.txt``/``.tsv`` pair file (SICK header or SemEval STS lines); a
            built-in dataset (``cities``) or any data file with a label column, read as a
            :class:`LabelTask`; or a task object (returned as is, cut to ``limit``).
        label_column: makes a :class:`LabelTask` from any table (default ``label`` for built-in
            datasets and ``.csv``/``.jsonl``/``.parquet`` files).
        text_column: the text column of a label table.
        drop_empty: skip pairs (or table rows) with an empty text instead of raising.
        limit: keep the first ``limit`` pairs or rows.

    Examples:
        >>> task = load_task("sick", limit=100)  # doctest: +SKIP
        >>> task.describe()["n_pairs"]  # doctest: +SKIP
        100
    """
    from ..data import builtin_datasets, load_dataset
    from ..data._tables import check_limit

    check_limit(limit)
    if isinstance(spec, PairTask | LabelTask):
        return spec if limit is None else spec.head(limit)
    text = str(spec)
    if text.lower() in SICK_FILES and label_column is None:
        return read_pair_task(sick_path(text), format="sick", drop_empty=drop_empty, limit=limit)
    suffix = Path(text).suffix.lower()
    if label_column is None and suffix in (".txt", ".tsv"):
        return read_pair_task(text, drop_empty=drop_empty, limit=limit)
    if label_column is None and text not in builtin_datasets() and not Path(text).exists():
        raise DatasetNotFoundError(
            f"task {text!r} is neither a known name ({sorted(SICK_FILES)}, built-in datasets "
            f"{list(builtin_datasets())}) nor an existing file: pass a path to a SICK or STS "
            f"pair file (.txt/.tsv) or a labelled table with {arg('label_column=', '--label-column')}"
        )
    label = label_column or "label"
    # drop_empty is a table reader's option (built-in datasets have no empty texts)
    table = {"drop_empty": True} if drop_empty and text not in builtin_datasets() else {}
    dataset = load_dataset(
        text, text_column=text_column, label_columns=[label], limit=limit, **table
    )
    return LabelTask(
        name=Path(text).stem if Path(text).suffix else text,
        texts=list(dataset.texts),
        labels=list(dataset.column(label)),
        source=dataset.source or text,
    )
