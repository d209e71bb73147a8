"""Teacher CoT generation (or import) and rejection sampling into a teacher pool (paper Section 3/4 setup).

Two store artifacts per teacher:

- ``generation``: ``samples.jsonl``, every raw sample: ``{id, problem, answer, sample_index, response,
  finish_reason, prompt_tokens, completion_tokens, status, teacher}``. The teacher's backend is a registered
  class (:mod:`mixgap.stages.backends`): one that generates (``vllm``, ``hf``) runs the teacher's prompt
  (default ``config.PAPER_PROMPT``) in resumable shards under the store's ``work_dir``; one that imports
  (``dataset``: the authors' released UWNSL data from the Hub, or the kit's ``traces/``) maps existing
  responses through a field map.
- ``pool``: ``pool.jsonl``, the kept samples after rejection sampling: a sample is kept only if
  :func:`mixgap.grading.grade` (benchmark ``math``) calls it correct against the gold answer and it was
  neither truncated nor ``prompt_too_long``; with n > 1 samples per problem, the first correct one.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mixgap import grading
from mixgap.core.config import data_root, to_container
from mixgap.core.errors import MixgapError
from mixgap.core.files import write_jsonl_atomic
from mixgap.core.stage import share
from mixgap.core.store import ArtifactSpec
from mixgap.stages import data, models
from mixgap.stages.backends import registry
from mixgap.stages.backends.registry import backend_class

SAMPLES, POOL = "samples.jsonl", "pool.jsonl"
SHARD_SIZE = 256  # problems per resumable shard: at most this much work is lost when a job is killed
GRADE_BENCHMARK = "math"  # MATH train problems are graded with the MATH policy
#: Bump when the filter rule changes: every pool is then rebuilt (as when mixgap.grading.POLICY_VERSION does).
FILTER_POLICY = "first-correct-not-truncated/v1"
_COSMETIC = ("name", "display_name", "batch_size")  # never change a sample
_GENERATION_ONLY = ("hf_id", "revision", "gguf", "prompt", "sampling", "max_model_len", "dtype", "tensor_parallel_size")


def generation_spec(teacher: Any, problems: Any, data_root: Path | None, field: str = "teacher") -> ArtifactSpec:
    """Store spec of a teacher's raw samples (stage ``generation``).

    Fields: the teacher config minus cosmetic fields (``name``, ``display_name``, ``batch_size``) and minus the fields its
    backend ignores; ``weights``: the store key of a GGUF teacher's converted weights, else what identifies its
    weights (:func:`mixgap.stages.models.weights_identity`: a Hub id's resolved revision, a local folder's file
    digests; ``hf_id`` and ``revision`` are in it, never a folder's path; ``field``, the teacher's config path, names
    it in errors); the problem source when the teacher
    generates or when imported rows take ids/answers from it (the backend's ``needs_problems``), with what identifies
    its content (``problems_content``: :func:`mixgap.stages.data.source_digest`, the local or kit file's SHA-256 or
    the Hub revision); ``source`` = ``kit`` or ``hub``; and, for an importing backend (``dataset``), ``source`` =
    ``file``, ``kit`` or ``hub`` and ``content``: the SHA-256 of its local file (``dataset.path``) or kit file
    (``dataset.kit_path``) or the revision of its Hub dataset, so edited traces get a new key (never a file's
    location: a local file's ``path`` is not keyed, a kit file's is keyed as ``dataset.path``). The student is not
    part of it.

    Raises:
        ConfigError: ``teacher.backend`` is not a registered backend; ``<field>.revision`` on a local folder.
    """
    backend = backend_class(teacher.backend, "teacher.backend")
    fields: dict[str, Any] = dict(to_container(teacher))
    for name in _COSMETIC:
        fields.pop(name, None)
    if not backend.generates:
        for name in _GENERATION_ONLY:
            fields.pop(name, None)
        ds, keyed = teacher.dataset, dict(fields["dataset"])
        # a kit file is keyed under "path", the name its field had before local files (stores keep their keys); a
        # local file is keyed by its content alone, never where it lies
        keyed.pop("path", None)
        keyed["path"] = keyed.pop("kit_path", None)
        fields["dataset"] = keyed
        if ds.get("path"):
            fields["source"], fields["content"] = "file", data.local_digest(data.local_file(ds.path))
        elif ds.get("kit_path"):
            fields["source"], fields["content"] = "kit", data.kit_digest(data_root or Path("/"), ds.kit_path)
        else:
            fields["source"], fields["content"] = "hub", {"hub": ds.hub_id, "revision": data.hub_revision(str(ds.hub_id))}
    else:
        fields.pop("dataset", None)
        fields.pop("revision", None)
        weights = models.model_spec(teacher)
        if weights is None:
            fields.pop("hf_id", None)
        fields["weights"] = weights.key if weights else models.weights_identity(teacher, field)
        fields["source"] = "kit" if data_root is not None else "hub"
    if backend.needs_problems(teacher):
        fields["problems"] = data.keyed_source(problems)
        fields["problems_source"] = data.source_kind(problems, data_root)
        fields["problems_content"] = data.source_digest(problems, data_root)
    return ArtifactSpec("generation", fields)


def pool_spec(teacher: Any, generation_key: str) -> ArtifactSpec:
    """Store spec of a teacher pool (stage ``pool``): the filter policy and ``mixgap.grading.POLICY_VERSION``;
    input = the generation. (``teacher`` is accepted for symmetry; nothing of it changes the filter.)"""
    fields = {"filter": FILTER_POLICY, "grader": grading.POLICY_VERSION, "benchmark": GRADE_BENCHMARK}
    return ArtifactSpec("pool", fields, (generation_key,))


def sample_rows(problem: data.Problem, completions: Sequence[Any], teacher_name: str) -> list[dict[str, Any]]:
    """The ``samples.jsonl`` rows of one problem's completions (:class:`mixgap.stages.backends.base.Completion`)."""
    return [
        {"id": problem.id, "problem": problem.problem, "answer": problem.answer, "sample_index": k,
         "response": c.text, "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
         "completion_tokens": c.completion_tokens, "status": c.status, "teacher": teacher_name}
        for k, c in enumerate(completions)
    ]


def generate_samples(problems: Sequence[data.Problem], backend: Any | Callable[[], Any], teacher: Any,
                     work_dir: Path, *, tracker: Any = None, shard_size: int = SHARD_SIZE) -> dict[str, Any]:
    """Generate every problem's samples into shards ``work_dir/shard-*.jsonl``, skipping ids already done.

    Args:
        problems: the problems, in source order (ids unique).
        backend: a :class:`mixgap.stages.backends.base.Backend` (the caller closes it), or a zero-argument factory called
            only when there is work left (a resumed, finished run loads no model); its engine is closed here.
        teacher: config node with ``name``, ``prompt``, ``sampling`` (temperature, top_p, max_new_tokens, n, seed).
        work_dir: the store's persistent scratch for this generation.
        shard_size: problems per shard (each shard is written atomically once generated); per replica when
            ``backend`` is a :class:`mixgap.stages.backends.parallel.ReplicaPool` (a shard of ``shard_size x replicas``
            problems, whose finished replica shards survive a killed job).

    Returns:
        ``{"rows": all sample rows in problem order, "resumed": problems found done}``. A shard of the
        remaining problems starting at source index ``i`` samples with seed ``sampling.seed + i``.
    """
    done_rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(work_dir.glob("shard-*.jsonl")):
        for row in data.read_jsonl(path):
            done_rows.setdefault(row["id"], []).append(row)
    resumed = sum(p.id in done_rows for p in problems)
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done_rows]
    s, engine = teacher.sampling, None
    owned = callable(backend) and not hasattr(backend, "generate")  # a factory: we load and close the engine
    try:
        engine = (backend() if owned else backend) if todo else None
        step = shard_size * getattr(engine, "replicas", 1)  # data parallel: shard_size problems per replica
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            prompts = [data.fill_prompt(teacher.prompt, p.problem) for _, p in chunk]
            outputs = engine.generate(prompts, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                      top_p=s.top_p, n=s.n, seed=s.seed + chunk[0][0], desc=f"{teacher.name} shard")
            rows = [r for (_, p), out in zip(chunk, outputs, strict=True) for r in sample_rows(p, out, teacher.name)]
            write_jsonl_atomic(work_dir / f"shard-{len(list(work_dir.glob('shard-*.jsonl'))):05d}.jsonl", rows)
            for row in rows:
                done_rows.setdefault(row["id"], []).append(row)
            if tracker is not None:
                tracker.log({"generation/problems_done": resumed + start + len(chunk)})
    finally:
        if owned and engine is not None:
            engine.close()
    rows = [r for p in problems for r in sorted(done_rows[p.id], key=lambda r: r["sample_index"])]
    return {"rows": rows, "resumed": resumed}


def build_generation(teacher: Any, cfg: Any, store: Any, out_dir: Path, work_dir: Path, tracker: Any,
                     data_parallel_size: int | None = None) -> dict:
    """Write ``out_dir/samples.jsonl`` for a teacher: generate with its backend's engine (``vllm``, ``hf``:
    :func:`mixgap.stages.backends.registry.load_backend`), or import with an importing backend (``dataset``:
    ``import_samples``).

    Returns:
        Manifest extras ``{"counts": {...}}``: problems, samples, per-status and per-finish-reason counts,
        resumed problems (generation); rows, unmatched, missing_response (import); with the problem source read,
        ``skipped_no_gold_answer``: its rows without a gold answer, left out (:func:`mixgap.stages.data.read_problems`).

    ``data_parallel_size``: engine replicas (the preflight's decision for this allocation; None = one), their
    finished shards kept in ``work_dir``.

    Raises:
        ConfigError: ``teacher.backend`` is not a registered backend.
    """
    backend = backend_class(teacher.backend, "teacher.backend")
    root = data_root(cfg)
    problems, no_gold = data.load_problems(cfg.problems, root) if backend.needs_problems(teacher) else (None, 0)
    if backend.generates:
        def factory():
            return registry.load_backend(
                teacher.backend, models.resolve_model(teacher, store), dtype=teacher.dtype,
                max_model_len=teacher.max_model_len, tensor_parallel_size=teacher.tensor_parallel_size,
                batch_size=teacher.batch_size, seed=teacher.sampling.seed,
                data_parallel_size=int(data_parallel_size or 1), work_dir=work_dir)

        result = generate_samples(problems, factory, teacher, work_dir, tracker=tracker)
        rows = result["rows"]
        counts = {"problems": len(problems), "samples": len(rows), "resumed": result["resumed"],
                  "finish_reason": dict(Counter(r["finish_reason"] for r in rows))}
    else:
        rows, counts = backend.import_samples(teacher, root, problems)
    if problems is not None:
        counts["skipped_no_gold_answer"] = no_gold
    counts["status"] = dict(Counter(r["status"] for r in rows))
    write_jsonl_atomic(out_dir / SAMPLES, rows)
    return {"counts": counts}


def length_stats(values: Sequence[int]) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``median`` and ``p95`` (nearest rank: the ceil(0.95 n)-th smallest) of lengths."""
    if not values:
        return {"n": 0, "mean": None, "median": None, "p95": None}
    ordered = sorted(values)
    return {"n": len(ordered), "mean": round(statistics.fmean(ordered), 1), "median": statistics.median(ordered),
            "p95": ordered[math.ceil(0.95 * len(ordered)) - 1]}


def _lengths(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    tokens = [r.get("completion_tokens") for r in rows]
    chars = [len(r["response"]) for r in rows]
    if rows and all(t is not None for t in tokens):
        return {"unit": "tokens", **length_stats(tokens), "chars": length_stats(chars)}
    return {"unit": "chars", **length_stats(chars),
            "note": "imported responses carry no token counts (no tokenizer): lengths are characters"}


def reject_reason(sample: dict[str, Any], grade: Callable[..., Any]) -> str | None:
    """None when the sample is kept, else why not: its status (``truncated``, ``prompt_too_long``) or the
    grader's verdict reason (``mismatch``, ``no_answer``, ``parse_error``, ``too_large``, ``timeout`` ...)."""
    if sample["status"] != "ok":
        return sample["status"]
    verdict = grade(sample["response"], sample["answer"], GRADE_BENCHMARK)
    return None if verdict.correct else verdict.reason


def filter_samples(samples: Sequence[dict[str, Any]], grade: Callable[..., Any]) -> tuple[list[dict], dict]:
    """Rejection sampling: per problem (in first-seen order) the first kept sample by ``sample_index``.

    Returns:
        (kept sample rows, counts): ``tried`` problems, ``kept``, ``keep_rate``, ``dropped`` (problems by
        the reason of their first sample), ``rejected_samples`` (every graded-and-rejected sample by reason),
        ``samples_graded``, ``length`` (kept) and ``length_tried`` (each problem's first sample, except
        ``prompt_too_long`` ones, which have no response).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in samples:
        groups.setdefault(row["id"], []).append(row)
    kept, dropped, rejected, graded = [], Counter(), Counter(), 0
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: r["sample_index"])
        reasons = []
        for row in rows:
            graded += 1
            reason = reject_reason(row, grade)
            if reason is None:
                kept.append(row)
                break
            reasons.append(reason)
            rejected[reason] += 1
        else:
            dropped[reasons[0]] += 1
    tried = len(groups)
    firsts = [min(rows, key=lambda r: r["sample_index"]) for rows in groups.values()]
    firsts = [r for r in firsts if r["status"] != "prompt_too_long"]  # no response to measure
    return kept, {"tried": tried, "kept": len(kept), "keep_rate": round(len(kept) / tried, 4) if tried else None,
                  "dropped": dict(dropped), "rejected_samples": dict(rejected), "samples_graded": graded,
                  "length": _lengths(kept), "length_tried": _lengths(firsts)}


def build_pool(generation_dir: Path, teacher: Any, out_dir: Path) -> dict:
    """Filter a generation into ``out_dir/pool.jsonl`` (rows ``{id, problem, answer, response, teacher, cot,
    completion_tokens}``); returns ``{"counts": {...}}`` as :func:`filter_samples`, plus teacher and cot."""
    kept, counts = filter_samples(data.read_jsonl(Path(generation_dir) / SAMPLES), grading.grade)
    rows = [{"id": r["id"], "problem": r["problem"], "answer": r["answer"], "response": r["response"],
             "teacher": teacher.name, "cot": teacher.cot, "completion_tokens": r["completion_tokens"]} for r in kept]
    write_jsonl_atomic(Path(out_dir) / POOL, rows)
    return {"counts": {"teacher": teacher.name, "cot": teacher.cot, **counts}}


def read_pool(pool_dir: Path) -> list[dict[str, Any]]:
    """The rows of a finished pool's ``pool.jsonl``."""
    return data.read_jsonl(Path(pool_dir) / POOL)


class PoolMissing(MixgapError, RuntimeError):
    """A teacher pool this job needs is not in the store and ``data.missing_pool`` forbids building it here."""


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The generate step (stage contract, :mod:`mixgap.core.stage`): a teacher's ``generation.<r>`` then ``pool.<r>``,
    generating only when ``data.missing_pool`` allows (``stage=generate`` and imports always do; ``wait`` waits for
    the job building it; ``fail`` and a wait that found nothing raise :class:`PoolMissing` naming the command)."""
    cfg, store = ctx.cfg, ctx.store
    role = roles[0].split(".", 1)[1]
    teacher = cfg.teacher if role == "teacher" else cfg.mix[role]
    gen_spec, pool_spec = ctx.specs[f"generation.{role}"], ctx.specs[f"pool.{role}"]
    policy = "generate" if cfg.stage == "generate" or not backend_class(teacher.backend).generates else cfg.data.missing_pool
    if not store.is_done(gen_spec.key) and policy != "generate":
        if policy == "wait":  # wait for a job generating it right now, if any
            with store.holding(gen_spec.key):
                pass
        if not store.is_done(gen_spec.key):
            raise PoolMissing(
                f"the {teacher.name} pool ({gen_spec.key}) is not in {store.root}; make it first with: "
                f"python launch.py stage=generate teacher={teacher.name}"
            )
    field = "teacher" if role == "teacher" else f"mix.{role}"
    replicas = (ctx.decisions.get("generation_data_parallel_size") or {}).get(field)
    gen_dir = store.get_or_build(
        gen_spec, lambda out, work: build_generation(teacher, cfg, store, out, work, ctx.tracker, replicas))
    ctx.paths[f"generation.{role}"] = gen_dir
    ctx.paths[f"pool.{role}"] = store.get_or_build(pool_spec, lambda out, _work: build_pool(gen_dir, teacher, out))
    counts = ctx.counts(f"pool.{role}")
    no_gold = ctx.counts(f"generation.{role}").get("skipped_no_gold_answer")
    if no_gold:  # problems of the source the teacher never saw (no gold answer to keep a sample by)
        counts = {**counts, "skipped_no_gold_answer": no_gold}
    ctx.result["counts"][f"pool.{role}"] = counts
    made = f"{teacher.name} pool: kept {share(counts.get('kept', 0), counts.get('tried', 0), 'problems')}"
    ctx.receipt(f"generate.{role}", made + (f"; {no_gold:,} problems without a gold answer left out" if no_gold else ""),
                (f"generation.{role}", f"pool.{role}"))
