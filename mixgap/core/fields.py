"""Allowed values declared where each config field is declared, and the one checker that reads them.

A field of a schema dataclass (:mod:`mixgap.core.schema`, :mod:`mixgap.core.schema_models`) states what it allows in
its dataclass ``metadata``, which OmegaConf ignores (``tests/unit/test_config.py`` checks that the composed config
is the same without it):

- ``choices``: the allowed values (:func:`one_of`; None is written ``null``, as on the command line);
- ``range``: ``"> 0"``, ``">= 0"`` or an interval such as ``"[0, 1)"`` (:func:`ranged`), with an optional ``note``
  said after it and an ``also`` value allowed outside it (``finetune_mode.max_steps``: -1);
- ``contains``: substrings the value must hold (the judge prompt's ``{problem}``, ``{gold}``, ``{answer}``).

:func:`check_fields` walks a config node against its dataclass (nested dataclasses, optional ones when set, dicts of
them, and each value of a dict field) and raises :class:`ConfigError` for the first value its field does not allow,
in one line: ``mix.weight=1.5 is not allowed; it must be in [0, 1] (fraction from the strong source)``,
``eval.extract='official' is not allowed; choose one of policy, boxed``. :func:`check_field` is the same check for
one value (code that reads a field outside a composed config); :func:`choices_of` gives a field's choices.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any

from omegaconf import OmegaConf

from mixgap.core.errors import ConfigError


def one_of(*choices: Any, **field_args: Any) -> Any:
    """A dataclass field (``default=`` / ``default_factory=`` in ``field_args``) allowing only ``choices``."""
    return dataclasses.field(metadata={"choices": choices}, **field_args)


def ranged(rule: str, *, note: str = "", also: tuple[Any, str] | None = None, **field_args: Any) -> Any:
    """A dataclass field allowing the numbers of ``rule`` (``"> 0"``, ``">= 0"``, ``"[0, 1)"``, ...); ``note`` is said
    after the rule; ``also = (value, meaning)`` is allowed too; on a dict field, the rule holds for every value."""
    meta: dict[str, Any] = {"range": rule, "note": note}
    if also is not None:
        meta["also"] = also
    return dataclasses.field(metadata=meta, **field_args)


def choices_of(cls: type, name: str) -> tuple[Any, ...]:
    """The ``choices`` declared for field ``name`` of dataclass ``cls`` (KeyError when it declares none)."""
    return _fields(cls)[name].metadata["choices"]


def _within(value: float, rule: str) -> bool:
    """``value`` satisfies ``rule``: ``> x``, ``>= x``, or an interval ``[a, b]`` with each end open or closed."""
    if rule.startswith(">="):
        return value >= float(rule[2:])
    if rule.startswith(">"):
        return value > float(rule[1:])
    low, high = (float(end) for end in rule[1:-1].split(","))
    above = low < value if rule[0] == "(" else low <= value
    below = value < high if rule[-1] == ")" else value <= high
    return above and below


def check_value(path: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    """Check one ``value`` (at ``path``, e.g. ``mix.weight``) against a field's ``meta``; None is not checked (an
    optional field left unset).

    Raises:
        ConfigError: one line naming the field, the value and what is allowed.
    """
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        shown = ", ".join("null" if c is None else str(c) for c in meta["choices"])
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of {shown}")
    rule = meta.get("range")
    if rule is not None and not isinstance(value, (int, float)):  # a dict field: the rule is for its values
        return
    also = meta.get("also")
    if rule is not None and not _within(value, rule) and not (also is not None and value == also[0]):
        said = rule if rule.startswith(">") else f"in {rule}"
        said = f"{also[0]} ({also[1]}) or {said}" if also is not None else said
        note = f" ({meta['note']})" if meta.get("note") else ""
        raise ConfigError(f"{path}={value!r} is not allowed; it must be {said}{note}")
    for part in meta.get("contains", ()):
        if part not in str(value):
            raise ConfigError(f"{path} lacks {part}; it needs {', '.join(meta['contains'][:-1])} and "
                              f"{meta['contains'][-1]}")


def check_field(cls: type, name: str, value: Any, path: str) -> None:
    """:func:`check_value` of ``value`` against what field ``name`` of dataclass ``cls`` declares."""
    check_value(path, value, _fields(cls)[name].metadata)


def check_fields(node: Any, cls: type, path: str = "") -> None:
    """Check every field of the config node ``node`` (shaped by dataclass ``cls``) against what it declares, in
    declaration order, into nested dataclasses (optional ones when set), dicts of dataclasses (``benchmark.<name>``)
    and the values of a dict field (``eval.n_samples_by_benchmark.<name>``).

    Raises:
        ConfigError: the first value its field does not allow (:func:`check_value`).
    """
    hints = _hints(cls)
    for name, spec in _fields(cls).items():
        inner, mapping = _nested(hints[name])
        if not spec.metadata and inner is None:  # nothing declared here or below
            continue
        if OmegaConf.is_config(node) and OmegaConf.is_missing(node, name):
            continue
        where, value = f"{path}.{name}" if path else name, node.get(name)
        check_value(where, value, spec.metadata)
        if value is None or (inner is None and not (mapping and "range" in spec.metadata)):
            continue
        for key, item in (value.items() if mapping else [(None, value)]):
            at = where if key is None else f"{where}.{key}"
            if inner is not None:
                check_fields(item, inner, at)
            else:
                check_value(at, item, spec.metadata)


@cache
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested(hint: Any) -> tuple[type | None, bool]:
    """``(dataclass inside the field's type or None, whether the field is a dict)`` for ``X``, ``X | None``,
    ``dict[str, X]``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        found = [_nested(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        return found[0] if found else (None, False)
    if origin is dict:
        value = typing.get_args(hint)[1]
        return (value if dataclasses.is_dataclass(value) else None), True
    return (hint if dataclasses.is_dataclass(hint) else None), False
