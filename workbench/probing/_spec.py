"""Experiment specs: the schema of ``probes/*.toml``, written once as frozen pydantic models.

A spec names a model, a dataset, what to extract, which probes to train on which target, how
to evaluate them and where to write the results. Every key is checked: an unknown key is a
``SpecError`` that lists the valid keys of its section (and suggests the closest one), a value
of the wrong type names the key, the value and the type it needs. ``run_spec`` runs a spec.

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
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from ..errors import SpecError

ProbeKind = Literal["logistic", "ridge", "mass_mean", "mass_mean_iid", "mlp"]
ClassifierKind = Literal["logistic", "mass_mean", "mass_mean_iid", "mlp"]
#: Probe kinds a spec may name (the keys of ``workbench.probing.PROBES``).
PROBE_KINDS: tuple[str, ...] = typing.get_args(ProbeKind)
CLASSIFIER_KINDS: tuple[str, ...] = typing.get_args(ClassifierKind)


# -- value types: each says in words what it takes (for the one-line type error) -----------------


@dataclasses.dataclass(frozen=True)
class _Words:
    text: str


def _one_to_many(value: Any) -> Any:
    """A lone string is a list of one."""
    return (value,) if isinstance(value, str) else value


def _int_to_tuple(value: Any) -> Any:
    """A lone layer is a list of one."""
    return (value,) if isinstance(value, int) and not isinstance(value, bool) else value


Str = Annotated[StrictStr, _Words("a string")]
Int = Annotated[StrictInt, _Words("an integer")]
Number = Annotated[float, Strict(), _Words("a number")]
Bool = Annotated[StrictBool, _Words("true or false")]
Table = Annotated[dict[str, Any], _Words("a table ({ key = value, ... })")]
_LIST_WORDS = _Words("a string or a list of strings")
StrList = Annotated[
    tuple[StrictStr, ...], Field(min_length=1), BeforeValidator(_one_to_many), _LIST_WORDS
]
StrOrList = Annotated[
    StrictStr | Annotated[tuple[StrictStr, ...], Field(min_length=1)],
    _LIST_WORDS,
]
Numbers = Annotated[
    tuple[Annotated[float, Strict()], ...], Field(min_length=1), _Words("a list of numbers")
]
Layers = Annotated[
    StrictStr | Annotated[tuple[StrictInt, ...], Field(min_length=1)],
    BeforeValidator(_int_to_tuple),
    _Words("'all', a string such as '0,10,-1' or '5:20', an integer or a list of integers"),
]


class _Section(BaseModel):
    """A spec section: frozen, and no key outside the schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"cannot assign to {name!r}: a spec is frozen; use apply_overrides(spec, {{...}})"
        )


# -- the spec ------------------------------------------------------------------------------------


class ModelSection(_Section):
    """``[model]``: ``spec`` is a bundled name, hub id, local folder or ``.gguf`` file."""

    spec: Str = "smollm2-135m"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class DatasetSection(_Section):
    """``[dataset]``: ``spec`` is a built-in name or a data file; ``options`` go to
    ``load_dataset`` (e.g. ``n``, ``pairs``, ``test_fraction`` of built-ins); ``seed`` defaults
    to the spec's top-level ``seed``."""

    spec: Str
    text_column: Str | None = None
    label_columns: StrList | None = None
    limit: Annotated[Int, Field(ge=1)] | None = None
    seed: Int | None = None
    options: Table = Field(default_factory=dict)


class ExtractSection(_Section):
    """``[extract]``: as ``wb.extract``; ``out`` defaults to ``<outputs.dir>/store``."""

    layers: Layers = "all"
    pooling: StrList = ("last",)
    template: Str | None = None
    storage_dtype: Literal["float32", "float16"] = "float32"
    batch_tokens: Annotated[Int, Field(ge=1)] = 4096
    threads: Annotated[Int, Field(ge=1)] | None = None
    out: Str | None = None


class ProbeSection(_Section):
    """``[probe]``: one or more probe kinds, trained on ``target`` (a column, or a list of
    numeric columns for multi-output regression). ``level = "token"`` probes per word
    (``strategy`` picks the word's sub-token: first, last or mean). ``standardize`` (default
    true) fits on standardised features, as ``StandardScaler`` + the scikit-learn estimator;
    ``dropna`` (default false) drops the rows whose target is missing instead of refusing them.
    Both go to ``sweep``."""

    kind: Annotated[
        tuple[ProbeKind, ...], Field(min_length=1), BeforeValidator(_one_to_many), _LIST_WORDS
    ] = ("logistic",)
    target: StrOrList = "label"
    C: Annotated[Number, Field(gt=0)] = 1.0
    alpha: Annotated[Number, Field(ge=0)] = 1.0
    level: Literal["sentence", "token"] = "sentence"
    strategy: Literal["first", "last", "mean"] = "first"
    standardize: Bool = True
    dropna: Bool = False


class EvaluationSection(_Section):
    """``[evaluation]``: ``cv`` folds (grouped by ``groups``) or one ``split`` (a boolean
    column, True = test), the control task, MDL and bootstrap CIs."""

    cv: Annotated[Int, Field(ge=2)] = 5
    groups: Str | None = None
    split: Str | None = None
    control: Bool = True
    control_types: Str | None = None
    mdl: Bool = False
    n_boot: Annotated[Int, Field(ge=0)] = 1000
    random_weights: Bool = False


class CausalSection(_Section):
    """``[causal]``: steer along each probe's direction at ``layers`` (``"best"``: the best
    layers by score and by selectivity) and read the model's answer after ``template``: the
    change in ``log P(targets[0]) - log P(targets[1])`` per alpha (in units of the layer's
    residual norm), and the KL side effect on unrelated prompts (``CausalCheck``)."""

    layers: Layers = "best"
    alphas: Numbers = (-0.2, -0.1, 0.0, 0.1, 0.2)
    template: Str = "{text} This statement is"
    targets: StrList = (" True", " False")
    probe: Str | None = None
    limit: Annotated[Int, Field(ge=1)] = 64
    mode: Literal["add", "ablate", "both"] = "add"
    positions: Literal["all", "last"] = "all"
    batch_size: Annotated[Int, Field(ge=1)] = 8


class GeneralisationSection(_Section):
    """``[generalisation]``: train on each dataset, test on each, per layer, with the same
    extraction settings (and the ``[dataset]`` options)."""

    datasets: StrList
    probe: ClassifierKind = "logistic"
    target: Str | None = None


class OutputsSection(_Section):
    """``[outputs]``: ``dir`` defaults to ``runs/<name>``; figures are HTML, plus PNG when
    kaleido and Chromium work."""

    dir: Str | None = None
    figures: Bool = True
    png: Bool = True


class ProbeSpec(_Section):
    """A parsed experiment spec (see ``probes/*.toml``).

    Attributes:
        name, description, seed: top-level keys (``name`` defaults to the file's stem).
        model, dataset, extract, probe, evaluation, generalisation, causal, outputs: the
            sections.
        path: the TOML file it was read from (None when built in Python; not a TOML key).

    Examples:
        >>> spec = parse_spec({"name": "t", "dataset": {"spec": "cities", "limit": 40}})
        >>> spec.probe.kind, spec.out_dir.as_posix()
        (('logistic',), 'runs/t')
    """

    name: Str
    description: Str = ""
    seed: Int = 0
    model: ModelSection = ModelSection()
    dataset: DatasetSection
    extract: ExtractSection = ExtractSection()
    probe: ProbeSection = ProbeSection()
    evaluation: EvaluationSection = EvaluationSection()
    generalisation: GeneralisationSection | None = None
    causal: CausalSection | None = None
    outputs: OutputsSection = OutputsSection()
    path: Str | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.outputs.dir) if self.outputs.dir else Path("runs") / self.name

    @property
    def store_dir(self) -> Path:
        return Path(self.extract.out) if self.extract.out else self.out_dir / "store"

    def to_dict(self) -> dict[str, Any]:
        """The spec as TOML-shaped data (unset keys left out); ``parse_spec`` reads it back."""
        return self.model_dump(mode="json", exclude={"path"}, exclude_none=True)

    @model_validator(mode="after")
    def _check(self) -> ProbeSpec:
        _validate(self)
        return self


def _section_model(annotation: Any) -> type[_Section] | None:
    """The section model of a ``ProbeSpec`` field (``X`` or ``X | None``), else None."""
    for a in (annotation, *typing.get_args(annotation)):
        if isinstance(a, type) and issubclass(a, _Section):
            return a
    return None


#: section name -> its model, in the order of ``ProbeSpec``'s fields
_SECTIONS: dict[str, type[_Section]] = {
    name: model
    for name, info in ProbeSpec.model_fields.items()
    if (model := _section_model(info.annotation)) is not None
}


# -- errors: pydantic's first error as one line --------------------------------------------------


def _where(section: str, path: str | None) -> str:
    at = f"[{section}]" if section else "the top level"
    return f"{at} of {path}" if path else at


def _type_name(value: Any) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _keys(model: type[_Section]) -> list[str]:
    return [k for k in model.model_fields if k != "path"]


def _words(annotation: Any) -> list[str]:
    """The ``_Words`` anywhere in a field's annotation."""
    found = [a.text for a in getattr(annotation, "__metadata__", ()) if isinstance(a, _Words)]
    for arg in typing.get_args(annotation):
        found += _words(arg)
    return found


def _literals(annotation: Any) -> list[str]:
    """The values of the ``Literal`` anywhere in a field's annotation."""
    if typing.get_origin(annotation) is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return [v for arg in typing.get_args(annotation) for v in _literals(arg)]


def _suggest(value: Any, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(value), valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_line(error: Any, raw: Mapping[str, Any], where: str | None) -> SpecError:
    """Our one-line ``SpecError`` for one of pydantic's errors (``ValidationError.errors()``)."""
    kind, loc = error["type"], error["loc"]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):
        return cause
    section = loc[0] if loc and loc[0] in _SECTIONS else ""
    if section and len(loc) == 1:
        if kind == "missing":
            return SpecError(
                f"{where or 'the spec'} has no [dataset] section: add [dataset] with "
                "spec = a built-in name (cities, neg_cities, world_places) or a data "
                "file"
            )
        body = raw[section]
        return SpecError(
            f"{section} in {_where('', where)} must be a table ([{section}]), got "
            f"{body!r} ({_type_name(body)})"
        )
    model = _SECTIONS[section] if section else ProbeSpec
    key = str(loc[1] if section else loc[0])
    valid = _keys(model)
    if kind == "extra_forbidden":
        return SpecError(
            f"unknown key {key!r} in {_where(section, where)}"
            f"{_suggest(key, valid)}; the valid keys are: {', '.join(valid)}"
        )
    if kind == "missing":
        if not section:
            return SpecError('the spec needs a name (name = "..." at the top level)')
        return SpecError(f"[{section}] of {where or 'the spec'} needs {key} (e.g. {key} = ...)")
    what = f"[{section}] {key}" if section else key
    info = model.model_fields[key]
    if kind == "literal_error":
        choices = _literals(info.annotation)
        return SpecError(
            f"{what} = {error['input']!r} in {where or 'the spec'} is not valid"
            f"{_suggest(error['input'], choices)}: choose from {', '.join(choices)}"
        )
    if kind in ("greater_than_equal", "greater_than"):
        bound = (
            f"at least {error['ctx']['ge']:g}"
            if kind == "greater_than_equal"
            else f"greater than {error['ctx']['gt']:g}"
        )
        return SpecError(f"{what} = {error['input']} in {where or 'the spec'} must be {bound}")
    words = [a.text for a in info.metadata if isinstance(a, _Words)] + _words(info.annotation)
    need = words[0] if words else "valid"
    value = (raw.get(section, {}) if section else raw).get(key)
    full = f"{section}.{key}" if section else key
    return SpecError(
        f"{full} in {_where(section, where)} must be {need}, got {value!r} ({_type_name(value)})"
    )


# -- checks across keys --------------------------------------------------------------------------


def _validate(spec: ProbeSpec) -> None:
    """What one key's type cannot say: choices that depend on other keys, and combinations."""
    p = spec.path
    multi = isinstance(spec.probe.target, tuple)
    for kind in spec.probe.kind:
        if multi and kind != "ridge":
            raise SpecError(
                f"[probe] target = {list(spec.probe.target)} is a list of columns (multi-output "
                f"regression), which only kind 'ridge' fits; {kind!r} needs one column"
            )
    if spec.generalisation is not None and spec.generalisation.target is None and multi:
        raise SpecError(
            "[generalisation] needs a target (one class column) when [probe] "
            "target is a list of columns"
        )
    if spec.causal is not None:
        c = spec.causal
        if isinstance(c.layers, str) and c.layers != "best":
            raise SpecError(
                f'[causal] layers = {c.layers!r} in {p or "the spec"}: give "best" '
                "(the best layers by score and selectivity) or a list of layers"
            )
        classifiers: list[str] = [k for k in spec.probe.kind if k in CLASSIFIER_KINDS]
        if c.probe is not None and c.probe not in classifiers:
            raise SpecError(
                f"[causal] probe (one of [probe] kind's classifiers) = {c.probe!r} in "
                f"{p or 'the spec'} is not valid{_suggest(c.probe, classifiers)}: "
                f"choose from {', '.join(classifiers)}"
            )
        if not classifiers:
            raise SpecError(
                f"[causal] steers along a classifier's direction: [probe] kind = "
                f'{list(spec.probe.kind)} has none; add "logistic" or "mass_mean"'
            )
        if c.template.count("{text}") != 1:
            raise SpecError(
                f"[causal] template = {c.template!r} must contain {{text}} exactly "
                'once, e.g. "{text} This statement is"'
            )
        if len(c.targets) != 2:
            raise SpecError(
                f"[causal] targets = {list(c.targets)}: give two answer strings, "
                'e.g. [" True", " False"]'
            )
        if spec.probe.level == "token":
            raise SpecError("[causal] is not supported for token-level specs")
    if spec.probe.level == "token":
        if "tokens" not in spec.extract.pooling:
            raise SpecError(
                f'[probe] level = "token" needs per-token states: add "tokens" to [extract] '
                f"pooling in {p or 'the spec'} (it is {list(spec.extract.pooling)})"
            )
        if spec.generalisation is not None:
            raise SpecError("[generalisation] is not supported for token-level specs")
        if not isinstance(spec.probe.target, str):
            raise SpecError(
                f"[probe] target must be one word-level column for level = "
                f'"token", got {list(spec.probe.target)}'
            )


# -- reading -------------------------------------------------------------------------------------


def parse_spec(raw: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> ProbeSpec:
    """Build a ``ProbeSpec`` from TOML-shaped data (what ``tomllib`` returns).

    Raises:
        SpecError: an unknown key (the valid keys are listed), a value of the wrong type, a
            missing ``[dataset] spec``, or a value outside its choices.
    """
    where = None if path is None else str(path)
    if not isinstance(raw, Mapping):
        raise SpecError(f"a spec is a table of sections, got {_type_name(raw)}")
    if "path" in raw:  # a field of ProbeSpec (where it was read from), not a key of the file
        valid = _keys(ProbeSpec)
        raise SpecError(
            f"unknown key 'path' in {_where('', where)}; the valid keys are: {', '.join(valid)}"
        )
    data = dict(raw)
    if not data.get("name") and where:
        data["name"] = Path(where).stem
    try:
        return ProbeSpec.model_validate({**data, "path": where})
    except ValidationError as exc:
        raise _one_line(exc.errors(include_url=False)[0], raw, where) from None


def load_spec(path: str | os.PathLike[str]) -> ProbeSpec:
    """Read and check a spec file (``probes/*.toml``).

    Raises:
        SpecError: the file does not exist, is not valid TOML, or fails ``parse_spec``.
    """
    file = Path(path)
    if not file.is_file():
        here = sorted(str(p) for p in Path("probes").glob("*.toml"))
        raise SpecError(
            f"spec file {file} does not exist"
            + (f"; the specs in probes/ are: {', '.join(here)}" if here else "")
        )
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
                raise SpecError(
                    f"override {dotted!r}: {section!r} is not a section"
                    f"{_suggest(section, list(_SECTIONS))}; the sections are: "
                    f"{', '.join(_SECTIONS)}"
                )
            target = raw.setdefault(section, {}) if section else raw
            if v is None:
                target.pop(name, None)
            else:
                target[name] = list(v) if isinstance(v, tuple) else v
    return parse_spec(raw, spec.path)
