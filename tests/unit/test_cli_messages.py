"""Errors raised under ``workbench probe``, ``embed`` and ``project`` name CLI flags
(``--layers``, ``--drop-empty``, ``--limit``), and the same errors raised from Python name the
Python arguments (``layers=``, ``drop_empty=True``)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.activations.hook_names import normalize_layers
from workbench.cli.main import main
from workbench.errors import LayerOutOfRangeError, use_cli_names
from workbench.evaluation import load_task
from workbench.projection import AlignedProjection, UMAPProjection


def cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
        raise SystemExit(0)
    return int(info.value.code or 0), capsys.readouterr().err


@pytest.fixture
def cli_names():
    use_cli_names(True)
    yield
    use_cli_names(False)


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("3.0\tA cat sits.\tA cat is sitting.\n2.0\t\tAn empty first sentence.\n")
    return path


def test_embed_eval_names_its_flags(capsys, pairs, tmp_path):
    code, err = cli(capsys, "embed", "eval", "--model", "minilm-l6", "--task", pairs)
    assert code == 2 and "pass --drop-empty to skip" in err, err
    code, err = cli(capsys, "embed", "eval", "--model", "minilm-l6", "--task", tmp_path / "no")
    assert code == 1 and "--label-column" in err and "label_column=" not in err, err  # not found
    code, err = cli(
        capsys, "embed", "eval", "--model", "minilm-l6", "--task", pairs, "--limit", "0"
    )
    assert code == 2 and "'--limit'" in err, err


def test_drop_empty_reaches_the_pair_reader(pairs):
    with pytest.raises(ValueError, match=r"pass drop_empty=True"):
        load_task(pairs)
    task = load_task(pairs, drop_empty=True)
    assert len(task.sentences1) == 1 and task.n_dropped_empty == 1


@pytest.mark.parametrize(
    "command", [["probe", "run", "probes/cities_truth.toml"], ["project", "map", "runs/none"]]
)
def test_limit_is_checked_as_a_flag(capsys, command):
    code, err = cli(capsys, *command, "--limit", "0")
    assert code == 2 and "'--limit'" in err, err


def test_layer_messages_name_the_flag_under_the_cli(cli_names):
    with pytest.raises(ValueError, match=r"in --layers 'abc'\) is not an integer"):
        normalize_layers("abc", 4, "tiny")
    with pytest.raises(LayerOutOfRangeError, match=r"pass --layers all or a list within range"):
        normalize_layers([9], 4, "tiny")


def test_layer_messages_name_the_argument_in_python():
    with pytest.raises(ValueError, match=r"in layers='abc'\) is not an integer"):
        normalize_layers("abc", 4, "tiny")
    with pytest.raises(LayerOutOfRangeError, match=r"pass layers='all' or a list within range"):
        normalize_layers([9], 4, "tiny")


def test_projection_messages_name_the_flags_under_the_cli(cli_names):
    X = np.random.default_rng(0).normal(size=(6, 2, 8))
    with pytest.raises(ValueError, match=r"--align 'spin'"):
        AlignedProjection(align="spin").fit(X)
    with pytest.raises(ValueError, match=r"more rows \(raise or drop --limit\)"):
        UMAPProjection(n_neighbors=15).fit(X[:, 0])


@pytest.mark.parametrize(
    ("option", "flag"),
    [
        ({"metrics": "bogus"}, "--metrics"),
        ({"postprocess": "rotate"}, "--postprocess"),
        ({"poolings": "avg"}, "--pooling"),
    ],
)
def test_embedding_grid_messages_name_the_flags_under_the_cli(
    cli_names, tiny_bert, pairs, option, flag
):
    from workbench.evaluation import evaluate_grid

    task = load_task(pairs, drop_empty=True)
    with pytest.raises(ValueError, match=flag):
        evaluate_grid(tiny_bert, task, progress=False, **option)


def test_unknown_projection_names_the_flag_under_the_cli(cli_names):
    from workbench.projection import make_projection

    with pytest.raises(ValueError, match=r"unknown projection 'isomap' \(--method\)"):
        make_projection("isomap")
