"""Writing figures: HTML always, PNG when kaleido and a Chromium are available."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _browser() -> str | None:
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).is_file():
        return env
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def png_available() -> tuple[bool, str]:
    """Whether PNG export can work here, and why not when it cannot."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, "kaleido is not installed (pip install 'workbench[viz]')"
    if _browser() is None:
        return False, (
            "no Chromium found (apt-get install -y chromium, or set BROWSER_PATH to a "
            "Chrome/Chromium executable)"
        )
    return True, ""


def write_figure(fig: Any, path: str | os.PathLike[str], *, png: bool = True) -> list[Path]:
    """Write ``fig`` to ``path.html`` (always) and ``path.png`` (when kaleido and Chromium are
    available; otherwise a warning says why). Returns the files written."""
    base = Path(path)
    if base.suffix in (".html", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    written = [base.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs=True)  # self-contained: opens offline
    if png:
        ok, why = png_available()
        if not ok:
            warnings.warn(f"PNG skipped: {why}; the HTML figure was written", stacklevel=2)
            return written
        os.environ.setdefault("BROWSER_PATH", _browser() or "")
        try:
            fig.write_image(base.with_suffix(".png"), scale=2)
            written.append(base.with_suffix(".png"))
        except Exception as exc:  # kaleido/Chromium failures are environment problems
            warnings.warn(
                f"PNG skipped: kaleido could not render ({exc}); the HTML figure was written",
                stacklevel=2,
            )
    return written
