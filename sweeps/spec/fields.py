"""The generic part of the spec: a YAML section is a dataclass, and its keys, value checks, defaults, plain-dict form
and flat dotted view all derive from that dataclass's fields.

Value checks are pydantic v2's: a `TypeAdapter` of each field's annotation in strict mode without inf/nan, so a
constraint is declared on the field itself (`Annotated[int, Field(ge=1)]`, `Literal[...]`) and nowhere else.
memsweep only words pydantic's error records its own way (key path, bad value, what would be valid; see
`describe`). Two things stay hand-written because pydantic cannot say them: did-you-mean on unknown keys, and the
parsers of values YAML writes as `{family: ...}` mappings (tails, rule distributions), registered per type.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from sweeps.spec.errors import unknown

STRICT = ConfigDict(strict=True, allow_inf_nan=False)


class _Missing:
    """A required value no YAML key sets: an axis supplies it per grid point (Hydra's `???`)."""

    def __repr__(self) -> str:
        return "???"

    def __reduce__(self) -> str:
        return "MISSING"  # pickles as the module global, so identity survives Tune's pickling of the spec


MISSING: Any = _Missing()
# Parsers of field types that YAML writes as mappings: type -> parse(path, value) -> (value, problem or None).
PARSERS: dict[type, Callable[[str, Any], tuple[Any, str | None]]] = {}


@dataclass(frozen=True)
class Key:
    """One YAML key: its field's name, annotation (with constraints), default (MISSING: required) and help."""

    name: str
    hint: Any
    default: Any

    @property
    def help(self) -> str:
        """The `Field(description=...)` of the annotation: what a valid value looks like."""
        return _help(self.hint)


def _help(hint: Any) -> str:
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, FieldInfo) and meta.description:
            return meta.description
    return next((h for h in map(_help, typing.get_args(hint)) if h), "")


@functools.cache
def keys_of(kind: type, exclude: tuple[str, ...] = ()) -> dict[str, Key]:
    """The YAML keys of a section dataclass, in field order, leaving out the fields set elsewhere (`exclude`)."""
    hints = typing.get_type_hints(kind, include_extras=True)
    out = {}
    for f in dataclasses.fields(kind):
        if not f.init or f.name in exclude:
            continue
        default = (f.default if f.default is not dataclasses.MISSING else
                   f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING)
        out[f.name] = Key(f.name, hints[f.name], default)
    return out


# ------------------------------------------------------------------------------------------------- checks
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _yaml_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (an exponent without a dot) as text: accept it wherever a float is expected."""
    return float(value) if isinstance(value, str) and _EXPONENT.match(value.strip()) else value


def _mentions(hint: Any, kind: type) -> bool:
    return hint is kind or any(_mentions(a, kind) for a in typing.get_args(hint))


@functools.cache
def _adapter(hint: Any) -> TypeAdapter:
    if _mentions(hint, float):
        hint = typing.Annotated[hint, BeforeValidator(_yaml_number)]
    return TypeAdapter(hint, config=STRICT)


def _literals(hint: Any) -> tuple[Any, ...]:
    """The allowed values of a Literal inside `hint` (possibly Annotated or Optional), else ()."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return tuple(v for a in typing.get_args(hint) for v in _literals(a))


def check_value(path: str, hint: Any, value: Any, help: str = "") -> tuple[Any, str | None]:
    """(the value as the field holds it, None), or (value, one-line problem naming path, value and what is valid)."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if isinstance(base, type) and base in PARSERS:
        return PARSERS[base](path, value)
    try:
        return _adapter(hint).validate_python(value), None
    except ValidationError as e:
        errors = [x for x in e.errors() if x["type"] != "none_required"] or e.errors()
        return value, describe(path, value, errors[0], hint, help)


_PHRASES = {
    "int_type": "is not an integer", "int_parsing": "is not an integer", "int_from_float": "is not an integer",
    "float_type": "is not a number", "float_parsing": "is not a number", "finite_number": "is not a finite number",
    "bool_type": "is not a boolean; use true or false", "bool_parsing": "is not a boolean; use true or false",
    "string_type": "is not a string", "list_type": "is not a list", "tuple_type": "is not a list",
    "greater_than_equal": "is too small; must be >= {ge}", "greater_than": "is too small; must be > {gt}",
    "less_than_equal": "is too large; must be <= {le}", "less_than": "is too large; must be < {lt}",
    "string_pattern_mismatch": "is invalid",
}


def describe(path: str, value: Any, error: Mapping[str, Any], hint: Any = None, help: str = "") -> str:
    """A pydantic error record in memsweep's words: `path: value is ...; what would be valid`."""
    from sweeps.spec.errors import closest

    kind, ctx = error["type"], error.get("ctx") or {}
    loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in error.get("loc", ()))
    shown = error.get("input", value) if loc else value
    where = f"{path}{loc}"
    if kind == "literal_error":
        choices = [str(c) for c in _literals(hint)] or [ctx.get("expected", "")]
        return f"{where}: {shown!r} is not one of {', '.join(choices)}; {closest(str(shown), choices)}".rstrip("; ")
    if kind == "value_error":
        return f"{where}: {shown!r}: {str(ctx.get('error', error['msg']))}"
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
    phrase = _PHRASES.get(kind, error["msg"][:1].lower() + error["msg"][1:]).format(**ctx)
    return f"{where}: {shown!r} {phrase}" + (f" ({help})" if help else "")


# ----------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Section:
    """A YAML section of per-trial settings (grammar, data, model, ...): the dataclass each grid point builds from
    it, and the fields of that dataclass the spec sets elsewhere ({field: where}, e.g. train.seed from `seed`)."""

    name: str
    kind: type
    derived: Mapping[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> dict[str, Key]:
        return keys_of(self.kind, tuple(self.derived))

    def check(self, body: Any) -> tuple[dict[str, Any], list[str]]:
        """(validated values of the keys `body` sets, problems): unknown keys with did-you-mean, bad values."""
        if body is None:
            return {}, []
        keys = self.keys
        if not isinstance(body, Mapping):
            return {}, [f"{self.name}: {body!r} is not a mapping of keys ({', '.join(keys)})"]
        values, problems = {}, []
        for k, v in body.items():
            path = f"{self.name}.{k}"
            if k in self.derived:
                problems.append(f"{path}: {self.derived[k]}")
            elif k not in keys:
                problems.append(unknown(self.name, str(k), keys))
            else:
                value, problem = check_value(path, keys[k].hint, v, keys[k].help)
                if problem:
                    problems.append(problem)
                else:
                    values[k] = value
        return values, problems


@dataclass(frozen=True)
class Fixed:
    """What a section fixes for every trial of a sweep: attribute access gives the YAML's value, else the
    dataclass default, else MISSING (an axis supplies it per grid point). `build` makes the section's dataclass."""

    section: Section
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("section", "values"):
            raise AttributeError(name)
        keys = self.section.keys
        if name not in keys:
            raise AttributeError(f"section {self.section.name!r} has no key {name!r}; keys: {', '.join(keys)}")
        return self.values.get(name, keys[name].default)

    def build(self, **given: Any) -> Any:
        """The section's dataclass from the fixed values overridden by `given` (raises its own ValueError)."""
        return self.section.kind(**{**self.values, **given})

    def to_dict(self) -> dict[str, Any]:
        """The fixed values as plain YAML data (only the keys the spec set)."""
        return {k: to_plain(v, defaults=False) for k, v in self.values.items()}


# ---------------------------------------------------------------------------------------------- plain data
def to_plain(x: Any, defaults: bool = True) -> Any:
    """Dataclasses -> dicts (field order), tuples/lists -> lists, recursively: JSON- and YAML-ready data.
    defaults=False leaves out dataclass fields equal to their default (the short form a person writes), except
    the first field, which says what the value is (a tail's `family`)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        keys = keys_of(type(x)) if not defaults else {}
        return {f.name: to_plain(getattr(x, f.name), defaults) for i, f in enumerate(dataclasses.fields(x))
                if defaults or i == 0 or f.name not in keys or getattr(x, f.name) != keys[f.name].default}
    if isinstance(x, (tuple, list)):
        return [to_plain(v, defaults) for v in x]
    if isinstance(x, Mapping):
        return {str(k): to_plain(v, defaults) for k, v in x.items()}
    return x


@functools.cache
def _lax(kind: type) -> TypeAdapter:
    return TypeAdapter(kind)


def from_plain(kind: type, data: Mapping[str, Any]) -> Any:
    """Inverse of to_plain for a dataclass type (nested dataclasses and tuples rebuilt from their field types)."""
    return _lax(kind).validate_python(data)


def flatten(prefix: str, x: Any, out: dict[str, Any]) -> None:
    """Nested dicts / lists of dicts -> dotted names; lists of scalars -> one comma-joined string."""
    if isinstance(x, Mapping):
        for k, v in x.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(x, list) and any(isinstance(v, (Mapping, list)) for v in x):
        for i, v in enumerate(x):
            flatten(f"{prefix}.{i}", v, out)
    elif isinstance(x, list):
        out[prefix] = ",".join(str(v) for v in x)
    else:
        out[prefix] = x
