"""Time from page load to rendered figures, measured in a real browser (headless system
Chromium via Playwright) against ``workbench dashboard`` on localhost, for the Projection and
Probes pages, from cached artifacts.

The artifacts: an activation store of N items (default 10 000: the built-in ``world_places``
names, a few layers, last-token pooling, extracted once with the bundled SmolLM2 and reused), a
ridge lat/long probe experiment on it (``run_spec``), and the PCA projection of every layer
(``project_store``, cached on disk under the store). A warm-up visit fills Streamlit's caches;
then each page is loaded ``--repeats`` times in a fresh browser tab and timed from navigation
until every plotly figure on it has drawn its SVG and the script is idle.

    .venv/bin/python benchmarks/bench_dashboard.py --rows 10000 --repeats 5

Run on 2 busy cores with ``OMP_NUM_THREADS=1``; prints a table and writes
``benchmarks/DASHBOARD.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

SPEC = """
name = "bench_places"
description = "Latitude/longitude of {rows} places (dashboard benchmark)."
seed = 0
[model]
spec = "smollm2-135m"
[dataset]
spec = "world_places"
limit = {rows}
options = {{ n = {rows} }}
[extract]
layers = [0, 8, 16, 24, 30]
pooling = ["last"]
template = "Place: {{text}}"
threads = 1
[probe]
kind = "ridge"
target = ["latitude", "longitude"]
alpha = 10.0
[evaluation]
split = "is_test"
control = true
n_boot = 200
[outputs]
figures = false
"""


def build(root: Path, rows: int) -> Path:
    """The benchmark's runs folder (reused when complete)."""
    import torch

    from workbench.probing import run_spec
    from workbench.projection import project_store

    torch.set_num_threads(1)
    folder = root / "bench_places"
    if not (folder / "summary.json").is_file():
        spec = root / "bench_places.toml"
        root.mkdir(parents=True, exist_ok=True)
        spec.write_text(SPEC.format(rows=rows))
        t0 = time.perf_counter()
        run_spec(spec, overrides={"outputs.dir": str(folder)}, progress=True)
        print(f"built {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    from workbench.activations import ActivationStore

    store = ActivationStore(folder / "store")
    t0 = time.perf_counter()
    res = project_store(store, "pca", pooling="last",
                        layers=[v for v in sorted(store.layers) if v != 0])
    print(f"PCA of {store.n_rows} rows x {len(res.layers)} layers: "
          f"{time.perf_counter() - t0:.1f} s (cached={res.cached})", file=sys.stderr)
    return root


def serve(root: Path, port: int) -> subprocess.Popen:
    from workbench.cli.dashboard import streamlit_command

    cmd, env = streamlit_command(root, port, headless=True)
    cmd += ["--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start")


def time_page(browser, url: str, figures: int) -> float:
    from workbench.dashboard.testing import exceptions, wait_for_plots, wait_for_script

    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    try:
        t0 = time.perf_counter()
        page.goto(url)
        wait_for_plots(page, figures, timeout_ms=300_000)
        wait_for_script(page, timeout_ms=300_000, start_ms=0)
        seconds = time.perf_counter() - t0
        if exceptions(page):
            raise RuntimeError(f"{url}: {exceptions(page)}")
        return seconds
    finally:
        page.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--root", type=Path, default=Path("runs/bench-dashboard"))
    ap.add_argument("--port", type=int, default=8599)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("DASHBOARD.json"))
    args = ap.parse_args()
    import shutil

    from playwright.sync_api import sync_playwright

    from workbench.dashboard.testing import wait_for_plots  # noqa: F401 - fail early

    root = build(args.root, args.rows)
    exe = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium")
    if exe is None:
        sys.exit("no chromium: apt-get install chromium or set WORKBENCH_CHROMIUM")
    proc = serve(root, args.port)
    base = f"http://127.0.0.1:{args.port}"
    pages = {"projection": 1, "probes": 2}  # layer curves + lat/long map
    results: dict[str, dict[str, float]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic"])
            for name, figs in pages.items():
                cold = time_page(browser, f"{base}/{name}", figs)  # fills the caches
                times = [time_page(browser, f"{base}/{name}", figs) for _ in range(args.repeats)]
                results[name] = {"first_visit_s": round(cold, 3),
                                 "median_s": round(statistics.median(times), 3),
                                 "min_s": round(min(times), 3), "max_s": round(max(times), 3)}
                print(f"{name:>10}: first visit {cold:.2f} s, then median "
                      f"{statistics.median(times):.2f} s (min {min(times):.2f}, max "
                      f"{max(times):.2f}) over {args.repeats}")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    record = {"rows": args.rows, "repeats": args.repeats, "threads": 1, "pages": results,
              "cpu_count": os.cpu_count(), "target_s": 3.0}
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
