"""Driving the served dashboard from Playwright (used by the browser test and the benchmark).

Streamlit marks its root element with ``data-test-script-state`` (``running`` /
``notRunning``) and shows a script's exception as ``[data-testid="stException"]``.

Examples:
    >>> from workbench.dashboard.testing import wait_for_script  # doctest: +SKIP
    >>> page.goto(url); wait_for_script(page)                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from typing import Any

#: Chromium flags for headless runs on a machine with no network beyond loopback (without the
#: background-networking flags Chromium keeps trying to reach Google's hosts).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """``$WORKBENCH_CHROMIUM`` or the system ``chromium`` (Debian's package), if any."""
    return (
        os.environ.get("WORKBENCH_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'
PLOT = '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'


def wait_for_script(page: Any, timeout_ms: float = 120_000, start_ms: float = 2_000) -> None:
    """Wait until the app's script has run: it starts within ``start_ms`` (skipped when it
    already finished) and ends within ``timeout_ms``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if start_ms > 0:  # (a Playwright timeout of 0 means "wait forever")
        try:
            page.wait_for_selector(RUNNING, timeout=start_ms, state="attached")
        except PlaywrightTimeout:
            pass
    page.wait_for_selector(IDLE, timeout=timeout_ms, state="attached")


def wait_for_plots(page: Any, count: int, timeout_ms: float = 60_000) -> None:
    """Wait until ``count`` plotly figures have drawn their SVG."""
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length >= n",
        arg=[PLOT, count],
        timeout=timeout_ms,
    )


DRAWN = """() => {
  const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'));
  const drawn = charts.filter(c => c.querySelector(
    '.js-plotly-plot .main-svg .trace, .js-plotly-plot .main-svg .hm, '
    + '.js-plotly-plot .main-svg g.table, .js-plotly-plot canvas.gl-canvas-context'));
  return [charts.length, drawn.length];
}"""


def wait_for_drawn(page: Any, count: int, timeout_ms: float = 60_000) -> None:
    """Wait until at least ``count`` plotly figures are on the page and every one of them has
    drawn its data: SVG traces, a heatmap or table, or a WebGL canvas.

    Stricter than ``wait_for_plots``: a map whose outlines cannot be fetched (scattergeo
    offline) has its ``.main-svg`` frame but never draws its points, and never passes here."""
    page.wait_for_function(
        f"([n]) => {{ const [all, drawn] = ({DRAWN})(); return all >= n && drawn === all; }}",
        arg=[count],
        timeout=timeout_ms,
    )


def exceptions(page: Any) -> list[str]:
    """Texts of the Streamlit exception elements on the page (empty when none)."""
    return [e.inner_text() for e in page.locator(EXCEPTION).all()]


def alerts(page: Any) -> list[str]:
    """Texts of ``st.error`` and ``st.warning`` boxes on the page (``role="alert"``)."""
    return [
        e.inner_text() for e in page.locator('[data-testid="stAlertContainer"][role="alert"]').all()
    ]


def slider(page: Any, label: str) -> Any:
    """The range input of the slider (or select slider) labelled ``label``."""
    return page.locator(f'input[type="range"][aria-label="{label}"]')


def coloured_pixels(page: Any, selector: str) -> int:
    """How many pixels of the first element matching ``selector`` are coloured (the spread of
    the RGB channels is at least 60: points in a palette colour, not text, axes or white), from
    a screenshot: what the user sees, whatever draws it (SVG, a WebGL canvas, an iframe)."""
    import io

    import numpy as np
    from PIL import Image

    png = page.locator(selector).first.screenshot(animations="allow", timeout=30_000)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) >= 60).sum())


def wait_for_pixels(
    page: Any, selector: str, min_pixels: int = 2_000, timeout_ms: float = 60_000
) -> int:
    """Poll ``coloured_pixels`` until at least ``min_pixels`` are coloured (the points are on
    screen); returns the count. Each poll is a screenshot (tens of milliseconds)."""
    import time

    end = time.monotonic() + timeout_ms / 1000
    count = 0
    while time.monotonic() < end:
        if page.locator(selector).count():
            count = coloured_pixels(page, selector)
            if count >= min_pixels:
                return count
        time.sleep(0.05)
    raise TimeoutError(
        f"{selector}: {count} coloured pixels after {timeout_ms / 1000:.0f} s, fewer than "
        f"{min_pixels}: the points were not drawn"
    )
