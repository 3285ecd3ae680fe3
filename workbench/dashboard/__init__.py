"""The Streamlit dashboard: a thin UI over the library (``workbench dashboard``).

``app.py`` routes the pages under ``app_pages/`` with ``st.navigation``; ``_state.py`` holds the
runs folder and the error guard, ``_cache.py`` the cached models (``st.cache_resource``) and
arrays/tables (``st.cache_data``), ``_data.py`` reads run folders. Nothing here imports
streamlit at package import time.

Examples:
    >>> from workbench.dashboard import APP
    >>> APP.name
    'app.py'
"""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).with_name("app.py")
"""The Streamlit script (``streamlit run`` it, or use ``workbench dashboard``)."""

PAGES = {
    "runs": "app_pages/runs.py",
    "probes": "app_pages/probes.py",
    "projection": "app_pages/projection.py",
    "lens": "app_pages/lens.py",
    "inversion": "app_pages/inversion.py",
    "attribution": "app_pages/attribution.py",
    "pooling_lab": "app_pages/pooling_lab.py",
}
"""Page name -> script path relative to ``APP`` (what ``AppTest.switch_page`` takes)."""

RUNS_ENV = "WORKBENCH_RUNS"
"""Environment variable naming the runs folder (default ``runs`` in the working directory)."""

DATA_ROOTS_ENV = "WORKBENCH_DATA_ROOTS"
"""Environment variable with more folders (``os.pathsep`` separated) whose files the UI may read
and write besides the runs folder (``workbench dashboard --data-root``)."""

MAX_PROMPT_ENV = "WORKBENCH_MAX_PROMPT_TOKENS"
"""Environment variable with the longest prompt (in tokens) the Lens and Attribution pages run
(``workbench dashboard --max-prompt-tokens``; default ``DEFAULT_MAX_PROMPT_TOKENS``)."""

DEFAULT_MAX_PROMPT_TOKENS = 512

__all__ = [
    "APP",
    "DATA_ROOTS_ENV",
    "DEFAULT_MAX_PROMPT_TOKENS",
    "MAX_PROMPT_ENV",
    "PAGES",
    "RUNS_ENV",
]
