"""Formatting a probe experiment's ``summary.json`` (written by ``run_spec``): the best-layers
table, the generalisation grid and the Markdown report. The CLI and the dashboard show runs
with these.

Examples:
    >>> from workbench.probing import report
    >>> summary = report.load_summary("runs/cities_truth")  # doctest: +SKIP
    >>> report.summary_rows(summary)[0]["best layer"]  # doctest: +SKIP
    '19 (last)'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import RunFolderError


def load_summary(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``summary.json`` of a probe experiment folder (what ``run_spec`` returned).

    Raises:
        RunFolderError: the folder has no ``summary.json``.
    """
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise RunFolderError(
            f"{folder} has no summary.json: pick a folder written by "
            "`workbench probe run` (or rerun the spec)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summary_rows(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row of readable cells per probe kind (used by the report and the CLI)."""
    rows = []
    for kind, s in summary["kinds"].items():
        b = s["by_score"]
        ci = f" [{_fmt(b.get('low'))}, {_fmt(b.get('high'))}]" if "low" in b else ""
        row = {
            "probe": kind,
            "metric": s["metric"],
            "best layer": f"{b['layer']} ({b['pooling']})",
            "score": f"{_fmt(b['value'])}{ci}",
            "baseline": f"{_fmt(s['baseline']['value'])} ({s['baseline']['name']})"
            if "baseline" in s
            else "-",
            "control at best": _fmt(s.get("control_at_best", {}).get("value")),
            "random weights at best": _fmt(s["random_weights_at_best"]["value"])
            if "random_weights_at_best" in s
            else "-",
            "best selectivity": f"{_fmt(s['by_selectivity']['value'])} (layer "
            f"{s['by_selectivity']['layer']})"
            if "by_selectivity" in s
            else "-",
            "best MDL": f"layer {s['by_codelength']['layer']}: "
            f"{s['by_codelength']['codelength_bits']:.0f} bits, compression "
            f"{s['by_codelength']['compression']:.2f}"
            if "by_codelength" in s
            else "-",
        }
        if "median_km_at_best" in s:
            row["median km at best"] = f"{s['median_km_at_best']['value']:.0f}"
        rows.append(row)
    return rows


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r.get(k, "-") for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def generalisation_grid(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Test names and ``[train, cell...]`` rows of the best accuracy (layer) per pair."""
    pairs = summary.get("generalisation", {}).get("best_per_pair", [])
    names = list(dict.fromkeys([p["train"] for p in pairs] + [p["test"] for p in pairs]))
    cell = {(p["train"], p["test"]): f"{p['accuracy']:.3f} (L{p['layer']})" for p in pairs}
    return names, [[a, *[cell.get((a, b), "-") for b in names]] for a in names]


def target_text(target: Any) -> str:
    """A target as shown: one column's name, or the columns joined by commas."""
    if isinstance(target, (list, tuple)):
        return target[0] if len(target) == 1 else ", ".join(map(str, target))
    return str(target)


def markdown(s: Mapping[str, Any]) -> str:
    """``report.md`` of a summary: setup, best layers, generalisation, causal check, timing,
    figures and notes."""
    ev = s["evaluation"]
    if ev["split"]:
        scheme = f"one split (test rows: {ev['split']})"
    else:
        scheme = f"{ev['cv']}-fold cross-validation" + (
            f" grouped by {ev['groups']}" if ev["groups"] else ""
        )
    m, d, st = s["model"], s["dataset"], s["store"]
    lines = [f"# {s['name']}", ""]
    if s["description"]:
        lines += [s["description"].strip(), ""]
    lines += [
        f"- spec: `{s['spec']}`",
        f"- model: {m['name']} ({m['n_layers']} blocks, d_model {m['d_model']}, {m['dtype']})",
        f"- dataset: {d['name']}, {d['n_rows']} rows"
        + (f" (limit {d['limit']})" if d["limit"] else "")
        + f"; {d['source']}",
        f"- target: {target_text(s['target'])} ({s['task']}"
        + (f", classes {s['classes']}" if s["classes"] else "")
        + f"), {s['n_rows']} rows probed",
        f"- store: `{st['path']}` ({'reused' if st['reused'] else 'extracted'}; "
        f"{st['hook_points']} hook points, poolings {', '.join(st['poolings'])})",
        f"- evaluation: {scheme}; control task: "
        + (f"yes (types: {ev['control_types'] or 'each row'})" if ev["control"] else "no")
        + f"; MDL: {'online code' if ev['mdl'] else 'no'}; {ev['n_boot']} bootstrap resamples "
        "for 95% CIs",
        "",
        "## Best layers",
        "",
        _md_table(summary_rows(s)),
        "",
        "Score and CI at the best layer by score; the baseline predicts the training folds' "
        "majority class (or mean); selectivity is task minus control-task score (Hewitt & Liang); "
        "random weights: the same probe on the same architecture re-initialised at random.",
        "",
    ]
    if "generalisation" in s:
        names, grid = generalisation_grid(s)
        lines += [
            "## Generalisation",
            "",
            f"Accuracy of a {s['generalisation']['probe']} probe trained on the row's "
            "dataset and tested on the column's, at the best layer per pair (diagonal: "
            "cross-validated).",
            "",
            "| train \\ test | " + " | ".join(names) + " |",
            "|" + "---|" * (len(names) + 1),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in grid]
        lines.append("")
    if "causal" in s:
        c = s["causal"]
        t0, t1 = c["targets"]
        lines += [
            "## Causal check",
            "",
            f"Steering along the {c['probe']} direction ({c['pooling']} pooling) while the "
            f"model reads `{c['template']}`: mean change in log P({t0!r}) - log P({t1!r}) "
            "at the extreme alphas (units of the layer's residual norm), and the largest KL "
            "divergence of next-token distributions on unrelated prompts.",
            "",
            "| layer | alpha min: change | alpha max: change | monotone | ablation: change "
            "| max KL unrelated |",
            "|---|---|---|---|---|---|",
        ]
        for e in c["layers"]:
            lo = f"{e['alpha_min']:+g}: {e['delta_at_alpha_min']:+.3f}" if "alpha_min" in e else "-"
            hi = f"{e['alpha_max']:+g}: {e['delta_at_alpha_max']:+.3f}" if "alpha_max" in e else "-"
            mono = ("yes" if e["monotone"] else "no") if "monotone" in e else "-"
            ab = f"{e['delta_ablate']:+.3f}" if "delta_ablate" in e else "-"
            lines.append(
                f"| {e['layer']} | {lo} | {hi} | {mono} | {ab} | {e['max_kl_unrelated']:.4f} |"
            )
        lines.append("")
    lines += ["## Timing", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timing_s"].items()]
    lines.append("")
    if s["figures"]:
        lines += ["## Figures", ""] + [f"- [{f}]({f})" for f in s["figures"]] + [""]
    if s["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in s["notes"]] + [""]
    return "\n".join(lines)


__all__ = ["generalisation_grid", "load_summary", "markdown", "summary_rows", "target_text"]
