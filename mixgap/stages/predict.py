"""Stage ``predict``: learnability before training, from the *untuned* student's likelihood of each teacher pool.

Li et al. (2025, Section 5) explain the learnability gap by distribution shift: long CoT and large-teacher CoT
sit far from what a small student would write itself. If so, the gap should show before any SFT. For one
student and one teacher pair, the untuned student teacher-forces a seeded sample of each pool's kept traces
(``predict.max_samples``; the *same problems* for both pools), rendered exactly as training renders them
(:func:`mixgap.stages.train.labels.tokenize_conversation`: the student's chat template, the ``finetune_mode.prompt``
user turn), and is scored on exactly the supervised tokens of training (the response and the end-of-turn
token). Per trace it records:

- ``surprisal``: mean token surprisal (negative log-likelihood, nats/token), ``-log softmax(logits)[target]``;
- ``mean_rank`` (ranks clipped at ``predict.rank_clip``, as RSR uses them), ``mean_rank_raw`` (unclipped),
  ``median_rank``: the 1-based rank of the teacher's token among the student's next-token logits (ties in
  the token's favour, :func:`mixgap.stages.scoring.token_ranks`);
- ``top1_share``: the share of tokens the student ranks first (URIAL's "unshifted", Figure 8's bin);
- ``rsr``: the Rank-Surprisal Ratio of the trace (:func:`mixgap.stages.scoring.trace_record`);
- ``tokens``: the response length in scored tokens.

RSR (Yang et al. 2026, "Which Reasoning Trajectories Teach Students to Reason Better? A Simple Metric of
Informative Alignment", arXiv 2601.14249, Eq. 7; code ``UmeanNever/RankSurprisalRatio``, ``rsr_cal.py``
``compute_sample_metrics``): for a trajectory with tokens t = 1..T,

    RSR = sum_t min(rank_t, r) / sum_t surprisal_t        (r = 100)

(= average clipped rank / average surprisal: a surprisal-weighted mean of per-token rank/surprisal). A pool's
RSR is the ratio of the pool's mean per-trace average clipped rank to its mean per-trace average surprisal
(the paper's Appendix A.8, ``rsr_cal.py`` ``dataset_agg``), not the mean of per-trace RSRs. **Lower RSR is
better**: the paper's trajectories that teach best have low probability (high surprisal) yet high-ranked tokens
(low rank), i.e. a small numerator over a large denominator (the repository's README and Figure 2: "low
absolute probability while their tokens remain relatively high-ranked"). The prediction of this module is
therefore: the student learns better from the pool with the lower RSR.

Departures from ``rsr_cal.py``, both to score what training supervises: the scored tokens include the
end-of-turn token (``rsr_cal.py`` stops before it: one token per trace), and a problem whose trace in either
pool is longer than ``predict.max_seq_len`` (default ``finetune_mode.max_seq_len``) is skipped for both pools
(training drops such examples; ``rsr_cal.py`` truncates at ``max_model_len``). Logits are fp32.

Artifacts: one ``predict`` artifact per (untuned student, teacher pool, partner pool of the pair, predict
settings); the key never depends on ``mix.weight``, so every weight of a sweep shares it. It holds
``traces.jsonl`` (one record per scored trace). A student-aware ``mix.strategy`` (:mod:`mixgap.stages.mix`) needs
every problem scored: roles ``scores.strong`` / ``scores.weak`` (:func:`full_specs`), the same settings with
``problems: all`` for the sample (no ``max_samples``, no ``seed``), built before the mixture; the sampled artifact
stays its own (the report's learnability section reads it, its key unchanged). Intervals: percentile bootstrap over
traces (problems),
``predict.n_boot`` resamples; the strong − weak differences are paired (the same resampled problems for both
pools), as :mod:`mixgap.stats` does for accuracies. The teacher-forced scoring (fp32 LM head, batching, the
per-trace figures) is :mod:`mixgap.stages.scoring`, shared with the rank shift of Figure 8.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mixgap.core.files import write_jsonl_atomic
from mixgap.core.store import ArtifactSpec
from mixgap.stages import models
from mixgap.stages.data import fill_prompt, read_jsonl
from mixgap.stages.generate import read_pool
from mixgap.stages.mix import TRACES, rank_key
from mixgap.stages.scoring import EPS, load_student, score_sequences, trace_record
from mixgap.stages.train.labels import IGNORE, set_chat_template, tokenize_conversation
from mixgap.stats.intervals import Interval, percentile_interval, verdict

log = logging.getLogger(__name__)
ROLES = ("strong", "weak")
#: The figures reported per pool (each the mean over traces, RSR the ratio of means) and their units.
FIGURES = {
    "surprisal": "nats/token", "mean_rank": "rank (clipped)", "median_rank": "rank", "top1_share": "fraction",
    "rsr": "rank per nat", "length": "tokens",
}


def effective_max_seq_len(cfg: Any) -> int:
    """``predict.max_seq_len``, or ``finetune_mode.max_seq_len`` when it is None (what training keeps)."""
    value = cfg.predict.max_seq_len
    return int(cfg.finetune_mode.max_seq_len if value is None else value)


def predict_specs(cfg: Any, student_key: str, strong_pool: str, weak_pool: str) -> dict[str, ArtifactSpec]:
    """The two ``predict`` artifacts of a job: ``{"predict.strong": ..., "predict.weak": ...}``.

    Fields: ``max_samples``, ``seed``, ``max_seq_len`` (effective), ``rank_clip``, the training prompt
    (``finetune_mode.prompt``) and system turn (``finetune_mode.system``); inputs: the student (its key carries weights and chat template), the scored
    pool, then its partner. Never ``mix.weight``, batch size or bootstrap settings.
    """
    p = cfg.predict
    fields = {"max_samples": int(p.max_samples), "seed": int(p.seed), "max_seq_len": effective_max_seq_len(cfg),
              "rank_clip": int(p.rank_clip), "prompt": str(cfg.finetune_mode.prompt),
              "system": cfg.finetune_mode.get("system")}
    return {
        "predict.strong": ArtifactSpec("predict", fields, (student_key, strong_pool, weak_pool)),
        "predict.weak": ArtifactSpec("predict", fields, (student_key, weak_pool, strong_pool)),
    }


def full_specs(cfg: Any, student_key: str, strong_pool: str, weak_pool: str) -> dict[str, ArtifactSpec]:
    """``{"scores.strong": ..., "scores.weak": ...}``: every problem both pools kept scored (a student-aware
    ``mix.strategy`` reads them), fields as :func:`predict_specs` with ``problems: all`` instead of ``max_samples``
    and ``seed`` (they choose no sample here); the same inputs."""
    sampled = predict_specs(cfg, student_key, strong_pool, weak_pool)
    out = {}
    for role in ROLES:
        spec = sampled[f"predict.{role}"]
        fields = {"problems": "all", **{k: v for k, v in spec.fields.items() if k not in ("max_samples", "seed")}}
        out[f"scores.{role}"] = ArtifactSpec("predict", fields, spec.inputs)
    return out


# ----------------------------------------------------------------------------- the sample of problems and its scores


def scored_positions(labels: Sequence[int]) -> list[int]:
    """Positions whose label is supervised (``!= -100``): exactly the tokens the SFT loss is taken on."""
    return [t for t, label in enumerate(labels) if label != IGNORE]


def select_problems(
    strong: Mapping[str, Any], weak: Mapping[str, Any], encode: Callable[[Any], Any], max_samples: int | None,
    seed: int, max_seq_len: int,
) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, int]]:
    """The seeded sample of problems scored for *both* pools of a pair.

    The problems both pools kept, in the seeded order of :func:`mixgap.stages.mix.rank_key` (the order mixtures use),
    are taken one by one; a problem whose trace in either pool tokenises to more than ``max_seq_len`` tokens is
    skipped (training would drop it), until ``max_samples`` are taken. Symmetric in the two pools.

    Args:
        strong, weak: pool rows by problem id. encode: row -> ``TokenizedExample`` (the training rendering).
        max_samples, seed, max_seq_len: ``predict.max_samples`` (None: every problem), ``predict.seed``,
            :func:`effective_max_seq_len`.

    Returns:
        ``(ids, examples, counts)``: the chosen ids in sampling order, ``{id: {"strong": ex, "weak": ex}}``, and
        ``{"shared": problems both pools kept, "over_length": skipped, "selected": taken}``.
    """
    shared = sorted(set(strong) & set(weak), key=lambda pid: (rank_key(seed, pid), pid))
    ids, examples, skipped = [], {}, 0
    for pid in shared:
        if max_samples is not None and len(ids) >= max_samples:
            break
        pair = {"strong": encode(strong[pid]), "weak": encode(weak[pid])}
        if max(len(ex.input_ids) for ex in pair.values()) > max_seq_len:
            skipped += 1
            continue
        ids.append(pid)
        examples[pid] = pair
    return ids, examples, {"shared": len(shared), "over_length": skipped, "selected": len(ids)}


def encoder(tokenizer: Any, prompt_template: str, system: str | None = None) -> Callable[[Mapping[str, Any]], Any]:
    """Pool row -> the training example of :func:`mixgap.stages.train.labels.tokenize_conversation` (user turn =
    ``fill_prompt(finetune_mode.prompt, problem)``, system turn ``finetune_mode.system``, assistant = the teacher's
    response); errors name the row."""
    def encode(row: Mapping[str, Any]) -> Any:
        try:
            return tokenize_conversation(tokenizer, fill_prompt(prompt_template, row["problem"]), row["response"], system)
        except ValueError as err:
            raise ValueError(f"pool row {row.get('id')} ({row.get('teacher')}): {err}") from err

    return encode


def build_scores(
    cfg: Any, pools: Mapping[str, Path], role: str, load: Callable[[], tuple[Any, Any]], out_dir: Path,
    sample: bool = True,
) -> dict[str, Any]:
    """Write ``out_dir/traces.jsonl`` for the ``role`` pool: one :func:`trace_record` (plus ``id``) per problem.

    Args:
        cfg: the job config (``predict``, ``finetune_mode.prompt``/``max_seq_len``, ``student.chat_template``).
        pools: finished pool folders by role (``strong``, ``weak``). role: which one to score.
        load: returns ``(model, tokenizer)`` of the untuned student (called lazily, shared by both roles).
        out_dir: the artifact folder being built.
        sample: the seeded sample of ``predict.max_samples`` problems; False: every problem (``scores.<role>``).

    Returns:
        Manifest extras ``{"counts": {teacher, shared, over_length, selected, tokens, wall_s_scoring}}``.

    Raises:
        ValueError: no problem is shared by both pools within ``max_seq_len`` (nothing to compare), or a row
            ``tokenize_conversation`` refuses (named by id).
    """
    model, tokenizer = load()
    set_chat_template(tokenizer, cfg.student.chat_template)
    rows = {r: {row["id"]: row for row in read_pool(pools[r])} for r in ROLES}
    p = cfg.predict
    ids, examples, counts = select_problems(rows["strong"], rows["weak"], encoder(tokenizer, cfg.finetune_mode.prompt, cfg.finetune_mode.get("system")),
                                            int(p.max_samples) if sample else None, int(p.seed), effective_max_seq_len(cfg))
    if not ids:
        raise ValueError(f"predict: no problem kept by both pools fits max_seq_len={effective_max_seq_len(cfg)} "
                         f"({counts['shared']} shared, {counts['over_length']} over length); raise predict.max_seq_len")
    sequences = [(examples[i][role].input_ids, scored_positions(examples[i][role].labels)) for i in ids]
    start = time.perf_counter()
    scores = score_sequences(model, sequences, int(p.batch_size), pad_id=tokenizer.pad_token_id or 0,
                             desc=f"predict {cfg.mix[role].name}", max_tokens=int(p.batch_tokens))
    wall = time.perf_counter() - start
    records = [{"id": i, **trace_record(n, r, int(p.rank_clip))} for i, (n, r) in zip(ids, scores, strict=True)]
    write_jsonl_atomic(Path(out_dir) / TRACES, records)
    tokens = sum(r["tokens"] for r in records)
    log.info("predict %s: %d traces, %d tokens scored in %.1f s", cfg.mix[role].name, len(records), tokens, wall)
    return {"counts": {"teacher": cfg.mix[role].name, **counts, "tokens": tokens, "wall_s_scoring": round(wall, 3)}}


def read_traces(folder: Path) -> list[dict[str, Any]]:
    """The per-trace records of a finished ``predict`` artifact."""
    return read_jsonl(Path(folder) / TRACES)


# ----------------------------------------------------------------------------- pool figures and the prediction


def _figures(traces: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pool figures from per-trace arrays of shape ``(..., n)``: means over the last axis; RSR = ratio of means."""
    surprisal, rank = traces["surprisal"].mean(-1), traces["mean_rank"].mean(-1)
    return {"surprisal": surprisal, "mean_rank": rank, "median_rank": traces["median_rank"].mean(-1),
            "top1_share": traces["top1_share"].mean(-1), "rsr": rank / np.maximum(surprisal, EPS),
            "length": traces["tokens"].mean(-1)}


def _arrays(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    keys = ("surprisal", "mean_rank", "median_rank", "top1_share", "tokens")
    return {k: np.array([float(r[k]) for r in records]) for k in keys}


def learnability(
    records: Mapping[str, Sequence[Mapping[str, Any]]], *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Both pools' figures with bootstrap CIs, their paired differences and the predicted better pool.

    Args:
        records: ``{"strong": traces, "weak": traces}`` (:func:`read_traces`); joined by problem id.
        n_boot, seed, confidence: percentile bootstrap over problems (Efron & Tibshirani 1993, ch. 13); one
            draw of problems is shared by both pools (paired, as ``stats.compare``).

    Returns:
        ``{"strong": {figure: {estimate, low, high}, "n": traces, "tokens": scored tokens}, "weak": {...},
        "difference": {figure: strong − weak}, "prediction": {"better": "strong" | "weak" | "tie",
        "rsr_advantage": RSR_weak − RSR_strong (> 0: the strong pool has the lower, better RSR), "verdict":
        Strong / Weak / n.s. (the advantage's CI above / below 0 / across it), "n": problems}}``. Figures:
        :data:`FIGURES`.

    Raises:
        ValueError: the pools share no problem id, or a bad ``n_boot``/``confidence``.
    """
    if n_boot < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"n_boot={n_boot} and confidence={confidence}: need n_boot >= 1 and confidence in (0, 1)")
    by_id = {r: {str(t["id"]): t for t in records[r]} for r in ROLES}
    ids = sorted(set(by_id["strong"]) & set(by_id["weak"]))
    if not ids:
        raise ValueError("the strong and weak predict artifacts share no problem id; they were not sampled together")
    arrays = {r: _arrays([by_id[r][i] for i in ids]) for r in ROLES}
    draw = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    points = {r: _figures(arrays[r]) for r in ROLES}
    samples = {r: _figures({k: v[draw] for k, v in arrays[r].items()}) for r in ROLES}

    def interval(point: float, boot: np.ndarray) -> dict[str, float]:
        return asdict(Interval(round(float(point), 9), *percentile_interval(boot, confidence), n=len(ids)))

    out: dict[str, Any] = {}
    for r in ROLES:
        out[r] = {f: interval(points[r][f], samples[r][f]) for f in FIGURES}
        out[r].update(n=len(ids), tokens=int(arrays[r]["tokens"].sum()))
    out["difference"] = {f: interval(points["strong"][f] - points["weak"][f], samples["strong"][f] - samples["weak"][f])
                         for f in FIGURES}
    advantage = interval(points["weak"]["rsr"] - points["strong"]["rsr"], samples["weak"]["rsr"] - samples["strong"]["rsr"])
    better = "strong" if advantage["estimate"] > 0 else "weak" if advantage["estimate"] < 0 else "tie"
    out["prediction"] = {"better": better, "rsr_advantage": advantage, "verdict": verdict(Interval(**advantage)),
                         "n": len(ids), "confidence": confidence}
    return out


def _loader(cfg: Any, store: Any, student_path: str | None) -> tuple[Callable[[], tuple[Any, Any]], list]:
    """``(load, loaded)``: ``load()`` loads the untuned student once (lazily: a reused artifact loads nothing);
    clear ``loaded`` to free it."""
    path = student_path or models.resolve_model(cfg.student, store)
    loaded: list[tuple[Any, Any]] = []

    def load() -> tuple[Any, Any]:
        if not loaded:
            loaded.append(load_student(str(path)))
        return loaded[0]

    return load, loaded


def build_full(cfg: Any, store: Any, specs: Mapping[str, ArtifactSpec], pools: Mapping[str, Path],
               student_path: str | None = None) -> dict[str, Path]:
    """Build (or reuse) both ``scores.<pool>`` artifacts (every problem both pools kept, :func:`full_specs`) with one
    load of the student; returns their folders by pool."""
    load, loaded = _loader(cfg, store, student_path)
    try:
        return {r: store.get_or_build(specs[f"scores.{r}"], lambda o, _w, r=r: build_scores(cfg, pools, r, load, o, False))
                for r in ROLES}
    finally:
        loaded.clear()
        gc.collect()


def build_learnability(
    cfg: Any, store: Any, specs: Mapping[str, ArtifactSpec], pools: Mapping[str, Path], tracker: Any,
    student_path: str | None = None,
) -> dict[str, Any]:
    """Build (or reuse) both ``predict`` artifacts of the job and return the ``learnability`` of ``result.json``.

    Args:
        cfg: the job config. store: the artifact store. specs: the job's specs (``predict.strong``/``weak``).
        pools: finished pool folders by role. tracker: gets the per-pool figures as summary values.
        student_path: the untuned student's weights when already resolved; else resolved here.

    Returns:
        :func:`learnability` plus ``artifacts`` (role -> key), ``teachers`` (role -> name) and the counts of
        :func:`build_scores` under ``counts``.
    """
    load, loaded = _loader(cfg, store, student_path)
    p = cfg.predict
    try:
        folders = {r: store.get_or_build(specs[f"predict.{r}"], lambda o, _w, r=r: build_scores(cfg, pools, r, load, o))
                   for r in ROLES}
    finally:
        loaded.clear()
        gc.collect()
    out = learnability({r: read_traces(folders[r]) for r in ROLES}, n_boot=int(p.n_boot), seed=int(p.seed),
                       confidence=float(p.confidence))
    out["artifacts"] = {r: specs[f"predict.{r}"].key for r in ROLES}
    out["teachers"] = {r: cfg.mix[r].name for r in ROLES}
    out["counts"] = {r: store.manifest(specs[f"predict.{r}"].key).get("counts", {}) for r in ROLES}
    tracker.summary({f"learnability/{r}/{f}": out[r][f]["estimate"] for r in ROLES for f in FIGURES}
                    | {"learnability/rsr_advantage": out["prediction"]["rsr_advantage"]["estimate"],
                       "learnability/better": out["prediction"]["better"]})
    log.info("learnability: %s", json.dumps({r: {f: round(out[r][f]["estimate"], 4) for f in FIGURES} for r in ROLES}))
    return out


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The predict steps (stage contract, :mod:`mixgap.core.stage`): ``scores.<pool>`` (every problem, for a
    student-aware mixture: the step before the mix step), or both sampled ``predict.<pool>`` artifacts of the untuned
    student and the job's ``learnability`` for ``result.json``."""
    pools = {r: ctx.path(f"pool.{r}") for r in ROLES}
    if any(role.startswith("scores.") for role in roles):
        for r, folder in build_full(ctx.cfg, ctx.store, ctx.specs, pools, ctx.value("student")).items():
            ctx.paths[f"scores.{r}"] = folder
        counts = ctx.result["counts"]["scores"] = {r: ctx.counts(f"scores.{r}") for r in ROLES}
        c = counts["strong"]
        ctx.receipt("score", f"every problem both pools kept scored for mix.strategy={ctx.cfg.mix.strategy}: "
                    f"{c['selected']:,} problems x 2 traces ({c['shared']:,} shared, {c['over_length']:,} over length), "
                    f"{c['tokens'] + counts['weak']['tokens']:,} tokens",
                    [role for role in roles if role.startswith("scores.")])
    if any(role.startswith("predict.") for role in roles):
        ctx.result["learnability"] = build_learnability(ctx.cfg, ctx.store, ctx.specs, pools, ctx.tracker,
                                                        ctx.value("student"))
        for role in roles:
            ctx.paths[role] = ctx.store.path(ctx.specs[role].key)
        out = ctx.result["learnability"]
        c, rsr, prediction = out["counts"]["strong"], {r: out[r]["rsr"]["estimate"] for r in ROLES}, out["prediction"]
        ctx.receipt("predict", f"{c['selected']:,} problems scored in both pools ({c['shared']:,} shared, "
                    f"{c['over_length']:,} over length); RSR strong {rsr['strong']:.3f}, weak {rsr['weak']:.3f}: "
                    f"{prediction['better']} predicted better ({prediction['verdict']})", roles)
