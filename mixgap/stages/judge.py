"""The paper's LLM re-judge: a second opinion on the samples the rule-based grader marked wrong.

Li et al. (2025) score every miss of their rule (``is_equiv``; here ``eval.rule=paper``) that has a boxed answer
with Qwen2.5-32B-Instruct (official repo ``lm-evaluation-harness/math_metric_llm_eval_general.py``;
``conf/judge/qwen32b.yaml`` quotes its prompt):
a reply containing ``True`` counts as correct, else ``False`` as wrong; anything else is *unparsed* and not
correct. Their published accuracies are these judged ones.

Here the judge is its own planned step after generation (``eval.judge``; :func:`run`): one engine load for every
evaluation of the job that lacks a verdict, batched over all its benchmarks and arms. Each verdict set is a
store artifact keyed by (evaluation key, judge config): ``judgments.jsonl`` (one row per sample: the rule
verdict in force and under every scoring, whether it was sent, the reply, the judge verdict) and ``scores.json``
(rule and judged pass@1 with their CIs, every scoring's and the judged pass@1 side by side, samples sent, flips,
unparsed). The rule verdict in ``predictions.jsonl`` is never changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import to_container
from mixgap.core.files import write_json_atomic
from mixgap.core.store import ArtifactSpec, Store
from mixgap.grading import EXTRACTION_STYLE, SCORINGS
from mixgap.stages.backends import registry
from mixgap.stages.data import Problem, read_jsonl
from mixgap.stages.models import resolve_model, weights_identity
from mixgap.stats.bootstrap import mean_ci
from mixgap.stats.sampled import per_problem_mean

log = logging.getLogger(__name__)
JUDGMENTS, SCORES = "judgments.jsonl", "scores.json"
_RUNTIME = ("batch_size", "tensor_parallel_size")  # how it runs, not what it answers


def judge_spec(judge: DictConfig, eval_key: str) -> ArtifactSpec:
    """Store spec of one judge's verdicts on one evaluation: the judge's model, prompt and budget. A non-GGUF judge's
    model is ``weights`` (:func:`mixgap.stages.models.weights_identity`: a Hub id's resolved revision, a local
    folder's file digests) in place of ``hf_id`` and ``revision``."""
    fields = {k: v for k, v in to_container(judge).items() if k not in (*_RUNTIME, "revision")}
    if judge.get("gguf") is None:
        fields.pop("hf_id", None)
        fields["weights"] = weights_identity(judge, "eval.judge")
    return ArtifactSpec("judge", fields, (eval_key,))


def needs_judge(row: dict[str, Any], style: str = "boxed") -> bool:
    """A sample goes to the judge when the rule grader marked it wrong under the scoring in force
    (``eval.extract`` and ``eval.rule``: its ``correct``; the paper's sent set under ``boxed`` + ``paper``) and that
    scoring extracted an answer (its ``extracted``); never on a ``last_number`` benchmark (GSM8K: the paper scores
    it by its own script, unjudged).

    ``style``: the benchmark's extraction style (``boxed`` or ``last_number``, its YAML's ``extraction``).
    """
    return style != "last_number" and not row["correct"] and row.get("extracted") is not None


def _eval_scores(eval_dir: Path) -> dict[str, Any]:
    path = Path(eval_dir) / SCORES
    return json.loads(path.read_text()) if path.is_file() else {}


def eval_style(eval_dir: Path, benchmark: str) -> str:
    """An evaluation's extraction style: its ``scores.json`` ``extraction``, else the benchmark's by name
    (``mixgap.grading.EXTRACTION_STYLE``; ``boxed`` for a name it does not know)."""
    return _eval_scores(eval_dir).get("extraction") or EXTRACTION_STYLE.get(benchmark, "boxed")


def eval_scoring(eval_dir: Path) -> str:
    """An evaluation's scoring in force (``mixgap.grading.SCORINGS`` name): its ``scores.json`` ``scoring``, else
    its ``extract`` (written before the paper's rule existed: our rule), else ``policy``."""
    recorded = _eval_scores(eval_dir)
    return recorded.get("scoring") or recorded.get("extract") or "policy"


def parse_verdict(reply: str) -> bool | None:
    """``True`` when the reply contains "True", else ``False`` when it contains "False", else None (unparsed);
    the order of the official script's checks."""
    if "True" in reply:
        return True
    if "False" in reply:
        return False
    return None


def fill_judge_prompt(template: str, problem: str, gold: str, answer: str) -> str:
    """The judge prompt with ``{problem}``, ``{gold}``, ``{answer}`` filled (plain replacement: math braces stay)."""
    return template.replace("{problem}", problem).replace("{gold}", gold).replace("{answer}", answer)


def judged_rows(rows: Sequence[dict[str, Any]], replies: dict[int, str], scoring: str = "policy") -> list[dict[str, Any]]:
    """``judgments.jsonl`` rows: per sample ``id``, ``sample``, ``rule`` (the rule verdict in force, ``scoring``),
    ``rule_<name>`` (the rule verdict under each scoring the prediction row carries: ``correct`` for ``scoring``,
    ``correct_<name>`` for the others), ``sent``, ``reply``, ``verdict`` (judge: True/False/None; None also when not
    sent) and ``correct`` (rule or judge True)."""
    out = []
    for i, r in enumerate(rows):
        reply = replies.get(i)
        verdict = parse_verdict(reply) if reply is not None else None
        by_scoring = {f"rule_{n}": bool(r["correct" if n == scoring else f"correct_{n}"]) for n in SCORINGS
                      if n == scoring or f"correct_{n}" in r}
        out.append({"id": r["id"], "sample": r.get("sample", 0), "rule": bool(r["correct"]), **by_scoring,
                    "sent": reply is not None, "reply": reply, "verdict": verdict,
                    "correct": bool(r["correct"]) or verdict is True})
    return out


def judge_scores(judged: Sequence[dict[str, Any]], benchmark: str, judge_name: str) -> dict[str, Any]:
    """Rule and judged pass@1 (percent, mean over samples and problems) with CIs over problems
    (``mixgap.stats.bootstrap.mean_ci``: Wilson for one sample per problem, else the bootstrap), and the judge's counts:
    ``sent``, ``flips`` (rule wrong -> judge True), ``unparsed`` (neither True nor False); ``accuracy_by_scoring``:
    pass@1 under each rule scoring the rows carry (``rule_<name>``, :func:`judged_rows`) and ``judged``, side by side."""
    out: dict[str, Any] = {"benchmark": benchmark, "judge": judge_name, "samples": len(judged)}
    for key, name in (("rule", "rule"), ("correct", "judge")):
        values = list(per_problem_mean(judged, key).values())
        low, high, se = mean_ci(values)
        out.update({f"{name}_accuracy": 100.0 * sum(values) / len(values), f"{name}_ci_low": low,
                    f"{name}_ci_high": high, f"{name}_se": se})
    out["accuracy_by_scoring"] = {}
    for name, column in [*((n, f"rule_{n}") for n in SCORINGS), ("judged", "correct")]:
        if judged and all(column in r for r in judged):
            values = list(per_problem_mean(judged, column).values())
            out["accuracy_by_scoring"][name] = 100.0 * sum(values) / len(values)
    out["sent"] = sum(r["sent"] for r in judged)
    out["flips"] = sum(r["sent"] and r["verdict"] is True for r in judged)
    out["unparsed"] = sum(r["sent"] and r["verdict"] is None for r in judged)
    return out


class JudgeEngine:
    """The judge model, loaded on first use (a job whose verdicts are all cached loads nothing).

    With ``data_parallel_size > 1``: that many judge replicas (:class:`mixgap.stages.backends.parallel.ReplicaPool`, greedy,
    so the replies do not depend on the count), their finished shards kept in ``work_dir`` (default: the store's
    ``.work/judge-replicas``).
    """

    def __init__(self, judge: DictConfig, store: Store, seed: int = 0, data_parallel_size: int | None = None,
                 work_dir: Path | None = None):
        self.judge, self.store, self.seed, self.backend = judge, store, seed, None
        self.data_parallel_size, self.work_dir = int(data_parallel_size or 1), work_dir

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """Greedy replies within ``judge.max_new_tokens``."""
        if not prompts:
            return []
        if self.backend is None:
            j = self.judge
            self.backend = registry.load_backend(
                j.backend, resolve_model(j, self.store), dtype=j.dtype, max_model_len=j.max_model_len,
                tensor_parallel_size=j.tensor_parallel_size, batch_size=j.batch_size,
                chat_template=None if j.chat_template == "model" else j.chat_template, seed=self.seed,
                data_parallel_size=self.data_parallel_size,
                work_dir=(self.work_dir or self.store.work_dir("judge-replicas")) if self.data_parallel_size > 1 else None,
            )
        out = self.backend.generate(prompts, max_new_tokens=int(self.judge.max_new_tokens), temperature=0.0,
                                    desc=f"judge {self.judge.name}")
        return [samples[0].text.strip() for samples in out]

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


def judge_evaluations(
    judge: DictConfig, store: Store, evaluations: dict[str, tuple[str, str, Sequence[Problem]]], seed: int = 0,
    data_parallel_size: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Judge several finished evaluations in one pass (one judge load, one batch over all of them).

    Sent: the samples :func:`needs_judge` picks under the evaluation's scoring in force and style (:func:`eval_style`).

    Args:
        judge: the judge config (``eval.judge``).
        store: the artifact store holding the evaluations.
        evaluations: ``{label: (evaluation key, benchmark name, problems)}``; the problems give the texts.
        seed: engine seed.
        data_parallel_size: judge replicas (the preflight's decision); their shards are kept in the first pending
            verdict set's work folder, which the store removes once that set is finished.

    Returns:
        ``{label: judge scores.json}`` (:func:`judge_scores`); cached verdicts are read, not recomputed.

    Raises:
        KeyError: a prediction's problem id is not among its problems.
    """
    todo, prompts, sent = {}, [], {}
    for label, (key, bench, problems) in evaluations.items():
        spec = judge_spec(judge, key)
        if store.is_done(spec.key):
            continue
        texts = {p.id: p.problem for p in problems}
        rows = read_jsonl(store.path(key) / "predictions.jsonl")
        style = eval_style(store.path(key), bench)
        todo[label] = (spec, rows, bench, eval_scoring(store.path(key)))
        sent[label] = []
        for i, r in enumerate(rows):
            if needs_judge(r, style):
                sent[label].append((i, len(prompts)))
                prompts.append(fill_judge_prompt(judge.prompt, texts[str(r["id"])], str(r["gold"]), str(r["extracted"])))
    work = store.work_dir(next(iter(todo.values()))[0].key) if todo else None
    engine = JudgeEngine(judge, store, seed, data_parallel_size, work)
    try:
        replies = engine.ask(prompts)
    finally:
        engine.close()
    scores = {}
    for label, (key, bench, _) in evaluations.items():
        spec = judge_spec(judge, key)
        if label in todo:
            _, rows, _, in_force = todo[label]
            mine = {i: replies[j] for i, j in sent[label]}

            def build(out: Path, _w: Path, rows: list = rows, mine: dict = mine, bench: str = bench,
                      in_force: str = in_force) -> dict[str, Any]:
                judged = judged_rows(rows, mine, in_force)
                result = {**judge_scores(judged, bench, judge.name), "scoring": in_force}
                with open(out / JUDGMENTS, "w", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in judged)
                write_json_atomic(out / SCORES, result)
                log.info("judge %s on %s: %d sent, %d flips, %d unparsed; pass@1 rule %.1f%%, judged %.1f%%",
                         judge.name, bench, result["sent"], result["flips"], result["unparsed"],
                         result["rule_accuracy"], result["judge_accuracy"])
                return {"scores": result}

            store.get_or_build(spec, build)
        scores[label] = json.loads((store.path(spec.key) / SCORES).read_text())
    return scores


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The judge step (stage contract, :mod:`mixgap.core.stage`): the planned ``judge.<arm>.<benchmark>`` verdicts, in
    one judge load over every evaluation of the job; each evaluation's judge scores go into ``result.json`` beside
    its rule-based ones (``scores|untuned.<benchmark>.judge``)."""
    cfg = ctx.cfg
    wanted = {}
    for role in roles:
        _, arm, name = role.split(".")
        wanted[role] = (ctx.specs[f"eval.{arm}.{name}"].key, cfg.benchmark[name].name, ctx.value("benchmarks")[name])
    results = judge_evaluations(cfg.eval.judge, ctx.store, wanted, int(cfg.seed),
                                ctx.decisions.get("judge_data_parallel_size"))
    for role, result in results.items():
        _, arm, name = role.split(".")
        ctx.paths[role] = ctx.store.path(ctx.specs[role].key)
        table = ctx.result.get("scores" if arm == "tuned" else "untuned", {})
        if name in table:
            table[name]["judge"] = result
    ctx.receipt("judge", "; ".join(f"{role.split('.', 1)[1]}: {r['flips']:,} of {r['sent']:,} rule misses judged "
                                   f"correct ({r['judge_accuracy']:.1f}% judged)" for role, r in results.items()), roles)
