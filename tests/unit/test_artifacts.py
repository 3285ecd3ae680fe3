"""workbench.artifacts: atomic writes honour the umask, checksums are recorded and verified, the
folder lock names its holder; and the store flags missing labels, embedders warn on truncation."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import workbench
from workbench.artifacts import (
    FolderLock,
    atomic_write,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)
from workbench.errors import ArtifactCorruptError, ArtifactNotFoundError, StoreLockedError


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
        write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_store_files_are_group_readable_under_a_group_umask(tiny_llama, tmp_path):
    old = os.umask(0o002)
    try:
        store = workbench.extract(
            tiny_llama, ["a b c", "d e"], out=tmp_path / "run", layers=[0], progress=False
        )
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(f.stat().st_mode) for f in store.path.rglob("*") if f.is_file()}
    assert modes == {0o664}


def test_tensors_round_trip_and_a_mismatch_is_caught(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    info = save_tensors(tmp_path / "t.safetensors", arrays)
    back = load_tensors(tmp_path / "t.safetensors", info, fix="redo it")
    np.testing.assert_array_equal(back["w"], arrays["w"])
    with pytest.raises(ArtifactCorruptError, match="does not match the sha256.*redo it"):
        load_tensors(tmp_path / "t.safetensors", {"sha256": "0" * 64}, fix="redo it")
    with pytest.warns(UserWarning, match="no recorded sha256"):
        load_tensors(tmp_path / "t.safetensors", None, fix="redo it")
    with pytest.raises(ArtifactNotFoundError, match="missing"):
        load_tensors(tmp_path / "none.safetensors", info, fix="redo it")


def test_read_json_says_missing_or_damaged_in_one_line(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="does not exist: fix it"):
        read_json(tmp_path / "x.json", "config", "fix it")
    (tmp_path / "x.json").write_text('{"a": [1, 2')
    with pytest.raises(ArtifactCorruptError, match="x.json is damaged .*not valid JSON.*fix it"):
        read_json(tmp_path / "x.json", "config", "fix it")


def test_folder_lock_names_its_holder_and_is_released(tmp_path):
    with FolderLock(tmp_path) as lock:
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(StoreLockedError, match=rf"pid {os.getpid()}\b"):
            FolderLock(tmp_path).acquire()
        assert lock.held
    FolderLock(tmp_path).acquire().release()  # free again


def test_store_flags_missing_labels(tiny_llama, tmp_path):
    from workbench.data import TextDataset

    data = TextDataset(
        name="t",
        texts=["a b", "c d", "e f"],
        source="test",
        columns={"label": [1.0, float("nan"), None], "ok": [1, 2, 3]},
    )
    with pytest.warns(UserWarning, match=r"missing values \(NaN/None\), by count: \{'label': 2\}"):
        store = workbench.extract(
            tiny_llama, data, out=tmp_path / "run", layers=[0], progress=False
        )
    assert store.manifest["dataset"]["missing_labels"] == {"label": 2}


def test_embedder_warns_with_the_token_count(tiny_bert):
    from workbench.inversion import ModelEmbedder

    embedder = ModelEmbedder(tiny_bert, pooling="mean")
    long_text = " ".join(["word"] * (tiny_bert.max_length + 50))
    with pytest.warns(
        UserWarning,
        match=rf"1 of 2 texts are longer than .*'s "
        rf"{tiny_bert.max_length} tokens .*\(1, {tiny_bert.max_length + 52}\)",
    ):
        embedder.embed(["short text", long_text])
