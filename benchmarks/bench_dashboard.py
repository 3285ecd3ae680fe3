"""Time from page load to rendered figures, measured in a real browser (headless system
Chromium via Playwright) against ``workbench dashboard`` on localhost, for the Projection and
Probes pages, from cached artifacts.

The artifacts: an activation store of N items (default 10 000: the built-in ``world_places``
names, a few layers, last-token pooling, extracted once with the bundled SmolLM2 and reused), a
ridge lat/long probe experiment on it (``run_spec``), and the PCA projection of every layer
(``project_store``, cached on disk under the store). A warm-up visit of each page fills
Streamlit's caches; then the pages are loaded in turn (interleaved), ``--repeats`` rounds, each
visit in a new tab of a fresh browser context (no HTTP cache: every script is downloaded and
compiled again, as on a first visit), timed from navigation until the script is idle and every
plotly figure on the page has drawn its data (SVG traces, heatmap or WebGL canvas:
``workbench.dashboard.testing.wait_for_drawn``). ``--criterion svg`` is the older, weaker end
point of the first records (each figure's ``.main-svg`` frame exists: a scattergeo map whose
outlines cannot be fetched offline passes it without drawing a point).

Two references are timed the same way, to show what no page can go below: ``runs`` (the
dashboard's Runs page: Streamlit's own start-up in the browser and a script, no figure) and
``floor`` (a one-line Streamlit app with a three-point plotly figure: Streamlit's start-up plus
loading and compiling plotly.js, about 4.7 MB of JavaScript).

    .venv/bin/python benchmarks/bench_dashboard.py --rows 10000 --repeats 5
    .venv/bin/python benchmarks/bench_dashboard.py --scatter 10000,100000 --repeats 3
    .venv/bin/python benchmarks/bench_dashboard.py --root RUNS --store NAME --repeats 3

``--store NAME`` times the real Projection page (until its scatter's points are on screen) on an
existing store under ``--root``, e.g. a 39,585-row extraction, against the floor.

``--scatter N,...`` times the Projection page's scatter alone at each size, against the floor in
the same rounds: a one-figure app that draws ``workbench.viz.projection_scatter`` exactly as the
page does (WebGL ``scattergl``, one trace per label, rows as ``customdata``, hover texts cut to
60 characters, ``on_select`` on) over N synthetic 2-D points with 50-character texts. Extracting
100k real rows takes about an hour here; this isolates what the browser must do for N points.

Run on 2 busy cores with ``OMP_NUM_THREADS=1``; prints a table and writes
``benchmarks/DASHBOARD.json`` (with the load average before and after).
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
from typing import Any

from workbench.dashboard.testing import CHROMIUM_ARGS, chromium_path

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
    res = project_store(
        store, "pca", pooling="last", layers=[v for v in sorted(store.layers) if v != 0]
    )
    print(
        f"PCA of {store.n_rows} rows x {len(res.layers)} layers: "
        f"{time.perf_counter() - t0:.1f} s (cached={res.cached})",
        file=sys.stderr,
    )
    return root


def _wait_healthy(proc: subprocess.Popen, port: int) -> subprocess.Popen:
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start")


def serve(root: Path, port: int) -> subprocess.Popen:
    from workbench.cli.dashboard import streamlit_command

    cmd, env = streamlit_command(root, port, headless=True)
    cmd += ["--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return _wait_healthy(proc, port)


FLOOR_APP = """
import plotly.graph_objects as go
import streamlit as st

st.title("floor")
if st.query_params.get("bare") != "1":
    st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 1, 0])))
"""


def serve_floor(folder: Path, port: int) -> subprocess.Popen:
    """The reference app: Streamlit and one three-point plotly figure (``?bare=1``: no
    figure, Streamlit alone, the floor of a page that loads no plotly.js)."""
    return _serve_script(folder / "floor_app.py", FLOOR_APP, port)


def _serve_script(
    app: Path, source: str, port: int, extra_path: str | None = None
) -> subprocess.Popen:
    """``streamlit run`` of ``source`` (written to ``app``), headless on 127.0.0.1:``port``,
    with this checkout importable."""
    app.parent.mkdir(parents=True, exist_ok=True)
    app.write_text(source)
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.headless", "true", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    paths = [str(Path(__file__).resolve().parents[1]), *([extra_path] if extra_path else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return _wait_healthy(proc, port)


SCATTER_APP = """
import os
import sys

import numpy as np
import streamlit as st

n = int(st.query_params.get("n", "10000"))
renderer = st.query_params.get("r", "plotly")
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, n)
xy = rng.normal(size=(n, 2)) + 3.0 * labels[:, None]
texts = [f"The city of Place {i:06d} is in Country {i % 97:02d}, row {i}."[:60] for i in range(n)]
hover = texts if st.query_params.get("text", "1") == "1" else None  # text=0: "row N" only
st.title(f"scatter of {n} points ({renderer})")
if renderer == "plotly":  # the Projection page's figure before issue 14
    from workbench.viz import projection_scatter

    fig = projection_scatter(xy, labels, hover=hover, size=4 if n > 20_000 else 5)
    fig.update_layout(height=560)
    st.plotly_chart(fig, key="scatter", on_select="rerun", selection_mode=("points", "box", "lasso"))
elif renderer == "plotly_ids":  # float32 typed arrays, the hover is the row id
    import plotly.graph_objects as go

    fig = go.Figure([
        go.Scattergl(
            x=xy[labels == k, 0].astype(np.float32), y=xy[labels == k, 1].astype(np.float32),
            customdata=np.flatnonzero(labels == k).astype(np.int32), mode="markers",
            name=f"label {k}", marker={"size": 4 if n > 20_000 else 5},
            hovertemplate="row %{customdata}<extra>%{fullData.name}</extra>",
        )
        for k in (0, 1)
    ])
    fig.update_layout(height=560, template="plotly_white")
    st.plotly_chart(fig, key="scatter", on_select="rerun", selection_mode=("points", "box", "lasso"))
elif renderer == "webgl":  # regl-scatterplot in a component (workbench.dashboard._scatter)
    from workbench.dashboard._scatter import webgl_scatter

    webgl_scatter(xy, labels, hover=hover, key="scatter", point_size=3 if n > 20_000 else 4)
elif renderer == "atlas":  # Embedding Atlas's Streamlit component
    import pandas as pd
    from embedding_atlas.streamlit import embedding_atlas

    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "text": texts, "label": labels.astype(str)})
    embedding_atlas(df, x="x", y="y", text="text", key="scatter")
"""


def serve_scatter(folder: Path, port: int, extra_path: str | None = None) -> subprocess.Popen:
    """The Projection page's scatter alone (``SCATTER_APP``): N points from ``?n=``, the
    renderer from ``?r=`` (``plotly``, ``plotly_ids``, ``webgl``, ``atlas``); ``extra_path``
    is put on the app's ``PYTHONPATH`` (where ``embedding-atlas`` is installed)."""
    return _serve_script(folder / "scatter_app.py", SCATTER_APP, port, extra_path)


#: the element each renderer draws into (a plotly chart, or a component's iframe)
RENDERER_ELEMENT = {
    "plotly": '[data-testid="stPlotlyChart"]',
    "plotly_ids": '[data-testid="stPlotlyChart"]',
    "webgl": "iframe",
    "atlas": "iframe",
}


def time_page(
    browser,
    url: str,
    figures: int,
    criterion: str = "drawn",
    element: str | None = None,
    min_pixels: int = 2_000,
) -> float:
    """Seconds from navigation until ``figures`` (at least) plotly figures are drawn and the
    script is idle, in a new page of a fresh browser context. ``criterion="pixels"``: until
    ``element`` shows ``min_pixels`` coloured pixels (``wait_for_pixels``: points drawn by any
    renderer) and the script is idle."""
    from workbench.dashboard.testing import (
        exceptions,
        wait_for_drawn,
        wait_for_pixels,
        wait_for_plots,
        wait_for_script,
    )

    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    try:
        t0 = time.perf_counter()
        page.goto(url)
        if criterion == "pixels":
            wait_for_pixels(page, element or "body", min_pixels, timeout_ms=300_000)
            wait_for_script(page, timeout_ms=300_000, start_ms=0)
        elif criterion == "svg":
            wait_for_plots(page, figures, timeout_ms=300_000)
            wait_for_script(page, timeout_ms=300_000, start_ms=0)
        else:
            wait_for_drawn(page, figures, timeout_ms=300_000)
            wait_for_script(page, timeout_ms=300_000, start_ms=0)
            wait_for_drawn(page, figures, timeout_ms=300_000)  # figures sent last, drawn too
        seconds = time.perf_counter() - t0
        if exceptions(page):
            raise RuntimeError(f"{url}: {exceptions(page)}")
        return seconds
    finally:
        page.close()


def _stats(cold: float, times: list[float]) -> dict[str, float]:
    return {
        "first_visit_s": round(cold, 3),
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--root", type=Path, default=Path("runs/bench-dashboard"))
    ap.add_argument(
        "--port",
        type=int,
        default=8599,
        help="the dashboard's port (the floor app uses the next one)",
    )
    ap.add_argument(
        "--criterion",
        choices=["drawn", "svg"],
        default="drawn",
        help="drawn: every figure has drawn its data (default); svg: each "
        "figure's frame exists (the first records' end point)",
    )
    ap.add_argument(
        "--no-references", action="store_true", help="skip the Runs page and the floor app"
    )
    ap.add_argument(
        "--scatter",
        default=None,
        metavar="N,N",
        help="time the Projection scatter alone at these point counts against the "
        "floor (no store needed)",
    )
    ap.add_argument(
        "--no-text",
        action="store_true",
        help="with --scatter: also time each size with 'row N' hovers (no texts)",
    )
    ap.add_argument(
        "--renderers",
        default="plotly,plotly_ids,webgl",
        help="with --scatter: which renderers (plotly, plotly_ids, webgl, atlas)",
    )
    ap.add_argument(
        "--atlas-path",
        default=None,
        help="with --scatter: a folder to put on the app's PYTHONPATH where embedding-atlas "
        "is installed (pip install --target)",
    )
    ap.add_argument(
        "--store",
        default=None,
        help="time the Projection page on this existing store under --root (its name there, "
        "e.g. a real extraction of 39,585 places) instead of building the benchmark's runs; "
        "the Probes page is skipped",
    )
    ap.add_argument(
        "--layer", default=None, help="with --store: the layer shown (as in the page's URL)"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("DASHBOARD.json"))
    args = ap.parse_args()
    if args.scatter:
        scatter_main(args)
        return
    import tempfile

    from playwright.sync_api import sync_playwright

    from workbench.dashboard.testing import wait_for_drawn  # noqa: F401 - fail early

    if args.store:
        from workbench.activations import ActivationStore

        root = args.root
        rows = ActivationStore(root / args.store).n_rows
    else:
        root, rows = build(args.root, args.rows), args.rows
    exe = chromium_path()
    if exe is None:
        sys.exit("no chromium: apt-get install chromium or set WORKBENCH_CHROMIUM")
    load_before = os.getloadavg()
    procs = [serve(root, args.port)]
    base = f"http://127.0.0.1:{args.port}"
    # page -> (url, the figures it shows at least); the Projection page until its scatter's
    # points are on screen (coloured pixels: plotly below 5,000 points, the WebGL component
    # above)
    query = f"?store={args.store}" + (f"&layer={args.layer}" if args.layer is not None else "")
    pages = {"projection": (f"{base}/projection{query if args.store else ''}", 1)}
    if not args.store:
        pages["probes"] = (f"{base}/probes", 2)  # layer curves, lat/long map
    scatter = RENDERER_ELEMENT["webgl" if rows > 5_000 else "plotly"]

    def visit(name: str) -> float:
        url, figs = pages[name]
        if name == "projection":
            return time_page(browser, url, 1, "pixels", scatter, 2_000)
        return time_page(browser, url, figs, args.criterion)

    tmp = tempfile.TemporaryDirectory()
    if not args.no_references:
        procs.append(serve_floor(Path(tmp.name), args.port + 1))
        pages |= {"runs": (f"{base}/", 0), "floor": (f"http://127.0.0.1:{args.port + 1}/", 1)}
    times: dict[str, list[float]] = {name: [] for name in pages}
    cold: dict[str, float] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=exe,
                args=CHROMIUM_ARGS,
            )
            for name in pages:  # fills Streamlit's caches
                cold[name] = visit(name)
            for r in range(args.repeats):  # interleaved, the first page rotated each round
                order = list(pages)[r % len(pages) :] + list(pages)[: r % len(pages)]
                for name in order:
                    times[name].append(visit(name))
            browser.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        tmp.cleanup()
    load_after = os.getloadavg()
    results = {name: _stats(cold[name], times[name]) for name in pages}
    for name, r in results.items():
        print(
            f"{name:>10}: first visit {r['first_visit_s']:.2f} s, then median "
            f"{r['median_s']:.2f} s (min {r['min_s']:.2f}, max {r['max_s']:.2f}) over "
            f"{args.repeats}"
        )
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    floor = results.get("floor", {}).get("median_s")
    if floor is not None:
        for name, r in results.items():
            print(f"{name:>10}: {r['median_s'] - floor:+.2f} s over the floor")
    record = {
        "rows": rows,
        "store": args.store,
        "repeats": args.repeats,
        "threads": 1,
        "criterion": f"{args.criterion}; the Projection page: coloured pixels in {scatter}",
        "pages": results,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "target_s": 3.0,
    }
    # earlier records are kept, newest last, under "history"
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record["history"] = old.pop("history", []) + ([old] if old else [])
    args.out.write_text(json.dumps(record, indent=2) + "\n")


def _rounds(
    browser: Any, pages: dict[str, tuple[str, str, int]], repeats: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A warm-up visit per page, then ``repeats`` interleaved rounds (first page rotated);
    ``pages``: name -> (url, the element that draws, its coloured pixels when drawn)."""

    def visit(name: str) -> float:
        url, element, pixels = pages[name]
        return time_page(browser, url, 1, "pixels", element, pixels)

    cold = {name: visit(name) for name in pages}
    times: dict[str, list[float]] = {name: [] for name in pages}
    for r in range(repeats):
        order = list(pages)[r % len(pages) :] + list(pages)[: r % len(pages)]
        for name in order:
            times[name].append(visit(name))
    return cold, times


def scatter_main(args: Any) -> None:
    """``--scatter``: each renderer at each size against the floor, in the same rounds, until
    the points are on screen (coloured pixels in the renderer's element)."""
    import tempfile

    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        sys.exit("no chromium: apt-get install chromium or set WORKBENCH_CHROMIUM")
    sizes = [int(v) for v in args.scatter.split(",")]
    renderers = args.renderers.split(",")
    unknown = sorted(set(renderers) - set(RENDERER_ELEMENT))
    if unknown:
        sys.exit(f"--renderers {unknown}: use some of {sorted(RENDERER_ELEMENT)}")
    tmp = tempfile.TemporaryDirectory()
    load_before = os.getloadavg()
    procs = [serve_floor(Path(tmp.name), args.port + 1)]
    procs.append(serve_scatter(Path(tmp.name), args.port, args.atlas_path))
    base = f"http://127.0.0.1:{args.port}/"
    # the floor's three-point line draws a few hundred coloured pixels; a scatter thousands
    floor_url = f"http://127.0.0.1:{args.port + 1}/"
    pages = {"floor": (floor_url, RENDERER_ELEMENT["plotly"], 200)}
    pages["bare"] = (f"{floor_url}?bare=1", "h1", 0)  # Streamlit alone: its title shown
    for r in renderers:
        for n in sizes:
            pages[f"{r}_{n}"] = (f"{base}?n={n}&r={r}", RENDERER_ELEMENT[r], 2_000)
            if args.no_text:  # "row N" hovers instead of the texts
                pages[f"{r}_{n}_no_text"] = (
                    f"{base}?n={n}&r={r}&text=0",
                    RENDERER_ELEMENT[r],
                    2_000,
                )
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            cold, times = _rounds(browser, pages, args.repeats)
            browser.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        tmp.cleanup()
    load_after = os.getloadavg()
    results = {name: _stats(cold[name], times[name]) for name in pages}
    floor, bare = results["floor"]["median_s"], results["bare"]["median_s"]
    for name, r in results.items():
        extra = "" if name == "floor" else f", {r['median_s'] - floor:+.2f} s over the floor"
        extra += "" if name == "bare" else f" ({r['median_s'] - bare:+.2f} s over bare)"
        print(
            f"{name:>14}: first visit {r['first_visit_s']:.2f} s, then median "
            f"{r['median_s']:.2f} s (min {r['min_s']:.2f}, max {r['max_s']:.2f}) over "
            f"{args.repeats}{extra}"
        )
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    out = args.out.with_name("DASHBOARD_SCATTER.json")
    record = {
        "sizes": sizes,
        "repeats": args.repeats,
        "criterion": "pixels: the renderer's element shows coloured points (wait_for_pixels)",
        "pages": results,
        "over_floor_s": {name: round(r["median_s"] - floor, 3) for name, r in results.items()},
        "over_bare_s": {name: round(r["median_s"] - bare, 3) for name, r in results.items()},
        "references": {
            "floor": "one-line Streamlit app with a 3-point plotly figure (the issue's floor)",
            "bare": "the same app without the figure: Streamlit alone, no plotly.js",
        },
        "renderers": {
            "plotly": "plotly scattergl, one trace per label, 60-character hover texts",
            "plotly_ids": "plotly scattergl, float32 typed arrays, hover = row id",
            "webgl": "regl-scatterplot 1.16 in a Streamlit component (workbench.dashboard."
            "_scatter), bytes transport",
            "atlas": "embedding-atlas's Streamlit component",
        },
        "targets_over_floor_s": {"10000": 2.0, "100000": 4.0},
        "cpu_count": os.cpu_count(),
        "threads": 1,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    old = json.loads(out.read_text()) if out.is_file() else {}
    record["history"] = old.pop("history", []) + ([old] if old else [])
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
