"""Experiment specs: ``probes/*.toml`` parsed into frozen dataclasses, and the runner.

A spec names a model, a dataset, what to extract, which probes to train on which target, how
to evaluate them and where to write the results. Every key is checked: an unknown key is a
``SpecError`` that lists the valid keys of its section (and suggests the closest one), a value
of the wrong type names the key, the value and the type it needs.

Examples:
    >>> from workbench.probing import load_spec, run_spec
    >>> spec = load_spec("probes/cities_truth.toml")  # doctest: +SKIP
    >>> out = run_spec(spec, overrides={"dataset.limit": 600})  # doctest: +SKIP
    >>> sorted(p.name for p in out.iterdir())  # doctest: +SKIP
    ['figures', 'probes', 'report.md', 'results.csv', 'spec.json', 'store', 'summary.json']
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, StoreMismatchError
from ..settings import threads

#: Probe kinds a spec may name (the keys of ``workbench.probing.PROBES``).
PROBE_KINDS = ("logistic", "ridge", "mass_mean", "mass_mean_iid", "mlp")
CLASSIFIER_KINDS = ("logistic", "mass_mean", "mass_mean_iid", "mlp")
LEVELS = ("sentence", "token")
STRATEGIES = ("first", "last", "mean")


# -- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: ``spec`` is a bundled name, hub id, local folder or ``.gguf`` file."""

    spec: str = "smollm2-135m"
    dtype: str = "float32"


@dataclass(frozen=True)
class DatasetSection:
    """``[dataset]``: ``spec`` is a built-in name or a data file; ``options`` go to
    ``load_dataset`` (e.g. ``n``, ``pairs``, ``test_fraction`` of built-ins); ``seed`` defaults
    to the spec's top-level ``seed``."""

    spec: str
    text_column: str | None = None
    label_columns: tuple[str, ...] | None = None
    limit: int | None = None
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtractSection:
    """``[extract]``: as ``wb.extract``; ``out`` defaults to ``<outputs.dir>/store``."""

    layers: str | tuple[int, ...] = "all"
    pooling: tuple[str, ...] = ("last",)
    template: str | None = None
    storage_dtype: str = "float32"
    batch_tokens: int = 4096
    threads: int | None = None
    out: str | None = None


@dataclass(frozen=True)
class ProbeSection:
    """``[probe]``: one or more probe kinds, trained on ``target`` (a column, or a list of
    numeric columns for multi-output regression). ``level = "token"`` probes per word
    (``strategy`` picks the word's sub-token: first, last or mean)."""

    kind: tuple[str, ...] = ("logistic",)
    target: str | tuple[str, ...] = "label"
    C: float = 1.0
    alpha: float = 1.0
    level: str = "sentence"
    strategy: str = "first"


@dataclass(frozen=True)
class EvaluationSection:
    """``[evaluation]``: ``cv`` folds (grouped by ``groups``) or one ``split`` (a boolean
    column, True = test), the control task, MDL and bootstrap CIs."""

    cv: int = 5
    groups: str | None = None
    split: str | None = None
    control: bool = True
    control_types: str | None = None
    mdl: bool = False
    n_boot: int = 1000
    random_weights: bool = False


@dataclass(frozen=True)
class CausalSection:
    """``[causal]``: steer along each probe's direction at ``layers`` (``"best"``: the best
    layers by score and by selectivity) and read the model's answer after ``template``: the
    change in ``log P(targets[0]) - log P(targets[1])`` per alpha (in units of the layer's
    residual norm), and the KL side effect on unrelated prompts (``CausalCheck``)."""

    layers: str | tuple[int, ...] = "best"
    alphas: tuple[float, ...] = (-0.2, -0.1, 0.0, 0.1, 0.2)
    template: str = "{text} This statement is"
    targets: tuple[str, ...] = (" True", " False")
    probe: str | None = None
    limit: int = 64
    mode: str = "add"
    positions: str = "all"
    batch_size: int = 8


@dataclass(frozen=True)
class GeneralisationSection:
    """``[generalisation]``: train on each dataset, test on each, per layer, with the same
    extraction settings (and the ``[dataset]`` options)."""

    datasets: tuple[str, ...]
    probe: str = "logistic"
    target: str | None = None


@dataclass(frozen=True)
class OutputsSection:
    """``[outputs]``: ``dir`` defaults to ``runs/<name>``; figures are HTML, plus PNG when
    kaleido and Chromium work."""

    dir: str | None = None
    figures: bool = True
    png: bool = True


@dataclass(frozen=True)
class ProbeSpec:
    """A parsed experiment spec (see ``probes/*.toml``).

    Attributes:
        name, description, seed: top-level keys (``name`` defaults to the file's stem).
        model, dataset, extract, probe, evaluation, generalisation, outputs: the sections.
        path: the TOML file it was read from (None when built in Python).

    Examples:
        >>> spec = parse_spec({"name": "t", "dataset": {"spec": "cities", "limit": 40}})
        >>> spec.probe.kind, spec.out_dir.as_posix()
        (('logistic',), 'runs/t')
    """

    name: str
    dataset: DatasetSection
    description: str = ""
    seed: int = 0
    model: ModelSection = ModelSection()
    extract: ExtractSection = ExtractSection()
    probe: ProbeSection = ProbeSection()
    evaluation: EvaluationSection = EvaluationSection()
    generalisation: GeneralisationSection | None = None
    causal: CausalSection | None = None
    outputs: OutputsSection = OutputsSection()
    path: str | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.outputs.dir) if self.outputs.dir else Path("runs") / self.name

    @property
    def store_dir(self) -> Path:
        return Path(self.extract.out) if self.extract.out else self.out_dir / "store"

    def to_dict(self) -> dict[str, Any]:
        """The spec as TOML-shaped data (unset keys left out); ``parse_spec`` reads it back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "path":
                continue
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                out[f.name] = {
                    k: _plain(v) for k, v in dataclasses.asdict(value).items() if v is not None
                }
            elif value is not None:
                out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- parsing -------------------------------------------------------------------------------------

# key -> kind, per section ("" is the top level)
_KINDS: dict[str, dict[str, str]] = {
    "": {"name": "str", "description": "str", "seed": "int"},
    "model": {"spec": "str", "dtype": "str"},
    "dataset": {"spec": "str", "text_column": "str", "label_columns": "str_list", "limit": "int",
                "seed": "int", "options": "table"},
    "extract": {"layers": "layers", "pooling": "str_list", "template": "str",
                "storage_dtype": "str", "batch_tokens": "int", "threads": "int", "out": "str"},
    "probe": {"kind": "str_list", "target": "str_or_list", "C": "number", "alpha": "number",
              "level": "str", "strategy": "str"},
    "evaluation": {"cv": "int", "groups": "str", "split": "str", "control": "bool",
                   "control_types": "str", "mdl": "bool", "n_boot": "int",
                   "random_weights": "bool"},
    "causal": {"layers": "layers", "alphas": "numbers", "template": "str",
               "targets": "str_list", "probe": "str", "limit": "int", "mode": "str",
               "positions": "str", "batch_size": "int"},
    "generalisation": {"datasets": "str_list", "probe": "str", "target": "str"},
    "outputs": {"dir": "str", "figures": "bool", "png": "bool"},
}
_SECTIONS: dict[str, type] = {
    "model": ModelSection, "dataset": DatasetSection, "extract": ExtractSection,
    "probe": ProbeSection, "evaluation": EvaluationSection,
    "generalisation": GeneralisationSection, "causal": CausalSection,
    "outputs": OutputsSection,
}
_KIND_WORDS = {
    "str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
    "str_list": "a string or a list of strings", "numbers": "a list of numbers", "str_or_list": "a string or a list of strings",
    "layers": "'all', a string such as '0,10,-1' or '5:20', an integer or a list of integers",
    "table": "a table ({ key = value, ... })",
}


def _where(section: str, path: str | None) -> str:
    at = f"[{section}]" if section else "the top level"
    return f"{at} of {path}" if path else at


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _check_keys(raw: Mapping[str, Any], section: str, path: str | None) -> None:
    valid = list(_KINDS[section]) + (list(_SECTIONS) if section == "" else [])
    for key in raw:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(
                f"unknown key {key!r} in {_where(section, path)}{hint}; the valid keys are: "
                f"{', '.join(valid)}"
            )


def _convert(value: Any, kind: str, key: str, section: str, path: str | None) -> Any:
    def bad() -> SpecError:
        full = f"{section}.{key}" if section else key
        return SpecError(
            f"{full} in {_where(section, path)} must be {_KIND_WORDS[kind]}, got {value!r} "
            f"({_type_name(value)})"
        )

    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == "int":
        if not is_int:
            raise bad()
        return value
    if kind == "number":
        if not (is_int or isinstance(value, float)):
            raise bad()
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind in ("str_list", "str_or_list"):
        if isinstance(value, str):
            return value if kind == "str_or_list" else (value,)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise bad()
    if kind == "layers":
        if isinstance(value, str) or is_int:
            return value if isinstance(value, str) else (value,)
        if isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            return tuple(value)
        raise bad()
    if kind == "numbers":
        if isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return tuple(float(v) for v in value)
        raise bad()
    if kind == "table":
        if not isinstance(value, Mapping):
            raise bad()
        return dict(value)
    raise AssertionError(kind)  # pragma: no cover - _KINDS is fixed


def _choice(value: Any, valid: Sequence[str], what: str, path: str | None) -> None:
    if value not in valid:
        close = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"{what} = {value!r} in {path or 'the spec'} is not valid{hint}: "
                        f"choose from {', '.join(valid)}")


def _at_least(value: int | None, low: int, what: str, path: str | None) -> None:
    if value is not None and value < low:
        raise SpecError(f"{what} = {value} in {path or 'the spec'} must be at least {low}")


def parse_spec(raw: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> ProbeSpec:
    """Build a ``ProbeSpec`` from TOML-shaped data (what ``tomllib`` returns).

    Raises:
        SpecError: an unknown key (the valid keys are listed), a value of the wrong type, a
            missing ``[dataset] spec``, or a value outside its choices.
    """
    where = None if path is None else str(path)
    if not isinstance(raw, Mapping):
        raise SpecError(f"a spec is a table of sections, got {_type_name(raw)}")
    _check_keys(raw, "", where)
    top: dict[str, Any] = {}
    for key, kind in _KINDS[""].items():
        if key in raw:
            top[key] = _convert(raw[key], kind, key, "", where)
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name not in raw:
            continue
        body = raw[name]
        if not isinstance(body, Mapping):
            raise SpecError(f"{name} in {_where('', where)} must be a table ([{name}]), got "
                            f"{body!r} ({_type_name(body)})")
        _check_keys(body, name, where)
        values = {k: _convert(v, _KINDS[name][k], k, name, where) for k, v in body.items()}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in values]
        if missing:
            raise SpecError(f"[{name}] of {where or 'the spec'} needs {', '.join(missing)} "
                            f"(e.g. {missing[0]} = ...)")
        sections[name] = cls(**values)
    if "dataset" not in sections:
        raise SpecError(f"{where or 'the spec'} has no [dataset] section: add [dataset] with "
                        "spec = a built-in name (cities, neg_cities, world_places) or a data file")
    name = top.get("name") or (Path(where).stem if where else None)
    if not name:
        raise SpecError("the spec needs a name (name = \"...\" at the top level)")
    spec = ProbeSpec(name=name, **{k: v for k, v in top.items() if k != "name"}, **sections,
                     path=where)
    _validate(spec)
    return spec


def _validate(spec: ProbeSpec) -> None:
    p = spec.path
    for kind in spec.probe.kind:
        _choice(kind, PROBE_KINDS, "[probe] kind", p)
    _choice(spec.probe.level, LEVELS, "[probe] level", p)
    _choice(spec.probe.strategy, STRATEGIES, "[probe] strategy", p)
    _choice(spec.extract.storage_dtype, ("float32", "float16"), "[extract] storage_dtype", p)
    _choice(spec.model.dtype, ("float32", "bfloat16", "float16"), "[model] dtype", p)
    _at_least(spec.evaluation.cv, 2, "[evaluation] cv", p)
    _at_least(spec.evaluation.n_boot, 0, "[evaluation] n_boot", p)
    _at_least(spec.dataset.limit, 1, "[dataset] limit", p)
    _at_least(spec.extract.threads, 1, "[extract] threads", p)
    _at_least(spec.extract.batch_tokens, 1, "[extract] batch_tokens", p)
    if spec.probe.C <= 0 or spec.probe.alpha < 0:
        raise SpecError(f"[probe] C must be > 0 and alpha >= 0 in {p or 'the spec'}, got "
                        f"C = {spec.probe.C}, alpha = {spec.probe.alpha}")
    multi = isinstance(spec.probe.target, tuple)
    for kind in spec.probe.kind:
        if multi and kind != "ridge":
            raise SpecError(
                f"[probe] target = {list(spec.probe.target)} is a list of columns (multi-output "
                f"regression), which only kind 'ridge' fits; {kind!r} needs one column"
            )
    if spec.generalisation is not None:
        _choice(spec.generalisation.probe, CLASSIFIER_KINDS, "[generalisation] probe", p)
        if spec.generalisation.target is None and multi:
            raise SpecError("[generalisation] needs a target (one class column) when [probe] "
                            "target is a list of columns")
    if spec.causal is not None:
        c = spec.causal
        if isinstance(c.layers, str) and c.layers != "best":
            raise SpecError(f"[causal] layers = {c.layers!r} in {p or 'the spec'}: give \"best\" "
                            "(the best layers by score and selectivity) or a list of layers")
        if c.probe is not None:
            _choice(c.probe, [k for k in spec.probe.kind if k in CLASSIFIER_KINDS],
                    "[causal] probe (one of [probe] kind's classifiers)", p)
        elif not any(k in CLASSIFIER_KINDS for k in spec.probe.kind):
            raise SpecError(f"[causal] steers along a classifier's direction: [probe] kind = "
                            f"{list(spec.probe.kind)} has none; add \"logistic\" or \"mass_mean\"")
        _choice(c.mode, ("add", "ablate", "both"), "[causal] mode", p)
        _choice(c.positions, ("all", "last"), "[causal] positions", p)
        _at_least(c.limit, 1, "[causal] limit", p)
        _at_least(c.batch_size, 1, "[causal] batch_size", p)
        if c.template.count("{text}") != 1:
            raise SpecError(f"[causal] template = {c.template!r} must contain {{text}} exactly "
                            "once, e.g. \"{text} This statement is\"")
        if len(c.targets) != 2:
            raise SpecError(f"[causal] targets = {list(c.targets)}: give two answer strings, "
                            "e.g. [\" True\", \" False\"]")
        if spec.probe.level == "token":
            raise SpecError("[causal] is not supported for token-level specs")
    if spec.probe.level == "token":
        if "tokens" not in spec.extract.pooling:
            raise SpecError(
                f"[probe] level = \"token\" needs per-token states: add \"tokens\" to [extract] "
                f"pooling in {p or 'the spec'} (it is {list(spec.extract.pooling)})"
            )
        if spec.generalisation is not None:
            raise SpecError("[generalisation] is not supported for token-level specs")


def load_spec(path: str | os.PathLike[str]) -> ProbeSpec:
    """Read and check a spec file (``probes/*.toml``).

    Raises:
        SpecError: the file does not exist, is not valid TOML, or fails ``parse_spec``.
    """
    file = Path(path)
    if not file.is_file():
        here = sorted(str(p) for p in Path("probes").glob("*.toml"))
        raise SpecError(f"spec file {file} does not exist" + (
            f"; the specs in probes/ are: {', '.join(here)}" if here else ""))
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{file} is not valid TOML: {exc}") from None
    return parse_spec(raw, file)


def apply_overrides(spec: ProbeSpec, overrides: Mapping[str, Any] | None) -> ProbeSpec:
    """A new spec with ``overrides`` applied and checked like the file's own keys.

    Keys are dotted (``{"dataset.limit": 600, "extract.layers": [0, 15], "outputs.dir": "x"}``)
    or nested (``{"dataset": {"limit": 600}}``); a value of None removes the key (its default).
    """
    if not overrides:
        return spec
    raw = spec.to_dict()
    for key, value in overrides.items():
        if isinstance(value, Mapping) and key in _SECTIONS:
            items = [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            items = [(key, value)]
        for dotted, v in items:
            section, _, name = dotted.rpartition(".")
            if section and section not in _SECTIONS:
                close = difflib.get_close_matches(section, list(_SECTIONS), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpecError(f"override {dotted!r}: {section!r} is not a section{hint}; the "
                                f"sections are: {', '.join(_SECTIONS)}")
            target = raw.setdefault(section, {}) if section else raw
            if v is None:
                target.pop(name, None)
            else:
                target[name] = _plain(v) if isinstance(v, tuple) else v
    return parse_spec(raw, spec.path)


# -- running -------------------------------------------------------------------------------------


def _token_dataset() -> Callable[..., Any] | None:
    from ._tokens import token_dataset

    return token_dataset


def _resolve_data(spec_text: str, spec: ProbeSpec) -> str:
    """A dataset spec as given when it is a built-in, ``hf:`` or found from the working
    directory; else relative to the spec file's folder when it exists there."""
    from ..data import builtin_datasets

    if spec_text in builtin_datasets() or spec_text.startswith("hf:"):
        return spec_text
    p = Path(spec_text).expanduser()
    if p.is_absolute() or p.exists() or spec.path is None:
        return str(p)
    beside = Path(spec.path).parent / p
    return str(beside) if beside.exists() else str(p)


def _load_data(spec: ProbeSpec, dataset_spec: str) -> Any:
    from ..data import load_dataset

    d = spec.dataset
    return load_dataset(
        _resolve_data(dataset_spec, spec),
        text_column=d.text_column,
        label_columns=list(d.label_columns) if d.label_columns else None,
        limit=d.limit,
        seed=spec.seed if d.seed is None else d.seed,
        **dict(d.options),
    )


def _extract(lm: Any, dataset: Any, spec: ProbeSpec, out: Path, owned: bool, progress: bool,
             notes: list[str]) -> tuple[Any, float, bool]:
    """Extract (or reuse) a store; ``owned`` stores (under the results folder) are replaced
    when they hold another run, a user-given ``[extract] out`` never is."""
    from ..activations.extract import extract
    from ..activations.store import ActivationStore

    e = spec.extract
    layers: Any = list(e.layers) if isinstance(e.layers, tuple) else e.layers
    kwargs = dict(layers=layers, pooling=list(e.pooling), template=e.template,
                  storage_dtype=e.storage_dtype, batch_tokens=e.batch_tokens, threads=e.threads,
                  progress=progress)
    before = None
    if (out / "manifest.json").is_file():
        before = json.loads((out / "manifest.json").read_text()).get("finished")
    t0 = time.perf_counter()
    try:
        store = extract(lm, dataset, out=out, **kwargs)
    except StoreMismatchError:
        if not owned:
            raise
        notes.append(f"{out} held another run (other model, data or settings) and was replaced")
        store = extract(lm, dataset, out=out, overwrite=True, **kwargs)
    seconds = time.perf_counter() - t0
    reused = before is not None and before == store.manifest.get("finished")
    return ActivationStore(store.path), seconds, reused


@contextmanager
def _collect_warnings(notes: list[str]) -> Iterator[None]:
    """Warnings raised inside (e.g. scikit-learn's ConvergenceWarning, once per fit) become one
    note per distinct message, with a count, instead of a screenful of repeats."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    counts: dict[str, int] = {}
    for w in caught:
        first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        key = f"{w.category.__name__}: {first}"
        counts[key] = counts.get(key, 0) + 1
    for key, n in counts.items():
        notes.append(f"{key}" + (f" (x{n})" if n > 1 else ""))


class _ArrayStore:
    """The part of ``ActivationStore`` that ``sweep`` reads, over in-memory word vectors."""

    def __init__(self, store: Any, x_by_hook: Callable[[str], np.ndarray], n: int) -> None:
        self.path = Path(store.path)
        self.manifest = {"identity_hash": store.manifest.get("identity_hash")}
        self.hook_points = list(store.hook_points)
        self.layers = dict(store.layers)
        self._x = x_by_hook
        self._n = n
        self._cache: tuple[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._n

    def column(self, name: str) -> list[Any]:
        from ..errors import StoreSelectionError

        raise StoreSelectionError(f"word-level data has no column {name!r}: pass values")

    def pooling(self, pooling: str) -> str:
        return pooling

    def get(self, pooling: str, *, hook_points: Sequence[str], rows: Any = None) -> np.ndarray:
        hook = hook_points[0]
        if self._cache is None or self._cache[0] != hook:
            self._cache = (hook, np.asarray(self._x(hook)))
        x = self._cache[1]
        return (x if rows is None else x[np.asarray(rows)])[:, None, :]


def _sweeps(spec: ProbeSpec, store: Any, progress: bool) -> dict[str, Any]:
    from ._sweep import sweep

    e, ev, pr = spec.extract, spec.evaluation, spec.probe
    target: Any = list(pr.target) if isinstance(pr.target, tuple) else pr.target
    poolings = [p for p in e.pooling if p != "tokens"]
    common: dict[str, Any] = dict(
        cv=ev.cv, control=ev.control, mdl=ev.mdl, C=pr.C, alpha=pr.alpha, n_boot=ev.n_boot,
        seed=spec.seed, progress=progress,
    )
    if pr.level == "token":
        return _token_sweeps(spec, store, target, common)
    if not poolings:
        raise SpecError(f"[extract] pooling = {list(e.pooling)} has no pooled vector for a "
                        "sentence-level probe: add last, mean, first, max or pos:K")
    return {kind: sweep(store, target, probe=kind, hook_points=store.hook_points,
                        pooling=poolings, groups=ev.groups, split=ev.split,
                        control_types=ev.control_types, **common)
            for kind in pr.kind}


def _token_sweeps(spec: ProbeSpec, store: Any, target: Any, common: dict[str, Any]) -> dict:
    """Word-level sweeps over ``workbench.probing.token_dataset``: either a store-like view
    (``.get``/``.column``, grouped by ``sentence``, control types = word forms) or a tuple
    ``(X_by_hook, y [n_words], groups [n_words])``."""
    import inspect

    from ._sweep import sweep

    token_dataset = _token_dataset()
    if token_dataset is None:  # pragma: no cover - checked before extraction
        raise SpecError("token-level specs need workbench.probing.token_dataset (not available yet)")
    e, ev, pr = spec.extract, spec.evaluation, spec.probe
    if not isinstance(target, str):
        raise SpecError(f"[probe] target must be one word-level column for level = \"token\", "
                        f"got {target}")
    kwargs: dict[str, Any] = {"word_column": target, "strategy": pr.strategy}
    if "layers" in inspect.signature(token_dataset).parameters:
        kwargs["layers"] = list(e.layers) if isinstance(e.layers, tuple) else e.layers
    view = token_dataset(store, **kwargs)
    if hasattr(view, "get") and hasattr(view, "column"):
        columns = list(getattr(view, "columns", []))
        pooling = view.pooling_names[0] if hasattr(view, "pooling_names") else "word"
        groups = ev.groups or ("sentence" if "sentence" in columns else None)
        types = ev.control_types or ("word" if "word" in columns else None)
        return {kind: sweep(view, target, probe=kind, hook_points=store.hook_points,
                            pooling=pooling, groups=groups, split=ev.split,
                            control_types=types, **common) for kind in pr.kind}
    x_by_hook, y, groups_values = view
    y = np.asarray(y)
    words = _ArrayStore(store, x_by_hook, len(y))
    return {kind: sweep(words, y, probe=kind, hook_points=store.hook_points, pooling="word",
                        groups=np.asarray(groups_values), **common) for kind in pr.kind}


def run_spec(
    spec: ProbeSpec | str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Run an experiment spec end to end and return its results folder.

    Loads the dataset and the model, extracts (reusing a complete identical store), runs a
    layer sweep per probe kind (and the generalisation matrix when asked), and writes:
    ``results.csv`` (every kind, tidy), ``probes/<kind>/`` (``SweepResult.save``),
    ``summary.json`` (best layers per kind), ``report.md``, ``spec.json`` and ``figures/``
    (HTML, plus PNG when kaleido and Chromium work). Re-running gives the same ``results.csv``.

    Args:
        spec: a ``ProbeSpec`` or the path of a TOML spec.
        overrides: keys to change, checked like the file's (see ``apply_overrides``), e.g.
            ``{"dataset.limit": 600, "extract.layers": "0:10", "outputs.dir": "runs/x"}``.
        progress: progress bars for extraction and sweeps.

    Raises:
        SpecError: a bad spec or override, or a token-level spec while
            ``workbench.probing.token_dataset`` is not available.
    """
    import pandas as pd

    from ..models import load_model

    t_start = time.perf_counter()
    if not isinstance(spec, ProbeSpec):
        spec = load_spec(spec)
    spec = apply_overrides(spec, overrides)
    if spec.probe.level == "token" and _token_dataset() is None:
        raise SpecError(
            "token-level specs need workbench.probing.token_dataset (not available yet): "
            f"{spec.path or spec.name} has [probe] level = \"token\"; run sentence-level specs "
            "for now"
        )
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    notes: list[str] = []

    t0 = time.perf_counter()
    dataset = _load_data(spec, spec.dataset.spec)
    timing["dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = load_model(spec.model.spec, dtype=spec.model.dtype)
    timing["model"] = time.perf_counter() - t0
    store, timing["extract"], reused = _extract(
        lm, dataset, spec, spec.store_dir, spec.extract.out is None, progress, notes)

    with threads(spec.extract.threads), _collect_warnings(notes):
        t0 = time.perf_counter()
        results = _sweeps(spec, store, progress)
        timing["sweeps"] = time.perf_counter() - t0
        for kind, result in results.items():
            timing[f"sweep {kind}"] = result.seconds
        gen = None
        if spec.generalisation is not None:
            t0 = time.perf_counter()
            gen = _run_generalisation(spec, lm, store, results, progress, notes, timing)
            timing["generalisation"] = time.perf_counter() - t0
        if spec.evaluation.random_weights:
            _random_weights(spec, dataset, results, progress, notes, timing)
        causal = None
        if spec.causal is not None:
            t0 = time.perf_counter()
            causal = _run_causal(spec, lm, dataset, store, results, notes)
            timing["causal"] = time.perf_counter() - t0

    # -- write --------------------------------------------------------------------------------
    from ..activations.store import atomic_write, write_json

    table = pd.concat([r.table for r in results.values()], ignore_index=True)
    table = table.drop_duplicates(ignore_index=True)  # one majority baseline per setting
    atomic_write(out / "results.csv", lambda f: table.to_csv(f, index=False), "w")
    for kind, result in results.items():
        result.save(out / "probes" / kind)
    if gen is not None:
        atomic_write(out / "generalisation.csv", lambda f: gen.to_csv(f, index=False), "w")
    if causal is not None:
        atomic_write(out / "causal.csv", lambda f: causal.to_csv(f, index=False), "w")
    write_json(out / "spec.json", {"path": spec.path, **spec.to_dict()})

    figures: list[str] = []
    if spec.outputs.figures:
        t0 = time.perf_counter()
        figures = _write_figures(spec, store, results, gen, causal, out, notes)
        timing["figures"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    summary = _summary(spec, lm, dataset, store, reused, results, gen, causal, timing, figures,
                       notes)
    write_json(out / "summary.json", summary)
    atomic_write(out / "report.md", lambda f: f.write(_report(summary)), "w")
    return out


def _run_generalisation(spec: ProbeSpec, lm: Any, store: Any, results: dict[str, Any],
                        progress: bool, notes: list[str], timing: dict[str, float]) -> Any:
    from ._generalisation import generalisation_matrix

    g = spec.generalisation
    assert g is not None
    target = g.target or spec.probe.target
    stores: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in g.datasets:
        if name == spec.dataset.spec:
            stores[name] = store
            continue
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(name).name)
        ds = _load_data(spec, name)
        stores[name], _, _ = _extract(lm, ds, spec, spec.out_dir / "stores" / slug,
                                      True, progress, notes)
    timing["generalisation_extract"] = time.perf_counter() - t0
    pooling = next(p for p in spec.extract.pooling if p != "tokens")
    groups = spec.evaluation.groups
    if groups is not None and not all(groups in s.columns for s in stores.values()):
        notes.append(f"generalisation: not every dataset has column {groups!r}; its diagonal "
                     "uses ungrouped folds")
        groups = None
    sweeps = {}
    main = results.get(g.probe)
    if (main is not None and target == spec.probe.target and groups == spec.evaluation.groups
            and spec.evaluation.split is None and spec.dataset.spec in stores):
        sweeps[spec.dataset.spec] = main
    return generalisation_matrix(
        stores, target, probe=g.probe, layers=None, pooling=pooling, C=spec.probe.C,
        cv=spec.evaluation.cv, groups=groups, seed=spec.seed, sweeps=sweeps,
    )


def _random_weights(spec: ProbeSpec, dataset: Any, results: dict[str, Any], progress: bool,
                    notes: list[str], timing: dict[str, float]) -> None:
    """The same architecture with random weights (re-initialised with seed ``spec.seed``): the
    same rows extracted into ``stores/random-weights`` and the same probes swept (no control,
    no MDL); its rows join each kind's table with ``labels = "random_weights"``."""
    import pandas as pd

    from ..models import load_model

    t0 = time.perf_counter()
    random_lm = load_model(spec.model.spec, dtype=spec.model.dtype, random_init=spec.seed)
    random_store, _, _ = _extract(random_lm, dataset, spec, spec.out_dir / "stores" /
                                  "random-weights", True, progress, notes)
    del random_lm
    timing["random_weights_extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = dataclasses.replace(
        spec, evaluation=dataclasses.replace(spec.evaluation, control=False, mdl=False))
    for kind, result in _sweeps(plain, random_store, progress).items():
        rows = result.table[result.table.labels == "task"].copy()
        rows["labels"] = "random_weights"
        results[kind].table = pd.concat([results[kind].table, rows], ignore_index=True)
    timing["random_weights_sweeps"] = time.perf_counter() - t0


def _causal_layers(spec: ProbeSpec, lm: Any, result: Any, pooling: str) -> list[int]:
    """``[causal] layers``, or the best steerable layers (residual, not the final norm's output,
    not the embeddings) by score and by selectivity."""
    c = spec.causal
    assert c is not None
    if not isinstance(c.layers, str):
        return [int(v) for v in c.layers]

    def best(frame: Any, column: str) -> list[int]:
        frame = frame[(frame.pooling == pooling) & frame.layer.notna()]
        frame = frame[[0 < int(v) < lm.n_layers for v in frame.layer]]  # steerable layers
        return [int(frame.loc[frame[column].idxmax(), "layer"])] if len(frame) else []

    metric = result.main_metric
    layers = best(result.curve(metric), "value")
    if "control" in set(result.table.labels):
        layers += best(result.selectivity(metric), "selectivity")
    return sorted(set(layers))


def _run_causal(spec: ProbeSpec, lm: Any, dataset: Any, store: Any, results: dict[str, Any],
                notes: list[str]) -> Any:
    """Steer along the probe's direction at the chosen layers (``CausalCheck``); the direction
    points to the probe's second class (e.g. ``True`` of ``[False, True]``)."""
    import pandas as pd

    from ._causal import CausalCheck

    c = spec.causal
    assert c is not None
    kind = c.probe or next(k for k in spec.probe.kind if k in CLASSIFIER_KINDS)
    result = results[kind]
    if result.task_kind != "classification" or len(result.classes) != 2:
        raise SpecError(f"[causal] steers along a binary probe's direction: the {kind} probe of "
                        f"{spec.path or spec.name} has classes {result.classes}; use a target with "
                        "two classes or remove [causal]")
    pooling = result.best()["by_score"]["pooling"]
    layers = _causal_layers(spec, lm, result, pooling)
    if not layers:
        raise SpecError("[causal] layers = \"best\" found no steerable layer (0 < layer < "
                        f"{lm.n_layers}) in the store: list layers explicitly")
    from ..models.hook_names import normalize_layers

    directions = {}
    for layer in layers:
        hook = store.layers.get(normalize_layers(layer, lm.n_layers, lm.name)[0])
        if hook is None or (pooling, hook) not in result.directions:
            raise SpecError(f"[causal] layer {layer} is not in the store's layers "
                            f"{sorted(store.layers)}: extract it or choose among those")
        directions[layer] = result.directions[(pooling, hook)][0]
    rng = np.random.default_rng(spec.seed)
    n = min(c.limit, len(dataset))
    rows = np.sort(rng.choice(len(dataset), size=n, replace=False))
    texts = [dataset.texts[i] for i in rows]
    check = CausalCheck(lm, template=c.template, targets=c.targets)
    modes = ("add", "ablate") if c.mode == "both" else (c.mode,)
    tables = [check.run(texts, directions, alphas=c.alphas, mode=mode, positions=c.positions,
                        batch_size=c.batch_size) for mode in modes]
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "probe", kind)
    table.insert(1, "pooling", pooling)
    notes.append(f"causal check: {kind} direction (towards {result.classes[1]!r}) at layers "
                 f"{layers}, {n} texts in {c.template!r}, answer log P({c.targets[0]!r}) - "
                 f"log P({c.targets[1]!r})")
    return table


def _write_figures(spec: ProbeSpec, store: Any, results: dict[str, Any], gen: Any, causal: Any,
                   out: Path, notes: list[str]) -> list[str]:
    from ..viz import write_figure
    from ..viz.probing import generalisation_heatmap, latlon_map, layer_curves

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written.extend(write_figure(fig, out / "figures" / name, png=spec.outputs.png))
        for w in caught:
            text = str(w.message)
            if text not in notes:
                notes.append(text)

    for kind, result in results.items():
        save(layer_curves(result, metric=result.main_metric), f"layers_{kind}")
        if result.config.get("geo") and result.task_kind == "regression":
            best = result.best()["by_score"]
            pred = result.predictions[(best["pooling"], best["hook_point"])]["task"]
            target = result.config["target"]
            true = np.column_stack([np.asarray(store.column(t), dtype=float) for t in target])
            keep = np.isfinite(pred).all(axis=1)
            texts = np.asarray(store.texts, dtype=object)
            fig = latlon_map(true[keep], pred[keep], labels=list(texts[keep]))
            fig.update_layout(title=f"{kind} probe, layer {best['layer']} ({best['hook_point']}): "
                                    f"out-of-sample predictions vs truth ({int(keep.sum())} places)")
            save(fig, f"latlon_{kind}")
    if gen is not None and len(gen):
        save(generalisation_heatmap(gen), "generalisation")
    if causal is not None and len(causal) and spec.causal is not None:
        from ..viz.causal import causal_curves

        t = spec.causal.targets
        save(causal_curves(causal, answer=f"log P({t[0]!r}) - log P({t[1]!r})"), "causal")
    return sorted(str(p.relative_to(out)) for p in written)


# -- summary and report --------------------------------------------------------------------------


def _metric_at(result: Any, metric: str, labels: str, pooling: str, hook: str) -> dict | None:
    t = result.table
    rows = t[(t.metric == metric) & (t.labels == labels) & (t.pooling == pooling)
             & (t.hook_point == hook)]
    if not len(rows):
        return None
    r = rows.iloc[0]
    return {"value": float(r["value"]), "low": float(r["low"]), "high": float(r["high"])}


def _kind_summary(result: Any) -> dict[str, Any]:
    best = result.best()
    metric = best["metric"]
    b = best["by_score"]
    out: dict[str, Any] = {"metric": metric, **best}
    out["by_score"] = {**b, **(_metric_at(result, metric, "task", b["pooling"], b["hook_point"])
                               or {})}
    t = result.table
    base = t[(t.labels == "majority") & (t.metric == metric)]
    if len(base):
        out["baseline"] = {"name": str(base.iloc[0]["probe"]), "value": float(base.iloc[0]["value"])}
    control = _metric_at(result, metric, "control", b["pooling"], b["hook_point"])
    if control is not None:
        out["control_at_best"] = control
    random = _metric_at(result, metric, "random_weights", b["pooling"], b["hook_point"])
    if random is not None:
        out["random_weights_at_best"] = random
        curve = result.curve(metric, "random_weights")
        r = curve.loc[curve["value"].idxmax()]
        out["random_weights_best"] = {"layer": None if r.layer != r.layer else int(r.layer),
                                      "pooling": r.pooling, "value": float(r["value"])}
    if result.config.get("geo"):
        km = _metric_at(result, "median_great_circle_km", "task", b["pooling"], b["hook_point"])
        if km is not None:
            out["median_km_at_best"] = km
    out["seconds"] = round(result.seconds, 2)
    return out


def _summary(spec: ProbeSpec, lm: Any, dataset: Any, store: Any, reused: bool,
             results: dict[str, Any], gen: Any, causal: Any, timing: dict[str, float],
             figures: list[str], notes: list[str]) -> dict[str, Any]:
    first = next(iter(results.values()))
    summary: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "spec": spec.path,
        "model": {"spec": spec.model.spec, "name": lm.name, "n_layers": lm.n_layers,
                  "d_model": lm.d_model, "dtype": spec.model.dtype},
        "dataset": {"spec": spec.dataset.spec, "name": dataset.name, "source": dataset.source,
                    "n_rows": len(dataset), "limit": spec.dataset.limit},
        "store": {"path": str(store.path), "reused": reused, "hook_points": len(store.hook_points),
                  "poolings": store.pooling_names},
        "target": first.config["target"],
        "task": first.task_kind,
        "n_rows": first.config["n_rows"],
        "classes": first.classes,
        "evaluation": dataclasses.asdict(spec.evaluation),
        "kinds": {kind: _kind_summary(r) for kind, r in results.items()},
    }
    if gen is not None and len(gen):
        best = gen.loc[gen.groupby(["train", "test"], sort=False)["accuracy"].idxmax()]
        summary["generalisation"] = {
            "probe": spec.generalisation.probe if spec.generalisation else None,
            "best_per_pair": [
                {"train": r.train, "test": r.test, "layer": None if r.layer != r.layer else
                 int(r.layer), "hook_point": r.hook_point, "accuracy": float(r.accuracy)}
                for r in best.itertuples()
            ],
        }
    if causal is not None and len(causal):
        summary["causal"] = _causal_summary(spec, causal)
    summary["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    summary["figures"] = figures
    summary["notes"] = notes
    return summary


def _causal_summary(spec: ProbeSpec, causal: Any) -> dict[str, Any]:
    """Per layer: the effect at the largest and smallest alpha, ablation, and the worst KL."""
    assert spec.causal is not None
    out: dict[str, Any] = {"probe": str(causal["probe"].iloc[0]),
                           "pooling": str(causal["pooling"].iloc[0]),
                           "targets": list(spec.causal.targets),
                           "template": spec.causal.template, "layers": []}
    for layer, rows in causal.groupby("layer", sort=True):
        entry: dict[str, Any] = {"layer": int(layer)}
        add = rows[rows["mode"] == "add"].sort_values("alpha")
        if len(add):
            lo, hi = add.iloc[0], add.iloc[-1]
            entry.update({"alpha_min": float(lo.alpha), "delta_at_alpha_min": float(
                lo.delta_vs_alpha0), "alpha_max": float(hi.alpha), "delta_at_alpha_max": float(
                hi.delta_vs_alpha0), "monotone": bool(np.all(np.diff(add.mean_logit_diff) >= 0))})
        ablate = rows[rows["mode"] == "ablate"]
        if len(ablate):
            entry["delta_ablate"] = float(ablate.iloc[0].delta_vs_alpha0)
        entry["max_kl_unrelated"] = float(rows["kl_unrelated"].max())
        out["layers"].append(entry)
    return out


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
            if "baseline" in s else "-",
            "control at best": _fmt(s.get("control_at_best", {}).get("value")),
            "random weights at best": _fmt(s["random_weights_at_best"]["value"])
            if "random_weights_at_best" in s else "-",
            "best selectivity": f"{_fmt(s['by_selectivity']['value'])} (layer "
                                f"{s['by_selectivity']['layer']})" if "by_selectivity" in s else "-",
            "best MDL": f"layer {s['by_codelength']['layer']}: "
                        f"{s['by_codelength']['codelength_bits']:.0f} bits, compression "
                        f"{s['by_codelength']['compression']:.2f}" if "by_codelength" in s else "-",
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


def _target(target: Any) -> str:
    if isinstance(target, (list, tuple)):
        return target[0] if len(target) == 1 else ", ".join(map(str, target))
    return str(target)


def _report(s: Mapping[str, Any]) -> str:
    ev = s["evaluation"]
    if ev["split"]:
        scheme = f"one split (test rows: {ev['split']})"
    else:
        scheme = f"{ev['cv']}-fold cross-validation" + (
            f" grouped by {ev['groups']}" if ev["groups"] else "")
    m, d, st = s["model"], s["dataset"], s["store"]
    lines = [f"# {s['name']}", ""]
    if s["description"]:
        lines += [s["description"].strip(), ""]
    lines += [
        f"- spec: `{s['spec']}`",
        f"- model: {m['name']} ({m['n_layers']} blocks, d_model {m['d_model']}, {m['dtype']})",
        f"- dataset: {d['name']}, {d['n_rows']} rows"
        + (f" (limit {d['limit']})" if d["limit"] else "") + f"; {d['source']}",
        f"- target: {_target(s['target'])} ({s['task']}"
        + (f", classes {s['classes']}" if s["classes"] else "") + f"), {s['n_rows']} rows probed",
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
        lines += ["## Generalisation", "",
                  f"Accuracy of a {s['generalisation']['probe']} probe trained on the row's "
                  "dataset and tested on the column's, at the best layer per pair (diagonal: "
                  "cross-validated).", "",
                  "| train \\ test | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        lines += ["| " + " | ".join(r) + " |" for r in grid]
        lines.append("")
    if "causal" in s:
        c = s["causal"]
        t0, t1 = c["targets"]
        lines += ["## Causal check", "",
                  f"Steering along the {c['probe']} direction ({c['pooling']} pooling) while the "
                  f"model reads `{c['template']}`: mean change in log P({t0!r}) - log P({t1!r}) "
                  "at the extreme alphas (units of the layer's residual norm), and the largest KL "
                  "divergence of next-token distributions on unrelated prompts.", "",
                  "| layer | alpha min: change | alpha max: change | monotone | ablation: change "
                  "| max KL unrelated |", "|---|---|---|---|---|---|"]
        for e in c["layers"]:
            lo = f"{e['alpha_min']:+g}: {e['delta_at_alpha_min']:+.3f}" if "alpha_min" in e else "-"
            hi = f"{e['alpha_max']:+g}: {e['delta_at_alpha_max']:+.3f}" if "alpha_max" in e else "-"
            mono = ("yes" if e["monotone"] else "no") if "monotone" in e else "-"
            ab = f"{e['delta_ablate']:+.3f}" if "delta_ablate" in e else "-"
            lines.append(f"| {e['layer']} | {lo} | {hi} | {mono} | {ab} | "
                         f"{e['max_kl_unrelated']:.4f} |")
        lines.append("")
    lines += ["## Timing", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timing_s"].items()]
    lines.append("")
    if s["figures"]:
        lines += ["## Figures", ""] + [f"- [{f}]({f})" for f in s["figures"]] + [""]
    if s["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in s["notes"]] + [""]
    return "\n".join(lines)
