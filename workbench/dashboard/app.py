"""workbench dashboard: ``streamlit run workbench/dashboard/app.py`` (or ``workbench dashboard``).

Pages live in ``app_pages/`` and are routed by ``st.navigation``; every computation is a library
call (``workbench.probing``, ``workbench.evaluation``, ``workbench.projection``, ...).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from workbench.dashboard._state import runs_dir

HERE = Path(__file__).parent

st.set_page_config(page_title="workbench", page_icon=":material/biotech:", layout="wide")

pages = {
    "Runs": [
        st.Page(
            HERE / "app_pages/runs.py", title="Runs", icon=":material/folder_open:", default=True
        ),
    ],
    "Explore": [
        st.Page(HERE / "app_pages/probes.py", title="Probes", icon=":material/query_stats:"),
        st.Page(
            HERE / "app_pages/projection.py", title="Projection", icon=":material/scatter_plot:"
        ),
        st.Page(HERE / "app_pages/lens.py", title="Lens", icon=":material/grid_on:"),
        st.Page(HERE / "app_pages/inversion.py", title="Inversion", icon=":material/undo:"),
        st.Page(
            HERE / "app_pages/attribution.py", title="Attribution", icon=":material/highlight:"
        ),
        st.Page(HERE / "app_pages/pooling_lab.py", title="Pooling lab", icon=":material/science:"),
    ],
}
nav = st.navigation(pages)
st.sidebar.caption(f"runs folder: `{runs_dir()}`")
nav.run()
