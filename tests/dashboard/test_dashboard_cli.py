"""``workbench dashboard``: the streamlit command line it runs, and its errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from workbench.cli.dashboard import streamlit_command
from workbench.cli.main import app
from workbench.dashboard import APP, PAGES, RUNS_ENV


def test_streamlit_command_serves_the_packaged_app(tmp_path: Path) -> None:
    cmd, env = streamlit_command(tmp_path / "runs", 8601, headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP)
    assert cmd[cmd.index("--server.port") + 1] == "8601"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert env[RUNS_ENV] == str((tmp_path / "runs").resolve())
    for page in PAGES.values():
        assert (APP.parent / page).is_file()


def test_runs_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("x")
    result = CliRunner().invoke(app, ["dashboard", "--runs", str(f)])
    assert result.exit_code != 0
    assert "is a file" in str(result.exception)
