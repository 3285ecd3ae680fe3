"""Runs: the activation stores and probe experiments under the runs folder, their manifests,
and a form that starts a new extraction (``workbench extract`` in a subprocess, with progress)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from workbench.dashboard import _cache
from workbench.dashboard._state import allowed_path, runs_dir, shown_errors

st.title("Runs")
root = runs_dir()
found = _cache.scan(root)
if not any(found.values()):
    st.info(
        f"No runs under `{root}` yet. Start an extraction below, or run "
        "`workbench probe run probes/cities_truth.toml`."
    )

if found["damaged"]:
    st.warning(
        f"{len(found['damaged'])} run(s) under `{root}` cannot be opened; each is listed with "
        "what is wrong and how to fix it.",
        icon=":material/warning:",
    )
    st.dataframe(
        pd.DataFrame(found["damaged"]).drop(columns=["path"]), hide_index=True, key="damaged_table"
    )

stores_tab, probes_tab, new_tab = st.tabs(
    ["Activation stores", "Probe experiments", "New extraction"]
)

with stores_tab:
    if found["stores"]:
        table = pd.DataFrame(found["stores"])
        st.dataframe(table.drop(columns=["path"]), hide_index=True, key="stores_table")
        choice = st.selectbox("Manifest of", table["store"], key="runs_store")
        with shown_errors("could not read the store"):
            s = _cache.open_store(table.set_index("store").loc[choice, "path"])
            st.caption(
                f"{len(s)} rows, layers {sorted(s.layers)[:3]}...{sorted(s.layers)[-1:]}, "
                f"poolings {', '.join(s.pooling_names)}, columns {s.columns}"
            )
            st.json(s.manifest, expanded=1)
    else:
        st.caption("no activation stores")

with probes_tab:
    if found["experiments"]:
        exps = pd.DataFrame(found["experiments"])
        st.dataframe(exps.drop(columns=["path"]), hide_index=True, key="experiments_table")
        st.page_link(
            "app_pages/probes.py", label="Open the Probes page", icon=":material/query_stats:"
        )
    else:
        st.caption("no probe experiments (`workbench probe run probes/cities_truth.toml`)")
    if found["grids"]:
        st.subheader("Embedding-quality grids")
        st.dataframe(pd.DataFrame(found["grids"]).drop(columns=["path"]), hide_index=True)


def _bundled() -> list[str]:
    from workbench.models import bundled_models

    return [m.name for m in bundled_models()]


def _datasets() -> list[str]:
    from workbench.data import builtin_datasets

    return list(builtin_datasets())


with new_tab, st.form("extract_form"):
    st.write("Extract per-layer states of a model over a dataset into a resumable store.")
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", _bundled(), key="extract_model")
    dataset = c2.selectbox("Dataset", _datasets(), key="extract_dataset")
    data_file = c2.text_input(
        "or a data file (.csv/.jsonl/.parquet/.conllu)",
        key="extract_file",
        help="inside the runs folder or a `--data-root` folder",
    )
    layers = c1.text_input("Layers", "all", help="'all', '0,15,-1' or '5:20'", key="extract_layers")
    pooling = c1.multiselect(
        "Pooling",
        ["mean", "last", "first", "max", "tokens"],
        default=["mean", "last"],
        key="extract_pooling",
    )
    template = c2.selectbox("Template", ["none", "prompteol", "echo"], key="extract_template")
    limit = c2.number_input(
        "First N rows (0 = all)", min_value=0, value=200, step=100, key="extract_limit"
    )
    out = st.text_input(
        "Output folder",
        "",
        placeholder=f"{root}/<model>-<dataset>",
        key="extract_out",
        help="inside the runs folder or a `--data-root` folder",
    )
    submitted = st.form_submit_button("Extract", type="primary")


def _command(out_dir: Path, data: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "workbench",
        "extract",
        "--model",
        model,
        "--dataset",
        data,
        "--layers",
        layers,
        "--pooling",
        ",".join(pooling),
        "--out",
        str(out_dir),
        "--shard-size",
        "64",
        "--threads",
        "1",
        "--no-progress",
    ]
    if template != "none":
        cmd += ["--template", template]
    if limit:
        cmd += ["--limit", str(int(limit))]
    return cmd


paths_ok = False
if submitted:
    name = f"{model}-{Path(data_file).stem if data_file.strip() else dataset}"
    with new_tab, shown_errors("refused"):
        data = str(allowed_path(data_file, "data file")) if data_file.strip() else dataset
        out_dir = allowed_path(
            out.strip() or name + (f"-{limit}" if limit else ""), "output folder"
        )
        paths_ok = True
if paths_ok:
    if not pooling:
        st.error("pick at least one pooling")
    else:
        cmd = _command(out_dir, data)
        with new_tab, st.status(f"extracting into `{out_dir}` ...", expanded=True) as status:
            st.code(" ".join(cmd[2:]), language="bash")
            bar = st.progress(0.0, text="loading the model ...")
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            log = out_dir.parent / f".{out_dir.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("w") as stderr:
                proc = subprocess.Popen(cmd, stdout=stderr, stderr=subprocess.STDOUT, env=env)
                t0 = time.perf_counter()
                while proc.poll() is None:
                    time.sleep(0.5)
                    manifest = out_dir / "manifest.json"
                    if manifest.is_file():
                        try:
                            n = json.loads(manifest.read_text())["extraction"]["n_shards"]
                        except (ValueError, KeyError):
                            continue
                        done = len(list((out_dir / "shards").glob("[0-9]*.json")))
                        bar.progress(
                            min(done / max(n, 1), 1.0),
                            text=f"{done}/{n} shards, {time.perf_counter() - t0:.0f} s",
                        )
            output = log.read_text()
            if proc.returncode == 0:
                bar.progress(1.0, text="done")
                status.update(label=f"extracted into `{out_dir}`", state="complete")
                st.cache_data.clear()
                st.success(
                    f"store written to `{out_dir}`: see the Activation stores tab "
                    "(rerun the page to refresh)"
                )
            else:
                status.update(label="extraction failed", state="error")
                lines = [x for x in output.splitlines() if x.strip()]
                message = next(
                    (x for x in reversed(lines) if x.startswith("error:")),
                    lines[-1] if lines else f"exit status {proc.returncode}",
                )
                st.error(f"extraction failed: {message}")
            log.unlink(missing_ok=True)
