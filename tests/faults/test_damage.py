"""A flipped byte in each artifact type, and a truncated JSON of each kind: each is caught, in one
line that says what to do; a store repairs itself on the next run (byte-identical)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from faultkit import MARKERS, OPTIONS, TEXTS, npy_digests

import workbench
from workbench.errors import ArtifactCorruptError, StoreCorruptError


def flip(path: Path, at: int = -5) -> None:
    """Flip one bit of one byte (by default in the data, near the end of the file)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Keep the first half of the file, as a crash of a non-atomic writer would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 600, text
    return text


@pytest.fixture
def run(reference, tmp_path) -> Path:
    """A fresh copy of the complete reference run."""
    return Path(shutil.copytree(reference.path, tmp_path / "run"))


# -- the activation store -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "00005.mean.npy",
        "00005.tokens.npy",
        "00005.token_ids.npy",
        "00005.row_splits.npy",
        "00005.token_strings.json",
    ],
)
def test_flipped_byte_in_a_shard_is_recomputed(fault_model, reference, run, name):
    flip(run / "shards" / name)
    with pytest.raises(StoreCorruptError) as info:
        workbench.ActivationStore(run).verify()
    assert name in one_line(info.value) and "run the same extract again" in str(info.value)
    with pytest.warns(UserWarning, match=rf"shard 5 \({name} does not match its sha256\)"):
        store = workbench.extract(fault_model, TEXTS, out=run, **OPTIONS)
    assert npy_digests(run) == npy_digests(reference.path)
    store.verify()


def test_no_verify_reuses_without_reading_every_byte(fault_model, run):
    flip(run / "shards" / "00005.mean.npy")
    store = workbench.extract(fault_model, TEXTS, out=run, verify_resume=False, **OPTIONS)
    with pytest.raises(StoreCorruptError):  # the damage stays until a verified run
        store.verify()


def test_flipped_byte_in_the_rows_is_rewritten(fault_model, reference, run):
    flip(run / "rows.jsonl", at=20)
    with pytest.raises(StoreCorruptError, match="rows.jsonl"):
        workbench.ActivationStore(run).verify()
    workbench.extract(fault_model, TEXTS, out=run, **OPTIONS).verify()
    assert (run / "rows.jsonl").read_bytes() == (reference.path / "rows.jsonl").read_bytes()


def test_truncated_shard_marker_is_recomputed(fault_model, reference, run):
    truncate(run / "shards" / "00003.json")
    with pytest.raises(ArtifactCorruptError) as info:
        workbench.ActivationStore(run).shards  # noqa: B018
    assert "00003.json" in one_line(info.value)
    with pytest.warns(UserWarning, match=r"shard 3 \(its marker 00003.json is damaged\)"):
        workbench.extract(fault_model, TEXTS, out=run, **OPTIONS)
    assert npy_digests(run) == npy_digests(reference.path)
    assert len(list((run / "shards").glob(MARKERS))) == 12


def test_truncated_manifest_is_refused_in_one_line(fault_model, reference, run):
    truncate(run / "manifest.json")
    with pytest.raises(ArtifactCorruptError) as info:
        workbench.ActivationStore(run)
    assert "manifest.json is damaged" in one_line(info.value)
    with pytest.raises(StoreCorruptError) as info:
        workbench.extract(fault_model, TEXTS, out=run, **OPTIONS)
    assert "overwrite=True" in one_line(info.value)
    workbench.extract(fault_model, TEXTS, out=run, overwrite=True, **OPTIONS)
    assert npy_digests(run) == npy_digests(reference.path)


# -- saved models and fits: probes, projections, tuned lenses, inverters, correctors -------------


def _probes(reference: Any, lm: Any, folder: Path) -> Callable[[], object]:
    from workbench.probing import SweepResult, sweep

    labels = np.array([i % 2 for i in range(len(TEXTS))])
    sweep(reference, labels, layers=[1, 2], cv=2, control=False, n_boot=10).save(folder)
    return lambda: SweepResult.load(folder)


def _projection(reference: Any, lm: Any, folder: Path) -> Callable[[], object]:
    from workbench.projection import PCAProjection, load_projection, save_projection

    save_projection(PCAProjection(n_components=2).fit(reference.layer(2, "mean")), folder)
    return lambda: load_projection(folder)


def _tuned_lens(reference: Any, lm: Any, folder: Path) -> Callable[[], object]:
    from workbench.inversion import TunedLens

    lens = TunedLens(lm, layers=[1, 2])
    with torch.no_grad():
        for p in lens.translators.parameters():
            p.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    lens.save(folder)
    return lambda: TunedLens.load(folder, lm)


def _inverter(cls_name: str) -> Callable[..., Callable[[], object]]:
    def make(reference: Any, lm: Any, folder: Path) -> Callable[[], object]:
        from workbench import inversion

        cls = getattr(inversion, cls_name)
        embedder = inversion.ModelEmbedder(lm, layer=2, pooling="mean")
        cls(lm, embedder, inversion.InverterConfig(prefix_length=2, hidden=16)).save(folder)
        return lambda: cls.load(folder, lm, embedder)

    return make


ARTIFACTS = {  # kind: (make, weights file, JSON file)
    "probes": (_probes, "probes.safetensors", "probes.json"),
    "projection": (_projection, "arrays.safetensors", "config.json"),
    "tuned lens": (_tuned_lens, "tuned_lens.safetensors", "config.json"),
    "inverter": (_inverter("SoftPrefixInverter"), "inverter.safetensors", "inverter.json"),
    "corrector": (_inverter("TrainedCorrector"), "inverter.safetensors", "inverter.json"),
}


@pytest.mark.parametrize("kind", list(ARTIFACTS))
@pytest.mark.parametrize("damage", ["flipped byte", "damaged header", "truncated JSON"])
def test_damaged_artifact_is_refused_in_one_line(fault_model, reference, tmp_path, kind, damage):
    make, weights, config = ARTIFACTS[kind]
    load = make(reference, fault_model, tmp_path / "artifact")
    load()  # intact: loads
    if damage == "flipped byte":
        flip(tmp_path / "artifact" / weights)
    elif damage == "damaged header":
        flip(tmp_path / "artifact" / weights, at=12)
    else:
        truncate(tmp_path / "artifact" / config)
    with pytest.raises(ArtifactCorruptError) as info:
        load()
    message = one_line(info.value)
    assert (config if damage == "truncated JSON" else weights) in message
    assert "damaged" in message


def test_an_artifact_saved_before_checksums_loads_with_a_warning(fault_model, reference, tmp_path):
    import json

    load = _projection(reference, fault_model, tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["files"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="no recorded sha256"):
        load()
