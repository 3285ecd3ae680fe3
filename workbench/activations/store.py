"""The activation store: one folder per run, read lazily through memory maps.

Layout::

    RUN/
      manifest.json            model, tokenizer, dataset fingerprint, spec, shards, timing, status
      rows.jsonl               one line per row: text and label/metadata columns (and words)
      shards/
        00000.json             commit marker of shard 0: row range, files, sha256 checksums
        00000.<pooling>.npy    pooled vectors, [n_hook_points, rows, d_model] (layer-major, so
                               one layer of a shard is one contiguous block)
        00000.tokens.npy       per-token vectors, [n_hook_points, tokens, d_model] (ragged rows)
        00000.token_ids.npy    [tokens] int32
        00000.token_offsets.npy [tokens, 2] int32 character spans in the model input
        00000.row_splits.npy   [rows + 1] int64: row i owns tokens row_splits[i]:row_splits[i+1]
        00000.token_strings.json

A shard counts only once its ``.json`` marker exists; every file is written under a temporary
name and renamed, so a run killed at any point leaves complete shards or nothing. The public view
of pooled arrays is ``[rows, hook_points, d_model]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._hashing import file_sha256
from .._version import __version__
from ..errors import StoreCorruptError, StoreMismatchError, StoreSelectionError
from .pooling import Pooling, parse_poolings

MANIFEST = "manifest.json"
ROWS = "rows.jsonl"
SHARDS = "shards"
FORMAT_VERSION = 1

RowSelection = int | slice | Sequence[int] | np.ndarray | None


# ----------------------------------------------------------------------------------------------
# atomic files


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=str)), mode="w")


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# writing


class StoreWriter:
    """Creates or resumes a run folder; used by ``extract``.

    The identity (model weights fingerprint, dataset fingerprint, extraction spec) decides
    whether an existing folder is the same run: then complete shards are kept; otherwise
    ``StoreMismatchError`` names what differs.
    """

    def __init__(
        self, path: str | os.PathLike[str], manifest: dict[str, Any], overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.shard_dir = self.path / SHARDS
        identity = manifest["identity"]
        manifest["identity_hash"] = identity_hash(identity)
        existing = self.path / MANIFEST
        if existing.is_file() and not overwrite:
            old = json.loads(existing.read_text())
            if old.get("identity_hash") != manifest["identity_hash"]:
                raise StoreMismatchError(_mismatch_message(self.path, old.get("identity", {}), identity))
            # Same run: keep its shards and the first creation time.
            manifest["created"] = old.get("created", manifest.get("created"))
        elif self.path.exists() and any(self.path.iterdir()) and not overwrite:
            raise StoreMismatchError(
                f"output folder {self.path} is not empty and holds no workbench run "
                f"(no {MANIFEST}): choose another --out, or pass overwrite=True (--overwrite) to "
                "replace its contents"
            )
        elif overwrite and self.path.exists():
            import shutil

            shutil.rmtree(self.path)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.shard_dir.glob(".*.tmp"):
            stale.unlink()

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        target = self.path / ROWS
        if target.is_file():
            return
        atomic_write(
            target,
            lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
            mode="w",
        )

    def save_manifest(self) -> None:
        write_json(self.path / MANIFEST, self.manifest)

    def shard_complete(self, index: int, verify: bool = True) -> dict[str, Any] | None:
        """The marker of shard ``index`` if it is complete (and its checksums match)."""
        marker = self.shard_dir / f"{index:05d}.json"
        if not marker.is_file():
            return None
        meta = json.loads(marker.read_text())
        for name, info in meta["files"].items():
            f = self.shard_dir / name
            if not f.is_file() or f.stat().st_size != info["bytes"]:
                return None
            if verify and file_sha256(f) != info["sha256"]:
                return None
        return meta

    def write_shard(
        self, index: int, arrays: dict[str, np.ndarray], token_strings: list[list[str]], meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Write one shard's files atomically, then its marker (the commit point)."""
        files: dict[str, Any] = {}
        for key, arr in arrays.items():
            name = f"{index:05d}.{key}.npy"
            atomic_write(self.shard_dir / name, lambda f, a=arr: np.save(f, a, allow_pickle=False))
            files[name] = _file_info(self.shard_dir / name, arr)
        name = f"{index:05d}.token_strings.json"
        write_json(self.shard_dir / name, token_strings)
        files[name] = {"bytes": (self.shard_dir / name).stat().st_size,
                       "sha256": file_sha256(self.shard_dir / name)}
        meta = {**meta, "index": index, "files": files}
        write_json(self.shard_dir / f"{index:05d}.json", meta)
        return meta


def _file_info(path: Path, arr: np.ndarray) -> dict[str, Any]:
    return {
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
    }


def _mismatch_message(path: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: stored {_short(old.get(k))} vs now {_short(new.get(k))}" for k in keys
             if old.get(k) != new.get(k)]
    return (
        f"output folder {path} holds a different run ({'; '.join(diffs)}). Nothing was changed: "
        "choose another --out for this run, or pass overwrite=True (--overwrite) to replace it"
    )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class TokenInfo:
    """The tokens of one row.

    Attributes:
        ids: ``[n_tokens]`` token ids.
        strings: ``[n_tokens]`` token strings as the tokenizer spells them.
        offsets: ``[n_tokens, 2]`` character spans in ``model_input`` (special tokens: (0, 0)).
        model_input: the text the model saw (with the template, if any).
        text_start: where the row's text starts inside ``model_input``.
    """

    ids: np.ndarray
    strings: list[str]
    offsets: np.ndarray
    model_input: str
    text_start: int

    def text_offsets(self) -> np.ndarray:
        """``offsets`` shifted to be relative to the row's own text (template prefix removed)."""
        return self.offsets - self.text_start


class ActivationStore:
    """A run folder, read lazily: nothing is loaded until asked, and only what is asked.

    Examples:
        >>> store = ActivationStore("runs/cities-smollm2")  # doctest: +SKIP
        >>> store.get("last", layers=[10, -1]).shape  # [rows, 2, d_model]  # doctest: +SKIP
        (1496, 2, 576)
        >>> store.layer(10, "mean")  # [rows, d_model]  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_file = self.path / MANIFEST
        if not manifest_file.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a workbench run: it has no {MANIFEST}. Create one with "
                "`workbench extract ... --out DIR` or wb.extract(...)"
            )
        self.manifest: dict[str, Any] = json.loads(manifest_file.read_text())
        if self.manifest.get("workbench_version") != __version__:
            warnings.warn(
                f"{self.path} was written by workbench {self.manifest.get('workbench_version')}, "
                f"this is {__version__}; the format is version {self.manifest.get('format')}",
                stacklevel=2,
            )
        spec = self.manifest["extraction"]
        self.hook_points: list[str] = spec["hook_points"]
        self.poolings: list[Pooling] = parse_poolings(
            spec["poolings"], self.manifest["model"].get("sentence_pooling")
        )
        self.layers: dict[int, str] = {int(k): v for k, v in spec["layers"].items()}
        self._rows: list[dict[str, Any]] | None = None
        self._shards: list[dict[str, Any]] | None = None

    # -- description ---------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return int(self.manifest["dataset"]["n_rows"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["model"]["d_model"])

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    @property
    def pooling_names(self) -> list[str]:
        return [p.name for p in self.poolings]

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return (
            f"ActivationStore({str(self.path)!r}, model={self.manifest['model']['spec']!r}, "
            f"rows={self.n_rows}, hook_points={len(self.hook_points)}, "
            f"poolings={self.pooling_names}, status={self.manifest.get('status')!r})"
        )

    # -- rows ----------------------------------------------------------------------------------
    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            with (self.path / ROWS).open(encoding="utf-8") as f:
                self._rows = [json.loads(line) for line in f]
        return self._rows

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.rows]

    @property
    def columns(self) -> list[str]:
        return list(self.manifest["dataset"].get("columns", []))

    def column(self, name: str) -> list[Any]:
        if name not in self.columns:
            raise StoreSelectionError(
                f"{self.path} has no column {name!r}; its columns are {self.columns}"
            )
        return [r["columns"][name] for r in self.rows]

    def dataset(self) -> Any:
        """The rows back as a ``TextDataset``."""
        from ..data import TextDataset

        rows = self.rows
        words = [r["words"] for r in rows] if rows and "words" in rows[0] else None
        return TextDataset(
            name=self.manifest["dataset"]["name"],
            texts=[r["text"] for r in rows],
            columns={c: [r["columns"][c] for r in rows] for c in self.columns},
            source=self.manifest["dataset"].get("source", ""),
            words=words,
            word_spans=[[tuple(s) for s in r["word_spans"]] for r in rows] if words else None,
            word_columns={k: [r["word_columns"][k] for r in rows] for k in rows[0]["word_columns"]}
            if words and "word_columns" in rows[0]
            else None,
        )

    # -- shards --------------------------------------------------------------------------------
    @property
    def shards(self) -> list[dict[str, Any]]:
        if self._shards is None:
            markers = sorted((self.path / SHARDS).glob("[0-9][0-9][0-9][0-9][0-9].json"))
            self._shards = [json.loads(m.read_text()) for m in markers]
        return self._shards

    def shard_array(self, shard: dict[str, Any], key: str) -> np.ndarray:
        """One array of a shard (``key``: a pooling's file stem, ``row_splits``, ``token_ids``,
        ``token_offsets``), memory-mapped read-only."""
        name = f"{shard['index']:05d}.{key}.npy"
        return np.load(self.path / SHARDS / name, mmap_mode="r", allow_pickle=False)

    def row_index(self, rows: RowSelection) -> np.ndarray:
        """``[n]`` row indices of a selection (None: all; a slice; indices, negative from the
        end)."""
        if rows is None:
            return np.arange(self.n_rows)
        if isinstance(rows, slice):
            return np.arange(self.n_rows)[rows]
        idx = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        bad = idx[(idx < -self.n_rows) | (idx >= self.n_rows)]
        if bad.size:
            raise StoreSelectionError(
                f"rows {bad[:5].tolist()} do not exist: {self.path} has rows 0..{self.n_rows - 1}"
            )
        return idx % self.n_rows

    def hook_index(self, layers: Any, hook_points: Sequence[str] | str | None) -> list[int]:
        """Positions in ``hook_points`` of the selected layers or hook point names (both None:
        every stored hook point)."""
        if layers is not None and hook_points is not None:
            raise StoreSelectionError("pass layers= or hook_points=, not both")
        if hook_points is not None:
            names = [hook_points] if isinstance(hook_points, str) else list(hook_points)
            missing = [n for n in names if n not in self.hook_points]
            if missing:
                raise StoreSelectionError(
                    f"hook points {missing} are not in {self.path}; it holds {self.hook_points}"
                )
            return [self.hook_points.index(n) for n in names]
        if layers is None:
            return list(range(len(self.hook_points)))
        from ..models.hook_names import normalize_layers

        n_layers = int(self.manifest["model"]["n_layers"])
        wanted = normalize_layers(layers, n_layers, self.manifest["model"]["spec"])
        missing = [layer for layer in wanted if layer not in self.layers]
        if missing:
            raise StoreSelectionError(
                f"layers {missing} were not extracted into {self.path}; it holds layers "
                f"{sorted(self.layers)} — run extract again with those layers"
            )
        return [self.hook_points.index(self.layers[layer]) for layer in wanted]

    def pooling(self, pooling: str) -> Pooling:
        """The stored pooling named ``pooling``."""
        for p in self.poolings:
            if p.name == pooling:
                return p
        raise StoreSelectionError(
            f"pooling {pooling!r} is not in {self.path}; it holds {self.pooling_names}"
        )

    # -- pooled vectors ------------------------------------------------------------------------
    def get(
        self,
        pooling: str = "last",
        *,
        layers: Any = None,
        hook_points: Sequence[str] | str | None = None,
        rows: RowSelection = None,
        as_torch: bool = False,
    ) -> Any:
        """Pooled vectors ``[rows, hook_points, d_model]``, reading only the selected parts.

        Args:
            pooling: one of ``pooling_names``.
            layers: residual layer indices (negative from the end), ``"all"``, or None for every
                stored hook point.
            hook_points: names, as an alternative to ``layers``.
            rows: row indices or a slice; None for all rows.
            as_torch: return a ``torch.Tensor`` instead of a numpy array.
        """
        p = self.pooling(pooling)
        if p.ragged:
            raise StoreSelectionError(
                "pooling 'tokens' is stored per token: use token_states(row) instead"
            )
        hooks = self.hook_index(layers, hook_points)
        idx = self.row_index(rows)
        parts = []
        for shard, local, positions in self._split_rows(idx):
            arr = self.shard_array(shard, p.filename)  # [hooks, rows, d] memmap
            block = arr[hooks][:, local] if len(hooks) < arr.shape[0] else arr[:, local]
            parts.append((positions, np.moveaxis(block, 0, 1)))
        out = np.empty((len(idx), len(hooks), self.d_model), dtype=parts[0][1].dtype if parts else np.float32)
        for positions, block in parts:
            out[positions] = block
        if as_torch:
            import torch

            return torch.from_numpy(out)
        return out

    def layer(self, layer: int, pooling: str = "last", rows: RowSelection = None) -> np.ndarray:
        """One residual layer, ``[rows, d_model]``."""
        return self.get(pooling, layers=[layer], rows=rows)[:, 0]

    def iter_layers(self, pooling: str = "last") -> Iterable[tuple[str, np.ndarray]]:
        """``(hook_point, [rows, d_model])`` one hook point at a time (bounded memory)."""
        for name in self.hook_points:
            yield name, self.get(pooling, hook_points=[name])[:, 0]

    def _split_rows(self, idx: np.ndarray) -> list[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
        """Group global row indices by shard: (shard, local indices, positions in the output)."""
        out = []
        for shard in self.shards:
            sel = np.nonzero((idx >= shard["start"]) & (idx < shard["stop"]))[0]
            if sel.size:
                out.append((shard, idx[sel] - shard["start"], sel))
        covered = sum(len(s[2]) for s in out)
        if covered < len(idx):
            done = sum(s["stop"] - s["start"] for s in self.shards)
            raise StoreSelectionError(
                f"{self.path} is incomplete ({done} of {self.n_rows} rows extracted): run the same "
                "extract command again to finish it (completed shards are kept)"
            )
        return out

    # -- tokens --------------------------------------------------------------------------------
    def _shard_of(self, row: int) -> tuple[dict[str, Any], int]:
        row = int(self.row_index([row])[0])
        for shard in self.shards:
            if shard["start"] <= row < shard["stop"]:
                return shard, row - shard["start"]
        raise StoreSelectionError(f"row {row} is not extracted yet in {self.path}: finish the run")

    def tokens(self, row: int) -> TokenInfo:
        """Token ids, strings and character offsets of one row."""
        shard, local = self._shard_of(row)
        splits = self.shard_array(shard, "row_splits")
        a, b = int(splits[local]), int(splits[local + 1])
        strings_file = self.path / SHARDS / f"{shard['index']:05d}.token_strings.json"
        strings = json.loads(strings_file.read_text())[local]
        text = self.rows[int(self.row_index([row])[0])]["text"]
        from .pooling import apply_template

        model_input, start = apply_template(self.manifest["extraction"]["template"], text)
        return TokenInfo(
            ids=np.asarray(self.shard_array(shard, "token_ids")[a:b]),
            strings=strings,
            offsets=np.asarray(self.shard_array(shard, "token_offsets")[a:b]),
            model_input=model_input,
            text_start=start,
        )

    def token_states(
        self, row: int, *, layers: Any = None, hook_points: Sequence[str] | str | None = None
    ) -> np.ndarray:
        """Per-token vectors of one row, ``[n_tokens, hook_points, d_model]`` (needs ``tokens``)."""
        p = self.pooling("tokens")
        hooks = self.hook_index(layers, hook_points)
        shard, local = self._shard_of(row)
        splits = self.shard_array(shard, "row_splits")
        a, b = int(splits[local]), int(splits[local + 1])
        arr = self.shard_array(shard, p.filename)
        return np.moveaxis(np.asarray(arr[hooks, a:b]), 0, 1)

    # -- integrity -----------------------------------------------------------------------------
    def verify(self) -> None:
        """Check every shard file against its sha256; raise ``StoreCorruptError`` on a mismatch."""
        for shard in self.shards:
            for name, info in shard["files"].items():
                f = self.path / SHARDS / name
                if not f.is_file() or file_sha256(f) != info["sha256"]:
                    marker = self.path / SHARDS / f"{shard['index']:05d}.json"
                    raise StoreCorruptError(
                        f"{f} is missing or does not match its checksum: delete {marker} and run "
                        "the same extract again to recompute that shard"
                    )
