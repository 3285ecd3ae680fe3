"""Helpers of the fault-injection suite: the texts and options of its runs, digests of what a run
committed, and a forked child (the model is already loaded there, so a child costs no start-up)
that a test kills, interrupts, starves of disk or of permissions."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WORDS = (
    "city river north stone light garden paper winter market silver harbour orchard "
    "bridge lantern meadow copper valley"
).split()
#: 48 texts of 4..12 words: 12 shards of 4 rows.
TEXTS = [
    f"Row {i}: " + " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 9))
    for i in range(48)
]
OPTIONS = {"layers": "all", "pooling": "mean,last,tokens", "shard_size": 4, "progress": False}
N_SHARDS = 12
MARKERS = "[0-9][0-9][0-9][0-9][0-9].json"  # a shard's commit marker (not its token_strings)


def npy_digests(run: Path) -> dict[str, str]:
    """sha256 of every ``.npy`` of a run."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted((Path(run) / "shards").glob("*.npy"))
    }


def committed(run: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every data file of every committed shard (marker present); the
    marker itself records timings, so it is left out."""
    out = {}
    for marker in sorted((Path(run) / "shards").glob(MARKERS)):
        index = marker.name.split(".")[0]
        for f in sorted(marker.parent.glob(f"{index}.*.*")):
            out[f.name] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


def temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in Path(run).rglob(".*.tmp"))


@dataclass
class Child:
    """A forked process running ``fn``; ``message`` is what it raised (one line) or ''."""

    pid: int
    read_fd: int
    status: int | None = None
    message: str = ""

    def wait(self, timeout: float = 60.0) -> Child:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
            elif time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise TimeoutError(f"child {self.pid} ran past {timeout} s")
            else:
                time.sleep(0.005)
        with os.fdopen(self.read_fd, "rb") as f:
            self.message = f.read().decode("utf-8", "replace")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> Child:
        os.kill(self.pid, sig)
        return self.wait()

    @property
    def killed(self) -> bool:
        return self.status is not None and os.WIFSIGNALED(self.status)

    @property
    def exit_code(self) -> int | None:
        return (
            os.WEXITSTATUS(self.status)
            if self.status is not None and os.WIFEXITED(self.status)
            else None
        )


def fork(fn: Callable[[], object], before: Callable[[], object] | None = None) -> Child:
    """Run ``before()`` then ``fn()`` in a forked child; exit 0, or 1 with ``type: message``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            if before is not None:
                before()
            fn()
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            os.write(
                w,
                f"{type(exc).__name__}: {exc}".encode()
                + (
                    b"\n" + traceback.format_exc().encode()
                    if os.environ.get("FAULTS_TRACEBACK")
                    else b""
                ),
            )
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return Child(pid, r)
