"""Stage ``analyze``: what fine-tuning changed in a student's *speaking style* (Li et al. 2025, Section 5).

``python launch.py stage=analyze analyze.sweep=<multirun folder>`` (or a list). Reads finished job folders
through :mod:`mixgap.results.sweep` (``find_jobs``, ``read_job``) and the store their ``result.json`` names, groups
jobs into cells (student x teacher pair x fine-tune mode) whose arms are the untuned student and each
fine-tuned student (one per mix weight; seeds apart), and writes into ``<first sweep>/analysis/``:

- token rank shift (Figure 8; :mod:`.rank_shift`, URIAL's method): ``rank_shift_shares.csv`` (unshifted /
  marginal / shifted share per arm), ``rank_shift_top_tokens.csv`` (each arm's 30 most shifted tokens),
  ``rank_shift_side_by_side.csv`` (those tokens across the arms), ``fig_rank_shift_<cell>.png``;
- the case study (Figure 7; :mod:`.case_study`): ``case_study.md``;
- ``analysis.md`` tying it together; and a W&B run (job_type ``analyze``) with the same tables and figures.

Per cell, the same problems (shared by every arm, round robin over benchmarks, at most
``analyze.max_completions``) are analysed for every arm, so the arms' shares are comparable.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mixgap.core.config import data_root, to_container
from mixgap.core.errors import ConfigError
from mixgap.core.store import Store
from mixgap.results import sweep as sweep_folders
from mixgap.results.analysis import case_study, rank_shift, render
from mixgap.results.analysis.case_study import Case, disagreements
from mixgap.results.tables.names import arm_of, arm_title
from mixgap.stages import models, scoring
from mixgap.stages.data import fill_prompt, load_source, read_jsonl

TOP_TOKENS = 30  # tokens listed per arm (the "top 30")
ILLUSTRATE = 3  # problems shown when the arms agree everywhere


@dataclass
class Arm:
    """One column of a cell: the untuned student or one fine-tuned job, with its prediction rows."""
    label: str
    kind: str  # tuned | untuned
    weight: float | None
    cfg: Any  # the job's .hydra/config.yaml
    store: Store
    rows: dict[str, dict[str, dict[str, Any]]]  # benchmark -> problem id -> predictions.jsonl row
    tokenizer_path: str | None = None  # the checkpoint (what generated); None = the untuned student's
    folder: str = ""  # the job folder it was read from


@dataclass
class Cell:
    """Jobs that differ only in mix weight (and seed): one student x teacher pair x fine-tune mode."""
    name: str
    arms: list[Arm] = field(default_factory=list)


def pick_completions(ids: dict[str, Sequence[str]], cap: int) -> list[tuple[str, str]]:
    """``(benchmark, id)`` pairs taken round robin over benchmarks (i-th of each in turn), at most ``cap``.

    Raises:
        ValueError: ``cap`` < 1 (``analyze.max_completions``).
    """
    if cap < 1:
        raise ValueError(f"analyze.max_completions={cap} is not allowed; it must be >= 1")
    out: list[tuple[str, str]] = []
    for i in range(max((len(v) for v in ids.values()), default=0)):
        out += [(b, v[i]) for b, v in ids.items() if i < len(v)]
    return out[:cap]


def shared_ids(arms: Sequence[Arm], *, nonempty: bool) -> dict[str, list[str]]:
    """Per benchmark every arm has, the problem ids all arms answered (with a non-empty completion if asked)."""
    benches = [b for b in arms[0].rows if all(b in a.rows for a in arms)]
    out = {}
    for bench in benches:
        out[bench] = [i for i in arms[0].rows[bench] if all(
            i in a.rows[bench] and (not nonempty or a.rows[bench][i].get("completion")) for a in arms)]
    return out


def _rows(store: Store, key: str) -> dict[str, dict[str, Any]]:

    return {str(r["id"]): r for r in read_jsonl(store.path(key) / "predictions.jsonl")}


def read_cells(sweeps: Sequence[str], store: Store) -> tuple[list[Cell], list[str]]:
    """The cells of finished jobs in ``sweeps`` and a line per job left out (unfinished, no tuned evaluation).

    Jobs with identical evaluation keys (reruns) count once; the untuned arm comes first, then weights ascending.
    """
    jobs = sweep_folders.read_sweeps(list(sweeps), store, "analyze.sweep")
    sweep_folders.assign_variants(jobs)
    cells: dict[tuple, Cell] = {}
    seen: set[tuple] = set()
    skipped = []
    for job in jobs:
        if "tuned" not in job.complete:
            skipped.append(f"{job.label()}: {'; '.join(job.missing) or 'no fine-tuned evaluation'}")
            continue
        result = json.loads((job.folder / sweep_folders.RESULT).read_text())
        job_store = Store(result["store"]) if result.get("store") else store
        cfg = OmegaConf.load(job.folder / sweep_folders.CONFIG)
        key = job.condition()[:4]
        cell = cells.setdefault(key, Cell(f"{key[0]}, {key[1]}/{key[2]}, {key[3]}"))
        for kind in ("untuned", "tuned"):
            evals = job.evals.get(kind, {}) if kind in job.complete else {}
            keys = (kind, *sorted(e.key for e in evals.values()))
            if not evals or (kind == "untuned" and any(a.kind == "untuned" for a in cell.arms)) or keys in seen:
                continue
            seen.add(keys)
            ckpt = result.get("artifacts", {}).get("checkpoint")
            weight = job.identity.get("weight") if kind == "tuned" else None
            cell.arms.append(Arm(  # a student-aware arm (mix.strategy) by its name, never by its unused w
                label="untuned" if kind == "untuned" else f"{arm_title(arm_of(job.identity))} seed={job.identity.get('seed')}",
                kind=kind, weight=weight, cfg=cfg, store=job_store,
                rows={b: _rows(job_store, e.key) for b, e in evals.items()},
                tokenizer_path=str(job_store.path(ckpt)) if kind == "tuned" and ckpt and job_store.is_done(ckpt) else None,
                folder="/".join(job.folder.parts[-2:]),
            ))
    for cell in cells.values():
        cell.arms.sort(key=lambda a: (a.kind == "tuned", a.weight or 0.0, a.label))
        tuned = [a for a in cell.arms if a.kind == "tuned"]
        for arm in tuned:  # the seed only where two arms share a weight (or a strategy)
            if sum(a.label.split(" seed=")[0] == arm.label.split(" seed=")[0] for a in tuned) == 1:
                arm.label = arm.label.split(" seed=")[0]
        labels = [a.label for a in tuned]
        for arm in tuned:  # still equal (e.g. jobs differing in mix_seed only): name the job folder
            if labels.count(arm.label) > 1:
                arm.label += f" [{arm.folder}]"
    return list(cells.values()), skipped


def load_prompts(arm: Arm, benches: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per benchmark, ``{id: data.Problem}`` of the job's benchmark config (every problem, no limit)."""
    root = data_root(arm.cfg)
    return {b: {p.id: p for p in load_source(arm.cfg.benchmark[b], root)} for b in benches}


def rank_cell(cell: Cell, problems: dict[str, dict[str, Any]], cap: int, batch_size: int) -> list[dict[str, Any]]:
    """Rank shift of every arm of ``cell`` on the same completions (:func:`pick_completions`).

    Returns:
        One dict per arm: ``arm``, ``kind``, ``weight``, ``completions``, ``shares`` (``rank_shift.shift_shares``),
        ``stats`` (``rank_shift.token_stats``), ``decode`` (token id -> text).
    """
    from transformers import AutoTokenizer  # heavy: transformers, only when ranking

    if batch_size < 1:
        raise ValueError(f"analyze.batch_size={batch_size} is not allowed; it must be >= 1")
    first = cell.arms[0]
    ids = shared_ids(cell.arms, nonempty=True)
    picks = pick_completions({b: [i for i in v if i in problems.get(b, {})] for b, v in ids.items()}, cap)
    template = None if first.cfg.student.chat_template == "model" else first.cfg.student.chat_template
    model, tokenizer = scoring.load_student(models.resolve_model(first.cfg.student, first.store))
    out = []
    try:
        for arm in cell.arms:
            tok = AutoTokenizer.from_pretrained(arm.tokenizer_path) if arm.tokenizer_path else tokenizer
            seqs = [rank_shift.teacher_forcing_ids(
                tok, fill_prompt(arm.cfg.benchmark[b].prompt, problems[b][i].problem), arm.rows[b][i]["completion"],
                template) for b, i in picks]
            ranks = rank_shift.completion_ranks(model, seqs, batch_size, pad_id=tokenizer.pad_token_id or 0,
                                                desc=f"rank shift {arm.label}")
            stats = rank_shift.token_stats([ids[n:] for ids, n in seqs], ranks)
            out.append({"arm": arm.label, "kind": arm.kind, "weight": arm.weight, "completions": len(seqs),
                        "shares": rank_shift.shift_shares(ranks), "stats": stats,
                        "decode": {t: tokenizer.decode([t]) for t in stats}})
    finally:
        del model
        gc.collect()
    return out


def case_cell(cell: Cell, problems: dict[str, dict[str, Any]], chosen: Sequence[str] | None, max_cases: int = 10):
    """The case study of a cell: ``(note, cases)``; ``chosen`` ids, else problems where the tuned arms disagree."""
    ids = shared_ids(cell.arms, nonempty=False)
    if chosen is not None:
        picks = [(b, i) for i in chosen for b in ids if i in ids[b]]
        found = {i for _, i in picks}
        lost = [i for i in chosen if i not in found]
        note = "Problems chosen by `analyze.problems`." + (f" Not answered by every arm: {', '.join(lost)}." if lost else "")
    else:
        judged = [a for a in cell.arms if a.kind == "tuned"]
        judged = judged if len(judged) > 1 else cell.arms
        split = {b: disagreements([{i: a.rows[b][i]["correct"] for i in v} for a in judged]) for b, v in ids.items()}
        total = sum(map(len, split.values()))
        picks = pick_completions(split, max_cases) if total else pick_completions(ids, ILLUSTRATE)
        names = "fine-tuned arms" if judged is not cell.arms else "arms"
        note = (f"{total} problem{'s' * (total != 1)} where the {names} disagree; showing {len(picks)}." if total else
                f"The {names} agree on every problem; showing the first {len(picks)} for illustration.")
    cases = [Case(b, i, problems[b][i].problem if i in problems[b] else "(problem text not found)",
                  str(cell.arms[0].rows[b][i].get("gold")), {a.label: a.rows[b].get(i) for a in cell.arms})
             for b, i in picks]
    return note, cases


def run(cfg: Any, store: Store, tracker_for: Callable[[Path], Any]) -> dict[str, Any]:
    """Stage ``analyze``: rank shift and case study of every cell of ``cfg.analyze.sweep``.

    Args:
        cfg: the composed config; reads ``analyze.*`` (sweep, max_completions, batch_size, problems, and ``out``
            when the schema has it: default ``<first sweep>/analysis``).
        store: fallback store for jobs whose ``result.json`` names none.
        tracker_for: ``tracker_for(out_dir) -> Tracker``, the analysis's tracker run.

    Returns:
        ``{"out", "markdown", "case_study", "shares_csv", "top_tokens_csv", "side_by_side_csv", "figures",
        "shares": [row per cell x arm], "skipped": [...]}`` (paths as strings).

    Raises:
        ConfigError: a sweep folder does not exist or holds no finished fine-tuned job.
        ValueError: ``analyze.sweep`` is empty; a bad ``analyze`` value.
    """
    a = cfg.analyze
    sweeps = to_container(a.sweep)
    sweeps = [sweeps] if isinstance(sweeps, str) else [str(s) for s in sweeps or []]
    if not sweeps:
        raise ValueError("analyze.sweep is empty; give a multirun folder or a list of them")
    pick_completions({}, int(a.max_completions))  # checks the cap before any model loads
    chosen = None if a.problems is None else [str(i) for i in to_container(a.problems)]
    cells, skipped = read_cells(sweeps, store)
    if not cells:
        raise ConfigError(f"analyze.sweep={sweeps}: no finished job with a fine-tuned evaluation; left out: {skipped}")
    out = Path(a.out or Path(sweeps[0]) / "analysis")
    out.mkdir(parents=True, exist_ok=True)
    results, studies = [], []
    for cell in cells:
        problems = load_prompts(cell.arms[0], list(shared_ids(cell.arms, nonempty=False)))
        results.append((cell.name, rank_cell(cell, problems, int(a.max_completions), int(a.batch_size))))
        note, cases = case_cell(cell, problems, chosen, a.max_cases)
        studies.append(case_study.study_markdown(cell.name, note, cases, [arm.label for arm in cell.arms]))
    paths = render.write_all(results, out, TOP_TOKENS)
    paths["case_study"] = str(render.write_text(out / "case_study.md", "# Case study\n\n" + "\n".join(studies)))
    paths["markdown"] = str(render.write_text(out / "analysis.md", render.summary_markdown(sweeps, results, skipped)))
    tracker = tracker_for(out)
    exit_code = 1
    try:
        render.track(tracker, results, paths["figures"], TOP_TOKENS)
        exit_code = 0
    finally:
        tracker.finish(exit_code=exit_code)
    print(render.shares_text(results) + f"\nanalysis: {paths['markdown']}")
    return {"out": str(out), **paths, "shares": render.share_rows(results), "skipped": skipped}
