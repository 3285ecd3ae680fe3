"""read_conllu on small hand-written CoNLL-U files."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.data import load_dataset, read_conllu
from workbench.errors import (
    DatasetEncodingError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetOptionError,
    EmptyDatasetError,
)


def _line(*fields: object) -> str:
    return "\t".join(str(f) for f in fields)


# Sentence 1: a multiword token ("don't" = do + n't), an empty node and SpaceAfter=No before ".".
# Sentence 2: no "# text", so the text is rebuilt from SpaceAfter. Sentence 3: "del" = de + el.
SAMPLE = "\n".join(
    [
        "# newdoc id = doc1",
        "# sent_id = s1",
        "# text = I don't know, really.",
        _line(1, "I", "I", "PRON", "PRP", "_", 3, "nsubj", "_", "_"),
        _line("2-3", "don't", "_", "_", "_", "_", "_", "_", "_", "_"),
        _line(2, "do", "do", "AUX", "VBP", "_", 4, "aux", "_", "_"),
        _line(3, "n't", "not", "PART", "RB", "_", 4, "advmod", "_", "_"),
        _line(4, "know", "know", "VERB", "VB", "_", 0, "root", "_", "SpaceAfter=No"),
        _line("4.1", "knows", "know", "VERB", "VBZ", "_", "_", "_", "0:root", "_"),
        _line(5, ",", ",", "PUNCT", ",", "_", 6, "punct", "_", "_"),
        _line(6, "really", "really", "ADV", "RB", "_", 4, "advmod", "_", "SpaceAfter=No"),
        _line(7, ".", ".", "PUNCT", ".", "_", 4, "punct", "_", "_"),
        "",
        "# sent_id = s2",
        _line(1, "Hello", "hello", "INTJ", "UH", "_", 0, "root", "_", "SpaceAfter=No"),
        _line(2, "!", "!", "PUNCT", ".", "_", 1, "punct", "_", "Foo=Bar|SpaceAfter=No"),
        "",
        "# sent_id = s3",
        "# text = Vino del mar.",
        _line(1, "Vino", "venir", "VERB", "_", "_", 0, "root", "_", "_"),
        _line("2-3", "del", "_", "_", "_", "_", "_", "_", "_", "_"),
        _line(2, "de", "de", "ADP", "_", "_", 4, "case", "_", "_"),
        _line(3, "el", "el", "DET", "_", "_", 4, "det", "_", "_"),
        _line(4, "mar", "mar", "NOUN", "_", "_", 1, "obl", "_", "SpaceAfter=No"),
        _line(5, ".", ".", "PUNCT", "_", "_", 1, "punct", "_", "_"),
    ]
)  # no blank line after the last sentence: it still counts


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.conllu"
    path.write_text(SAMPLE, encoding="utf-8")
    return path


def test_sentences_words_and_tags(sample: Path) -> None:
    ds = read_conllu(sample)
    assert len(ds) == 3 and ds.name == "sample"
    assert ds.texts == ["I don't know, really.", "Hello!", "Vino del mar."]
    assert ds.columns == {"sent_id": ["s1", "s2", "s3"]}
    assert ds.words is not None and ds.word_spans is not None and ds.word_columns is not None
    assert ds.words[0] == ["I", "do", "n't", "know", ",", "really", "."]  # no range, no 4.1
    assert ds.word_columns["upos"][0] == ["PRON", "AUX", "PART", "VERB", "PUNCT", "ADV", "PUNCT"]
    assert ds.word_columns["xpos"][0][:3] == ["PRP", "VBP", "RB"]
    assert ds.word_columns["lemma"][0][:3] == ["I", "do", "not"]
    assert ds.word_columns["head"][0] == [3, 4, 4, 0, 6, 4, 4]
    assert ds.word_columns["deprel"][0][3] == "root"
    assert set(ds.word_columns) == {"upos", "xpos", "head", "deprel", "lemma"}


def test_word_spans(sample: Path) -> None:
    ds = read_conllu(sample)
    assert ds.word_spans is not None and ds.words is not None
    assert ds.word_spans[0] == [(0, 1), (2, 4), (4, 7), (8, 12), (12, 13), (14, 20), (20, 21)]
    for text, words, spans in zip(ds.texts[:2], ds.words[:2], ds.word_spans[:2], strict=True):
        assert [text[s:e] for s, e in spans] == words
    # words of a multiword token that do not spell it share the token's span
    assert ds.word_spans[2] == [(0, 4), (5, 8), (5, 8), (9, 12), (12, 13)]


def test_text_rebuilt_when_words_do_not_match(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.conllu"
    path.write_text(
        "# text = Hello there!\n"
        + _line(1, "Hi", "hi", "INTJ", "UH", "_", 0, "root", "_", "_")
        + "\n"
        + _line(2, "there", "there", "ADV", "RB", "_", 1, "advmod", "_", "SpaceAfter=No")
        + "\n"
        + _line(3, "!", "!", "PUNCT", ".", "_", 1, "punct", "_", "_")
        + "\n\n"
    )
    with pytest.warns(UserWarning, match="1 sentence"):
        ds = read_conllu(path)
    assert ds.texts == ["Hi there!"]
    assert ds.word_spans == [[(0, 2), (3, 8), (8, 9)]]


def test_limit_and_name(sample: Path) -> None:
    ds = read_conllu(sample, limit=2, name="toy")
    assert len(ds) == 2 and ds.name == "toy"
    assert load_dataset(sample, limit=1, label_columns=["sent_id"]).texts == [
        "I don't know, really."
    ]


def test_load_dataset_rejects_text_column(sample: Path) -> None:
    with pytest.raises(DatasetOptionError, match="fixed text"):
        load_dataset(sample, text_column="text")
    with pytest.raises(DatasetOptionError, match=r"no option 'drop_empty'.*\['name'\]"):
        load_dataset(sample, drop_empty=True)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.conllu"
    body = "# text = caf\xe9\n" + _line(1, "caf\xe9", "_", "NOUN", "NN", "_", 0, "root", "_", "_")
    path.write_bytes(("# sent_id = 1\n" + body + "\n").encode("latin-1"))
    with pytest.raises(DatasetEncodingError, match=r"line 2 .*iconv -f latin1 -t utf-8"):
        read_conllu(path)


def test_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.conllu"
    path.write_text("# sent_id = 1\n1 word word NOUN NN _ 0 root _ _\n")
    with pytest.raises(DatasetFormatError, match=r"line 2: expected 10 tab-separated fields"):
        read_conllu(path)
    path.write_text(_line("x", "w", "w", "NOUN", "NN", "_", 0, "root", "_", "_") + "\n")
    with pytest.raises(DatasetFormatError, match="line 1: ID 'x'"):
        read_conllu(path)


def test_empty_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "empty.conllu"
    path.write_text("# only a comment\n\n")
    with pytest.raises(EmptyDatasetError, match="no sentences"):
        read_conllu(path)
    with pytest.raises(DatasetNotFoundError):
        read_conllu(tmp_path / "missing.conllu")
