"""The one check of the config dataclasses: keys, types and ranges, with errors naming the setting.

- :func:`checked_fields`: a ``from_dict`` mapping whose keys are all fields of the dataclass.
- :func:`check_fields`: every field's value against its annotation (``int``, ``float``, ``bool``, ``str``,
  ``X | None``, ``tuple[...]``, ``list[...]``, ``dict``, ``Literal``, a nested config dataclass) and the
  class's declared :class:`Rule` s (ranges, choices). Each config dataclass calls it from
  ``__post_init__``, so a field added later is type-checked by its annotation without further code.
- :class:`ConfigError`: the error both raise, naming the setting by its dotted path (``stage2.steps`` in a
  pipeline YAML, ``Stage2Config.steps`` for a dataclass built in Python), what was expected and what was
  given: ``stage2.steps: expected an int >= 1, got -10``.

Type rules: a bool is not an int; an int is accepted (and stored as a float) for a float; floats must be
finite; a list is accepted (and stored as a tuple) for a tuple; an ``os.PathLike`` is accepted (and stored
as a str) for a str.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "Rule",
    "at_least",
    "check_device_name",
    "check_fields",
    "checked_fields",
    "greater_than",
    "in_range",
    "one_of",
]


class ConfigError(ValueError, TypeError):
    """A config setting of the wrong type or out of range, an unknown or a missing key.

    A ``ValueError`` and a ``TypeError`` both, so callers catching either (as they did before this class
    existed) still do.

    Attributes:
        owner: what holds the setting: a class name (``"Stage2Config"``), a YAML section (``"stage2"``) or
            ``""`` (the top level of a pipeline config).
        field: the setting's dotted path within ``owner`` (``"steps"``, ``"fit.steps"``; ``""`` for the
            owner itself).
        problem: what is wrong, e.g. ``"expected an int >= 1, got -10"``.
    """

    def __init__(self, owner: str, field: str, problem: str) -> None:
        self.owner, self.field, self.problem = owner, field, problem
        path = self.path
        super().__init__(f"{path}: {problem}" if path else problem)

    @property
    def path(self) -> str:
        """``owner.field`` (either may be empty)."""
        return ".".join(p for p in (self.owner, self.field) if p)

    def within(self, owner: str, prefix: str = "") -> ConfigError:
        """The same error seen from an enclosing config: held by ``owner``, ``prefix`` prepended to the field
        (e.g. a ``Stage2Config`` error re-raised as the pipeline YAML's ``stage2.steps``)."""
        return ConfigError(owner, ".".join(p for p in (prefix, self.field) if p), self.problem)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (DataLoader workers, multiprocessing)
        return (ConfigError, (self.owner, self.field, self.problem))


# ------------------------------------------------------------------------------------------------ rules


@dataclasses.dataclass(frozen=True)
class Rule:
    """A range or choice a field's value must satisfy, beyond its type.

    Attributes:
        ok: the test of one scalar value (applied to every element of a tuple/list; None always passes).
        text: how the expectation reads after the type, e.g. ``">= 1"`` in ``"an int >= 1"``.
        replaces_type: ``text`` is the whole expectation (choices: ``"one of 'all', 'ring'"``).
    """

    ok: Callable[[Any], bool]
    text: str
    replaces_type: bool = False


def at_least(lo: float) -> Rule:
    """``value >= lo``."""
    return Rule(lambda v: v >= lo, f">= {lo}")


def greater_than(lo: float) -> Rule:
    """``value > lo``."""
    return Rule(lambda v: v > lo, f"> {lo}")


def in_range(lo: float, hi: float, *, hi_open: bool = False, lo_open: bool = False) -> Rule:
    """``lo <= value <= hi`` (``<`` on an open end), reading ``in [lo, hi)`` etc."""

    def ok(v: Any) -> bool:
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Rule(ok, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def one_of(*choices: Any) -> Rule:
    """``value in choices``."""
    return Rule(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices), replaces_type=True)


def check_device_name(name: str) -> Rule | None:
    """None when ``name`` is ``"auto"`` or a torch device string (``cpu``, ``cuda``, ``cuda:1``, ...), else
    the :class:`Rule` it breaks (for the error text). Whether the device exists here is checked when a run
    starts (:func:`mvlift._runtime.resolve_device`)."""
    rule = Rule(lambda v: False, "'auto', 'cpu', 'cuda' or 'cuda:N'", replaces_type=True)
    if name == "auto":
        return None
    import torch

    try:
        torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        return rule
    return None


# ---------------------------------------------------------------------------------------- type checks


class _Mismatch(Exception):
    """Internal: the value does not fit the annotation; ``hint`` is appended to the message."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


_NAMES = {bool: "true or false", int: "an int", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "ints", float: "numbers", str: "strings"}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def describe(tp: Any) -> str:
    """How an annotation reads in an error: ``int | None`` -> ``"null or an int"``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _NAMES:
        return _NAMES[tp]
    if _is_union(tp):
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a) for a in rest)
        return f"null or {text}" if len(rest) < len(args) else text
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(args)) == 1:
                return f"a list of {len(args)} {_PLURALS.get(args[0], describe(args[0]))}"
            return "a list (" + ", ".join(describe(a) for a in args) + ")"
        return f"a list of {_PLURALS.get(args[0], describe(args[0]))}" if args else "a list"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any) -> Any:
    """``value`` as stored for the annotation ``tp``; raises :class:`_Mismatch` when it does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch()
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch()
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Mismatch("(not finite)")
            return float(value)
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                pass
            else:  # YAML 1.1 reads 1e-3 (no dot) as a string
                raise _Mismatch("(a string: YAML reads numbers like 1e-3 as text, write 1.0e-3)")
        raise _Mismatch()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _Mismatch()
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        hint = ""
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a)
            except _Mismatch as exc:
                hint = hint or exc.hint
        raise _Mismatch(hint)
    if origin is typing.Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise _Mismatch()
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch(f"({len(value)} items)")
            items = [_convert(v, a) for v, a in zip(value, args, strict=True)]
        else:
            items = [_convert(v, args[0]) for v in value] if args else list(value)
        return tuple(items) if (origin or tp) is tuple else items
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
        raise _Mismatch()
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch()
    return value  # an annotation this check does not model (e.g. a Callable): left to the class


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_class(tp: Any) -> type | None:
    """The config dataclass of a field annotated with one (or ``X | None``), else None."""
    if _is_union(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return _nested_class(rest[0]) if len(rest) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _build_nested(klass: type, value: Any, owner: str, name: str) -> Any:
    """A nested config from an instance or a mapping of its fields, errors re-raised under ``name``."""
    if isinstance(value, klass):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(owner, name, f"expected {describe(klass)}, got {_shown(value)}")
    try:
        if hasattr(klass, "from_dict"):
            return klass.from_dict(value)
        return klass(**checked_fields(klass, value, "keys"))
    except ConfigError as exc:
        raise exc.within(owner, name) from None
    except (TypeError, ValueError) as exc:  # a class's own check with its own message
        raise ConfigError(owner, name, str(exc)) from None


def check_fields(obj: Any, rules: Mapping[str, Rule] | None = None) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation and ``rules``, storing
    the converted values (int -> float, list -> tuple, mapping -> nested config, ...).

    Args:
        obj: a dataclass instance (called from its ``__post_init__``).
        rules: ranges/choices by field name; fields without one are checked by type only.

    Raises:
        ConfigError: the first field that breaks its annotation or rule, as
            ``"Class.field: expected <type> <rule>, got <value>"``.
    """
    cls = type(obj)
    owner = cls.__name__
    rules = rules or {}
    fields = {f.name: f for f in dataclasses.fields(obj)}
    unknown = set(rules) - set(fields)
    if unknown:  # a programming error in the class, not a user error
        raise RuntimeError(f"{owner}: rules for unknown fields {sorted(unknown)}")
    hints = _hints(cls)
    for name in fields:
        value = getattr(obj, name)
        tp = hints.get(name, Any)
        rule = rules.get(name)
        klass = _nested_class(tp)
        if klass is not None and value is not None:
            converted = _build_nested(klass, value, owner, name)
        else:
            try:
                converted = _convert(value, tp)
            except _Mismatch as exc:
                expected = rule.text if rule is not None and rule.replaces_type else describe(tp)
                if rule is not None and not rule.replaces_type:
                    expected += f" {rule.text}"
                hint = f" {exc.hint}" if exc.hint else ""
                raise ConfigError(owner, name, f"expected {expected}, got {_shown(value)}{hint}") from None
            if rule is not None and converted is not None:
                items = converted if isinstance(converted, (tuple, list)) else (converted,)
                if not all(rule.ok(v) for v in items):
                    expected = rule.text if rule.replaces_type else f"{describe(tp)} {rule.text}"
                    raise ConfigError(owner, name, f"expected {expected}, got {_shown(value)}")
        if converted is not value:
            object.__setattr__(obj, name, converted)


def checked_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` as a new dict, after checking that it is a mapping whose keys are all fields of the dataclass
    ``cls``.

    Raises:
        ConfigError: ``data`` is not a mapping, or has unknown keys
            (``"unknown {what} [keys] (did you mean ...?); known: [fields]"``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            cls.__name__, "", f"expected a mapping of {cls.__name__} fields, got {_shown(data)}"
        )
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        close = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        guesses = [f"{m[0]!r} for {k!r}" for k, m in close.items() if m]
        maybe = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        raise ConfigError(cls.__name__, "", f"unknown {what} {unknown}{maybe}; known: {sorted(known)}")
    return dict(data)
