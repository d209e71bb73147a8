"""What Hydra lets a command line set and what it lets it add, read from the conf tree and the schema.

A config group that some defaults list chooses (``student``, ``teacher@mix.strong``) is set without a ``+``; one no
defaults list chooses (``experiment``, ``protocol``) is only ever added (``+experiment=demo``). A key that every
composed config holds (``mix.weight``) is set, never added: Hydra refuses ``+mix.weight=0.3`` ("Could not append to
config. An item is already at ..."), while a key that is null by default (``eval.limit``) may be added.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

from mixgap.core.schema import CONF_DIR, MixgapConfig


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other type -> ``(type, False)``."""
    args = typing.get_args(tp)
    inner = [a for a in args if a is not type(None)]
    if type(None) in args and len(inner) == 1:
        return inner[0], True
    return tp, False


@functools.cache
def defaults_entries(path: Path) -> tuple[str, ...]:
    """The keys of the defaults list of one YAML file, as written (``optional teacher``, ``override /student``)."""
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else {}
    entries = node.get("defaults", []) if isinstance(node, dict) else []
    return tuple(str(key) for entry in entries if isinstance(entry, dict) for key in entry)


def defaults_of(path: Path, optional_only: bool = False) -> set[str]:
    """The groups the defaults list of one YAML file chooses, as ``group`` or ``group@package`` (``override``,
    ``optional`` and a leading ``/`` dropped; only the ``optional`` ones with ``optional_only``)."""
    return {key.replace("override ", "").replace("optional ", "").strip().lstrip("/")
            for key in defaults_entries(path) if not optional_only or key.startswith("optional ")}


@functools.cache
def defaults_groups(conf_dir: Path = CONF_DIR, added: tuple[tuple[str, str], ...] = ()) -> frozenset[str]:
    """The config groups a job's defaults lists choose: ``config.yaml``'s, those of every option of those groups
    (a student's file chooses its ``finetune_mode/system``), and those of the options ``added`` on the command line
    as ``(group, option)`` (``+experiment=long_vs_short`` chooses ``judge@eval.judge``). Such a group is set
    without a ``+``; any other (``experiment``, ``protocol``) is only ever added (Hydra's defaults-list rule)."""
    primary = defaults_of(conf_dir / "config.yaml")
    found = set(primary)
    for name in primary:
        for path in (conf_dir / name.split("@")[0]).glob("*.yaml"):
            found |= defaults_of(path)
    for group, option in added:
        found |= defaults_of(conf_dir / group / f"{option}.yaml")
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
