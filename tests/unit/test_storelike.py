"""``StoreLike``: sweeps and projections read a store only through the protocol, so an
in-memory object holding the same vectors gives the same results as the run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workbench
from workbench.activations import ActivationStore, StoreLike
from workbench.errors import StoreSelectionError
from workbench.probing import sweep, token_dataset
from workbench.projection import project_store


class ArrayStore:
    """The ``StoreLike`` members over arrays ``{pooling: [rows, hook_points, d]}``, nothing else."""

    def __init__(
        self,
        path: Path,
        arrays: dict[str, np.ndarray],
        hook_points: list[str],
        layers: dict[int, str],
        columns: dict[str, list],
    ) -> None:
        self.path, self._arrays, self._columns = path, arrays, columns
        self.hook_points, self.layers = hook_points, layers
        self.manifest = {"identity_hash": "in-memory", "status": "complete"}

    pooling_names = property(lambda self: list(self._arrays))
    n_rows = property(lambda self: len(next(iter(self._arrays.values()))))
    d_model = property(lambda self: next(iter(self._arrays.values())).shape[-1])
    columns = property(lambda self: list(self._columns))

    def __len__(self) -> int:
        return self.n_rows

    def column(self, name):
        return self._columns[name]

    def hook_index(self, layers, hook_points):
        if hook_points is not None:
            return [self.hook_points.index(h) for h in hook_points]
        if layers is None or layers == "all":
            return list(range(len(self.hook_points)))
        return [self.hook_points.index(self.layers[la]) for la in layers]

    def row_index(self, rows):
        return np.arange(self.n_rows) if rows is None else np.asarray(rows)

    def pooling(self, name):
        if name not in self._arrays:
            raise StoreSelectionError(f"no pooling {name!r}")
        return name

    def get(self, pooling, *, layers=None, hook_points=None, rows=None):
        x = self._arrays[pooling][:, self.hook_index(layers, hook_points)]
        return x[self.row_index(rows)]


@pytest.fixture(scope="module")
def pair(tiny_llama, tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "dark", "light", "tall", "small", "old", "new", "big"]
    texts = [("yes " if i % 2 else "no ") + " ".join(rng.choice(words, 4)) for i in range(40)]
    columns = {"label": [i % 2 for i in range(40)], "group": [i // 2 for i in range(40)]}
    ds = workbench.TextDataset("toy", texts, columns)
    root = tmp_path_factory.mktemp("storelike")
    store = workbench.extract(
        tiny_llama, ds, layers="all", pooling="mean,last,tokens", out=root / "run", progress=False
    )
    arrays = {p: store.get(p) for p in ("mean", "last")}
    memory = ArrayStore(
        root / "memory",
        arrays,
        list(store.hook_points),
        dict(store.layers),
        {k: store.column(k) for k in columns},
    )
    return store, memory


def test_stores_and_word_views_are_storelike(pair):
    store, memory = pair
    assert isinstance(store, StoreLike) and isinstance(memory, StoreLike)
    assert not isinstance("runs/x", StoreLike)


def test_a_sweep_reads_only_the_protocol(pair):
    store, memory = pair
    kwargs = dict(cv=3, groups="group", n_boot=20, pooling=["mean", "last"], seed=1)
    a, b = sweep(store, "label", **kwargs), sweep(memory, "label", **kwargs)
    cols = ["hook_point", "pooling", "labels", "metric", "value"]
    assert a.table[cols].equals(b.table[cols])


def test_a_projection_reads_only_the_protocol(pair, tmp_path):
    store, memory = pair
    a = project_store(store, "pca", pooling="mean", cache_dir=tmp_path / "a")
    b = project_store(memory, "pca", pooling="mean", cache_dir=tmp_path / "b")
    np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_public_selection_methods(pair):
    store, _ = pair
    assert store.hook_index([0, -1], None) == [0, len(store.hook_points) - 1]
    assert store.row_index([-1]).tolist() == [store.n_rows - 1]
    assert store.pooling("mean").name == "mean"
    with pytest.raises(StoreSelectionError, match="it holds"):
        store.pooling("max")
    shard = store.shards[0]
    splits = store.shard_array(shard, "row_splits")
    assert splits[0] == 0 and splits[-1] == len(store.shard_array(shard, "token_ids"))
    assert isinstance(ActivationStore(store.path), StoreLike)
    with pytest.raises(StoreSelectionError, match="words"):
        token_dataset(store)  # a store without word annotations
