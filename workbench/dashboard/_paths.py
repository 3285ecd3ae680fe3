"""Paths the dashboard accepts from its UI: each must resolve inside the runs folder or a
``--data-root`` folder (``workbench dashboard --data-root``); anything else is refused.

Plain functions without streamlit, so the check is tested on its own.

Examples:
    >>> from pathlib import Path
    >>> inside_roots("a/b.csv", [Path("/srv/runs")]) == Path("/srv/runs/a/b.csv")
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import WorkbenchError
from . import DATA_ROOTS_ENV


class PathOutsideRootsError(WorkbenchError, PermissionError):
    """A path typed into the dashboard that resolves outside the allowed folders."""


def allowed_roots(runs: Path) -> list[Path]:
    """The runs folder, then every folder of ``$WORKBENCH_DATA_ROOTS`` (``os.pathsep``
    separated, set by ``workbench dashboard --data-root``), resolved."""
    extra = [p for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(runs).expanduser().resolve(), *(Path(p).expanduser().resolve() for p in extra)]


def inside_roots(path: str | Path, roots: Sequence[Path], *, what: str = "path") -> Path:
    """``path`` resolved (relative paths against the first root, symlinks and ``..``
    followed) when it lies inside one of ``roots``.

    Raises:
        PathOutsideRootsError: it resolves anywhere else (``../../etc``, ``/etc/passwd``, a
            symlink out of the runs folder).
    """
    raw = Path(str(path).strip()).expanduser()
    if not str(path).strip() or not roots:
        raise PathOutsideRootsError(f"no {what} given: type a path inside {_names(roots)}")
    full = (raw if raw.is_absolute() else roots[0] / raw).resolve()
    for root in roots:
        if full == root or full.is_relative_to(root):
            return full
    raise PathOutsideRootsError(
        f"{what} {str(path).strip()!r} resolves to {full}, outside the folders this dashboard "
        f"may read and write ({_names(roots)}): use a path inside them, or restart with "
        "`workbench dashboard --data-root FOLDER` to allow another folder"
    )


def _names(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots) or "(none)"
