"""Checks of the command line before Hydra composes anything, and of the keys of a composed config.

:func:`check_override_keys` reads every ``key=value`` of ``python launch.py ...`` with Hydra's own override parser
(``OverridesParser``) and refuses, in one line, a key the schema does not have (``mix.wieght=0.2``), an option a
config group does not have (``student=qwen99b``, ``benchmark=[mathx]``, ``hydra/launcher=slurmm``), a group put
where the schema has no field (``+judge=qwen32b``: the judge goes at ``eval.judge``) and a value that does not fit
the field's type (``mix.weight=abc``). List values and sweep values (``a,b``, ``choice(...)``, ``range(...)``) are
checked one by one; interpolations (``${...}``) and ``null`` for an optional field pass. :func:`check_keys` walks a
composed config against the schema (``+mix.wieght=0.2`` adds a key that Hydra accepts).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode

from mixgap.core import conftree
from mixgap.core.conftree import ConfTree
from mixgap.core.errors import ConfigError
from mixgap.core.hydra_rules import always_set, defaults_groups, defaults_of, unwrap_optional
from mixgap.core.schema import MixgapConfig

#: what a value of each scalar type looks like, for the refusal's "what is allowed"
_TYPE_WORDS = {float: "a float (a number such as 0.2)", int: "an int (a whole number such as 3)",
               bool: "a bool (true or false)", str: "a string"}
_NODES = {float: FloatNode, int: IntegerNode, bool: BooleanNode}


def unknown_key_message(path: str, parent: str, valid: Sequence[str], typed: str | None = None,
                        elsewhere: Sequence[str] = ()) -> str:
    """One line naming the unknown key ``path`` and the field meant: one of ``elsewhere`` (a field of that name
    at another place, e.g. ``finetune_mode.deepspeed`` for ``deepspeed``), else the closest valid field
    (``difflib.get_close_matches``)."""
    name = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else "no field is close"
    hint = f"did you mean {elsewhere[0]}?" if elsewhere else hint
    where = parent or "the top level"
    return (f"{typed or path}: {path} is not a field of the config schema; {hint} "
            f"({where} has: {', '.join(valid)})")


def check_keys(cfg: DictConfig) -> None:
    """Refuse keys the schema (``MixgapConfig`` and its nested dataclasses) does not have.

    Hydra lets ``+mix.wieght=0.2`` add a key to a structured config (``+`` appends even in struct mode), so
    the composed config is walked against the dataclass of every node; dict-typed fields (``benchmark``) take
    any key and their values are checked against their own schema; ``Any`` fields (``report.sweep``) and the
    ``hydra`` node are not walked. Reads the config only: nothing is built (well under a second).

    Raises:
        ConfigError: ``mix.wieght is not a field of the config schema; did you mean mix.weight? (...)``.
    """

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, DictConfig):
            return
        schema = OmegaConf.get_type(node)
        known = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
        for key in node.keys():
            path = f"{prefix}{key}"
            if not prefix and key == "hydra":
                continue
            if known is not None and key not in known:
                raise ConfigError(unknown_key_message(path, prefix[:-1], known))
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                walk(child, f"{path}.")

    walk(cfg, "")


def schema_type(key: str, typed: str | None = None) -> tuple[Any, bool] | None:
    """The type hint of the dotted ``key`` in ``MixgapConfig`` and whether it may be null, or None where the
    schema does not say (below an ``Any`` or a list field). A ``dict[str, X]`` field takes any key (type X).

    Raises:
        ConfigError: a part of ``key`` is not a field (:func:`unknown_key_message`; ``typed`` is the override).
    """
    schema: Any = MixgapConfig
    optional = False
    parts = key.split(".")
    for i, part in enumerate(parts):
        schema, _ = unwrap_optional(schema)
        if typing.get_origin(schema) is dict:
            schema, optional = unwrap_optional(typing.get_args(schema)[1])
            continue
        if not dataclasses.is_dataclass(schema):
            return None  # Any, list or a plain value: Hydra checks the rest
        hints = typing.get_type_hints(schema)
        if part not in hints:
            raise ConfigError(unknown_key_message(".".join(parts[: i + 1]), ".".join(parts[:i]), list(hints), typed,
                                                  _field_paths(part)))
        schema, optional = unwrap_optional(hints[part])
    return schema, optional


def _field_paths(name: str, schema: Any = MixgapConfig, prefix: str = "") -> list[str]:
    """Dotted paths of every schema field called ``name`` (``judge`` -> ``["eval.judge"]``)."""
    found = []
    for key, hint in typing.get_type_hints(schema).items():
        inner, _ = unwrap_optional(hint)
        if key == name:
            found.append(prefix + key)
        if dataclasses.is_dataclass(inner):
            found += _field_paths(name, inner, f"{prefix}{key}.")
    return found


def parse(override: str) -> Override:
    """One command-line override read by Hydra's own grammar.

    Raises:
        ConfigError: the text is not an override Hydra can read (one line: Hydra's first line).
    """
    try:
        return OverridesParser.create().parse_override(override)
    except HydraException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{override} is not a valid override; {first}") from None


def values(override: Override) -> list[Any] | None:
    """The values an override sets: ``[v]`` for one value, each value of a choice or range sweep, or None for
    sweeps only a sweeper can list (``glob(...)``, ``interval(...)``)."""
    if override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP, ValueType.RANGE_SWEEP):
        return list(override.sweep_iterator())
    if override.is_sweep_override():
        return None
    return [override.value()]


def group_choices(group: str, tree: ConfTree | None = None) -> list[str]:
    """The options of config group ``group`` in every folder of the conf tree (default:
    :func:`mixgap.core.conftree.current`; the checkout's ``conf/<group>/``, a ``--config-dir`` or ``hydra.searchpath``
    folder's ``<group>/``) and, for Hydra's own groups (``hydra/launcher``), the options Hydra and its plugins
    register (``basic``, ``submitit_slurm``, ...): :func:`mixgap.core.conftree.options`. A sub-folder that is a group
    of its own (``finetune_mode/system``, chosen by a defaults list) gives no options of ``group``."""
    tree = tree or conftree.current()
    nested = {name.split("@")[0] for name in defaults_groups(tree)}
    return [o for o in conftree.options(group, tree) if "/" not in o or f"{group}/{o}".rsplit("/", 1)[0] not in nested]


def _whole(override: Override) -> str | None:
    """The value as typed for a single value (``qwen3b``, ``[math,gsm8k]``); None for a sweep."""
    return None if override.is_sweep_override() else override.get_value_element_as_str()


def _check_package(override: Override, text: str, group: str, option: str, tree: ConfTree) -> None:
    if override.package:  # teacher@mix.strang=...: the place typed must be a field
        schema_type(override.package, text)
        return
    package = conftree.package(group, option, tree)
    if package in ("_global_", "_here_") or package.split(".")[0] == "hydra":
        return
    try:
        schema_type(package)
    except ConfigError:
        places = _field_paths(group.rsplit("/", 1)[-1])
        where = f"the top level has no field {package!r}" if "." not in package else f"{package} is not a field"
        hint = (f"; put it at {places[0]}: {'+' if override.is_add() else ''}{group}@{places[0]}="
                f"{_whole(override) or option}") if places else ""
        raise ConfigError(f"{text}: the {group} group cannot go there, {where} of the config schema{hint}") from None


def _check_group(override: Override, text: str, group: str, tree: ConfTree) -> None:
    options = group_choices(group, tree)
    for value in values(override) or ():
        for option in value if isinstance(value, list) else [value]:
            if option is None:  # Hydra takes no null for a group; an optional one is removed with ~group
                optional = group in defaults_of(tree.primary, tree, optional_only=True)
                raise ConfigError(f"{text}: a config group takes one of its options, not null; choose one of "
                                  f"{', '.join(options)}" + (f" (or remove it: ~{group})" if optional else ""))
            if str(option) not in options:
                close = difflib.get_close_matches(str(option), options, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]}?)" if close else ""
                key = override.get_key_element()
                head = f"{key}={option}" if str(option) == _whole(override) else (
                    f"{text}: {option}")
                raise ConfigError(f"{head} is not an option; choose one of {', '.join(options)}{hint}")
            _check_package(override, text, group, str(option), tree)


def fits(value: Any, tp: Any, optional: bool) -> bool:
    """Whether ``value`` (as Hydra's parser read it) can be stored in a field of type ``tp``: OmegaConf's own
    nodes decide for float, int and bool; a string field takes any scalar; an interpolation always fits."""
    if isinstance(value, str) and "${" in value:
        return True  # resolved after composition
    if value is None:
        return optional
    if tp is str:
        return not isinstance(value, (list, dict))
    node = _NODES.get(tp)
    if node is None:
        return True  # lists, dicts, dataclasses: Hydra checks them
    try:
        node(value=value)
    except ValidationError:
        return False
    return True


def _shape(tp: Any, key: str, value: Any) -> str | None:
    """What a list, mapping or sub-config field ``key`` takes, when ``value`` is not that; None when it fits or the
    type is a scalar one (:func:`fits` decides those)."""
    origin = typing.get_origin(tp)
    if origin is list and not isinstance(value, list):
        return "must be a list, e.g. [a,b] ([] for none)"
    if origin is dict and not isinstance(value, dict):
        return f"must be a mapping, e.g. {{name:value}}, or one entry: +{key}.<name>=<value>"
    if dataclasses.is_dataclass(tp) and not isinstance(value, dict):
        group = key.rsplit(".", 1)[-1]
        return (f"takes the {group} group: +{group}@{key}={value}" if conftree.is_group(group, conftree.current())
                else f"takes a config group's option there (<group>@{key}=<option>) or its fields ({key}.<field>=...)")
    return None


def _check_value(override: Override, text: str, key: str) -> None:
    found = schema_type(key, text)
    if found is None:
        return
    tp, optional = found
    for value in values(override) or ():
        shown = Override._get_value_element_as_str(value)  # as typed: null, [a,b], 0.5
        head = f"{override.get_key_element()}={shown}" if shown == _whole(override) else f"{text}: {shown}"
        if tp not in _TYPE_WORDS:
            shape = None if value is None and optional else _shape(tp, key, value)
            if shape:
                raise ConfigError(f"{head} is not allowed; {key} {shape}")
        elif not fits(value, tp, optional):
            allowed = _TYPE_WORDS[tp] + (" or null" if optional else "")
            raise ConfigError(f"{head} is not allowed; {key} must be {allowed}")


def check_override_keys(overrides: Sequence[str], tree: ConfTree | None = None, *, multirun: bool = True) -> None:
    """Refuse a bad command line in one line, before Hydra composes anything (well under a second).

    Each ``key=value`` (with or without ``+``/``++``) is read by Hydra's parser (:func:`parse`). A config-group
    choice (a folder under ``conf/``: ``student=qwen3b``, ``teacher@mix.strong=qwq32b``, ``+experiment=demo``,
    ``hydra/launcher=slurm``) must name one of the group's options in any folder of the conf tree
    (:func:`group_choices`: the checkout's ``conf/`` and the folders of ``--config-dir`` and ``hydra.searchpath``) and land on a schema
    field; any other key must be a schema field (:func:`schema_type`: a dataclass field must exist, a
    ``dict[str, X]`` field takes any key, ``Any`` and lists end the check) and its values must fit the field's
    type (:func:`fits`). ``hydra.*`` keys, deletions (``~key``) and items without ``=`` (``-m``) are left to Hydra.

    Args:
        overrides: the command line's overrides, as typed.
        tree: the conf tree (default :func:`mixgap.core.conftree.current`: the running job's or the command line's
            search path, else the checkout's ``conf/``).
        multirun: whether ``-m`` was given; without it a sweep (``mix.weight=0,1``) is refused.

    Raises:
        ConfigError: e.g. ``student=qwen99b is not an option; choose one of llama1b, ... (did you mean qwen7b?)``,
            ``mix.wieght=0.2: mix.wieght is not a field of the config schema; did you mean mix.weight? (...)``,
            ``mix.weight=abc is not allowed; mix.weight must be a float (a number such as 0.2)``.
    """
    tree = tree or conftree.current()
    parsed = [(text, parse(text)) for text in overrides if "=" in text and not text.startswith("~")]
    parsed = [(text, o) for text, o in parsed if o.key_or_group and o.key_or_group != "hydra"
              and not o.key_or_group.startswith("hydra.")]
    is_group = {text: conftree.is_group(o.key_or_group, tree) for text, o in parsed}  # conf/deepspeed: JSON only
    added = tuple((o.key_or_group, str(v)) for text, o in parsed if is_group[text] and (o.is_add() or o.is_force_add())
                  for v in values(o) or () if not isinstance(v, list))
    chosen_anywhere = defaults_groups(tree, added)
    for text, override in parsed:
        key = override.key_or_group
        if is_group[text]:
            _check_group(override, text, key, tree)
            chosen = f"{key}@{override.package}" if override.package else key
            hydras = key.startswith("hydra/")  # Hydra's own defaults list (hydra/config) chooses every hydra/ group
            if not (override.is_add() or override.is_force_add() or hydras) and chosen not in chosen_anywhere:
                raise ConfigError(f"{text}: no defaults list chooses the {key} group, so it is added, not set: "
                                  f"+{text}")
        elif "/" not in key and override.package is None:
            _check_value(override, text, key)
            if override.is_add() and always_set(key):
                raise ConfigError(f"{text}: {key} is already in the config, so it is set, not added: {text[1:]}")
        if override.is_sweep_override() and not multirun:
            raise ConfigError(f"{text} is a sweep (one job per value); add -m: python launch.py -m {text} ...")
