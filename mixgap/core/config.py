"""The checks run on a composed config before any work, and small helpers every stage uses to read a config.

:func:`validate` catches what types cannot, raising :class:`~mixgap.core.errors.ConfigError` with one line that
names the field, the bad value and what is allowed: every field against what the schema declares it allows
(:mod:`mixgap.core.fields`; the schema lives in :mod:`mixgap.core.schema` and :mod:`mixgap.core.schema_models`),
then the rules that span several fields and what the disk must hold. The command-line checks are in
:mod:`mixgap.core.overrides`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixgap.core.conftree import ConfTree
from mixgap.core.errors import ConfigError
from mixgap.core.fields import check_fields
from mixgap.core.overrides import check_keys, check_override_keys, group_choices
from mixgap.core.schema import MixgapConfig


def _no_file(path: str, value: Any) -> None:
    """A folder to write or read may be new or a folder, never an existing file or an empty string."""
    if value is not None and (str(value).strip() == "" or Path(str(value)).expanduser().is_file()):
        what = "empty" if str(value).strip() == "" else "a file"
        raise ConfigError(f"{path}={str(value)!r} is not allowed; it is {what}: give a folder (new or existing)")


def validate(cfg: DictConfig, overrides: Sequence[str] = (), tree: ConfTree | None = None) -> None:
    """Check a composed config before any work starts: its keys, every field against what the schema declares it
    allows (:func:`mixgap.core.fields.check_fields`: choices and ranges), then the rules that span several fields
    and what the disk must hold. The ``stage=`` value and the teachers' backends are the plan's to check
    (:func:`mixgap.plan.jobs.checked_plan`).

    Args:
        cfg: the composed Hydra config (``MixgapConfig`` shape).
        overrides: the job's command-line overrides (``key=value``), to catch fields that the chosen
            options ignore (a LoRA field with ``finetune_mode=full``).
        tree: the conf tree the overrides' group options are read from (default
            :func:`mixgap.core.conftree.current`).

    Raises:
        ConfigError: one line naming the field, the bad value and what is allowed, e.g.
            ``mix.weight=1.5 is not allowed; it must be in [0, 1] (fraction from the strong source)``; or a key the
            schema does not have (:func:`check_keys`, :func:`check_override_keys`).
    """
    check_keys(cfg)
    check_override_keys(overrides, tree)
    check_fields(cfg, MixgapConfig)
    ft = cfg.finetune_mode
    if ft.batch_unit == "packed_sequences" and ft.max_seq_len > ft.pack_len:
        raise ConfigError(f"finetune_mode.max_seq_len={ft.max_seq_len} is not allowed with batch_unit=packed_sequences; it "
                          f"must be <= finetune_mode.pack_len={ft.pack_len} (on a paper preset choose the Mix recipe "
                          "with finetune_mode/recipe=released_mix, not finetune_mode=released_mix)")
    if not cfg.benchmark:
        raise ConfigError(f"benchmark={list(cfg.benchmark)} is not allowed; give at least one of "
                          f"{', '.join(group_choices('benchmark', tree))}")
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if cfg.finetune_mode.mode == "full" and key.startswith("finetune_mode.lora"):
            raise ConfigError(
                f"{override} is not allowed with finetune_mode.mode='full'; LoRA fields need finetune_mode=lora"
            )
    if cfg.mix.strategy != "fixed" and cfg.mix.problems != "intersection":
        raise ConfigError(f"mix.problems={cfg.mix.problems} is not allowed with mix.strategy={cfg.mix.strategy}; a "
                          "student-aware mixture chooses between the two traces of a problem: use mix.problems=intersection")
    if cfg.eval.rule == "paper" and cfg.eval.extract != "boxed":
        raise ConfigError(f"eval.rule=paper is not allowed with eval.extract={cfg.eval.extract}: the paper's rule decides "
                          "on the paper's extracted answer; set eval.extract=boxed, or eval.rule=policy")
    if cfg.eval.n_samples > 1 and cfg.eval.temperature == 0:
        raise ConfigError(
            f"eval.n_samples={cfg.eval.n_samples} is not allowed with eval.temperature=0 (greedy samples are "
            "identical); set eval.temperature > 0 (e.g. 0.6) or eval.n_samples=1"
        )
    _no_file("paths.cache", cfg.paths.cache)
    for stage in ("report", "analyze"):
        _no_file(f"{stage}.out", cfg[stage].out)
    check_sources(cfg)
    if cfg.paths.data and not Path(cfg.paths.data).is_dir():
        raise ConfigError(
            f"paths.data={cfg.paths.data!r} (from MIXGAP_DATA or the command line) is not an existing folder; point "
            "it at the offline data kit (math/, gsm8k/, eval/, traces/) or unset it to read the Hugging Face Hub"
        )
    if cfg.stage == "export":
        check_export(cfg.export, list(cfg.benchmark))
    if cfg.stage in ("report", "analyze") and not cfg[cfg.stage].sweep:
        raise ConfigError(f"{cfg.stage}.sweep is empty; give a multirun folder, e.g. {cfg.stage}.sweep=multirun/<date>/<time>")
    if cfg.stage in ("report", "analyze"):
        sweeps = to_container(cfg[cfg.stage].sweep)
        for sweep in [sweeps] if isinstance(sweeps, str) else sweeps:
            if not Path(str(sweep)).is_dir():
                raise ConfigError(f"{cfg.stage}.sweep={str(sweep)!r} is not a folder; give a multirun folder, e.g. "
                                  f"{cfg.stage}.sweep=multirun/<date>/<time>")


def _local(field: str, value: str) -> None:
    path = Path(os.path.expanduser(str(value))).resolve()  # a relative path: from the folder launch.py runs in
    if not path.exists():
        raise ConfigError(f"{field}={value!r} is not allowed: {path} does not exist (a relative path is read from the "
                          f"folder launch.py runs in, {Path.cwd()}); give an absolute path or one relative to that folder")


def check_sources(cfg: DictConfig) -> None:
    """Every problem source and imported teacher file can be read, checked before any work: a ``path`` (a local
    file) exists, a ``kit_path`` has the kit (``MIXGAP_DATA``), and the problems and each benchmark have one of
    ``path``, ``kit_path`` (with the kit) or ``hub_id`` (:func:`mixgap.stages.data.source_kind`).

    Raises:
        ConfigError: one line naming the field, the value and what is allowed.
    """
    kit = bool(cfg.paths.data)  # MIXGAP_DATA unset or empty: no kit
    for where, source in (("problems", cfg.problems), *((f"benchmark.{n}", b) for n, b in cfg.benchmark.items())):
        if source.get("path"):
            _local(f"{where}.path", source.path)
        elif not source.get("hub_id") and not (kit and source.get("kit_path")):
            why = "its kit_path needs MIXGAP_DATA (paths.data), which is not set" if source.get("kit_path") else "none given"
            raise ConfigError(f"{where} has no source to read ({why}); give {where}.path (a local JSONL or Parquet "
                              f"file), {where}.kit_path (a file of MIXGAP_DATA) or {where}.hub_id (a Hugging Face dataset)")
    for role, teacher in (("mix.strong", cfg.mix.strong), ("mix.weak", cfg.mix.weak), ("teacher", cfg.get("teacher"))):
        ds = teacher.get("dataset") if teacher is not None else None
        if ds is not None and ds.get("path"):
            _local(f"{role}.dataset.path", ds.path)
        elif ds is not None and ds.get("kit_path") and not kit and not Path(ds.kit_path).is_absolute():
            raise ConfigError(
                f"{role}.dataset.kit_path={ds.kit_path!r} is a file of the offline data kit, but MIXGAP_DATA (paths.data) "
                "is not set; point it at the kit folder (math/, gsm8k/, eval/, traces/), or give a local file with "
                f"{role}.dataset.path"
            )


def check_export(export: DictConfig, benchmarks: Sequence[str] = ()) -> None:
    """``stage=export``: a folder to write (not a file), an artifact of the allowed forms (an evaluation of one of
    the job's ``benchmarks``) and, with ``export.repo_id``, the Hub reachable (not ``HF_HUB_OFFLINE``) with a
    token; checked before any work.

    Raises:
        ConfigError: one line naming the field, the value and what is allowed.
    """
    if not export.out:
        raise ConfigError("export.out=None is not allowed with stage=export; give the folder to write, e.g. export.out=exports/pool")
    _no_file("export.out", export.out)
    parts = str(export.artifact).split(".")
    if not (export.artifact in ("pool.strong", "pool.weak", "mixture")
            or (len(parts) == 3 and parts[0] == "eval" and parts[1] in ("tuned", "untuned") and parts[2])):
        raise ConfigError(f"export.artifact={export.artifact!r} is not allowed; choose pool.strong, pool.weak, mixture, "
                          "eval.tuned.<benchmark> or eval.untuned.<benchmark>")
    if parts[0] == "eval" and benchmarks and parts[2] not in benchmarks:
        raise ConfigError(f"export.artifact={export.artifact!r} is not allowed: {parts[2]} is not one of the job's "
                          f"benchmarks; choose eval.{parts[1]}.<one of {', '.join(benchmarks)}> (or add it with "
                          f"benchmark=[...])")
    if export.repo_id:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ConfigError(f"export.repo_id={export.repo_id!r} needs the Hugging Face Hub, but HF_HUB_OFFLINE is set; "
                              "unset it, or drop export.repo_id to write the folder only")
        import huggingface_hub  # heavy: huggingface_hub, only to find a token for a push

        if not huggingface_hub.get_token():
            raise ConfigError(f"export.repo_id={export.repo_id!r} needs a Hugging Face token (HF_TOKEN or `hf auth "
                              "login`); none found: log in, or drop export.repo_id to write the folder only")


def data_root(cfg: DictConfig) -> Path | None:
    """The offline kit folder (``paths.data``, filled from ``MIXGAP_DATA``), or None for the Hub."""
    value = cfg.paths.data if cfg.paths.data is not None else os.environ.get("MIXGAP_DATA")
    return Path(value).expanduser().resolve() if value else None

def to_container(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (dicts, lists, scalars); plain values pass through."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node
