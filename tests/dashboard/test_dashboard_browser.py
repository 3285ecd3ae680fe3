"""The dashboard in a real browser: ``workbench dashboard`` served on a free localhost port,
headless system Chromium driven by Playwright. Every page opens without a Streamlit exception;
the layer slider moves, a text is typed, a point is selected; screenshots go to
``test-artifacts/`` (``$WORKBENCH_TEST_ARTIFACTS``)."""

from __future__ import annotations

import pytest

from workbench.dashboard.testing import (
    alerts,
    exceptions,
    slider,
    wait_for_drawn,
    wait_for_plots,
    wait_for_script,
)

pytestmark = pytest.mark.slow
PAGES = {
    "": "Runs",
    "probes": "Probes",
    "projection": "Projection",
    "lens": "Lens",
    "inversion": "Inversion",
    "attribution": "Attribution",
    "pooling_lab": "Pooling lab",
}


@pytest.fixture(scope="module")
def page(browser, served_app):
    p = browser.new_page(viewport={"width": 1400, "height": 2600})
    p.set_default_timeout(120_000)
    yield p
    p.close()


def _open(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=PAGES[path], exact=True).first.wait_for()
    wait_for_script(page)


def _clean(page, where: str) -> None:
    assert exceptions(page) == [], f"Streamlit exception on {where}"
    assert alerts(page) == [], f"error box on {where}"


def _step_layer(page, key: str) -> None:
    """Move the slider labelled "Layer" one step with the keyboard; the page reruns."""
    layer = slider(page, "Layer")
    before = layer.get_attribute("aria-valuetext")
    layer.focus()
    page.keyboard.press(key)
    wait_for_script(page)
    assert layer.get_attribute("aria-valuetext") != before


def _shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"dashboard_{name}.png"), full_page=True)


def test_server_listens_on_loopback_only(page, served_app) -> None:
    """``workbench dashboard`` without ``--host`` binds 127.0.0.1 (no other interface), and
    the browser reaches it there."""
    psutil = pytest.importorskip("psutil")
    port = int(served_app.rsplit(":", 1)[1])
    listening = {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    assert listening == {"127.0.0.1"}
    _open(page, served_app, "")


def test_every_page_opens(page, served_app, artifacts) -> None:
    for path, title in PAGES.items():
        _open(page, served_app, path)
        if path in ("probes", "projection", "lens", "attribution"):
            wait_for_plots(page, 1)
        _clean(page, title)
        _shot(page, artifacts, path or "runs")


def test_probes_layer_slider(page, served_app, artifacts) -> None:
    _open(page, served_app, "probes")
    wait_for_drawn(page, 3)  # curves, generalisation, confusion matrix
    _step_layer(page, "ArrowLeft")  # the "One layer" slider
    wait_for_drawn(page, 3)
    _clean(page, "Probes after moving the layer slider")
    _shot(page, artifacts, "probes_layer")
    page.get_by_role("tab", name="Selectivity").click()  # a lazy tab: the page reruns
    wait_for_script(page)
    page.get_by_text("selectivity: task accuracy").wait_for()
    wait_for_drawn(page, 3)
    _clean(page, "Probes on the selectivity tab")


def test_probes_latlon_map_draws(page, served_app, artifacts) -> None:
    """The lat/long map draws its places in the browser (no CDN needed), every figure drawn."""
    _open(page, served_app, "probes")
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').click()
    page.get_by_role("option", name="tiny_places").click()
    wait_for_script(page)
    page.get_by_text("predicted vs true location").wait_for()
    wait_for_drawn(page, 2)  # curves, map
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(
        has_text="predicted vs true location"
    )
    assert chart.locator(".scatterlayer .trace .point").count() > 0
    _clean(page, "Probes with the lat/long map")
    _shot(page, artifacts, "probes_latlon")


def test_lens_typed_prompt(page, served_app, artifacts) -> None:
    _open(page, served_app, "lens")
    box = page.get_by_label("Prompt")
    box.fill("The capital of France is")
    box.press("Enter")
    wait_for_script(page)
    wait_for_plots(page, 1)
    _clean(page, "Lens after typing a prompt")
    assert "France" in page.locator('[data-testid="stPlotlyChart"]').first.inner_text()
    _shot(page, artifacts, "lens_typed")


def test_projection_select_point(page, served_app, artifacts) -> None:
    _open(page, served_app, "projection")
    wait_for_plots(page, 1)
    _step_layer(page, "ArrowRight")
    wait_for_plots(page, 1)
    _clean(page, "Projection after moving the layer slider")
    # box-select around the middle of the plot area: the selection reruns the page with a row
    area = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first
    box = area.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    wait_for_script(page)
    page.get_by_text("Top next tokens read at layer").wait_for()  # an item is shown
    wait_for_script(page)
    _clean(page, "Projection after selecting points")
    _shot(page, artifacts, "projection_selected")
