"""``workbench dashboard``: serve the Streamlit app (``workbench/dashboard/app.py``).

It binds ``127.0.0.1`` unless ``--host`` says otherwise (with a warning: the app has no login),
passes the runs folder and ``--data-root`` folders to the app, and stops the Streamlit server
when it is stopped itself (SIGTERM, SIGINT/Ctrl-C, SIGHUP).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import WorkbenchError


class DashboardError(WorkbenchError, RuntimeError):
    """The dashboard cannot start (streamlit missing, bad runs folder)."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def streamlit_command(
    runs: Path,
    port: int | None,
    headless: bool,
    host: str = "127.0.0.1",
    data_roots: list[Path] | None = None,
) -> tuple[list[str], dict]:
    """The ``streamlit run`` command line and environment that serve the packaged app on
    ``host`` (loopback by default)."""
    from ..dashboard import APP, DATA_ROOTS_ENV, RUNS_ENV

    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--browser.gatherUsageStats",
        "false",
        "--server.headless",
        "true" if headless else "false",
        "--server.address",
        host,
    ]
    if port is not None:
        cmd += ["--server.port", str(port)]
    roots = os.pathsep.join(str(p.expanduser().resolve()) for p in data_roots or [])
    return cmd, {**os.environ, RUNS_ENV: str(runs.expanduser().resolve()), DATA_ROOTS_ENV: roots}


def serve(cmd: list[str], env: dict, grace_s: float = 10.0) -> int:
    """Run the server and wait; when this process gets SIGTERM/SIGHUP (or Ctrl-C), stop the
    server too (SIGTERM, then SIGKILL after ``grace_s``) and return its exit status."""
    proc = subprocess.Popen(cmd, env=env)
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if proc.poll() is None:
            proc.terminate()

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Ctrl-C: the server got SIGINT too; make sure it ends
                stopping.append(signal.SIGINT)
                if proc.poll() is None:
                    proc.terminate()
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)


def dashboard(
    runs: Annotated[
        Path, typer.Option(help="folder of runs (stores and probe experiments)")
    ] = Path("runs"),
    port: Annotated[
        int | None, typer.Option(help="port to serve on (default: streamlit's 8501)")
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on; anything but loopback "
            "opens the dashboard (which has no login) to the "
            "network"
        ),
    ] = "127.0.0.1",
    data_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--data-root",
            help="another folder whose files the UI may read and write (data "
            "files, outputs, tuned lenses); repeatable. The runs folder is "
            "always allowed, nothing else",
        ),
    ] = None,
    max_prompt_tokens: Annotated[
        int, typer.Option(min=1, help="longest prompt (tokens) the Lens and Attribution pages run")
    ] = 512,
    headless: Annotated[bool, typer.Option(help="do not open a browser")] = False,
) -> None:
    """Explore runs, probes, projections, decodings and attributions in the browser."""
    try:
        import streamlit  # noqa: F401
    except ImportError as exc:
        raise DashboardError(
            f"the dashboard needs streamlit ({exc}): pip install "
            "'workbench[dashboard]' or pip install streamlit"
        ) from exc
    if runs.exists() and not runs.is_dir():
        raise DashboardError(f"--runs {runs} is a file: pass the folder that holds the runs")
    for root in data_root or []:
        if not root.is_dir():
            raise DashboardError(f"--data-root {root} is not a folder: pass an existing folder")
    if not is_loopback(host):
        typer.echo(
            f"warning: serving on {host}: the dashboard has no authentication, so "
            "anyone who can reach this address can read the runs folder and run models; "
            "use --host 127.0.0.1 (the default) and an SSH tunnel instead",
            err=True,
        )
    from ..dashboard import MAX_PROMPT_ENV

    cmd, env = streamlit_command(runs, port, headless, host, data_root)
    status = serve(cmd, {**env, MAX_PROMPT_ENV: str(max_prompt_tokens)})
    sys.exit(128 - status if status < 0 else status)  # -15 (SIGTERM) -> 143
