"""The conf tree a command line composes from: the checkout's ``conf/`` and every folder Hydra's config search path
adds, read through Hydra's own machinery.

Hydra finds config files along its search path: its own configs, the primary folder (``conf/`` beside
``launch.py``, or ``--config-path``), a folder given with ``--config-dir``, and the folders of ``hydra.searchpath``
(on the command line, ``hydra.searchpath=[file:///my/conf]``, or in the primary config). A researcher's own student,
teacher or benchmark YAML in such a folder is an option of its group like the checkout's. A :class:`ConfTree` is
that search path, built as Hydra builds it (:func:`from_command_line`: Hydra's ``create_config_search_path``, the
``--config-dir`` rule of ``hydra.main`` and Hydra's ``ConfigLoaderImpl`` reading ``hydra.searchpath``) or read from
the running job (:func:`from_hydra`: ``hydra.runtime.config_sources``, what Hydra recorded). Group options, an
option's package and its defaults list come from Hydra's ``ConfigRepository`` over that path (:func:`options`,
:func:`package`, :func:`defaults`), so the one-line command-line checks (:mod:`mixgap.core.overrides`) see every
folder Hydra composes from.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl  # Hydra's own loader: its searchpath rules
from hydra._internal.config_repository import ConfigRepository
from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
from hydra._internal.utils import compute_search_path_dir, create_config_search_path
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.default_element import ConfigDefault, GroupDefault
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mixgap.core.errors import ConfigError
from mixgap.core.schema import CONF_DIR

#: ``launch.py``, whose ``@hydra.main(config_path="conf")`` places the primary folder
ENTRY_POINT = CONF_DIR.parent / "launch.py"
PRIMARY = "config"


@dataclass(frozen=True)
class ConfTree:
    """A config search path, in Hydra's order: ``sources`` are ``(provider, "<scheme>://<path>")`` pairs (the
    checkout's ``conf/`` is provider ``main``, ``--config-dir`` is ``command-line``, ``hydra.searchpath`` folders
    are ``hydra.searchpath in command-line`` / ``in main``), ``primary`` the primary config's name."""

    sources: tuple[tuple[str, str], ...]
    primary: str = PRIMARY

    def search_path(self) -> ConfigSearchPath:
        """The search path as Hydra's own object (the schema source last, as Hydra requires)."""
        path = ConfigSearchPathImpl()
        for provider, where in self.sources:
            path.append(provider, where)
        return path

    def folders(self) -> list[Path]:
        """Every folder of the search path (``file://`` sources), in search order."""
        return [Path(where.split("://", 1)[1]) for _, where in self.sources if where.startswith("file://")]


@functools.cache
def checkout() -> ConfTree:
    """The checkout's own tree: Hydra's configs, ``conf/`` (provider ``main``) and the schema."""
    return _tree(create_config_search_path(f"file://{CONF_DIR}"), PRIMARY)


def _tree(search_path: ConfigSearchPath, primary: str) -> ConfTree:
    return ConfTree(tuple((p.provider, p.path) for p in search_path.get_path()), primary)  # type: ignore[misc]


def from_command_line(overrides: Sequence[str], config_dir: str | None = None, config_path: str | None = None,
                      config_name: str | None = None) -> ConfTree:
    """The tree ``python launch.py [--config-path P] [--config-dir D] [--config-name N] <overrides>`` composes from,
    built as ``hydra.main`` builds it: ``create_config_search_path`` of the primary folder (``conf/`` beside
    ``launch.py``, or ``P``), ``D`` before the schema, then Hydra's loader adds ``hydra.searchpath`` (the command
    line's, else the primary config's). Reads config files only (well under a second).

    Raises:
        ConfigError: one line naming a folder of the search path that does not exist (``--config-dir``, a
            ``hydra.searchpath`` entry) or a primary config (``--config-name``) that no folder holds.
    """
    primary = config_name or PRIMARY
    main = compute_search_path_dir(str(ENTRY_POINT), None, config_path or "conf")
    path = create_config_search_path(main if "://" in str(main) else f"file://{main}")
    if config_dir is not None:
        folder = os.path.abspath(os.path.expanduser(config_dir))
        if not os.path.isdir(folder):
            raise ConfigError(f"--config-dir={config_dir}: {folder} is not a folder; give your config folder (it holds "
                              "group folders such as student/, teacher/, benchmark/)")
        path.prepend(provider="command-line", path=f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    searchpath = [o for o in overrides if o.lstrip("+").startswith("hydra.searchpath=")]
    loader = ConfigLoaderImpl(config_search_path=path)
    try:
        with warnings.catch_warnings():  # Hydra warns of a folder that is not there; it is refused below
            warnings.simplefilter("ignore")
            parsed = OverridesParser.create().parse_overrides(searchpath)
            _, repo = loader._parse_overrides_and_create_caching_repo(primary, [o.input_line for o in parsed])
    except HydraException as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{' '.join(searchpath) or 'hydra.searchpath'}: {first}") from None
    for source in repo.get_sources():
        if not source.available():
            where = "hydra.searchpath" + (f" of {primary}.yaml" if source.provider.endswith("in main") else "")
            raise ConfigError(f"{where}: {source.full_path()} is not available (no such folder); give an existing "
                              "config folder, e.g. hydra.searchpath=[file:///abs/path/to/conf]")
    tree = ConfTree(tuple((s.provider, f"{s.scheme()}://{s.path}") for s in repo.get_sources()), primary)
    if not repository(tree).config_exists(primary):
        raise ConfigError(f"--config-name={primary}: no folder of the search path holds {primary}.yaml "
                          f"({', '.join(map(str, tree.folders()))})")
    return tree


def from_hydra(hydra_cfg: DictConfig) -> ConfTree:
    """The tree Hydra composed a job from, as it recorded it (``hydra.runtime.config_sources``, ``hydra.job.config_name``)."""
    sources = tuple((str(s.provider), f"{s.schema}://{s.path}") for s in hydra_cfg.runtime.config_sources)
    return ConfTree(sources, str(hydra_cfg.job.get("config_name") or PRIMARY))


#: the tree of this process's command line, recorded by ``launch.py`` before Hydra runs (:func:`set_command_line`)
_COMMAND_LINE: list[ConfTree] = []


def set_command_line(tree: ConfTree) -> None:
    """Record the tree of this process's command line (``launch.py``), read by :func:`current` before Hydra runs a
    job (the sweeper's checks of every sweep point)."""
    _COMMAND_LINE[:] = [tree]


def current() -> ConfTree:
    """The tree in force: the running Hydra job's (:func:`from_hydra`), else the one ``launch.py`` recorded
    (:func:`set_command_line`), else the checkout's (:func:`checkout`)."""
    if HydraConfig.initialized():
        return from_hydra(HydraConfig.get())
    return _COMMAND_LINE[0] if _COMMAND_LINE else checkout()


@functools.cache
def repository(tree: ConfTree) -> ConfigRepository:
    """Hydra's config repository over ``tree`` (cached per tree: each file is read once per process), after the
    installed Hydra plugins registered their configs (``hydra/launcher=submitit_slurm``)."""
    Plugins.instance()
    return ConfigRepository(tree.search_path())


def is_group(group: str, tree: ConfTree) -> bool:
    """Whether ``group`` is a config group with at least one option (``deepspeed/``, JSON files only, is not)."""
    return bool(options(group, tree))


@functools.cache
def options(group: str, tree: ConfTree, nested: bool = True) -> list[str]:
    """The options of config group ``group`` in every source of ``tree`` (YAML files, and the configs Hydra and
    its plugins register), sorted; an option in a sub-folder is named by its path (``experiment`` ->
    ``method/long``), unless ``nested`` is false."""
    repo = repository(tree)
    found = set(repo.get_group_options(group, ObjectType.CONFIG))
    for sub in repo.get_group_options(group, ObjectType.GROUP) if nested else ():
        found |= {f"{sub}/{option}" for option in options(f"{group}/{sub}", tree)}
    return sorted(found)


def package(group: str, option: str, tree: ConfTree) -> str:
    """Where an option's values land: its ``# @package`` header, else the group's path with dots."""
    loaded = repository(tree).load_config(f"{group}/{option}")
    header = loaded.header.get("package") if loaded is not None else None
    return header if header else group.replace("/", ".")


@functools.cache
def defaults(config: str, tree: ConfTree) -> tuple[tuple[str, bool], ...]:
    """The groups the defaults list of ``config`` (a config path, ``student/qwen3b``) chooses, as ``(group or
    group@package, optional)`` (Hydra's parse of the list: ``override`` and a leading ``/`` dropped); a plain config
    it extends (``defaults: [config]`` in a user's primary config) gives its own."""
    loaded = repository(tree).load_config(config)
    found: list[tuple[str, bool]] = []
    for entry in (loaded.defaults_list or []) if loaded is not None else []:
        if isinstance(entry, GroupDefault) and entry.group is not None:
            at = "_here_" if entry.package == "" else entry.package
            found.append((entry.group.lstrip("/") + (f"@{at}" if at else ""), bool(entry.optional)))
        elif isinstance(entry, ConfigDefault) and entry.path and not entry.is_self() and "/" not in config:
            found += defaults(entry.path.lstrip("/"), tree)
    return tuple(found)


def compose(overrides: Sequence[str], tree: ConfTree, *, hydra: bool = False, multirun: bool = False) -> DictConfig:
    """The job config of ``overrides`` as Hydra composes it from ``tree``, without the ``hydra`` node unless
    ``hydra``; with ``multirun``, a sweep's master config (Hydra's multirun mode: sweep values are left to the
    sweeper).

    Raises:
        Whatever Hydra's composition raises (its own message).
    """
    loader = ConfigLoaderImpl(config_search_path=tree.search_path())
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    cfg = loader.load_configuration(tree.primary, list(overrides), run_mode=mode, from_shell=False)
    if not hydra:
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    OmegaConf.set_readonly(cfg, False)
    return cfg
