"""Process settings resolved in one place: where caches and runs go, CPU threads, and seeds.

Nothing here changes global state for longer than asked: :func:`threads` and :func:`seeded` are
context managers that restore what they found.

>>> from workbench import settings
>>> with settings.threads(1):  # torch and BLAS use one thread inside, the old counts after
...     pass
>>> settings.runs_dir().name  # $WORKBENCH_RUNS or ./runs                   # doctest: +SKIP
'runs'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "WORKBENCH_CACHE"
RUNS_ENV = "WORKBENCH_RUNS"


def cache_dir() -> Path:
    """Where converted weights and downloads are cached: ``$WORKBENCH_CACHE`` or
    ``~/.cache/workbench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "workbench"


def runs_dir() -> Path:
    """Where runs go when no output folder is given: ``$WORKBENCH_RUNS`` or ``./runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


@contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Use ``n`` CPU threads in torch and in the BLAS/OpenMP pools (numpy, scikit-learn) inside
    the context; the previous counts are restored after. ``None`` changes nothing.

    Yields:
        The torch thread count in effect inside.
    """
    import torch

    if n is None:
        yield torch.get_num_threads()
        return
    if int(n) < 1:
        raise ValueError(f"threads={n}: use a positive number of CPU threads, or None")
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(int(n)):
            yield int(n)
    finally:
        torch.set_num_threads(previous)


def set_threads(n: int | None) -> None:
    """Set torch's CPU threads for the rest of the process (``None``: leave them).

    Only for processes that own their whole lifetime (a CLI command, a Ray actor, the dashboard
    server); library code uses :func:`threads`, which restores.
    """
    if n is None:
        return
    if int(n) < 1:
        raise ValueError(f"threads={n}: use a positive number of CPU threads, or None")
    import torch

    torch.set_num_threads(int(n))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU random generator inside the context and restore its state after, so
    that code which draws from the global generator (module initialisers) is reproducible
    without changing anyone else's random stream."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def generator(seed: int, device: str | None = None) -> object:
    """A local ``torch.Generator`` seeded with ``seed`` (on ``device``, default CPU), for code that
    takes a ``generator=`` argument."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(int(seed))


__all__ = [
    "CACHE_ENV",
    "RUNS_ENV",
    "cache_dir",
    "generator",
    "runs_dir",
    "seeded",
    "set_threads",
    "threads",
]
