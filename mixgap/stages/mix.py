"""Mix Distillation (Li et al., 2025, Section 5): a fraction ``mix.weight`` of training examples from the strong pool.

Exact mixing rule (our reading of the paper, which states only "a ratio of 1:4" for w = 0.2):

- the problem set is the problems **both** pools kept (``mix.problems=intersection``, the default), so
  changing w changes the style of the examples, never the problem set or its size N; ``union`` takes
  every problem either pool kept, and a problem only one pool kept must take that pool's response;
- exactly ``k = floor(w * N + 0.5)`` problems (round half up, not Python's banker's ``round``) take the
  strong response, the other N - k the weak one;
- which problems: the k lowest-ranked shared problems, ranked by ``sha256(f"{seed}:{id}")``; the ranking
  depends only on the seed and the id, so the choice is deterministic for a seed, the strong problems at
  w = 0.2 are a subset of those at w = 0.4 (nested), and no problem appears twice.

That is ``mix.strategy=fixed``, one w for every problem and every student. The student-aware strategies choose each
problem's trace by the untuned student's Rank-Surprisal Ratio of both traces (Yang et al. 2026, arXiv 2601.14249:
lower RSR = more learnable; the ``predict`` artifacts of every problem both pools kept, :mod:`mixgap.stages.predict`),
on the same problems as the fixed arms (``mix.problems=intersection``), so the comparison is paired:

- ``rsr``: a problem takes the strong trace when its RSR is strictly lower than the weak trace's (:func:`rsr_choice`);
  ``mix.weight`` and ``mix.seed`` select nothing (not keyed);
- ``rsr_budget``: the same k = floor(w N + 0.5) strong problems as the fixed arm of that w, chosen by the student:
  those with the largest RSR_weak − RSR_strong, ties in the fixed rule's seeded rank (:func:`rsr_budget_choice`).

A tie, or a problem without both scores (a trace over ``predict.max_seq_len``, which the scoring skips with its
partner, or not scored), goes to the **weak** trace: the shorter one, which training is less likely to drop or cut,
and the trace of the paper's majority (0.8 at w = 0.2); ``rsr_budget`` ranks such problems after every scored one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from mixgap.core.errors import ConfigError
from mixgap.core.fields import check_field
from mixgap.core.files import write_jsonl_atomic
from mixgap.core.schema import MixConfig
from mixgap.core.store import ArtifactSpec, make_key
from mixgap.stages import data
from mixgap.stages.generate import read_pool
from mixgap.stages.train import pairs

log = logging.getLogger(__name__)
MIXTURE = "mixture.jsonl"
#: The per-trace records of a ``predict`` artifact (written by :mod:`mixgap.stages.predict`, read here for ``rsr``).
TRACES = "traces.jsonl"


def mixture_spec(mix_cfg: Any, strong_pool_key: str, weak_pool_key: str, finetune_cfg: Any = None,
                 student_key: str | None = None, scores: Sequence[str] = ()) -> ArtifactSpec:
    """Store spec of a mixture (stage ``mixture``): fields ``{weight, problems, seed}``; inputs ``[strong, weak]``.

    A student-aware ``mix.strategy`` adds ``strategy`` to the fields and the keys ``scores`` of the untuned student's
    ``predict`` artifacts of every problem (strong, weak) to the inputs, so its mixture is per student; ``rsr`` keys
    neither weight nor seed (they select nothing). A ``fixed`` mixture's key is unchanged by the strategy field.

    The weight is keyed as ``round(float(w), 6)`` (:func:`key_weight`), so ``1`` and ``1.0``, and ``0.2`` and
    ``0.2000001``, are one key: weights that close select the same ``k = floor(w N + 0.5)`` strong problems unless
    ``w N + 0.5`` lies within ``1e-6 N`` of an integer (a weight given with at most 6 decimals is keyed as
    itself; the mixture is selected with the keyed weight). Keying by k would be exact, but k needs N, which only the
    pools' contents give, and a spec is a pure function of config and input keys.

    With ``finetune_mode.overlength=drop_pair`` the mixture leaves out every problem over-length in either pool for
    this student (:func:`drop_pair_rows`): its fields then add the training turn and ``max_seq_len`` that decide
    the length, and its inputs the student (whose key carries tokenizer and chat template).

    Raises:
        ValueError: a student-aware strategy without the two ``scores`` keys.
    """
    fields: dict[str, Any] = {"weight": key_weight(mix_cfg.weight), "problems": mix_cfg.problems, "seed": int(mix_cfg.seed)}
    inputs: tuple[str, ...] = (strong_pool_key, weak_pool_key)
    if finetune_cfg is not None and finetune_cfg.overlength == "drop_pair":
        fields["drop_pair"] = {"max_seq_len": int(finetune_cfg.max_seq_len), "prompt": str(finetune_cfg.prompt),
                               "system": finetune_cfg.get("system")}
        inputs += (str(student_key),)
    strategy = mix_cfg.get("strategy", "fixed")
    if strategy != "fixed":
        if len(scores) != 2:
            raise ValueError(f"mix.strategy={strategy} needs the student's predict artifacts of both pools; got {list(scores)}")
        fields["strategy"] = strategy
        if strategy == "rsr":
            del fields["weight"], fields["seed"]
        inputs += tuple(scores)
    return ArtifactSpec("mixture", fields, inputs)


def key_weight(weight: float) -> float:
    """The mix weight as keyed and selected with: ``round(float(weight), 6)`` (:func:`mixture_spec`)."""
    return round(float(weight), 6)


def problem_set_key(mix_cfg: Any, strong_pool_key: str, weak_pool_key: str) -> str:
    """Key of the mixture's problem set: the same for every weight and seed of one pool pair and mode."""
    return make_key("problemset", {"problems": mix_cfg.problems}, [strong_pool_key, weak_pool_key])


def strong_count(weight: float, n: int) -> int:
    """``floor(weight * n + 0.5)``: round half up (``w=0.5, n=5`` gives 3, where ``round`` gives 2), computed
    exactly on the shortest decimal of ``weight`` (``w=0.58, n=25``: 14.5 gives 15; float arithmetic gives 14)."""
    return math.floor(Fraction(repr(float(weight))) * n + Fraction(1, 2))


def rank_key(seed: int, problem_id: str) -> str:
    """The seeded rank of a problem: hex SHA-256 of ``"{seed}:{id}"`` (stable across Python versions)."""
    return hashlib.sha256(f"{seed}:{problem_id}".encode()).hexdigest()


def _unique(ids: Iterable[str], role: str) -> set[str]:
    ids = list(ids)
    unique = set(ids)
    if len(unique) != len(ids):
        raise ValueError(f"the {role} pool lists a problem id more than once; a pool keeps one response per problem")
    return unique


def rsr_choice(ids: Iterable[str], rsr_strong: Mapping[str, float], rsr_weak: Mapping[str, float]) -> set[str]:
    """``mix.strategy=rsr``: the problems that take the strong trace, those whose strong trace has the strictly lower
    RSR under the student (lower RSR = more learnable, Yang et al. 2026, Eq. 7). A tie, or a problem missing from
    either mapping (not scored), takes the weak trace.

    Args:
        ids: the mixture's problems. rsr_strong, rsr_weak: problem id -> the trace's RSR (rank per nat).
    """
    return {pid for pid in ids if pid in rsr_strong and pid in rsr_weak and rsr_strong[pid] < rsr_weak[pid]}


def rsr_budget_choice(ids: Iterable[str], rsr_strong: Mapping[str, float], rsr_weak: Mapping[str, float], k: int,
                      seed: int) -> set[str]:
    """``mix.strategy=rsr_budget``: the ``k`` problems that take the strong trace, in the order: every problem scored
    in both pools by RSR_weak − RSR_strong, largest first (where the student's RSR favours the strong trace most),
    equal differences by the fixed rule's seeded rank (:func:`rank_key`, then the id); then the problems without
    both scores, by seeded rank. So ``len(result) == min(k, len(ids))``, as the fixed arm of the same w.
    """
    def order(pid: str) -> tuple:
        scored = pid in rsr_strong and pid in rsr_weak
        return (not scored, -(rsr_weak[pid] - rsr_strong[pid]) if scored else 0.0, rank_key(seed, pid), pid)

    return set(sorted(ids, key=order)[:k])


def select(strong_ids: Iterable[str], weak_ids: Iterable[str], weight: float, seed: int,
           mode: str, strategy: str = "fixed", rsr: Mapping[str, Mapping[str, float]] | None = None,
           ) -> tuple[list[str], set[str]]:
    """Choose the mixture's problems and which of them take the strong response.

    Args:
        strong_ids, weak_ids: the problem ids each pool kept (unique within a pool).
        weight: ``mix.weight`` in [0, 1], the fraction of examples from the strong pool.
        seed: ``mix.seed``.
        mode: ``intersection`` or ``union`` (``mix.problems``).
        strategy: ``mix.strategy``: fixed, rsr (:func:`rsr_choice`) or rsr_budget (:func:`rsr_budget_choice`).
        rsr: for a student-aware strategy, ``{"strong"|"weak": {problem id: RSR}}`` of the untuned student.

    Returns:
        (the mixture's problem ids sorted, the set of ids that take the strong response), with
        ``len(strong) == floor(weight * N + 0.5)`` where N is the number of ids (any count with ``rsr``).

    Raises:
        ConfigError: weight outside [0, 1], an unknown mode or strategy, a student-aware strategy with
            ``union``, or (union) a weight whose strong count cannot be met because problems only one pool kept
            are forced to that pool; it names mix.weight and the feasible range.
        ValueError: an id repeats within a pool, or a student-aware strategy without ``rsr``.
    """
    check_field(MixConfig, "weight", weight, "mix.weight")
    check_field(MixConfig, "problems", mode, "mix.problems")
    check_field(MixConfig, "strategy", strategy, "mix.strategy")
    if strategy != "fixed" and mode != "intersection":
        raise ConfigError(f"mix.problems={mode} is not allowed with mix.strategy={strategy}; use mix.problems=intersection")
    if strategy != "fixed" and rsr is None:
        raise ValueError(f"mix.strategy={strategy} needs the student's RSR of both pools' traces")
    strong, weak = _unique(strong_ids, "strong"), _unique(weak_ids, "weak")
    shared = strong & weak
    only_strong = strong - weak if mode == "union" else set()
    ids = sorted(shared | (strong | weak if mode == "union" else set()))
    k = strong_count(weight, len(ids))
    if strategy == "rsr":
        return ids, rsr_choice(ids, rsr["strong"], rsr["weak"])
    if strategy == "rsr_budget":
        return ids, rsr_budget_choice(ids, rsr["strong"], rsr["weak"], k, seed)
    low, high = len(only_strong), len(only_strong) + len(shared)
    if not low <= k <= high:
        n = len(ids)
        raise ConfigError(
            f"mix.weight={weight} needs {k} of {n} problems from the strong pool, but with mix.problems=union "
            f"{low} problems only the strong pool kept must take it and {n - high} only the weak pool kept cannot; "
            f"use mix.weight in [{low / n:.4f}, {high / n:.4f}] or mix.problems=intersection"
        )
    ranked = sorted(shared, key=lambda pid: (rank_key(seed, pid), pid))
    return ids, only_strong | set(ranked[: k - low])


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows}


def drop_pair_ids(pools: dict[str, dict[str, dict[str, Any]]], problems: str, overlong: Any) -> tuple[set[str], dict]:
    """The problems ``finetune_mode.overlength=drop_pair`` leaves out: those whose response is over-length in either
    pool, so that every weight of a sweep trains on the same problems at the exact weight.

    Args:
        pools: ``{"strong"|"weak": {id: pool row}}``.
        problems: ``mix.problems`` (``intersection`` tests only the shared problems).
        overlong: ``overlong(rows, ids) -> set of ids`` over ``max_seq_len`` for the student
            (:func:`mixgap.stages.train.pairs.overlong_ids` with its tokenizer).

    Returns:
        ``(excluded ids, counts {"problems", "excluded", "overlong": {role: n}})``.

    Raises:
        ValueError: every problem is over-length (nothing to train on).
    """
    candidates = set(pools["strong"]) | set(pools["weak"])
    if problems == "intersection":
        candidates = set(pools["strong"]) & set(pools["weak"])
    over = {role: overlong(rows, candidates) for role, rows in pools.items()}
    excluded = over["strong"] | over["weak"]
    if not candidates - excluded:
        raise ValueError(f"finetune_mode.overlength=drop_pair leaves no problem: all {len(candidates)} have a response "
                         "over finetune_mode.max_seq_len tokens; raise it")
    return excluded, {"problems": len(candidates), "excluded": len(excluded), "overlong": {r: len(v) for r, v in over.items()}}


def read_rsr(folder: Path) -> dict[str, float]:
    """Problem id -> RSR of a finished ``predict`` artifact's traces (``traces.jsonl``)."""
    return {str(r["id"]): float(r["rsr"]) for r in data.read_jsonl(Path(folder) / TRACES)}


def build_mixture(strong_pool_dir: Path, weak_pool_dir: Path, mix_cfg: Any, out_dir: Path, overlong: Any = None,
                  rsr: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """Write ``out_dir/mixture.jsonl`` (rows ``{id, problem, answer, response, source, teacher,
    completion_tokens}``, sorted by id) from two finished pools; with ``overlong`` (``drop_pair``), first without
    the problems over-length in either pool (:func:`drop_pair_ids`); with ``rsr`` (a student-aware
    ``mix.strategy``), each problem's source chosen by :func:`select`.

    Returns:
        ``{"counts": {"N", "strong", "weak", "tokens": {source: total or None when a pool has no token
        counts}, "chars": {source: total}, "problem_ids": [...], "strong_ids": [...], "strategy",
        "strong_share" (strong / N, the realised w before training), "scored" (problems with both RSRs, for a
        student-aware strategy)}}`` (+ ``drop_pair``).
    """
    pools = {"strong": _by_id(read_pool(strong_pool_dir)), "weak": _by_id(read_pool(weak_pool_dir))}
    dropped = None
    if overlong is not None:
        excluded, dropped = drop_pair_ids(pools, mix_cfg.problems, overlong)
        pools = {role: {i: r for i, r in rows.items() if i not in excluded} for role, rows in pools.items()}
    strategy = mix_cfg.get("strategy", "fixed")
    ids, strong = select(pools["strong"], pools["weak"], key_weight(mix_cfg.weight), int(mix_cfg.seed), mix_cfg.problems,
                         strategy, rsr)
    if not ids:  # nothing to train on: never a finished artifact
        raise data.DataError(f"the mixture has no problems: the strong pool keeps {len(pools['strong'])} and the weak pool "
                        f"{len(pools['weak'])} (mix.problems={mix_cfg.problems}); see the pools' manifests "
                        "(tried, kept, drops by reason)")
    rows = []
    for pid in ids:
        source = "strong" if pid in strong else "weak"
        row = pools[source][pid]
        rows.append({"id": pid, "problem": row["problem"], "answer": row["answer"], "response": row["response"],
                     "source": source, "teacher": row["teacher"], "completion_tokens": row.get("completion_tokens")})
    write_jsonl_atomic(Path(out_dir) / MIXTURE, rows)
    counts = mixture_counts(rows)
    counts.update(strategy=strategy, strong_share=round(counts["strong"] / counts["N"], 6))
    if rsr is not None:
        counts["scored"] = sum(pid in rsr["strong"] and pid in rsr["weak"] for pid in ids)
    if dropped is not None:
        counts["drop_pair"] = {**dropped, "N": counts["N"], "strong": counts["strong"], "weak": counts["weak"]}
    return {"counts": counts}


def mixture_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """N, examples per source, token and character totals per source, and the problem ids."""
    counts: dict[str, Any] = {"N": len(rows), "tokens": {}, "chars": {}}
    for source in ("strong", "weak"):
        part = [r for r in rows if r["source"] == source]
        counts[source] = len(part)
        tokens = [r["completion_tokens"] for r in part]
        counts["tokens"][source] = sum(tokens) if all(t is not None for t in tokens) else None
        counts["chars"][source] = sum(len(r["response"]) for r in part)
    counts["problem_ids"] = [r["id"] for r in rows]
    counts["strong_ids"] = [r["id"] for r in rows if r["source"] == "strong"]
    return counts


def read_mixture(mixture_dir: Path) -> list[data.Problem]:
    """The mixture as Problems with meta ``{response, source, teacher, completion_tokens}``."""
    return [
        data.Problem(id=r["id"], problem=r["problem"], answer=r["answer"], solution=None,
                     meta={k: r[k] for k in ("response", "source", "teacher", "completion_tokens")})
        for r in data.read_jsonl(Path(mixture_dir) / MIXTURE)
    ]


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The mix step (stage contract, :mod:`mixgap.core.stage`): the mixture of the two pools; with
    ``finetune_mode.overlength=drop_pair`` the student's tokenizer decides what is over-length (the plan then builds
    the ``student`` first: the mixture's key takes it as input)."""
    cfg, store = ctx.cfg, ctx.store
    overlong = None
    if cfg.finetune_mode.overlength == "drop_pair":
        overlong = pairs.overlong_test(ctx.value("student"), cfg.student.chat_template, cfg.finetune_mode)
    rsr = None
    if cfg.mix.strategy != "fixed":  # the plan built the student's scores of every problem first (scores.<pool>)
        rsr = {role: read_rsr(ctx.path(f"scores.{role}")) for role in ("strong", "weak")}
    mixture = store.get_or_build(
        ctx.specs["mixture"],
        lambda out, _work: build_mixture(ctx.path("pool.strong"), ctx.path("pool.weak"), cfg.mix, out, overlong, rsr),
    )
    ctx.paths["mixture"] = mixture
    counts = ctx.counts("mixture")  # the id lists stay in the manifest
    ctx.result["counts"]["mixture"] = {k: v for k, v in counts.items() if not k.endswith("_ids")}
    n, strong = counts["N"], counts["strong"]
    chosen = (f"mix.weight={cfg.mix.weight}" if cfg.mix.strategy == "fixed" else f"mix.strategy={cfg.mix.strategy}"
              + (f", mix.weight={cfg.mix.weight}" if cfg.mix.strategy == "rsr_budget" else ""))
    made = f"{n:,} examples, {strong:,} strong and {counts['weak']:,} weak (realised w = {strong / n:.3f}; {chosen})"
    if "scored" in counts:
        made += f"; {counts['scored']:,} problems scored in both pools, the rest weak"
    if "drop_pair" in counts:
        made += f"; {counts['drop_pair']['excluded']:,} problems over-length in either pool left out (drop_pair)"
    ctx.receipt("mix", made, ("mixture",))
