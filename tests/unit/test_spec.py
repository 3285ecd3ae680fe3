"""Experiment specs: parsing, errors, overrides, and an end-to-end run on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import SpecError
from workbench.probing import ProbeSpec, apply_overrides, load_spec, parse_spec, run_spec

REPO = Path(__file__).resolve().parents[2]

VALID = """
name = "toy"
description = "a toy spec"
seed = 3

[model]
spec = "smollm2-135m"

[dataset]
spec = "cities"
limit = 40
options = { pairs = true }

[extract]
layers = [0, 5, -1]
pooling = "last"
threads = 1

[probe]
kind = ["logistic", "mass_mean"]
target = "label"
C = 2

[evaluation]
cv = 4
groups = "city"
control_types = "city"
mdl = true
n_boot = 10
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_spec_parses_into_frozen_dataclasses(tmp_path):
    spec = load_spec(write(tmp_path, VALID))
    assert isinstance(spec, ProbeSpec)
    assert spec.name == "toy" and spec.seed == 3
    assert spec.dataset.options == {"pairs": True} and spec.dataset.limit == 40
    assert spec.extract.layers == (0, 5, -1) and spec.extract.pooling == ("last",)
    assert spec.probe.kind == ("logistic", "mass_mean") and spec.probe.C == 2.0
    assert spec.evaluation.cv == 4 and spec.evaluation.mdl and spec.evaluation.control
    assert spec.generalisation is None and spec.outputs.figures
    assert spec.out_dir == Path("runs/toy") and spec.store_dir == Path("runs/toy/store")
    with pytest.raises(AttributeError):
        spec.seed = 4  # type: ignore[misc]
    assert parse_spec(spec.to_dict(), spec.path) == spec  # round trip


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            VALID.replace("cv = 4", "cvv = 4"),
            ["unknown key 'cvv'", "[evaluation]", "did you mean 'cv'", "n_boot", "control_types"],
        ),
        (
            VALID.replace("[evaluation]", "[evalution]"),
            ["unknown key 'evalution'", "did you mean 'evaluation'", "generalisation", "outputs"],
        ),
        (
            VALID.replace("layers = [0, 5, -1]", "layer = [0, 5, -1]"),
            ["did you mean 'layers'", "storage_dtype"],
        ),
    ],
)
def test_unknown_key_lists_valid_keys_and_suggests(tmp_path, text, needles):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "needles"),
    [
        ("cv = 4", 'cv = "five"', ["evaluation.cv", "an integer", "'five'"]),
        ("mdl = true", "mdl = 1", ["evaluation.mdl", "true or false"]),
        ('target = "label"', "target = 3", ["probe.target", "a string or a list"]),
        ('kind = ["logistic", "mass_mean"]', 'kind = ["logistc"]', ["did you mean 'logistic'"]),
        ("cv = 4", "cv = 1", ["at least 2"]),
    ],
)
def test_wrong_type_or_value_is_a_spec_error(tmp_path, old, new, needles):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, VALID.replace(old, new)))
    for needle in needles:
        assert needle in str(info.value)


def test_missing_dataset_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match=r"no \[dataset\]"):
        load_spec(write(tmp_path, 'name = "x"\n'))
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "name = \n"))
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_overrides_are_checked_like_the_file(tmp_path):
    spec = load_spec(write(tmp_path, VALID))
    changed = apply_overrides(
        spec, {"dataset.limit": 8, "extract": {"layers": "all"}, "outputs.dir": str(tmp_path / "o")}
    )
    assert changed.dataset.limit == 8 and changed.extract.layers == "all"
    assert changed.store_dir == tmp_path / "o" / "store"
    with pytest.raises(SpecError, match="did you mean 'limit'"):
        apply_overrides(spec, {"dataset.limt": 8})
    with pytest.raises(SpecError, match="not a section"):
        apply_overrides(spec, {"datset.limit": 8})


def test_shipped_specs_parse():
    specs = sorted((REPO / "probes").glob("*.toml"))
    assert {p.stem for p in specs} >= {
        "cities_truth",
        "neg_cities_generalisation",
        "world_places_latlon",
        "ud_upos",
    }
    for path in specs:
        spec = load_spec(path)
        assert spec.name == path.stem
    assert load_spec(REPO / "probes" / "ud_upos.toml").probe.level == "token"


def test_probe_standardize_and_dropna_keys(tmp_path):
    spec = load_spec(write(tmp_path, VALID))
    assert spec.probe.standardize is True and spec.probe.dropna is False  # the defaults
    text = VALID.replace('target = "label"', 'target = "label"\nstandardize = false\ndropna = true')
    spec = load_spec(write(tmp_path, text))
    assert spec.probe.standardize is False and spec.probe.dropna is True
    assert parse_spec(spec.to_dict(), spec.path) == spec
    with pytest.raises(SpecError) as info:
        load_spec(
            write(tmp_path, VALID.replace('target = "label"', 'target = "label"\ndropna = "yes"'))
        )
    assert "probe.dropna" in str(info.value) and "true or false" in str(info.value)
    with pytest.raises(SpecError, match="did you mean 'standardize'"):
        load_spec(
            write(
                tmp_path, VALID.replace('target = "label"', 'target = "label"\nstandardise = false')
            )
        )


def test_docs_list_every_spec_key():
    """docs/specs.md documents every section and key of the schema."""
    from workbench.probing._spec import _SECTIONS, _keys

    text = (REPO / "docs" / "specs.md").read_text(encoding="utf-8")
    for section, model in _SECTIONS.items():
        assert f"[{section}]" in text, section
        for key in _keys(model):
            assert f"`{key}`" in text, f"[{section}] {key}"


# -- end to end on a tiny random model ------------------------------------------------------------

CITIES = [
    "Paris",
    "Lima",
    "Oslo",
    "Rome",
    "Cairo",
    "Tokyo",
    "Quito",
    "Dakar",
    "Hanoi",
    "Bern",
    "Madrid",
    "Lagos",
    "Seoul",
    "Delhi",
    "Dublin",
    "Havana",
    "Nairobi",
    "Ottawa",
    "Riga",
    "Accra",
]
COUNTRIES = [
    "France",
    "Peru",
    "Norway",
    "Italy",
    "Egypt",
    "Japan",
    "Ecuador",
    "Senegal",
    "Vietnam",
    "Switzerland",
    "Spain",
    "Nigeria",
    "Korea",
    "India",
    "Ireland",
    "Cuba",
    "Kenya",
    "Canada",
    "Latvia",
    "Ghana",
]


def write_csv(path: Path, negate: bool = False) -> Path:
    """40 rows: each of 20 cities with its country (true) and another one (false)."""
    lines = ["text,label,group"]
    verb = "is not in" if negate else "is in"
    for i, city in enumerate(CITIES):
        for k, country in enumerate([COUNTRIES[i], COUNTRIES[(i + 7) % len(COUNTRIES)]]):
            label = int((k == 0) != negate)
            lines.append(f"The city of {city} {verb} {country}.,{label},{city}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_spec(tmp_path: Path, model_folder: str) -> str:
    a, b = write_csv(tmp_path / "cities.csv"), write_csv(tmp_path / "neg.csv", negate=True)
    return f"""
name = "tiny"
[model]
spec = "{model_folder}"
[dataset]
spec = "{a}"
[extract]
layers = "all"
pooling = ["last", "mean"]
threads = 1
[probe]
kind = ["logistic", "mass_mean"]
target = "label"
[evaluation]
cv = 4
groups = "group"
control_types = "group"
mdl = true
n_boot = 20
[generalisation]
datasets = ["{a}", "{b}"]
[outputs]
png = false
"""


def test_run_spec_end_to_end_is_deterministic(tmp_path, tiny_llama):
    pytest.importorskip("plotly")
    spec = load_spec(write(tmp_path, tiny_spec(tmp_path, tiny_llama.source)))
    out1 = run_spec(spec, overrides={"outputs.dir": str(tmp_path / "run1")}, progress=False)
    for name in [
        "results.csv",
        "summary.json",
        "report.md",
        "spec.json",
        "generalisation.csv",
        "probes/logistic/probes.safetensors",
        "probes/logistic/probes.json",
        "probes/mass_mean/probes.json",
        "probes/logistic/mdl.csv",
        "figures/layers_logistic.html",
        "figures/layers_mass_mean.html",
        "figures/generalisation.html",
        "store/manifest.json",
    ]:
        assert (out1 / name).is_file(), name
    import pandas as pd

    table = pd.read_csv(out1 / "results.csv")
    assert set(table.labels) == {"task", "control", "majority"}
    assert set(table.probe) == {"logistic", "mass_mean", "majority"}
    assert set(table.layer.dropna().astype(int)) == {0, 1, 2, 3}
    assert set(table.pooling.dropna()) == {"last", "mean"}
    summary = json.loads((out1 / "summary.json").read_text())
    assert set(summary["kinds"]) == {"logistic", "mass_mean"}
    for kind in summary["kinds"].values():
        assert {"by_score", "by_selectivity", "by_codelength", "baseline"} <= set(kind)
    pairs = summary["generalisation"]["best_per_pair"]
    assert len(pairs) == 4 and all(0 <= p["accuracy"] <= 1 for p in pairs)
    gen = pd.read_csv(out1 / "generalisation.csv")
    assert list(gen.columns) == ["train", "test", "layer", "hook_point", "accuracy"]
    assert len(gen) == 2 * 2 * 4
    report = (out1 / "report.md").read_text()
    assert "## Best layers" in report and "## Generalisation" in report
    assert summary["store"]["reused"] is False

    # a second run in another folder (fresh extraction) gives the same results.csv
    out2 = run_spec(
        spec,
        overrides={"outputs.dir": str(tmp_path / "run2"), "outputs.figures": False},
        progress=False,
    )
    assert (out1 / "results.csv").read_bytes() == (out2 / "results.csv").read_bytes()
    assert (out1 / "generalisation.csv").read_bytes() == (out2 / "generalisation.csv").read_bytes()
    # and re-running in place reuses the store
    run_spec(
        spec,
        overrides={"outputs.dir": str(tmp_path / "run1"), "outputs.figures": False},
        progress=False,
    )
    assert json.loads((out1 / "summary.json").read_text())["store"]["reused"] is True
    assert (out1 / "results.csv").read_bytes() == (out2 / "results.csv").read_bytes()


def test_generalisation_diagonal_is_the_cv_accuracy(tmp_path, tiny_llama):
    import workbench as wb
    from workbench.probing import generalisation_matrix, sweep

    stores = {
        "a": wb.extract(
            tiny_llama,
            str(write_csv(tmp_path / "a.csv")),
            layers=[1, 3],
            pooling="last",
            out=tmp_path / "sa",
            progress=False,
        ),
        "b": wb.extract(
            tiny_llama,
            str(write_csv(tmp_path / "b.csv", negate=True)),
            layers=[1, 3],
            pooling="last",
            out=tmp_path / "sb",
            progress=False,
        ),
    }
    df = generalisation_matrix(stores, "label", probe="mass_mean", cv=4, groups="group")
    assert len(df) == 8 and list(df.train.unique()) == ["a", "b"]
    ref = sweep(
        stores["a"],
        "label",
        probe="mass_mean",
        cv=4,
        groups="group",
        control=False,
        n_boot=0,
        layers=[1, 3],
    )
    diag = df[(df.train == "a") & (df.test == "a")].accuracy.to_numpy()
    np.testing.assert_allclose(diag, ref.curve("accuracy").value.to_numpy())
    with pytest.raises(ValueError, match="cannot be scored by accuracy"):
        generalisation_matrix(stores, "label", probe="ridge")


def test_figures_are_pure_functions():
    pytest.importorskip("plotly")
    import pandas as pd

    from workbench.viz import generalisation_heatmap, latlon_map, layer_curves

    rows = []
    for layer in range(3):
        for labels, value in (("task", 0.6 + 0.1 * layer), ("control", 0.5)):
            rows.append(
                {
                    "pooling": "last",
                    "hook_point": f"h{layer}",
                    "layer": layer,
                    "probe": "logistic",
                    "labels": labels,
                    "metric": "accuracy",
                    "value": value,
                    "low": value - 0.05,
                    "high": value + 0.05,
                }
            )
    rows.append(
        {
            "pooling": None,
            "hook_point": None,
            "layer": None,
            "probe": "majority",
            "labels": "majority",
            "metric": "accuracy",
            "value": 0.5,
            "low": 0.45,
            "high": 0.55,
        }
    )
    fig = layer_curves(pd.DataFrame(rows))
    assert [t.name for t in fig.data] == ["logistic 95% CI", "logistic", "logistic control task"]
    with pytest.raises(KeyError, match="accuracy"):
        layer_curves(pd.DataFrame(rows), metric="r2")
    gen = pd.DataFrame(
        {
            "train": ["a", "a", "b", "b"] * 2,
            "test": ["a", "b"] * 4,
            "layer": [1] * 4 + [2] * 4,
            "hook_point": ["x"] * 8,
            "accuracy": [0.9, 0.6, 0.7, 0.8, 0.95, 0.5, 0.6, 0.85],
        }
    )
    assert generalisation_heatmap(gen).data[0].z[0][0] == 0.95
    assert generalisation_heatmap(gen, layer=1).data[0].z[0][1] == 0.6
    true = np.array([[48.9, 2.35], [-12.0, -77.0]])
    fig = latlon_map(true, true + 1.0, labels=["Paris", "Lima"])
    assert len(fig.data) == 3
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        latlon_map(true, true[:, :1])


def test_random_weights_baseline_and_causal_check(tmp_path, tiny_llama):
    """``[evaluation] random_weights`` adds the re-initialised model's curve to every probe's
    table; ``[causal]`` steers along the best layers' directions and reports effect and KL."""
    pytest.importorskip("plotly")
    import workbench as wb

    a = write_csv(tmp_path / "cities.csv")
    spec = load_spec(
        write(
            tmp_path,
            f"""
name = "tiny_causal"
seed = 3
[model]
spec = "{tiny_llama.source}"
[dataset]
spec = "{a}"
[extract]
pooling = ["last"]
threads = 1
[probe]
kind = ["logistic", "mass_mean"]
[evaluation]
cv = 4
groups = "group"
control_types = "group"
n_boot = 10
random_weights = true
[causal]
alphas = [-1.0, 0.0, 1.0]
limit = 8
mode = "both"
[outputs]
png = false
""",
        )
    )
    out = run_spec(spec, overrides={"outputs.dir": str(tmp_path / "run")}, progress=False)
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    assert set(table.labels) == {"task", "control", "majority", "random_weights"}
    random = table[(table.labels == "random_weights") & (table.metric == "accuracy")]
    task = table[(table.labels == "task") & (table.metric == "accuracy")]
    assert set(random.probe) == {"logistic", "mass_mean"} and len(random) == len(task) == 2 * 4
    # the random model is another model: its states (and so its scores) are not the trained one's
    rstore = wb.ActivationStore(out / "stores" / "random-weights")
    store = wb.ActivationStore(out / "store")
    fingerprint = lambda s: s.manifest["identity"]["weights_fingerprint"]  # noqa: E731
    assert fingerprint(rstore) != fingerprint(store)
    assert not np.allclose(rstore.layer(2, "last"), store.layer(2, "last"))

    causal = pd.read_csv(out / "causal.csv")
    summary = json.loads((out / "summary.json").read_text())
    layers = [e["layer"] for e in summary["causal"]["layers"]]
    assert layers and all(0 < layer < tiny_llama.n_layers for layer in layers)
    assert set(causal["mode"]) == {"add", "ablate"}
    assert len(causal) == len(layers) * (3 + 1)
    zero = causal[causal.alpha == 0]
    assert (zero.delta_vs_alpha0.abs() < 1e-5).all() and (zero.kl_unrelated.abs() < 1e-6).all()
    moved = causal[(causal["mode"] == "add") & (causal.alpha != 0)]
    assert (moved.kl_unrelated > 0).all()  # steering by a whole residual norm changes the output
    for kind in summary["kinds"].values():
        assert "random_weights_at_best" in kind and "random_weights_best" in kind
    report = (out / "report.md").read_text()
    assert "## Causal check" in report and "random weights at best" in report
    assert (out / "figures" / "causal.html").is_file()
    assert (out / "figures" / "layers_logistic.html").read_text().count("random weights") >= 1


@pytest.mark.parametrize(
    "body, needles",
    [
        ('[causal]\nlayers = "top"', ["[causal] layers", "best"]),
        ('[causal]\nmode = "steer"', ["[causal] mode", "add, ablate, both"]),
        ('[causal]\ntargets = [" True"]', ["two answer strings"]),
        ('[causal]\ntemplate = "no placeholder"', ["{text} exactly once"]),
        ("[causal]\nalpha = [1.0]", ["unknown key 'alpha'", "did you mean 'alphas'"]),
        ('[probe]\nkind = "ridge"\ntarget = "x"\n[causal]\nlimit = 4', ["classifier"]),
    ],
)
def test_causal_section_errors(tmp_path, body, needles):
    text = f'name = "t"\n[dataset]\nspec = "cities"\n{body}\n'
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_sweep_result_load_reads_back_what_save_wrote(tmp_path, tiny_llama):
    """``SweepResult.load`` gives back the saved table, MDL, settings, classes and weights of a
    real sweep, and the same best layers."""
    import pandas as pd

    import workbench as wb
    from workbench.errors import RunFolderError
    from workbench.probing import SweepResult, sweep

    store = wb.extract(
        tiny_llama,
        str(write_csv(tmp_path / "a.csv")),
        layers=[1, 3],
        pooling=["last", "mean"],
        out=tmp_path / "s",
        progress=False,
    )
    result = sweep(
        store,
        "label",
        probe="logistic",
        cv=4,
        groups="group",
        control_types="group",
        mdl=True,
        n_boot=20,
    )
    result.save(tmp_path / "saved")
    loaded = SweepResult.load(tmp_path / "saved")
    pd.testing.assert_frame_equal(
        loaded.table, result.table.reset_index(drop=True), check_dtype=False
    )
    pd.testing.assert_frame_equal(loaded.mdl, result.mdl.reset_index(drop=True), check_dtype=False)
    assert loaded.config == json.loads(json.dumps(result.config))
    assert loaded.classes == result.classes and loaded.seconds == pytest.approx(result.seconds)
    assert loaded.best() == result.best() and loaded.task_kind == "classification"
    assert set(loaded.weights) == set(result.weights) == set(result.directions)
    for key, (coef, intercept) in result.weights.items():
        np.testing.assert_allclose(loaded.weights[key][0], coef, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(loaded.weights[key][1], intercept, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(loaded.directions[key], result.directions[key], atol=1e-6)
    assert loaded.predictions == {}
    with pytest.raises(RunFolderError, match="SweepResult.save"):
        SweepResult.load(tmp_path)


def test_report_formats_a_summary_and_names_a_missing_one(tmp_path):
    from workbench.errors import RunFolderError
    from workbench.probing import report

    with pytest.raises(RunFolderError, match="workbench probe run"):
        report.load_summary(tmp_path)
    assert report.target_text(["latitude", "longitude"]) == "latitude, longitude"
    assert report.target_text(["label"]) == "label"
    summary = {
        "generalisation": {
            "best_per_pair": [
                {"train": "a", "test": "a", "layer": 3, "accuracy": 0.9},
                {"train": "a", "test": "b", "layer": 2, "accuracy": 0.625},
            ]
        }
    }
    assert report.generalisation_grid(summary) == (
        ["a", "b"],
        [["a", "0.900 (L3)", "0.625 (L2)"], ["b", "-", "-"]],
    )


def sweep_takes(*names: str) -> bool:
    import inspect

    from workbench.probing import sweep

    return set(names) <= set(inspect.signature(sweep).parameters)


@pytest.mark.skipif(
    not sweep_takes("standardize", "dropna"),
    reason="sweep() takes no standardize/dropna yet (issue 15, the probe branch adds them)",
)
def test_standardize_and_dropna_reach_sweep(tmp_path, tiny_llama):
    """``[probe] standardize = false`` gives what ``sweep(standardize=False)`` gives; ``dropna``
    lets a target with missing values run (without it the sweep refuses them)."""
    from workbench.probing import sweep

    csv = write_csv(tmp_path / "c.csv")
    lines = csv.read_text().splitlines()
    text, _, group = lines[3].split(",")
    lines[3] = f"{text},,{group}"  # a missing label
    csv.write_text("\n".join(lines) + "\n")
    body = f"""
name = "t"
[model]
spec = "{tiny_llama.source}"
[dataset]
spec = "{csv}"
[extract]
layers = [1, 3]
threads = 1
[probe]
kind = "logistic"
standardize = false
dropna = true
[evaluation]
cv = 4
groups = "group"
control = false
n_boot = 0
[outputs]
figures = false
"""
    out = run_spec(
        load_spec(write(tmp_path, body)),
        overrides={"outputs.dir": str(tmp_path / "o")},
        progress=False,
    )
    import pandas as pd

    import workbench as wb

    store = wb.ActivationStore(out / "store")
    ref = sweep(
        store,
        "label",
        probe="logistic",
        layers=[1, 3],
        cv=4,
        groups="group",
        control=False,
        n_boot=0,
        standardize=False,
        dropna=True,
    )
    got = pd.read_csv(out / "results.csv")
    np.testing.assert_allclose(
        got[got.labels == "task"]["value"].to_numpy(),
        ref.table[ref.table.labels == "task"]["value"].to_numpy(),
    )
    with pytest.raises(ValueError, match="dropna"):
        run_spec(
            load_spec(write(tmp_path, body.replace("dropna = true", ""))),
            overrides={"outputs.dir": str(tmp_path / "o2")},
            progress=False,
        )
