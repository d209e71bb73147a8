"""What the jobs ran with: the fine-tuning settings table, the training data (teacher pools, mixtures,
over-length drops) and what the seeds vary."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mixgap.results.tables.differences import differences_markdown, lora_evaluation, recipe_of
from mixgap.results.tables.markdown import NO_LABELS, math_variant, md_table
from mixgap.results.tables.names import arm_of, realised_weight, weight_label
from mixgap.results.tables.published import paper_math_label

SEEDS_NOTE = ("What the seeds vary: `finetune_mode.seed` sets the training data order (and LoRA's initialisation); "
              "`mix.seed` sets which problems take the strong response, so it varies the data only at 0 < w < 1 (at "
              "w = 0 or 1 every problem takes the one source); the global `seed` seeds only the evaluation backend, "
              "and decoding is greedy. Jobs of one condition equal in `finetune_mode.seed` (and, at 0 < w < 1, in "
              "`mix.seed`) count as one run and never narrow an interval (`Job.independent_seeds`).")

TURN_CHARS = 1600  # characters of a rendered turn shown in the report (both ends kept)

#: finetune_mode fields of the settings table, in order (header, dotted key; None: computed, :func:`_setting_cells`)
SETTINGS = (("Mode", "finetune_mode.mode"), ("LR", "finetune_mode.learning_rate"), ("Epochs", "finetune_mode.epochs"),
            ("Max steps", "finetune_mode.max_steps"), ("Schedule", "finetune_mode.lr_scheduler"),
            ("Warmup", "finetune_mode.warmup_ratio"), ("Global batch", "finetune_mode.global_batch_size"),
            ("Batch unit", "finetune_mode.batch_unit"), ("Max len", "finetune_mode.max_seq_len"),
            ("Over-length", "finetune_mode.overlength"), ("Loss", "finetune_mode.loss_normalization"),
            ("LoRA r / alpha / dropout", None), ("LoRA targets", "finetune_mode.lora.target_modules"), ("LoRA eval", None),
            ("Eval MATH", None), ("Recipe", None), ("Source", "finetune_mode.settings_source"))


def seeds_varied(jobs: Sequence[Any]) -> str:
    """One sentence: which seed fields differ between counted jobs of the same condition in these sweeps."""
    by_cond: dict[tuple, list[Any]] = defaultdict(list)
    for job in jobs:
        if "tuned" in job.complete and job.seeds:
            by_cond[job.condition()].append(job)
    varied: dict[str, int] = defaultdict(int)
    for (*_, weight), members in by_cond.items():
        for key in ("finetune_mode.seed", "mix.seed", "seed"):
            if len({j.seeds.get(key) for j in members}) > 1:
                varied[key if key != "mix.seed" or weight not in (0, 1) else "mix.seed (at w = 0 or 1: no effect)"] += 1
    if not varied:
        return "In these sweeps no condition has jobs that differ in a seed."
    return "In these sweeps: " + ", ".join(f"`{k}` varies in {n} condition(s)" for k, n in varied.items()) + "."


def _lora_eval_cell(job: Any) -> str:
    """How a LoRA job's fine-tuned arm was served and at which context: ``adapter, model's context`` (the authors'
    test_lora.sh), ``merged, 16,000 tokens`` (:func:`mixgap.results.tables.differences.lora_evaluation`)."""
    how, context = lora_evaluation(job)
    return f"{how}, " + ("model's context" if context is None else f"{context:,} tokens")


def _setting_cells(job: Any, benchmarks: Sequence[str], labels: Mapping[str, str]) -> tuple[str, ...]:
    """One job's :data:`SETTINGS` cells from its config fields ``job.fields`` (``{dotted key: JSON value}``)."""
    f = job.fields
    lora_mode = json.loads(f["finetune_mode.mode"]) == "lora"
    computed = {"Eval MATH": math_variant(benchmarks, labels), "Recipe": recipe_of(job), "LoRA r / alpha / dropout": (
        " / ".join(str(json.loads(f.get(f"finetune_mode.lora.{k}", "null"))) for k in ("r", "alpha", "dropout"))
        if lora_mode else "—"), "LoRA eval": _lora_eval_cell(job) if lora_mode else "—"}
    cells = []
    for header, key in SETTINGS:
        if key is None:
            cells.append(computed[header])
            continue
        value = json.loads(f[key]) if key in f else "—"
        if key == "finetune_mode.lora.target_modules" and not lora_mode:
            value = "—"
        cells.append(", ".join(value) if isinstance(value, list) else value if value != "" else "—")
    return tuple(str(c) for c in cells)


def settings_markdown(jobs: Sequence[Any], labels: Mapping[str, str] = NO_LABELS) -> str:
    """The fine-tuning settings the jobs used (one row per distinct setting, with its students) and where the
    values come from (``finetune_mode.settings_source``: the paper's Table 5, LLaMA-Factory's LoRA recipe where
    the paper's are unknown, or the released Mix config), the MATH variant evaluated (by its label), the recipe in
    force and every remaining difference from the authors' code (:mod:`mixgap.results.tables.differences`)."""
    rows: dict[tuple, set[str]] = defaultdict(set)
    for job in jobs:
        if "finetune_mode.mode" in job.fields:
            cells = _setting_cells(job, job.identity.get("benchmarks", []), labels)
            rows[cells].add(str(job.identity.get("student")))
    if not rows:
        return ""
    header = ["Students", *(h for h, _ in SETTINGS)]
    body = [[", ".join(sorted(students)), *cells] for cells, students in rows.items()]
    turns, differ = turns_markdown(jobs), differences_markdown(jobs)
    return ("Fine-tuning settings as run (the paper's LoRA values, its Table 6, are unknown: the LoRA row's "
            "source says whose they are). Paper comparisons use the paper's MATH column, read as "
            f"{paper_math_label(labels)}.\n\n" + md_table(header, body) + (f"\n\n{differ}" if differ else "")
            + (f"\n\n{turns}" if turns else ""))


def elide(text: str, keep: int = TURN_CHARS) -> str:
    """``text`` with its middle cut to ``keep`` characters in all (half from each end) and the cut counted."""
    if len(text) <= keep:
        return text
    return f"{text[:keep // 2]}\n[... {len(text) - keep:,} characters elided ...]\n{text[-(keep // 2):]}"


def _fence(text: str) -> str:
    """A Markdown code block that no backtick run inside ``text`` can close."""
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}text\n{text}\n{ticks}"


def turns_markdown(jobs: Sequence[Any]) -> str:
    """What the student saw, for one problem each: the training turn of the first job that trained (its
    checkpoint's ``counts.train.training_turn``: the first mixture row as tokenised, system and template included,
    ``finetune_mode.prompt``/``system``) and the evaluation turn of the first evaluation that recorded one (its
    manifest's ``first_turn``: the filled benchmark prompt, rendered at generation by the named chat template with
    the generation prompt). Long texts keep both ends (:func:`elide`). ``""`` when neither was recorded."""
    parts = []
    train = next((j.counts["train"]["training_turn"] for j in jobs if (j.counts.get("train") or {}).get("training_turn")), None)
    if train:
        parts.append(f"Training turn (mixture row `{train['id']}`, exactly as tokenised):\n\n" + _fence(elide(train["text"])))
    first = next((ev.first_turn for j in jobs for arm in ("tuned", "untuned")
                  for ev in getattr(j, "graded", {}).get(arm, {}).values() if ev.first_turn), None)
    if first:
        parts.append(f"Evaluation turn (problem `{first['id']}`): the user turn below, rendered by the chat template "
                     f"`{first['chat_template']}` (`model` = the tokenizer's own) with its system default and the "
                     "generation prompt (`apply_chat_template(add_generation_prompt=True)`):\n\n" + _fence(elide(first["user"])))
    return "\n\n".join(parts)


def _pool_rows(jobs: Sequence[Any]) -> list[list[Any]]:
    """One row per teacher pool after rejection sampling (each teacher once)."""
    pools: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for role in ("strong", "weak"):
            pool = job.counts.get(f"pool.{role}")
            if pool:
                pools.setdefault(pool["teacher"], pool)
    return [[t, p.get("cot"), p.get("tried"), p.get("kept"), p.get("keep_rate"),
             ", ".join(f"{k} {v}" for k, v in sorted(p.get("dropped", {}).items())) or "—"]
            for t, p in pools.items()]


def _train_row(job: Any) -> list[Any] | None:
    """A job's mixture and SFT example counts (strong / weak), or None when it did not train."""
    train, mixture = job.counts.get("train"), job.counts.get("mixture", {})
    if not train:
        return None
    i = job.identity
    kept, dropped, cut = train.get("kept", {}), train.get("dropped", {}), train.get("truncated", {})
    loss = train.get("final_loss")
    return [i.get("student"), f"{i.get('strong')} / {i.get('weak')}",
            weight_label(arm_of(i), [realised_weight(train)]),
            f"{mixture.get('N', '—')} ({mixture.get('strong', '—')} / {mixture.get('weak', '—')})",
            f"{dropped.get('strong', 0)} / {dropped.get('weak', 0)}", f"{cut.get('strong', 0)} / {cut.get('weak', 0)}",
            f"{kept.get('strong', 0)} / {kept.get('weak', 0)}", train.get("steps"),
            "—" if loss is None else f"{loss:.3f}"]


def data_markdown(jobs: Sequence[Any]) -> str:
    """What each job trained on: the teacher pools after rejection sampling, and per job the mixture and
    the examples dropped over ``max_seq_len`` per source (the drops are part of the result)."""
    pool_rows = _pool_rows(jobs)
    rows = [row for row in map(_train_row, jobs) if row is not None]
    parts = []
    if pool_rows:
        parts.append("Teacher pools (rejection sampling: kept = graded correct and not truncated):\n\n" + md_table(
            ["Teacher", "CoT", "Problems", "Kept", "Keep rate", "Dropped (reason n)"], pool_rows))
    if rows:
        parts.append("Mixtures and SFT examples (strong / weak); over-long examples are dropped or cut, as "
                     "`finetune_mode.overlength` says, and counted; w (realised) = nominal mix weight (strong fraction of "
                     "the examples trained on); final loss = the mean training loss of the last "
                     "`finetune_mode.logging_steps` optimiser steps:\n\n"
                     + md_table(["Student", "Teachers", "w (realised)", "Mixture N", "Dropped > max_seq_len",
                                 "Truncated", "After drops", "Steps", "Final loss"], rows))
    return "\n\n".join(parts)
