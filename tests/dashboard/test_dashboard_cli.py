"""``workbench dashboard``: the streamlit command line it runs, its errors, the folders the UI
may touch, and that stopping it stops the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli.dashboard import is_loopback, streamlit_command
from workbench.cli.main import app
from workbench.dashboard import APP, DATA_ROOTS_ENV, PAGES, RUNS_ENV
from workbench.dashboard._paths import PathOutsideRootsError, allowed_roots, inside_roots


def test_streamlit_command_serves_the_packaged_app(tmp_path: Path) -> None:
    cmd, env = streamlit_command(tmp_path / "runs", 8601, headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP)
    assert cmd[cmd.index("--server.port") + 1] == "8601"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert env[RUNS_ENV] == str((tmp_path / "runs").resolve())
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"  # loopback unless told
    assert env[DATA_ROOTS_ENV] == ""
    for page in PAGES.values():
        assert (APP.parent / page).is_file()


def test_runs_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("x")
    result = CliRunner().invoke(app, ["dashboard", "--runs", str(f)])
    assert result.exit_code != 0
    assert "is a file" in str(result.exception)


def test_host_and_data_roots_reach_streamlit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cmd, env = streamlit_command(
        tmp_path / "runs", None, True, host="0.0.0.0", data_roots=[data, tmp_path / "more"]
    )
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert env[DATA_ROOTS_ENV].split(os.pathsep) == [
        str(data.resolve()),
        str((tmp_path / "more").resolve()),
    ]


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.0.1.1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "example.org"]))


def test_missing_data_root_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["dashboard", "--runs", str(tmp_path), "--data-root", str(tmp_path / "nope")]
    )
    assert result.exit_code != 0
    assert "is not a folder" in str(result.exception)


def test_paths_resolve_inside_the_roots_only(tmp_path: Path, monkeypatch) -> None:
    runs, data, outside = tmp_path / "runs", tmp_path / "data", tmp_path / "secret"
    for d in (runs, data, outside):
        d.mkdir()
    (runs / "escape").symlink_to(outside)
    monkeypatch.setenv(DATA_ROOTS_ENV, str(data))
    roots = allowed_roots(runs)
    assert roots == [runs.resolve(), data.resolve()]
    assert inside_roots("new-store", roots) == runs.resolve() / "new-store"
    assert inside_roots("a/../b", roots) == runs.resolve() / "b"
    assert inside_roots(str(data / "x.csv"), roots) == data.resolve() / "x.csv"
    for bad in (
        "../../..",
        "..",
        str(outside / "x.csv"),
        "/etc/passwd",
        "escape/x.csv",
        "~/x.csv",
        "   ",
    ):
        with pytest.raises(PathOutsideRootsError) as err:
            inside_roots(bad, roots, what="data file")
        assert "data file" in str(err.value)
    with pytest.raises(PathOutsideRootsError, match="--data-root"):
        inside_roots("/etc/passwd", roots)


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_stops_the_streamlit_server(tmp_path: Path) -> None:
    """SIGTERM to ``workbench dashboard`` ends its Streamlit child too (the port closes)."""
    pytest.importorskip("streamlit")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench",
            "dashboard",
            "--runs",
            str(tmp_path),
            "--port",
            str(port),
            "--headless",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not _health(url):
            assert proc.poll() is None and time.time() < deadline, "the dashboard did not start"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM or proc.returncode == 0
        deadline = time.time() + 15
        while _health(url) and time.time() < deadline:
            time.sleep(0.5)
        assert not _health(url), "the Streamlit server outlived workbench dashboard"
    finally:
        if proc.poll() is None:
            proc.kill()
