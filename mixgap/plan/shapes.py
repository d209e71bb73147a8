"""The shapes the preflight plans with: each model's ``arch`` (:class:`mixgap.core.schema_models.ModelArch`), from its
YAML's ``arch:`` block or from its Hugging Face ``config.json``.

A model's ``config.json`` is read with ``transformers.AutoConfig.from_pretrained`` (the file only, no weights): from a
local folder (``hf_id=/path``), or for a Hub id at its keyed revision (:func:`mixgap.stages.models.hub_model_revision`)
from the local Hugging Face cache, or from the Hub when it is reachable. Then:

- a model without an ``arch:`` block takes its shape from ``config.json`` (:func:`config_facts`), its parameter count
  computed from that shape (:func:`mixgap.plan.estimates.model_params`);
- an ``arch:`` block that contradicts ``config.json`` is refused, one line: the field, the YAML's value, config.json's;
- an ``arch:`` block left from another model's YAML (``student.hf_id`` given on the command line, the arch not:
  :func:`mixgap.plan.jobs.foreign_arch`) is set aside for ``config.json``'s shape, and the plan says so;
- a model whose shape is known from neither is refused, one line naming the field: it is never planned at 0 GPU-hours.

``config.json`` is read once per process and model (folder, or Hub id and revision).
"""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mixgap.core.config import to_container
from mixgap.core.errors import ConfigError
from mixgap.core.schema_models import ModelArch
from mixgap.plan.estimates import head_dim, model_params
from mixgap.plan.jobs import JobPlan, generating_teachers
from mixgap.stages import models

#: ``ModelArch`` field -> its ``config.json`` key (transformers' ``PretrainedConfig`` attribute names).
FACTS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
         "kv_heads": "num_key_value_heads", "vocab": "vocab_size", "max_position_embeddings": "max_position_embeddings",
         "intermediate": "intermediate_size", "tie_embeddings": "tie_word_embeddings"}
_EXPERTS = ("num_experts", "num_local_experts", "n_routed_experts")  # mixture-of-experts configs
_READ: dict[tuple[str, str | None], tuple[dict[str, Any] | None, str]] = {}  # once per process


class ShapeError(ConfigError):
    """A model whose shape is unknown or whose ``arch:`` contradicts its ``config.json``; one line."""


def config_facts(config: Any) -> dict[str, Any]:
    """The ``ModelArch`` facts of a transformers config (its text model's: ``get_text_config()``), without
    ``params_b``: ``num_key_value_heads`` defaults to the heads (multi-head attention); ``head_dim`` is set only
    where it is not ``hidden / heads`` (Qwen3, Gemma-2).

    Raises:
        ValueError: a fact is missing, or the model is a mixture of experts (the preflight's formulas,
            :mod:`mixgap.plan.estimates`, are for dense decoders).
    """
    text = config.get_text_config()
    facts = {name: getattr(text, key, None) for name, key in FACTS.items()}
    if facts["kv_heads"] is None:
        facts["kv_heads"] = facts["heads"]
    missing = [FACTS[name] for name, value in facts.items() if value is None]
    if missing:
        raise ValueError(f"its config.json has no {', '.join(missing)}")
    experts = next((getattr(text, key) for key in _EXPERTS if getattr(text, key, None)), None)
    if experts and int(experts) > 1:
        raise ValueError(f"it is a mixture of experts ({experts} experts), and the plan's formulas are for dense models")
    facts = {name: (bool(value) if name == "tie_embeddings" else int(value)) for name, value in facts.items()}
    own = getattr(text, "head_dim", None)
    facts["head_dim"] = int(own) if own and int(own) != facts["hidden"] // facts["heads"] else None
    return facts


def read_config(source: Any) -> tuple[dict[str, Any] | None, str]:
    """``(facts, where)`` of a model's ``config.json`` (:func:`config_facts`; ``where``: the folder, or the Hub id
    and revision it was read at), or ``(None, why not)``: a GGUF model (its config comes with the conversion), a
    folder without ``config.json``, a Hub model neither cached nor reachable, an unknown or mixture-of-experts
    architecture. Once per process and model."""
    if source.get("gguf") is not None:
        return None, "a GGUF model has no config.json before its conversion"
    folder = models.local_folder(source)
    if folder is None and not source.get("hf_id"):
        return None, "no hf_id"
    if folder is not None:
        target, revision = str(folder), None
    else:
        target = str(source.hf_id)
        revision = models.hub_model_revision(target, source.get("revision"))
        revision = None if revision == models.UNRESOLVED else revision
    if (target, revision) not in _READ:
        where = f"{target}/config.json" if folder is not None else f"{target}@{revision or 'main'} config.json"
        if folder is not None and not (folder / "config.json").is_file():
            _READ[(target, revision)] = None, f"{target} has no config.json"
        elif folder is None and models.hub_offline() and not (revision and models.cached_model_file(target, revision,
                                                                                                  "config.json")):
            _READ[(target, revision)] = None, f"{where} is not in the Hugging Face cache (HF_HUB_OFFLINE=1)"
        else:
            from transformers import AutoConfig  # heavy: transformers, only to read a config.json

            try:
                _READ[(target, revision)] = config_facts(AutoConfig.from_pretrained(target, revision=revision)), where
            except (OSError, ValueError, KeyError) as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                _READ[(target, revision)] = None, f"{where} cannot be read ({reason[:200]})"
    return _READ[(target, revision)]


def _contradiction(field: str, arch: Any, facts: dict[str, Any], where: str) -> str | None:
    """The first fact of a YAML ``arch:`` that differs from ``config.json``'s, as a one-line refusal, or None."""
    for name, key in FACTS.items():
        if arch.get(name) != facts[name]:
            return (f"{field}.arch.{name}={arch.get(name)} contradicts {key}={facts[name]} in {where}; correct the "
                    f"YAML, or drop its block ({field}.arch=null) to plan with config.json's shape")
    if head_dim(arch) != head_dim(OmegaConf.create(facts)):
        return (f"{field}.arch.head_dim={head_dim(arch)} contradicts head_dim={head_dim(OmegaConf.create(facts))} in "
                f"{where}; correct the YAML, or drop its block ({field}.arch=null) to plan with config.json's shape")
    return None


def model_shape(source: Any, field: str, foreign: bool = False) -> tuple[dict[str, Any], str | None]:
    """The ``arch`` a model is planned with (a ``ModelArch`` as a dict) and a note for the plan (None when it is the
    YAML's own): the YAML's block when it agrees with ``config.json`` (or ``config.json`` cannot be read here);
    else ``config.json``'s facts with ``params_b`` counted from them (:func:`mixgap.plan.estimates.model_params`).
    ``foreign``: the YAML's block is another model's (:func:`mixgap.plan.jobs.foreign_arch`), set aside.

    Raises:
        ShapeError: one line: the YAML's block contradicts ``config.json`` (the field, both values), or neither gives
            a shape (the field, and why ``config.json`` could not be read).
    """
    facts, where = read_config(source)
    own = None if foreign else source.get("arch")
    if own is not None:
        wrong = _contradiction(field, own, facts, where) if facts is not None else None
        if wrong:
            raise ShapeError(wrong)
        return to_container(own), None
    if facts is None:
        block = (f"its arch: block is {field}={source.name}'s, set aside because {field}.hf_id is given on the command "
                 "line" if foreign else "no arch: block")
        raise ShapeError(f"{field}.arch is unknown for {field}.hf_id={source.get('hf_id')!r}: {block}, and {where}; "
                         f"give {field}.arch (its config.json facts) or a readable config.json (a local folder with "
                         "one, the Hugging Face cache, or the Hub)")
    arch = {**facts, "params_b": round(model_params(OmegaConf.create(facts)) / 1e9, 3)}
    aside = f" (the arch: block of {field}={source.name} set aside: {field}.hf_id given on the command line)" if foreign else ""
    return arch, f"{field} shape from {where}: {arch['params_b']:g}B parameters{aside}"


def with_shapes(cfg: DictConfig, plan: JobPlan, store: Any, refusals: list[str]) -> tuple[DictConfig, list[str]]:
    """``cfg`` with the shape of every model the job plans (:func:`model_shape`): the student when it trains or
    evaluates, each teacher it generates with (:func:`mixgap.plan.jobs.generating_teachers`), a vLLM judge when it
    judges; and the notes for the plan line. A model refused (:class:`ShapeError`, appended to ``refusals``) is
    planned with no shape. ``cfg`` itself is never changed (a copy when a shape differs from its own)."""
    wanted = [("student", cfg.student)] if plan.builds("checkpoint") or plan.builds("eval.") else []
    wanted += generating_teachers(cfg, plan, store)
    judge = cfg.eval.get("judge")
    if judge is not None and judge.backend == "vllm" and plan.builds("judge."):
        wanted.append(("eval.judge", judge))
    shaped, notes = {}, []
    for field, node in wanted:
        try:
            arch, note = model_shape(node, field, field in plan.foreign_arch)
        except ShapeError as err:
            refusals.append(str(err))
            arch, note = None, None
        notes += [note] if note else []
        if arch != to_container(node.get("arch")):
            shaped[field] = arch
    if shaped:
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            for field, arch in shaped.items():
                shape = OmegaConf.structured(ModelArch(**arch)) if arch is not None else None
                OmegaConf.update(cfg, f"{field}.arch", shape, merge=False)
    return cfg, notes
