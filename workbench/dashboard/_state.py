"""Session-wide settings of the dashboard: the runs folder and the error guard."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from ..errors import WorkbenchError
from . import RUNS_ENV

T = TypeVar("T")


def runs_dir() -> Path:
    """The runs folder: ``$WORKBENCH_RUNS`` (set by ``workbench dashboard --runs``) or ``runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs").expanduser().resolve()


def max_prompt_tokens() -> int:
    """The longest prompt the pages run: ``$WORKBENCH_MAX_PROMPT_TOKENS`` (set by
    ``workbench dashboard --max-prompt-tokens``) or 512."""
    from . import DEFAULT_MAX_PROMPT_TOKENS, MAX_PROMPT_ENV

    try:
        return max(1, int(os.environ.get(MAX_PROMPT_ENV) or DEFAULT_MAX_PROMPT_TOKENS))
    except ValueError:
        return DEFAULT_MAX_PROMPT_TOKENS


def prompt_fits(tokenizer: Any, *texts: str) -> bool:
    """True when every text is at most ``max_prompt_tokens()`` tokens; otherwise an error box
    says how long it is and how to raise the cap."""
    cap = max_prompt_tokens()
    for text in texts:
        n = len(tokenizer(text)["input_ids"])
        if n > cap:
            st.error(
                f"This prompt is {n} tokens; the dashboard runs at most {cap} (every layer "
                "and position is computed, so long prompts take minutes). Shorten it, or "
                "restart with `workbench dashboard --max-prompt-tokens N`.",
                icon=":material/error:",
            )
            return False
    return True


def allowed_path(path: str | Path, what: str) -> Path:
    """``path`` resolved inside the runs folder or a ``--data-root`` folder (relative paths
    are taken from the runs folder); ``PathOutsideRootsError`` (shown by ``shown_errors``)
    for anything else."""
    from ._paths import allowed_roots, inside_roots

    return inside_roots(path, allowed_roots(runs_dir()), what=what)


def kept(name: str, inputs: tuple, compute: Callable[[], T]) -> T:
    """``compute()``, kept in the session under ``name`` until ``inputs`` change: a result
    (a decoding, an attribution) survives reruns and is recomputed only for new inputs."""
    slot = st.session_state.get(name)
    if slot is not None and slot[0] == inputs:
        return slot[1]
    value = compute()
    st.session_state[name] = (inputs, value)
    return value


def remembered(name: str, inputs: tuple) -> Any:
    """The value ``kept`` under ``name`` for these ``inputs``, or None (not computed yet, or
    the inputs changed since)."""
    slot = st.session_state.get(name)
    return slot[1] if slot is not None and slot[0] == inputs else None


@contextmanager
def shown_errors(what: str, stop: bool = False) -> Iterator[None]:
    """Run a block; a library error becomes an ``st.error`` with its message (no traceback),
    and with ``stop=True`` the page ends there (what follows needs the block's results).

    Streamlit's own control flow (``st.rerun``, ``st.stop``) derives from ``BaseException`` and
    passes through.
    """
    try:
        yield
    except WorkbenchError as exc:
        st.error(f"{what}: {exc}", icon=":material/error:")
    except (KeyError, ValueError, OSError, RuntimeError, ImportError, IndexError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        st.error(f"{what}: {type(exc).__name__}: {message}", icon=":material/error:")
    else:
        return
    if stop:
        st.stop()


def missing_api(feature: str, module: str) -> bool:
    """True (and an info box saying what is missing) when ``module`` cannot be imported."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        st.info(
            f"{feature} needs `{module}`, which is not available in this install ({exc}).",
            icon=":material/construction:",
        )
        return True
    return False
