"""What Hydra lets a command line set and what it lets it add, read from the conf tree (every folder of Hydra's
config search path, :mod:`mixgap.core.conftree`) and the schema.

A config group that some defaults list chooses (``student``, ``teacher@mix.strong``) is set without a ``+``; one no
defaults list chooses (``experiment``, ``protocol``) is only ever added (``+experiment=demo``). A key that every
composed config holds (``mix.weight``) is set, never added: Hydra refuses ``+mix.weight=0.3`` ("Could not append to
config. An item is already at ..."), while a key that is null by default (``eval.limit``) may be added.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from omegaconf import MISSING

from mixgap.core import conftree
from mixgap.core.conftree import ConfTree
from mixgap.core.schema import MixgapConfig


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other type -> ``(type, False)``."""
    args = typing.get_args(tp)
    inner = [a for a in args if a is not type(None)]
    if type(None) in args and len(inner) == 1:
        return inner[0], True
    return tp, False


def defaults_of(config: str, tree: ConfTree | None = None, optional_only: bool = False) -> set[str]:
    """The groups the defaults list of one config (a config path: ``config``, ``student/qwen3b``) chooses, as
    ``group`` or ``group@package`` (``override``, ``optional`` and a leading ``/`` dropped; only the ``optional``
    ones with ``optional_only``), read by Hydra from ``tree`` (default: :func:`mixgap.core.conftree.current`)."""
    found = conftree.defaults(config, tree or conftree.current())
    return {name for name, optional in found if optional or not optional_only}


def defaults_groups(tree: ConfTree | None = None, added: tuple[tuple[str, str], ...] = ()) -> frozenset[str]:
    """The config groups a job's defaults lists choose: the primary config's (``config.yaml``, or a user's own
    primary config and the configs it extends), those of every option of those groups (a student's file chooses its
    ``finetune_mode/system``), and those of the options ``added`` on the command line as ``(group, option)``
    (``+experiment=long_vs_short`` chooses ``judge@eval.judge``), in every folder of ``tree`` (default:
    :func:`mixgap.core.conftree.current`). Such a group is set without a ``+``; any other (``experiment``,
    ``protocol``) is only ever added (Hydra's defaults-list rule)."""
    return _defaults_groups(tree or conftree.current(), added)


@functools.cache
def _defaults_groups(tree: ConfTree, added: tuple[tuple[str, str], ...]) -> frozenset[str]:
    primary = defaults_of(tree.primary, tree)
    found = set(primary)
    for name in primary:
        group = name.split("@")[0]
        for option in conftree.options(group, tree, nested=False):
            found |= defaults_of(f"{group}/{option}", tree)
    for group, option in added:
        found |= defaults_of(f"{group}/{option}", tree)
    return frozenset(found)


def always_set(key: str) -> bool:
    """Whether the dotted ``key`` has a value in every composed config: each part a field of a dataclass reached
    through fields that are never null, the last one not optional and with a default in the schema
    (``mix.weight``). Hydra refuses to add (``+``) such a key; a null or missing one may be added."""
    schema: Any = MixgapConfig
    for part in key.split("."):
        if not dataclasses.is_dataclass(schema):
            return False
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields:
            return False
        hint, optional = unwrap_optional(typing.get_type_hints(schema)[part])
        if optional:
            return False
        default = fields[part].default
        schema, last = hint, default
    return last is not dataclasses.MISSING and last != MISSING
