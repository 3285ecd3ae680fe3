"""Embedding-quality evaluation: metrics on hand-made vectors, geometry, post-processing, task
loaders and their errors, grid parsing, the grid on a tiny random Llama, the MTEB encoder, the
heatmap and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import permutations

import numpy as np
import pytest
from scipy.stats import spearmanr

import workbench as wb
from workbench.errors import (
    ColumnNotFoundError,
    DatasetNotFoundError,
    EmptyDatasetError,
    EvaluationOptionError,
    MissingDependencyError,
    PoolingError,
    TaskFormatError,
)
from workbench.evaluation import (
    LabelTask,
    LayerEncoder,
    PairTask,
    PostProcess,
    anisotropy,
    classification_accuracy,
    clustering_v_measure,
    effective_rank,
    evaluate_grid,
    load_sick,
    load_sts,
    load_task,
    norm_stats,
    pair_classification_accuracy,
    parse_grid_poolings,
    read_pair_task,
    retrieval_scores,
    run_mteb,
    sick_path,
    spearman,
    sts_spearman,
)

SICK_HEADER = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"


# ----------------------------------------------------------------------------------------------
# metrics


def test_spearman_matches_scipy_and_is_nan_when_constant():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert np.isnan(spearman(np.array([1.0, np.nan, 2.0]), np.arange(3.0)))


def test_sts_spearman_ranks_cosines_against_scores():
    e1 = np.array([[1.0, 0.0]] * 4)
    angles = np.array([0.1, 0.5, 1.0, 1.5])  # cosine falls as the angle grows
    e2 = np.stack([np.cos(angles), np.sin(angles)], axis=1) * [[3.0], [0.2], [1.0], [7.0]]
    assert sts_spearman(e1, e2, np.array([5.0, 4.0, 2.0, 1.0])) == pytest.approx(1.0)
    assert sts_spearman(e1, e2, np.array([1.0, 2.0, 4.0, 5.0])) == pytest.approx(-1.0)


def test_retrieval_recall_and_mrr_by_hand():
    cands = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    queries = np.array([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0]])
    # query 0 -> partner 0 (rank 1); query 1 -> partner 1 (rank 1);
    # query 2 -> partner 2: cosines 1.0 (cand 0), 0.707 (cand 2), 0 (cand 1) -> rank 2
    r = retrieval_scores(queries, cands, np.array([0, 1, 2]), ks=(1, 2))
    assert r["recall@1"] == pytest.approx(2 / 3)
    assert r["recall@2"] == pytest.approx(1.0)
    assert r["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    # leaving out candidate 0 for query 2 (its own text) makes the partner first
    r = retrieval_scores(
        queries, cands, np.array([0, 1, 2]), exclude=np.array([-1, -1, 0]), ks=(1,)
    )
    assert r["recall@1"] == pytest.approx(1.0)


def test_retrieval_ties_and_nan_count_against_the_query():
    same = np.ones((4, 3))
    r = retrieval_scores(same, same, np.arange(4), ks=(1,))
    assert r["recall@1"] == 0.0 and r["mrr"] == pytest.approx(1 / 4)
    nan = np.full((2, 3), np.nan)
    r = retrieval_scores(nan, np.eye(3)[:2], np.arange(2), ks=(1,))
    assert r["recall@1"] == 0.0


def test_clustering_and_linear_probe_on_separable_data():
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [
            rng.normal(size=(20, 5)) * 0.1 + [5, 0, 0, 0, 0],
            rng.normal(size=(20, 5)) * 0.1 + [0, 5, 0, 0, 0],
        ]
    )
    y = ["a"] * 20 + ["b"] * 20
    assert clustering_v_measure(X, y) == pytest.approx(1.0)
    assert classification_accuracy(X, y) == pytest.approx(1.0)
    assert classification_accuracy(rng.normal(size=(40, 5)), y) < 0.9
    assert pair_classification_accuracy(X, X[::-1], y) == pytest.approx(1.0)
    with pytest.raises(EvaluationOptionError, match="only 1 example"):
        classification_accuracy(X[:21], y[:21])
    assert np.isnan(clustering_v_measure(X, ["a"] * 40))


# ----------------------------------------------------------------------------------------------
# geometry and post-processing


def test_anisotropy_is_the_mean_cosine_over_distinct_pairs():
    X = np.random.default_rng(1).normal(size=(7, 4)) + 0.5
    brute = np.mean(
        [
            X[i] @ X[j] / np.linalg.norm(X[i]) / np.linalg.norm(X[j])
            for i, j in permutations(range(7), 2)
        ]
    )
    assert anisotropy(X) == pytest.approx(brute)
    assert anisotropy(np.array([[1.0, 0], [3.0, 0]])) == pytest.approx(1.0)


def test_effective_rank_and_norms():
    assert effective_rank(np.eye(5)) == pytest.approx(5.0)
    assert effective_rank(np.outer(np.arange(1, 9), [1.0, 2.0, 3.0])) == pytest.approx(1.0)
    # singular values 2 and 1: p = (2/3, 1/3)
    p = np.array([2 / 3, 1 / 3])
    assert effective_rank(np.diag([2.0, 1.0])) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert norm_stats(np.array([[3.0, 4.0], [0.0, 1.0]])) == {"norm_mean": 3.0, "norm_std": 2.0}


def test_center_and_whiten():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4)) + 10.0
    centered = PostProcess("center").fit_transform(X)
    assert np.allclose(centered.mean(axis=0), 0, atol=1e-4)
    white = PostProcess("whiten").fit_transform(X)
    assert np.allclose(np.cov(white, rowvar=False), np.eye(4), atol=1e-3)
    assert anisotropy(white) == pytest.approx(0.0, abs=0.02)
    assert np.array_equal(PostProcess("none").fit_transform(X), X)
    # rank-deficient input keeps only the directions with variance
    assert PostProcess("whiten").fit_transform(X[:, [0, 0, 1]]).shape == (300, 2)
    with pytest.raises(EvaluationOptionError, match="center"):
        PostProcess("zca").fit(X)
    with pytest.raises(RuntimeError, match="fit"):
        PostProcess("center").transform(X)


# ----------------------------------------------------------------------------------------------
# task loaders


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_sick_loader_reads_pairs_scores_and_labels(tmp_path):
    p = _write(
        tmp_path,
        "SICK_x.txt",
        SICK_HEADER
        + "1\tA man plays.\tA man is playing.\t4.5\tENTAILMENT\n"
        + "2\tA dog runs.\tA man plays.\t1.2\tNEUTRAL\n\n",
    )
    task = load_sick(p)
    assert len(task) == 2 and task.name == "SICK_x"
    assert task.scores.tolist() == [4.5, 1.2] and task.labels == ["ENTAILMENT", "NEUTRAL"]
    texts, ids1, ids2 = task.unique_sentences()
    assert texts == ["A man plays.", "A dog runs.", "A man is playing."]
    assert [texts[i] for i in ids1] == task.sentences1 and [
        texts[i] for i in ids2
    ] == task.sentences2
    assert load_task(p).scores.tolist() == [4.5, 1.2]  # auto-detected from the header


def test_sts_loader_skips_and_counts_unscored_pairs(tmp_path):
    p = _write(tmp_path, "sts.txt", "4.0\ta b\tc d\tsrc\n\te f\tg h\n0.5\ti j\tk l\n")
    task = load_sts(p)
    assert len(task) == 2 and task.n_skipped == 1
    assert task.sentences1 == ["a b", "i j"] and task.labels is None
    assert read_pair_task(p).n_skipped == 1  # auto: no header -> STS
    inp = _write(tmp_path, "STS.input.x.txt", "a b\tc d\ne f\tg h\ni j\tk l\n")
    gs = _write(tmp_path, "STS.gs.x.txt", "4.0\n\n0.5\n")
    task = load_sts(inp, gs)
    assert task.scores.tolist() == [4.0, 0.5] and task.n_skipped == 1


def test_score_that_is_not_a_number_names_the_line(tmp_path):
    p = _write(tmp_path, "sts.txt", "4.0\ta\tb\nfour\tc\td\n")
    with pytest.raises(TaskFormatError, match=r"line 2: 'four'"):
        load_sts(p)
    p = _write(tmp_path, "sick.txt", SICK_HEADER + "1\ta\tb\thigh\tNEUTRAL\n2\tc\td\tnan\tX\n")
    with pytest.raises(TaskFormatError, match=r"2 values .*relatedness_score.*line 2: 'high'"):
        load_sick(p)


def test_empty_sentence_is_an_error_or_dropped_and_counted(tmp_path):
    p = _write(tmp_path, "sts.txt", "4.0\ta\tb\n3.0\t \tc\n2.0\td\te\n")
    with pytest.raises(TaskFormatError, match=r"empty sentence \(lines \[2\]"):
        load_sts(p)
    task = load_sts(p, drop_empty=True)
    assert len(task) == 2 and task.n_dropped_empty == 1
    with pytest.raises(TaskFormatError, match="empty sentence"):
        PairTask("t", ["a", ""], ["b", "c"], np.array([1.0, 2.0]))


def test_unexpected_header_names_the_columns_found(tmp_path):
    p = _write(tmp_path, "pairs.tsv", "id\tleft\tright\tgold\n1\ta\tb\t3\n")
    with pytest.raises(TaskFormatError, match=r"columns found: \['id', 'left', 'right', 'gold'\]"):
        read_pair_task(p)
    with pytest.raises(TaskFormatError, match="no header"):
        load_sts(p)
    other = _write(tmp_path, "o.tsv", "sentence1\tsentence2\tscore\na\tb\t3\n")
    assert read_pair_task(other).scores.tolist() == [3.0]


def test_short_lines_empty_files_and_missing_tasks(tmp_path):
    with pytest.raises(TaskFormatError, match="fewer than 3"):
        load_sts(_write(tmp_path, "s.txt", "1.0\tonly one\n"))
    with pytest.raises(EmptyDatasetError):
        load_sts(_write(tmp_path, "e.txt", "\n\n"))
    with pytest.raises(EmptyDatasetError, match="no scored pairs"):
        load_sts(_write(tmp_path, "u.txt", "\ta\tb\n"))
    with pytest.raises(DatasetNotFoundError, match="sick2014"):
        sick_path("sick", cwd=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="neither a known name"):
        load_task(str(tmp_path / "nope"))


def test_label_task_from_a_table(tmp_path):
    p = _write(tmp_path, "l.csv", "text,label\ngood film,pos\nbad film,neg\nfine film,pos\n")
    task = load_task(p)
    assert isinstance(task, LabelTask) and task.labels == ["pos", "neg", "pos"]
    with pytest.raises(ColumnNotFoundError, match="label"):
        load_task(p, label_column="topic")
    with pytest.raises(TaskFormatError, match="empty"):
        LabelTask("t", ["a", " "], [0, 1])


# ----------------------------------------------------------------------------------------------
# grid poolings and metrics


def test_grid_pooling_names_and_templates():
    grid = parse_grid_poolings("mean,last,prompteol,echo,echo-last")
    assert [(g.name, g.store_pooling) for g in grid] == [
        ("mean", "mean"),
        ("last", "last"),
        ("prompteol", "last"),
        ("echo", "mean"),
        ("echo-last", "last"),
    ]
    assert grid[0].template is None and "{text}" in grid[2].template
    (custom,) = parse_grid_poolings('template:Say "{text}", in one word:"')
    assert custom.template == 'Say "{text}", in one word:"' and custom.store_pooling == "last"
    (twice,) = parse_grid_poolings("template:{text} again: {text}")
    assert twice.store_pooling == "mean"


def test_grid_pooling_errors():
    with pytest.raises(PoolingError, match=r"contains '\{text\}' 0 times"):
        parse_grid_poolings("mean,template:no placeholder here")
    with pytest.raises(PoolingError, match="unknown grid pooling 'avg'"):
        parse_grid_poolings("avg")


# ----------------------------------------------------------------------------------------------
# the grid on a tiny random Llama

S1 = [
    "A man plays a guitar.",
    "A dog runs in a park.",
    "Two kids eat cake.",
    "A woman is cutting onions.",
    "The cat sleeps.",
    "A man plays a guitar.",
]
S2 = [
    "Someone plays music.",
    "A woman is cutting onions.",
    "Children are eating.",
    "A cook slices vegetables.",
    "A dog sleeps.",
    "A man plays the flute.",
]
SCORES = np.array([4.2, 1.0, 4.5, 4.0, 2.5, 3.0])


@pytest.fixture(scope="module")
def pair_task():
    return PairTask("toy", S1, S2, SCORES)


def test_grid_is_one_forward_per_template_and_matches_direct_extraction(
    tiny_llama, pair_task, tmp_path
):
    df = evaluate_grid(
        tiny_llama,
        pair_task,
        layers="all",
        poolings="mean,last,prompteol,echo",
        postprocess="none,center",
        out=tmp_path / "g",
        threads=1,
        progress=False,
    )
    n_layers = tiny_llama.n_layers + 1
    assert len(df) == n_layers * 4 * 2
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["forward_passes"] == 3  # plain (mean, last), prompteol, echo
    assert summary["stores"][0]["n_texts"] == 10  # 12 slots, 10 distinct sentences
    assert (tmp_path / "g" / "results.csv").is_file() and (
        tmp_path / "g" / "results.parquet"
    ).is_file()
    assert summary["best"]["spearman"] == pytest.approx(df["spearman"].max(), abs=1e-3)
    assert set(summary["best_per_pooling"]) == {"mean", "last", "prompteol", "echo"}
    mean = df[df.pooling == "mean"]  # (last at layer 0 is the same [SEP] token for every text)
    for col in ("recall@1", "recall@10", "mrr", "anisotropy", "effective_rank", "norm_mean"):
        assert mean[col].notna().all(), col

    # the deduplicated grid equals extracting each side of the pairs directly
    for pooling, template, store_pooling in (
        ("mean", None, "mean"),
        ("echo", "echo", "mean"),
        ("prompteol", "prompteol", "last"),
    ):
        a = wb.extract(
            tiny_llama,
            S1,
            layers=[2],
            pooling=store_pooling,
            template=template,
            out=tmp_path / f"a-{pooling}",
            progress=False,
        ).layer(2, store_pooling)
        b = wb.extract(
            tiny_llama,
            S2,
            layers=[2],
            pooling=store_pooling,
            template=template,
            out=tmp_path / f"b-{pooling}",
            progress=False,
        ).layer(2, store_pooling)
        cell = df[(df.layer == 2) & (df.pooling == pooling) & (df.postprocess == "none")]
        assert cell["spearman"].item() == pytest.approx(100 * sts_spearman(a, b, SCORES), abs=1e-6)

    again = evaluate_grid(
        tiny_llama,
        pair_task,
        layers="all",
        poolings="mean,last,prompteol,echo",
        postprocess="none,center",
        out=tmp_path / "g",
        threads=1,
        progress=False,
    )
    assert all(s["reused"] for s in again.attrs["summary"]["stores"])
    assert np.allclose(again["spearman"], df["spearman"], equal_nan=True)


def test_grid_on_labelled_texts(tiny_llama, tmp_path):
    texts = [f"item number {i} is {'red' if i % 2 else 'blue'}" for i in range(12)]
    task = LabelTask("colours", texts, ["red" if i % 2 else "blue" for i in range(12)])
    df = evaluate_grid(
        tiny_llama,
        task,
        layers=[0, -1],
        poolings="mean",
        postprocess="none",
        out=tmp_path / "l",
        progress=False,
    )
    assert {"accuracy", "v_measure"} <= set(df.columns) and len(df) == 2
    assert df.attrs["summary"]["metric"] == "accuracy"


def test_grid_option_errors(tiny_llama, pair_task, tmp_path):
    with pytest.raises(PoolingError, match="native"):
        evaluate_grid(tiny_llama, pair_task, poolings="native", out=tmp_path, progress=False)
    with pytest.raises(EvaluationOptionError, match="labelled-text task"):
        evaluate_grid(tiny_llama, pair_task, metrics="clustering", out=tmp_path, progress=False)
    with pytest.raises(EvaluationOptionError, match="pair labels"):
        evaluate_grid(
            tiny_llama, pair_task, metrics="pair-classification", out=tmp_path, progress=False
        )
    with pytest.raises(EvaluationOptionError, match="whiten"):
        evaluate_grid(tiny_llama, pair_task, postprocess="pca", out=tmp_path, progress=False)


# ----------------------------------------------------------------------------------------------
# MTEB encoder


def test_layer_encoder_returns_the_store_vectors(tiny_llama, tmp_path):
    enc = LayerEncoder(tiny_llama, layer=-1, pooling="echo")
    texts = ["a red car", "", "a blue house", "a red car"]
    out = enc.encode(texts, task_name="STSBenchmark", prompt_type=None)
    assert out.shape == (4, tiny_llama.d_model) and out.dtype == np.float32
    ref = wb.extract(
        tiny_llama,
        ["a red car", "a blue house"],
        layers=[-1],
        pooling="mean",
        template="echo",
        out=tmp_path / "ref",
        progress=False,
    ).layer(-1, "mean")
    assert np.allclose(out[0], ref[0], atol=1e-6) and np.allclose(out[2], ref[1], atol=1e-6)
    assert np.array_equal(out[0], out[3]) and not out[1].any()  # empty text -> zeros
    batches = [{"text": ["a red car"]}, {"text": ["a blue house"]}]  # MTEB v2 DataLoader
    assert np.allclose(enc.encode(batches), ref, atol=1e-6)


def test_run_mteb_without_mteb_says_how_to_install(monkeypatch):
    # whether or not mteb is installed here, make it unimportable (None in sys.modules makes
    # `import mteb` raise ImportError) and check the message
    monkeypatch.setitem(sys.modules, "mteb", None)
    with pytest.raises(MissingDependencyError, match="pip install mteb"):
        run_mteb("smollm2-135m", ["STSBenchmark"])


# ----------------------------------------------------------------------------------------------
# figure and CLI


def test_heatmap_figure(tmp_path):
    pytest.importorskip("plotly")
    import pandas as pd

    from workbench.viz import embedding_heatmap, write_figure

    df = pd.DataFrame(
        [
            {
                "model": "m",
                "task": "t",
                "layer": layer,
                "pooling": p,
                "postprocess": pp,
                "spearman": float(layer + i),
            }
            for layer in range(3)
            for i, p in enumerate(["mean", "last"])
            for pp in ("none", "center")
        ]
    )
    fig = embedding_heatmap(df, "spearman")
    assert len(fig.data) == 2 and fig.data[0].z.shape == (3, 2)
    assert "best 3.00: layer 2, last" in fig.layout.title.text
    with pytest.raises(KeyError, match="columns"):
        embedding_heatmap(df, "mrr")
    files = write_figure(fig, tmp_path / "h", png=False)
    assert [f.name for f in files] == ["h.html"]


def test_import_workbench_does_not_import_plotly_or_sklearn():
    code = (
        "import sys, workbench, workbench.evaluation, workbench.viz; "
        "print([m for m in ('plotly', 'sklearn', 'scipy', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_embed_eval(tiny_llama, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    sts = _write(
        tmp_path,
        "sts.txt",
        "".join(f"{s}\t{a}\t{b}\n" for s, a, b in zip(SCORES, S1, S2, strict=True)),
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "embed",
            "eval",
            "--model",
            tiny_llama.source,
            "--task",
            str(sts),
            "--layers",
            "0,-1",
            "--pooling",
            "mean,last",
            "--postprocess",
            "none",
            "--out",
            str(tmp_path / "cli"),
            "--threads",
            "1",
            "--no-figure",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best spearman" in result.output and "best per pooling" in result.output
    assert (tmp_path / "cli" / "results.csv").is_file()
    bad = _write(tmp_path, "bad.tsv", "id\tleft\tright\n1\ta\tb\n")
    result = runner.invoke(app, ["embed", "eval", "--model", tiny_llama.source, "--task", str(bad)])
    assert isinstance(result.exception, TaskFormatError)
