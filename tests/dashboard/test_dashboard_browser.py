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


# pixel positions (page coordinates) of every point of the base traces of the first scatter,
# with the row each one carries (customdata); overlay traces (rings) are left out
POINTS_JS = """() => {
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const box = gd.getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const rings = ['search matches', 'selection', 'neighbours', 'current item'];
  const out = [];
  for (const tr of gd._fullData) {
    if (rings.includes(tr.name)) continue;
    for (let i = 0; i < tr.x.length; i++) {
      out.push([box.left + xa._offset + xa.l2p(tr.x[i]), box.top + ya._offset + ya.l2p(tr.y[i]),
                Number(tr.customdata[i])]);
    }
  }
  return out;
}"""


def _selection_size(page) -> int | None:
    heading = page.get_by_role("heading", name="Selection:")
    if not heading.count():
        return None
    return int(heading.first.inner_text().split(":")[1].split("item")[0])


def test_projection_fast_slider_never_raises(page, served_app) -> None:
    _open(page, served_app, "projection")
    wait_for_drawn(page, 1)
    layer = slider(page, "Layer")
    layer.focus()
    for key in ["ArrowRight"] * 4 + ["ArrowLeft"] * 6 + ["ArrowRight"] * 3:  # no waiting
        page.keyboard.press(key)
    wait_for_script(page)
    wait_for_drawn(page, 1)
    _clean(page, "Projection after fast slider moves")


def test_projection_click_selects_exactly_that_row(page, served_app, artifacts) -> None:
    import numpy as np

    _open(page, served_app, "projection")
    wait_for_drawn(page, 1)
    _click_isolated_point(page, np.asarray(page.evaluate(POINTS_JS)))
    _clean(page, "Projection after a click")
    _shot(page, artifacts, "projection_click")


def _click_isolated_point(page, pts) -> None:
    """Click the most isolated of ``pts`` ``[n, 3]`` (page x, y, row), so the click cannot land
    on a neighbour; the page must then show exactly that row selected and open."""
    import numpy as np

    d = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
    np.fill_diagonal(d, np.inf)
    x, y, row = pts[int(np.argmax(d.min(axis=1)))]
    page.mouse.move(x - 8, y - 8)
    page.mouse.move(x, y, steps=4)  # hover first: WebGL traces pick the point on hover
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    wait_for_script(page)
    page.get_by_text(f"row {int(row)} (layer").wait_for()
    wait_for_script(page)
    assert _selection_size(page) == 1
    table = page.locator('[data-testid="stDataFrame"]').first
    assert table.is_visible()
    assert page.get_by_label("Row (or click a point above)").input_value() == str(int(row))


def _edge_distance(corners, points):
    """``[n]`` distance of each point to the closed polygon's edges (pixels)."""
    import numpy as np

    a, b = corners, np.roll(corners, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    nearest = a + t[..., None] * ab
    return np.linalg.norm(points[:, None] - nearest, axis=-1).min(axis=1)


def test_projection_lasso_selects_the_points_inside(page, served_app, artifacts) -> None:
    import numpy as np

    _open(page, served_app, "projection")
    wait_for_drawn(page, 1)
    page.locator(
        '[data-testid="stPlotlyChart"] .modebar-btn[data-title="Lasso Select"]'
    ).first.click()
    inside = _draw_lasso(page, np.asarray(page.evaluate(POINTS_JS)))
    page.get_by_role("heading", name=f"Selection: {len(inside)} items", exact=True).wait_for()
    wait_for_script(page)
    rows = page.evaluate("""() => {
      const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
      const ring = gd._fullData.find(t => t.name === 'selection');
      return ring ? Array.from(ring.customdata, Number) : [];
    }""")
    assert set(rows) == inside
    _clean(page, "Projection after a lasso")
    _shot(page, artifacts, "projection_lasso")


def _draw_lasso(page, pts) -> set[int]:
    """Drag a lasso around the middle of ``pts`` ``[n, 3]`` (page x, y, row): an octagon, at
    least 80 px tall, scaled so that no point lies within 6 px of its edges (the browser's
    lasso path is sampled from mouse moves). Returns the rows inside; waits for the rerun."""
    import numpy as np
    from matplotlib.path import Path as Polygon

    cx, cy = np.median(pts[:, 0]), np.median(pts[:, 1])
    rx = max((np.percentile(pts[:, 0], 80) - np.percentile(pts[:, 0], 20)) / 2, 40.0)
    ry = max((np.percentile(pts[:, 1], 80) - np.percentile(pts[:, 1], 20)) / 2, 40.0)
    angles = np.linspace(0, 2 * np.pi, 9)[:-1]
    for scale in (1.0, 0.9, 1.1, 0.8, 1.2, 0.7, 1.3, 0.6, 1.4):
        corners = np.column_stack(
            [cx + scale * rx * np.cos(angles), cy + scale * ry * np.sin(angles)]
        )
        if _edge_distance(corners, pts[:, :2]).min() > 6:
            break
    inside = {int(r) for r in pts[Polygon(corners).contains_points(pts[:, :2]), 2]}
    assert len(inside) >= 2
    page.mouse.move(*corners[0])
    page.mouse.down()
    for corner in [*corners[1:], corners[0]]:
        page.mouse.move(*corner, steps=6)
    page.mouse.up()
    wait_for_script(page)
    return inside


def _open_webgl(page, url: str):
    """The Projection page with the WebGL scatter (``?renderer=webgl``), drawn; returns the
    component's frame and the page position of each point with its row ``[n, 3]``."""
    import numpy as np

    page.goto(f"{url}/projection?renderer=webgl")
    page.get_by_role("heading", name="Projection", exact=True).first.wait_for()
    wait_for_script(page)
    frame = page.frame_locator("iframe").first
    frame.locator("body[data-drawn]").wait_for(state="attached")
    box = page.locator("iframe").first.bounding_box()
    pts = np.asarray(frame.locator("body").evaluate("() => window.__scatter.points()"))
    return frame, pts + [box["x"], box["y"], 0]


def test_webgl_scatter_click_selects_exactly_that_row(page, served_app, artifacts) -> None:
    _frame, pts = _open_webgl(page, served_app)
    _click_isolated_point(page, pts)
    _clean(page, "Projection (WebGL) after a click")
    _shot(page, artifacts, "projection_webgl_click")


def test_webgl_scatter_lasso_selects_the_points_inside(page, served_app, artifacts) -> None:
    frame, pts = _open_webgl(page, served_app)
    frame.get_by_role("button", name="Lasso").click()
    inside = _draw_lasso(page, pts)
    page.get_by_role("heading", name=f"Selection: {len(inside)} items", exact=True).wait_for()
    wait_for_script(page)
    assert set(frame.locator("body").evaluate("() => window.__scatter.selected()")) == inside
    _clean(page, "Projection (WebGL) after a lasso")
    _shot(page, artifacts, "projection_webgl_lasso")
