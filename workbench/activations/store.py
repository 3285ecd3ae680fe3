"""The activation store: one folder per run, read lazily through memory maps.

Layout::

    RUN/
      .lock                    the writer's lock (fcntl.flock) and its PID: one writer per store
      manifest.json            model, tokenizer, dataset fingerprint, spec, shards, timing, status,
                               sha256 of rows.jsonl
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
name and renamed, so a run killed at any point leaves complete shards or nothing; rerunning
verifies the kept shards' checksums and recomputes a damaged one. What the store promises, and the
faults it was tested against, are in docs/reliability.md. The public view of pooled arrays is
``[rows, hook_points, d_model]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..artifacts import (
    FolderLock,
    atomic_write,
    file_info,
    file_sha256,
    is_temp,
    make_dirs,
    output_error,
    read_json,
    write_json,
)
from ..errors import (
    ArtifactCorruptError,
    ArtifactNotFoundError,
    OutputPathError,
    StoreCorruptError,
    StoreMismatchError,
    StoreSelectionError,
    WorkbenchError,
    arg,
)
from .pooling import Pooling, parse_poolings

MANIFEST = "manifest.json"
ROWS = "rows.jsonl"
SHARDS = "shards"
FORMAT_VERSION = 1

RowSelection = int | slice | Sequence[int] | np.ndarray | None
log = logging.getLogger(__name__)

# Re-exported for callers of the old location; the implementations live in workbench.artifacts.
__all__ = [
    "ActivationStore",
    "StoreWriter",
    "TokenInfo",
    "atomic_write",
    "file_sha256",
    "write_json",
]


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# writing


class StoreWriter:
    """Creates or resumes a run folder; used by ``extract``. Holds the folder's lock (one writer
    per store) from construction until ``close``.

    The identity (model weights fingerprint, dataset fingerprint, extraction spec) decides
    whether an existing folder is the same run: then complete shards are kept; otherwise
    ``StoreMismatchError`` names what differs. ``overwrite`` replaces only an empty folder or a
    workbench run (a folder with a manifest), never anything else.
    """

    def __init__(
        self, path: str | os.PathLike[str], manifest: dict[str, Any], overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.shard_dir = self.path / SHARDS
        identity = manifest["identity"]
        manifest["identity_hash"] = identity_hash(identity)
        try:
            if self.path.exists() and not self.path.is_dir():
                raise OutputPathError(
                    f"output path {self.path} is a file, not a folder: choose "
                    f"{arg('another out=', 'another --out')} (a new or empty folder)"
                )
            self._refuse_foreign(overwrite)  # before the lock file is created in it
        except OSError as exc:
            if isinstance(exc, WorkbenchError):
                raise
            raise output_error(exc, self.path / MANIFEST) from None
        self.lock = FolderLock(self.path).acquire()
        try:
            self._open(identity, overwrite)
        except OSError as exc:
            self.close()
            if isinstance(exc, WorkbenchError):
                raise
            raise output_error(exc, self.path / MANIFEST) from None
        except BaseException:
            self.close()
            raise

    def _refuse_foreign(self, overwrite: bool) -> None:
        """Refuse a folder that holds files but no workbench run, naming what is there."""
        if not self.path.is_dir() or (self.path / MANIFEST).is_file():
            return
        other = sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in self.path.iterdir()
            if not _run_leftover(p)
        )
        if other:
            listed = ", ".join(other[:8]) + (
                f" and {len(other) - 8} more" if len(other) > 8 else ""
            )
            raise StoreMismatchError(
                f"output folder {self.path} holds {listed} and no workbench run (no {MANIFEST}), so "
                f"it is not replaced{' even with --overwrite' if overwrite else ''}: choose "
                f"{arg('another out=', 'another --out')} (a new or empty folder)"
            )

    def _open(self, identity: dict[str, Any], overwrite: bool) -> None:
        existing = self.path / MANIFEST
        if existing.is_file():
            replace = overwrite
            try:
                old = read_json(existing, "run manifest")
            except ArtifactCorruptError:
                if not overwrite:
                    raise StoreCorruptError(
                        f"{existing} is damaged (not valid JSON), so this run cannot be resumed: "
                        f"pass {arg('overwrite=True', '--overwrite')} to start it again, or choose "
                        f"{arg('another out=', 'another --out')}"
                    ) from None
                old = {}
            if not replace and old.get("identity_hash") != self.manifest["identity_hash"]:
                if self._committed_shards():
                    raise StoreMismatchError(
                        _mismatch_message(self.path, old.get("identity", {}), identity)
                    )
                # An earlier attempt that committed nothing (refused or failed early): nothing to
                # keep, so the folder is not blocked by it.
                log.info("replacing %s: its earlier run committed no shard", self.path)
                replace = True
            if replace:
                self._clear()
            else:
                # Same run: keep its shards and the first creation time.
                self.manifest["created"] = old.get("created", self.manifest.get("created"))
                self.recorded_rows = old.get("rows_file")
        else:
            self._refuse_foreign(overwrite)  # again, now that we hold the lock
        make_dirs(self.shard_dir)
        # We hold the lock, so every temporary file left here belongs to a dead writer.
        for folder in (self.path, self.shard_dir):
            for stale in folder.iterdir():
                if is_temp(stale):
                    stale.unlink(missing_ok=True)

    recorded_rows: dict[str, Any] | None = None

    def _committed_shards(self) -> bool:
        return self.shard_dir.is_dir() and any(self.shard_dir.glob(_MARKER_GLOB))

    def _clear(self) -> None:
        """Remove a run's files (the folder holds a manifest), keeping the lock file."""
        for p in self.path.iterdir():
            if p.name == FolderLock.NAME:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def close(self) -> None:
        """Release the folder's lock (idempotent)."""
        self.lock.release()

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> bool:
        """``rows.jsonl``, unless the same run's copy is already there and intact; returns
        whether that copy was kept."""
        target = self.path / ROWS
        old = self.recorded_rows
        if (
            target.is_file()
            and old is not None
            and target.stat().st_size == old["bytes"]
            and (file_sha256(target) == old["sha256"])
        ):
            self.manifest["rows_file"] = old
            return True
        atomic_write(
            target,
            lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
            mode="w",
        )
        self.manifest["rows_file"] = file_info(target)
        return False

    def save_manifest(self) -> None:
        """Write the manifest as it stands now."""
        write_json(self.path / MANIFEST, self.manifest)

    def check_shard(
        self, index: int, verify: bool = True, progress: Any = None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """``(marker, None)`` if shard ``index`` is complete (and, with ``verify``, its checksums
        match), else ``(None, why)``; ``why`` is None when the shard was simply never written."""
        marker = self.shard_dir / f"{index:05d}.json"
        if not marker.is_file():
            return None, None
        try:
            meta = read_json(marker, "shard marker")
        except (ArtifactCorruptError, ArtifactNotFoundError):
            return None, f"its marker {marker.name} is damaged"
        for name, info in meta["files"].items():
            f = self.shard_dir / name
            if not f.is_file():
                return None, f"{name} is missing"
            if f.stat().st_size != info["bytes"]:
                return None, f"{name} has {f.stat().st_size} bytes, not {info['bytes']}"
            if verify and file_sha256(f, progress) != info["sha256"]:
                return None, f"{name} does not match its sha256"
        return meta, None

    def shard_complete(self, index: int, verify: bool = True) -> dict[str, Any] | None:
        """The marker of shard ``index`` if it is complete (and its checksums match)."""
        return self.check_shard(index, verify)[0]

    def discard_shard(self, index: int) -> None:
        """Remove a damaged shard's marker (its files are rewritten when it is recomputed)."""
        (self.shard_dir / f"{index:05d}.json").unlink(missing_ok=True)

    def write_shard(
        self,
        index: int,
        arrays: dict[str, np.ndarray],
        token_strings: list[list[str]],
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Write one shard's files atomically, then its marker (the commit point)."""
        files: dict[str, Any] = {}
        for key, arr in arrays.items():
            name = f"{index:05d}.{key}.npy"
            atomic_write(self.shard_dir / name, partial(np.save, arr=arr, allow_pickle=False))
            files[name] = {
                **file_info(self.shard_dir / name),
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
            }
        name = f"{index:05d}.token_strings.json"
        write_json(self.shard_dir / name, token_strings)
        files[name] = file_info(self.shard_dir / name)
        meta = {**meta, "index": index, "files": files}
        write_json(self.shard_dir / f"{index:05d}.json", meta)
        return meta


_MARKER_GLOB = "[0-9][0-9][0-9][0-9][0-9].json"


def _run_leftover(p: Path) -> bool:
    """What a writer killed before its first manifest leaves: the lock, temporary files and a
    ``shards/`` folder holding nothing else (so such a folder counts as empty)."""
    if p.name == FolderLock.NAME or is_temp(p):
        return True
    return p.name == SHARDS and p.is_dir() and all(is_temp(q) for q in p.iterdir())


def _mismatch_message(path: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [
        f"{k}: stored {_short(old.get(k))} vs now {_short(new.get(k))}"
        for k in keys
        if old.get(k) != new.get(k)
    ]
    return (
        f"output folder {path} holds a different run ({'; '.join(diffs)}). Nothing was changed: "
        f"choose {arg('another out=', 'another --out')} for this run, or pass "
        f"{arg('overwrite=True', '--overwrite')} to replace it"
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
            where = "does not exist" if not self.path.exists() else f"has no {MANIFEST}"
            raise ArtifactNotFoundError(
                f"{self.path} is not a workbench run: it {where}. Create one with "
                f"{arg('wb.extract(..., out=DIR)', '`workbench extract ... --out DIR`')}"
            )
        self.manifest: dict[str, Any] = read_json(
            manifest_file,
            "run manifest",
            fix="rerun the extract command that wrote it (completed shards are kept"
            f"{arg('', '; add --overwrite if it refuses')})",
        )
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
        """Rows in the store."""
        return int(self.manifest["dataset"]["n_rows"])

    @property
    def d_model(self) -> int:
        """Width of each stored vector."""
        return int(self.manifest["model"]["d_model"])

    @property
    def complete(self) -> bool:
        """Whether every shard of the run has been written."""
        return self.manifest.get("status") == "complete"

    @property
    def pooling_names(self) -> list[str]:
        """Names of the stored poolings, in storage order."""
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
        """Per-row records (text and label columns), read once from disk."""
        if self._rows is None:
            with (self.path / ROWS).open(encoding="utf-8") as f:
                self._rows = [json.loads(line) for line in f]
        return self._rows

    @property
    def texts(self) -> list[str]:
        """The text of every row, in row order."""
        return [r["text"] for r in self.rows]

    @property
    def columns(self) -> list[str]:
        """Names of the label columns stored with the rows."""
        return list(self.manifest["dataset"].get("columns", []))

    def column(self, name: str) -> list[Any]:
        """The values of column ``name`` for every row, in row order."""
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
        """Records of the committed shards, read once from their markers."""
        if self._shards is None:
            markers = sorted((self.path / SHARDS).glob(_MARKER_GLOB))
            fix = "run the same extract again to recompute that shard"
            self._shards = [read_json(m, "shard marker", fix) for m in markers]
        return self._shards

    def shard_array(self, shard: dict[str, Any], key: str) -> np.ndarray:
        """The memory-mapped ``key`` array of committed shard ``shard``."""
        name = f"{shard['index']:05d}.{key}.npy"
        return np.load(self.path / SHARDS / name, mmap_mode="r", allow_pickle=False)

    def row_index(self, rows: RowSelection) -> np.ndarray:
        """Row indices ``[k]`` (non-negative, in order given) from ``None`` (all), a slice or indices."""
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
        """Positions in ``hook_points`` of the selected layers or hook points (None: all)."""
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
        absent = [layer for layer in wanted if layer not in self.layers]
        if absent:
            raise StoreSelectionError(
                f"layers {absent} were not extracted into {self.path}; it holds layers "
                f"{sorted(self.layers)} — run extract again with those layers"
            )
        return [self.hook_points.index(self.layers[layer]) for layer in wanted]

    def pooling(self, pooling: str) -> Pooling:
        """The stored ``Pooling`` named ``pooling``."""
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
        out = np.empty(
            (len(idx), len(hooks), self.d_model), dtype=parts[0][1].dtype if parts else np.float32
        )
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
    def verify(self, progress: bool = False) -> None:
        """Check ``rows.jsonl`` and every shard file against its sha256; raise
        ``StoreCorruptError`` (naming the file and the fix) on the first mismatch."""
        fix = arg("run the same extract again", "run the same `workbench extract` again")
        checks = [
            (self.path / SHARDS / name, info, shard["index"])
            for shard in self.shards
            for name, info in shard["files"].items()
        ]
        rows = self.manifest.get("rows_file")
        if rows is not None:
            checks.append((self.path / ROWS, rows, None))
        bar = _bytes_bar(
            sum(int(c[1]["bytes"]) for c in checks), f"verify {self.path.name}", progress
        )
        try:
            for f, info, index in checks:
                if not f.is_file() or file_sha256(f, bar.update if bar else None) != info["sha256"]:
                    what = f"shard {index}" if index is not None else "the rows"
                    raise StoreCorruptError(
                        f"{f} is missing or does not match its sha256: {fix} to recompute {what} "
                        "(it is detected and rewritten; other shards are kept)"
                    )
        finally:
            if bar is not None:
                bar.close()


def _bytes_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar in bytes, or None when disabled or for small totals (under 64 MiB)."""
    if not enabled or total < (64 << 20):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc)
