"""Every failure the trial met under the CLI is one line (the problem, then the fix, naming CLI
flags), exit code 2 for a usage error and 1 for a runtime error; ``--debug`` shows the
traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from faultkit import TEXTS

from workbench.cli.main import main


@pytest.fixture(scope="module")
def files(fault_model, reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "texts.csv"
    data.write_text(
        "text,label\n" + "\n".join(f"{t},{i % 2}" for i, t in enumerate(TEXTS[:6])) + "\n,1\n"
    )  # one empty text: needs --drop-empty
    (root / "empty-model").mkdir()
    return {"data": data, "model": fault_model.name, "root": root, "run": reference.path}


def cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
        raise SystemExit(0)
    err = capsys.readouterr().err
    return int(info.value.code or 0), err


def extract_args(files, out: Path, *extra: str) -> list[str]:
    return [
        "extract",
        "--model",
        files["model"],
        "--dataset",
        files["data"],
        "--out",
        out,
        "--no-progress",
        *extra,
    ]


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [
        ([], 2, "pass --drop-empty"),
        (["--drop-empty", "--layers", "abc"], 2, "layer 'abc' (in layers='abc') is not an integer"),
        (["--drop-empty", "--layers", "1.5"], 2, "is not an integer"),
        (
            ["--drop-empty", "--layers", "1", "--hook-points", "hook_embed"],
            2,
            "pass --layers or --hook-points, not both",
        ),
        (["--drop-empty", "--shard-size", "0"], 2, "'--shard-size'"),
        (["--drop-empty", "--device", "cuda:7"], 2, "--device 'cuda:7'"),
        (["--drop-empty", "--dtype", "float8"], 2, "unknown --dtype 'float8'"),
        (["--drop-empty", "--truncation", "error", "--max-length", "3"], 2, "--truncation warn"),
    ],
)
def test_usage_errors(files, tmp_path, capsys, extra, code, expected):
    status, err = cli(capsys, *extract_args(files, tmp_path / "run", *extra))
    line = error_line(err)
    assert status == code and expected in line, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_model_folder_without_a_model(files, tmp_path, capsys):
    args = extract_args(files, tmp_path / "run", "--drop-empty")
    args[args.index("--model") + 1] = str(files["root"] / "empty-model")
    status, err = cli(capsys, *args)
    assert status == 2 and "holds no model (no config.json)" in error_line(err)


def test_output_path_is_a_file(files, capsys):
    status, err = cli(capsys, *extract_args(files, files["data"], "--drop-empty"))
    assert status == 1 and "is a file, not a folder: choose another --out" in error_line(err)


def test_overwrite_refuses_a_folder_that_is_not_a_run(files, tmp_path, capsys):
    folder = tmp_path / "thesis"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work")
    status, err = cli(capsys, *extract_args(files, folder, "--drop-empty", "--overwrite"))
    line = error_line(err)
    assert status == 1 and "holds sub/, thesis.txt and no workbench run" in line
    assert "not replaced even with --overwrite" in line
    assert sorted(p.name for p in folder.iterdir()) == ["sub", "thesis.txt"]


def test_refused_run_leaves_the_folder_usable(files, tmp_path, capsys):
    out = tmp_path / "run"
    status, _ = cli(
        capsys,
        *extract_args(files, out, "--drop-empty", "--truncation", "error", "--max-length", "3"),
    )
    assert status == 2
    with pytest.warns(UserWarning, match="6 texts were longer than 3 tokens and were truncated"):
        status, err = cli(capsys, *extract_args(files, out, "--drop-empty", "--max-length", "3"))
    assert status == 0, err
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_info_on_a_missing_folder_and_a_damaged_manifest(files, tmp_path, capsys):
    status, err = cli(capsys, "info", tmp_path / "nothing")
    assert status == 1 and "is not a workbench run: it does not exist" in error_line(err)
    run = Path(shutil.copytree(files["run"], tmp_path / "run"))
    text = (run / "manifest.json").read_text()
    (run / "manifest.json").write_text(text[: len(text) // 2])
    status, err = cli(capsys, "info", run)
    assert status == 1 and "manifest.json is damaged" in error_line(err)


def test_info_stats_on_a_damaged_store_says_so(files, tmp_path, capsys):
    run = Path(shutil.copytree(files["run"], tmp_path / "run"))
    target = run / "shards" / "00002.mean.npy"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x40  # an exponent bit: a norm of ~1e35 if read unchecked
    target.write_bytes(bytes(data))
    status, err = cli(capsys, "info", run, "--stats")
    line = error_line(err)
    assert status == 1 and "00002.mean.npy" in line and "run the same `workbench extract`" in line


def test_debug_shows_the_traceback(files, tmp_path, capsys):
    with pytest.raises(Exception, match="not an integer"):
        main(extract_args(files, tmp_path / "run", "--drop-empty", "--layers", "abc", "--debug"))


def test_read_only_output_folder(files, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip(
            "root writes into read-only folders; tests/faults/test_interruptions.py "
            "covers this case as another user"
        )
    tmp_path.chmod(0o555)
    try:
        status, err = cli(capsys, *extract_args(files, tmp_path / "run", "--drop-empty"))
    finally:
        tmp_path.chmod(0o755)
    assert status == 1 and "read-only" in error_line(err)
