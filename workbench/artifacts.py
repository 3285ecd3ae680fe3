"""How every workbench artifact reaches disk and comes back: atomic writes, sha256 checksums,
safetensors + JSON with the checksums of the arrays recorded in the JSON and verified on load.

- ``atomic_write`` writes under a temporary name in the same folder, fsyncs and renames, so a
  reader sees the old file or the new one, never a part. Files get the mode the umask allows
  (``mkstemp`` alone would give 0600). A full disk, a read-only folder or a path that is a file
  raises ``OutputPathError`` in one line.
- ``save_tensors`` writes a safetensors file and returns ``{"bytes", "sha256"}`` to put in the
  artifact's JSON; ``load_tensors`` checks that sha256 first (``ArtifactCorruptError`` on a
  mismatch; a warning when the JSON predates checksums) and turns a damaged header into one line.
- ``read_json`` reads a config or marker, turning a missing or truncated file into one line.

Stores, probes, projections, tuned lenses, inverters and correctors all use these.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactCorruptError, ArtifactNotFoundError, OutputPathError, arg

TMP_SUFFIX = ".tmp"
_umask_lock = threading.Lock()


def _file_mode() -> int:
    """0o666 minus the process umask (read without changing it for other threads)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def output_error(exc: OSError, path: str | os.PathLike[str]) -> OutputPathError:
    """One-line ``OutputPathError`` for an ``OSError`` raised while writing ``path``."""
    path = Path(path)
    code = exc.errno
    text = str(exc)
    out = arg("another folder", "another --out")
    if code is None and "requested and" in text:  # numpy's short write: which limit was hit?
        code = errno.EFBIG if _file_size_limited() else errno.ENOSPC
    if code in (errno.ENOSPC, errno.EDQUOT):
        return OutputPathError(
            f"no space left on the device while writing {path}: free some space (or choose {out}) "
            "and run the same command again; completed parts are kept"
        )
    if code == errno.EFBIG:
        return OutputPathError(
            f"{path} exceeds the file-size limit of this process (ulimit -f): raise the limit or "
            "use smaller shards, then run the same command again; completed parts are kept"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputPathError(
            f"cannot write to {path.parent}: the folder is read-only for this user; make it "
            f"writable or choose {out}"
        )
    if code in (errno.ENOTDIR, errno.EEXIST) or (path.parent.exists() and not path.parent.is_dir()):
        return OutputPathError(
            f"cannot write {path}: a file stands where a folder is needed; move it or choose {out}"
        )
    return OutputPathError(
        f"cannot write {path}: {exc.strerror or text}; check the folder, or choose {out}"
    )


def _file_size_limited() -> bool:
    """Whether this process runs under a file-size limit (``ulimit -f``)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return False
    return soft != resource.RLIM_INFINITY


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` with a one-line ``OutputPathError`` on failure."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise output_error(exc, path / "_") from None
    except OSError as exc:
        raise output_error(exc, path / "_") from None
    return path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb"
) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, fsync, then rename.

    The temporary file (``.NAME.XXXX.tmp`` beside ``path``) is removed on any failure.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputPathError):
            raise output_error(exc, path) from None
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """``obj`` as indented JSON, written atomically."""
    text = json.dumps(obj, indent=2, default=str)
    atomic_write(path, lambda f: f.write(text), mode="w")


def append_jsonl(path: str | os.PathLike[str], records: Sequence[dict[str, Any]]) -> None:
    """Append ``records`` to ``path`` as JSON lines, then flush and fsync: a record is on disk
    once this returns, and a kill mid-write leaves at most one torn last line (which
    :func:`read_jsonl` drops). Hold the folder's ``FolderLock`` while writing."""
    path = Path(path)
    make_dirs(path.parent)
    text = "".join(json.dumps(r, default=str) + "\n" for r in records)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise output_error(exc, path) from None


def read_jsonl(path: str | os.PathLike[str], repair: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON-lines file written by :func:`append_jsonl` (``[]`` when it does not
    exist). A torn last line (a writer killed mid-append) is dropped, and with ``repair`` cut
    from the file so the next append starts on a clean line; a bad line elsewhere raises
    ``ArtifactCorruptError``."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    *lines, tail = raw.split(b"\n")  # every complete record ends in a newline; tail is torn
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ArtifactCorruptError(
                f"{path} line {i + 1} is not JSON: the file is damaged; delete it to start over"
            ) from None
    if repair and tail:
        with open(path, "r+b") as f:
            f.truncate(len(raw) - len(tail))
    return records


def read_json(path: str | os.PathLike[str], what: str = "file", fix: str = "") -> Any:
    """The JSON in ``path``; a missing file raises ``ArtifactNotFoundError``, a truncated or
    damaged one ``ArtifactCorruptError``, each in one line ending with ``fix``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactNotFoundError(
            f"{path} does not exist: {fix or f'this is not a {what}'}"
        ) from None
    except IsADirectoryError:
        raise ArtifactNotFoundError(f"{path} is a folder, not a {what}: {fix}") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactCorruptError(
            f"{path} is damaged ({what} is not valid JSON: {exc}): "
            f"{fix or 'restore it from a copy or write it again'}"
        ) from None


def file_sha256(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks; ``progress(n_bytes)`` after each."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a file, as recorded in an artifact's JSON."""
    path = Path(path)
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def verify_file(
    path: str | os.PathLike[str],
    info: Mapping[str, Any] | str | None,
    fix: str,
    what: str = "artifact",
) -> None:
    """Check ``path`` against its recorded ``info`` (``{"sha256": ...}`` or the hex digest).

    ``None`` (written before checksums were recorded) warns and passes; a missing file raises
    ``ArtifactNotFoundError``, a mismatch ``ArtifactCorruptError`` (each one line ending in ``fix``).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactNotFoundError(f"{path} is missing: {fix}")
    expected = info.get("sha256") if isinstance(info, Mapping) else info
    if expected is None:
        warnings.warn(
            f"{path} has no recorded sha256 (a {what} saved by an older workbench): it "
            "is loaded unchecked; save it again to add one",
            stacklevel=3,
        )
        return
    if file_sha256(path) != expected:
        raise ArtifactCorruptError(
            f"{path} does not match the sha256 recorded for it (the file is damaged): {fix}"
        )


def save_tensors(
    path: str | os.PathLike[str], tensors: Mapping[str, Any], metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """Write numpy arrays or torch tensors as safetensors, atomically; returns its
    ``{"bytes", "sha256"}`` for the artifact's JSON (write the JSON after, as the commit)."""
    tensors = dict(tensors)
    if not all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.torch import save as save_torch

        blob = save_torch(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata
        )
    else:
        from safetensors.numpy import save as save_numpy

        blob = save_numpy(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(blob))
    return {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def load_tensors(
    path: str | os.PathLike[str],
    info: Mapping[str, Any] | str | None,
    *,
    fix: str,
    framework: str = "numpy",
    device: str = "cpu",
    what: str = "artifact",
) -> dict[str, Any]:
    """The arrays of a safetensors file after checking its recorded sha256 (see ``verify_file``);
    ``framework`` ``"numpy"`` or ``"pt"`` (torch tensors on ``device``)."""
    verify_file(path, info, fix, what)
    try:
        if framework == "pt":
            from safetensors.torch import load_file as load_torch

            return load_torch(str(path), device=device)
        from safetensors.numpy import load_file as load_numpy

        return load_numpy(str(path))
    except Exception as exc:  # SafetensorError, a header that is not JSON, ...
        if type(exc).__name__ not in ("SafetensorError", "JSONDecodeError", "ValueError"):
            raise
        raise ArtifactCorruptError(
            f"{path} is damaged (unreadable safetensors: {exc}): {fix}"
        ) from None


def read_tensor_metadata(path: str | os.PathLike[str], fix: str) -> dict[str, str]:
    """The string metadata of a safetensors header (``ArtifactCorruptError`` if unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        raise ArtifactCorruptError(
            f"{path} is damaged (unreadable safetensors: {exc}): {fix}"
        ) from None


class FolderLock:
    """One writer per folder: an exclusive ``fcntl.flock`` on ``FOLDER/.lock``, which records the
    holder's PID. The kernel drops the lock when its process dies, so a killed writer's lock is
    taken over by the next one; a second live writer gets ``StoreLockedError`` naming the PID.

    Examples:
        >>> with FolderLock("runs/demo"):  # doctest: +SKIP
        ...     ...  # write into runs/demo
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise ``StoreLockedError`` naming the holder's PID."""
        import fcntl
        import socket
        import time

        from .errors import StoreLockedError

        if self._fd is not None:
            return self
        make_dirs(self.folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
        except OSError as exc:
            raise output_error(exc, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            try:
                info = json.loads(holder)
            except json.JSONDecodeError:
                info = {}
            pid = info.get("pid", "?")
            raise StoreLockedError(
                f"{self.folder} is being written by another process (pid {pid} on "
                f"{info.get('host', '?')}, since {info.get('since', '?')}): wait for it to finish "
                f"or stop it (kill {pid}), then run again; a killed writer's lock is taken over"
            ) from None
        os.ftruncate(fd, 0)
        stamp = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.pwrite(fd, json.dumps(stamp).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (a no-op when it is not held)."""
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_temp(path: Path) -> bool:
    """Whether ``path`` is a temporary file of ``atomic_write`` (``.NAME.XXXX.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


__all__ = [
    "FolderLock",
    "append_jsonl",
    "atomic_write",
    "file_info",
    "file_sha256",
    "is_temp",
    "load_tensors",
    "make_dirs",
    "output_error",
    "read_json",
    "read_jsonl",
    "read_tensor_metadata",
    "save_tensors",
    "verify_file",
    "write_json",
]
