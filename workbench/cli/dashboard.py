"""``workbench dashboard``: serve the Streamlit app (``workbench/dashboard/app.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import WorkbenchError


class DashboardError(WorkbenchError, RuntimeError):
    """The dashboard cannot start (streamlit missing, bad runs folder)."""


def streamlit_command(runs: Path, port: int | None, headless: bool) -> tuple[list[str], dict]:
    """The ``streamlit run`` command line and environment that serve the packaged app."""
    from ..dashboard import APP, RUNS_ENV

    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--browser.gatherUsageStats",
           "false", "--server.headless", "true" if headless else "false"]
    if port is not None:
        cmd += ["--server.port", str(port)]
    return cmd, {**os.environ, RUNS_ENV: str(runs.expanduser().resolve())}


def dashboard(
    runs: Annotated[Path, typer.Option(help="folder of runs (stores and probe experiments)")]
        = Path("runs"),
    port: Annotated[int | None, typer.Option(help="port to serve on (default: streamlit's "
                                                  "8501)")] = None,
    headless: Annotated[bool, typer.Option(help="do not open a browser")] = False,
) -> None:
    """Explore runs, probes, projections, decodings and attributions in the browser."""
    try:
        import streamlit  # noqa: F401
    except ImportError as exc:
        raise DashboardError(f"the dashboard needs streamlit ({exc}): pip install "
                             "'workbench[dashboard]' or pip install streamlit") from exc
    if runs.exists() and not runs.is_dir():
        raise DashboardError(f"--runs {runs} is a file: pass the folder that holds the runs")
    cmd, env = streamlit_command(runs, port, headless)
    try:
        sys.exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        sys.exit(130)
