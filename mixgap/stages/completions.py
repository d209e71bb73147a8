"""Completions: one model's zero-shot generations on the job's benchmarks (paper Section 3.1), the store artifact
that the verdicts (:mod:`mixgap.stages.evaluate`) grade. One artifact per (model, benchmark), stage ``completions``:
``completions.jsonl``, one row per (problem, sample) in problem order (``id``, ``sample``, ``completion``,
``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``status``); its manifest records the backend, the
problem ids, the first filled user turn, ``counts`` (``problems``, ``samples``, ``generated`` by the build that
finished it, ``resumed`` from an earlier, killed attempt, ``finish_reason``) and ``generation_s``. Its key
(:func:`completions_spec`) holds only what generation depends on, so a grader version, ``eval.extract`` or
``eval.rule`` regrades the same completions without loading a model.

Protocol (Li et al. 2025): greedy decoding (``eval.n_samples`` 1), ``max_new_tokens`` 16,000, generation stopped at
``Problem:`` (``Q:`` for GSM8K; ``eval.stop``), the boxed ``Final Answer:`` prompt for MATH/MATH500/AIME/AMC/
OlympiadBench and the bare question for GSM8K; both come from ``conf/benchmark/*.yaml``.

One engine pass per model (:func:`generate_model`): the samples of every benchmark whose completions are not
finished go into one queue, cut into chunks of ``eval.chunk_size`` samples; each chunk, once generated, is written
atomically into its benchmark's store ``work_dir`` (``chunk-<n>.jsonl``), so a killed evaluation keeps what it
finished and a rerun generates only the missing samples. On ``data_parallel_size`` replicas each replica process
writes its own chunks (:mod:`mixgap.stages.backends.replica`). A greedy completion depends only on its prompt and a
sampled one on its prompt and seed (:func:`problem_seed`): the artifact is the same for any chunk size, number of
replicas or kills.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import to_container
from mixgap.core.files import write_jsonl_atomic
from mixgap.core.store import ArtifactSpec, Store
from mixgap.stages.backends import registry
from mixgap.stages.backends.base import Completion
from mixgap.stages.data import (
    DataError,
    Problem,
    fill_prompt,
    keyed_source,
    read_jsonl,
    source_digest,
    source_kind,
)
from mixgap.stages.serving import Serving, arm_serving

log = logging.getLogger(__name__)
COMPLETIONS = "completions.jsonl"
#: benchmark fields that change no completion: cosmetic, the planner's size, the grader's extraction, or in the
#: key as the stop and sampling fields below
_NOT_IN_KEY = ("label", "size", "stop", "n_samples", "extraction")


def completions_spec(bench: DictConfig, eval_cfg: DictConfig, model_key: str, exclude_key: str | None,
                     data_root: Path | None, chat_template: str, engine: dict[str, Any] | None = None) -> ArtifactSpec:
    """Store spec of one (model, benchmark) set of completions: only what generation depends on.

    Fields: the benchmark (its source, split, fields and prompt; not its label, size or extraction), the
    ``chat_template`` that renders the prompt, the generation budget ``eval.max_new_tokens``, ``engine`` (the engine's
    context and how a LoRA checkpoint is served, :func:`mixgap.stages.serving.key_fields`; None: ``max_model_len`` =
    ``eval.max_model_len``), the stop strings (:func:`stop_strings`), the sampling (:func:`sampling_fields`: None when
    greedy; else n, temperature, top_p and ``eval.seed``), the problem set (``limit``, ``source`` file/kit/hub, ``content``
    :func:`mixgap.stages.data.source_digest`, ``selection``). Inputs: the model's key and, when decontamination drops
    problems, the training problem set's key. Never the grader, ``eval.extract`` or ``eval.rule`` (the verdicts' key,
    :func:`mixgap.stages.evaluate.eval_spec`); backend, batch size, chunk size and parallelism are in the manifest."""
    fields = {
        "benchmark": {k: v for k, v in keyed_source(bench).items() if k not in _NOT_IN_KEY},
        "chat_template": chat_template,
        "max_new_tokens": eval_cfg.max_new_tokens,
        **(engine if engine is not None else {"max_model_len": eval_cfg.get("max_model_len")}),
        "limit": eval_cfg.limit,
        "source": source_kind(bench, data_root),
        "content": source_digest(bench, data_root),
        "selection": "decontaminate, then subset",  # benchmarks.evaluation_sets
        "stop": stop_strings(bench, eval_cfg),
        "sampling": sampling_fields(eval_cfg, bench),
    }
    return ArtifactSpec("completions", fields, (model_key, exclude_key) if exclude_key else (model_key,))


def stop_strings(bench: DictConfig, eval_cfg: DictConfig) -> list[str]:
    """The strings that end a completion on ``bench``: ``eval.stop`` when set (a list; ``[]`` = none), else the
    benchmark's own ``stop`` (the paper's harness: ``Problem:`` for the boxed-prompt tasks, ``Q:`` for GSM8K;
    lm-evaluation-harness ``generation_kwargs.until`` in the official repo's task YAMLs)."""
    chosen = eval_cfg.get("stop")
    chosen = bench.get("stop") if chosen is None else chosen
    return [str(s) for s in (to_container(chosen) or [])]


def sampling_fields(eval_cfg: DictConfig, bench: DictConfig | None = None) -> dict[str, Any] | None:
    """``{n_samples, temperature, top_p, seed}`` when ``eval`` samples (temperature > 0), None when greedy;
    ``n_samples`` is the benchmark's own ``n_samples`` when it sets one, else ``eval.n_samples_by_benchmark``
    for its name (what ``+protocol=sampled`` sets), else ``eval.n_samples``."""
    if float(eval_cfg.get("temperature", 0.0) or 0.0) == 0.0:
        return None
    own = bench.get("n_samples") if bench is not None else None
    if own is None and bench is not None:
        own = (eval_cfg.get("n_samples_by_benchmark") or {}).get(bench.get("name"))
    return {"n_samples": int(own or eval_cfg.n_samples), "temperature": float(eval_cfg.temperature),
            "top_p": float(eval_cfg.top_p), "seed": int(eval_cfg.seed)}


def problem_seed(seed: int, benchmark: str, problem_id: str) -> int:
    """The sampling seed of a problem's first sample (sample j uses ``+ j``, as vLLM seeds ``n`` children):
    a 31-bit hash of ``eval.seed``, the benchmark and the problem id, so a problem's samples do not depend
    on which other problems share its batch, its engine pass, its chunk, or the ``eval.limit`` subset."""
    digest = hashlib.sha256(f"{seed}/{benchmark}/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


@dataclass(frozen=True)
class Sample:
    """One sample to generate: problem ``id``, ``sample`` index, the filled user turn, its seed (None when greedy)
    and its stop strings."""

    id: str
    sample: int
    prompt: str
    seed: int | None
    stops: tuple[str, ...]


def queue(bench: DictConfig, problems: Sequence[Problem], cfg: DictConfig) -> list[Sample]:
    """Every sample of one benchmark, in problem order then sample order: n samples per problem
    (:func:`sampling_fields`; one when greedy), sample j seeded ``problem_seed + j``."""
    sampling = sampling_fields(cfg.eval, bench)
    stops = tuple(stop_strings(bench, cfg.eval))
    out = []
    for p in problems:
        prompt = fill_prompt(bench.prompt, p.problem)
        first = problem_seed(int(cfg.eval.seed), bench.name, p.id) if sampling else None
        out += [Sample(p.id, j, prompt, None if first is None else first + j, stops)
                for j in range(sampling["n_samples"] if sampling else 1)]
    return out


class Engine:
    """A generation backend for one model (``served``: the model, the LoRA adapter served on it, the engine's context),
    loaded on first use and closed on exit (context manager).

    Lazy loading means a job whose completions are all in the store (or in finished chunks) never loads the
    model. With ``data_parallel_size > 1`` it is that many replicas
    (:class:`mixgap.stages.backends.parallel.ReplicaPool`), keeping their finished chunks in ``work_dir``.
    """

    def __init__(self, served: Serving, cfg: DictConfig, tensor_parallel_size: int | None = None,
                 data_parallel_size: int | None = None, work_dir: Path | None = None):
        self.served, self.cfg, self.backend, self.kind = served, cfg, None, registry.resolve_backend(cfg.eval.backend)
        self.tensor_parallel_size = int(tensor_parallel_size or cfg.eval.tensor_parallel_size)
        self.data_parallel_size, self.work_dir = int(data_parallel_size or 1), work_dir

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def generate(self, samples: Sequence[Sample], desc: str) -> list[Completion]:
        """One completion per sample within ``eval.max_new_tokens``: greedy, or (``eval`` samples and the sample
        has a seed) at ``eval.temperature`` / ``eval.top_p`` from the sample's own seed; each cut at its stops."""
        if self.backend is None:
            template = self.cfg.student.chat_template
            self.backend = registry.load_backend(
                self.kind, self.served.model, dtype="auto", tensor_parallel_size=self.tensor_parallel_size,
                max_model_len=self.served.max_model_len, adapter=self.served.adapter, batch_size=self.cfg.eval.batch_size,
                chat_template=None if template == "model" else template, seed=self.cfg.seed,
                data_parallel_size=self.data_parallel_size, work_dir=self.work_dir,
                chunk_size=int(self.cfg.eval.chunk_size),
            )
        ev = self.cfg.eval
        sampled = sampling_fields(ev) is not None and all(s.seed is not None for s in samples)
        out = self.backend.generate(
            [s.prompt for s in samples], max_new_tokens=ev.max_new_tokens,
            temperature=float(ev.temperature) if sampled else 0.0, top_p=float(ev.top_p) if sampled else 1.0,
            n=1, seeds=[s.seed for s in samples] if sampled else None, stops=[list(s.stops) for s in samples],
            desc=desc,
        )
        return [one[0] for one in out]


def completion_row(sample: Sample, completion: Completion) -> dict[str, Any]:
    """The ``completions.jsonl`` row of one generated sample."""
    fields = asdict(completion)
    return {"id": sample.id, "sample": sample.sample, "completion": fields.pop("text"), **fields}


def finished_rows(work_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The rows of a benchmark's finished chunks (``work_dir/chunk-*.jsonl``, each written atomically), by
    (problem id, sample); the first row wins when a sample repeats."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(Path(work_dir).glob("chunk-*.jsonl")):
        for row in read_jsonl(path):
            done.setdefault((str(row["id"]), int(row["sample"])), row)
    return done


def write_chunk(work_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write one finished chunk of a benchmark's rows atomically as the next ``chunk-<n>.jsonl`` of ``work_dir``
    (the caller holds the key's lock: no other writer)."""
    path = Path(work_dir) / f"chunk-{len(list(Path(work_dir).glob('chunk-*.jsonl'))):05d}.jsonl"
    write_jsonl_atomic(path, rows)
    return path


@dataclass
class Pending:
    """A benchmark whose completions this process builds: its samples, its work folder, the rows finished so far
    (by (id, sample)), the samples generated here and the engine seconds they took."""

    samples: list[Sample]
    work_dir: Path
    done: dict[tuple[str, int], dict[str, Any]]
    generated: int = 0
    seconds: float = 0.0

    def missing(self) -> list[Sample]:
        return [s for s in self.samples if (s.id, s.sample) not in self.done]


def generate_pending(engine: Engine, pending: dict[str, Pending], chunk_size: int, tracker: Any = None) -> int:
    """Generate the missing samples of every benchmark in ``pending`` in one engine pass (one queue, benchmarks in
    order), ``chunk_size`` samples a call on one engine (each chunk written into its benchmarks' work folders as
    soon as it is generated), the whole queue at once on replicas (which write their own chunks); returns the
    samples generated. A pass's engine seconds are shared among the benchmarks by their samples' completion tokens."""
    todo = [(name, s) for name, p in pending.items() for s in p.missing()]
    if not todo:
        return 0
    step = chunk_size if engine.data_parallel_size == 1 else len(todo)
    total, done = sum(len(p.samples) for p in pending.values()), sum(len(p.done) for p in pending.values())
    log.info("completions of %s: %d of %d samples to generate (%d found in finished chunks)",
             ", ".join(pending), len(todo), total, done)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        began = time.monotonic()
        out = engine.generate([s for _, s in chunk], desc=f"eval {', '.join(pending)}")
        seconds = time.monotonic() - began
        weights = [c.completion_tokens or 0 for c in out]
        weights = weights if sum(weights) else [1] * len(out)  # no token counts: by samples
        for name, p in pending.items():
            mine = [k for k, (n, _) in enumerate(chunk) if n == name]
            if mine:
                rows = [completion_row(chunk[k][1], out[k]) for k in mine]
                write_chunk(p.work_dir, rows)
                p.done.update({(r["id"], r["sample"]): r for r in rows})
                p.generated += len(rows)
                p.seconds += seconds * sum(weights[k] for k in mine) / sum(weights)
        done += len(chunk)
        if tracker is not None:
            tracker.log({"eval/completions_done": done})
    return len(todo)


def write_completions(out_dir: Path, bench: DictConfig, problems: Sequence[Problem], pending: Pending,
                      cfg: DictConfig, backend: str) -> dict[str, Any]:
    """Write ``completions.jsonl`` (every sample of ``pending``, in problem and sample order) into ``out_dir``.

    Returns:
        Manifest extras: ``backend``, ``batch_size``, ``chunk_size``, ``problem_ids``, ``first_turn`` (the first
        problem's ``id``, its filled ``user`` turn and the ``chat_template`` that renders it; ``model``: the
        tokenizer's own), ``counts`` (``samples``, ``generated`` here, ``resumed`` from finished chunks of an earlier
        attempt, ``finish_reason``) and ``generation_s`` (this build's share of the engine pass's seconds).

    Raises:
        DataError: a sample is missing (the engine returned fewer samples than asked).
    """
    missing = pending.missing()
    if missing:
        raise DataError(f"{bench.name}: {len(missing)} samples have no completion (first: {missing[0].id}); rerun")
    rows = [pending.done[(s.id, s.sample)] for s in pending.samples]
    write_jsonl_atomic(out_dir / COMPLETIONS, rows)
    finish: dict[str, int] = {}
    for r in rows:
        finish[r["finish_reason"]] = finish.get(r["finish_reason"], 0) + 1
    first = {"id": problems[0].id, "user": fill_prompt(bench.prompt, problems[0].problem),
             "chat_template": str(cfg.student.get("chat_template", "model"))}
    counts = {"problems": len(problems), "samples": len(rows), "generated": pending.generated,
              "resumed": len(rows) - pending.generated, "finish_reason": finish}
    return {"backend": backend, "batch_size": cfg.eval.batch_size, "chunk_size": cfg.eval.chunk_size,
            "problem_ids": [p.id for p in problems], "first_turn": first, "counts": counts,
            "generation_s": round(pending.seconds, 3)}


def generate_model(
    cfg: DictConfig, store: Store, served: Serving, specs: dict[str, ArtifactSpec],
    benchmarks: dict[str, list[Problem]], tracker: Any = None, tensor_parallel_size: int | None = None,
    data_parallel_size: int | None = None,
) -> dict[str, dict[str, int]]:
    """Build one model's completions on every benchmark of ``specs`` in **one engine pass**.

    The missing samples of every benchmark whose artifact is not finished go into one queue (:func:`generate_pending`).
    A benchmark another process is building right now (its lock is taken) is left to it and waited for; if that
    process fails, this one builds it alone, from the chunks the other one finished.

    Args:
        cfg: the job config (``eval.*``, ``benchmark``, ``student.chat_template``).
        store: the artifact store.
        served: the model folder (or Hub id), the LoRA adapter on it and the engine's context
            (:class:`mixgap.stages.serving.Serving`).
        specs: ``{benchmark name: ArtifactSpec}`` of the model's completions (:func:`completions_spec`).
        benchmarks: ``{benchmark name: problems}`` (decontaminated, subset).
        tracker: experiment tracker (progress), or None.
        tensor_parallel_size: the preflight's decision for this allocation (None: ``eval.tensor_parallel_size``).
        data_parallel_size: engine replicas (the preflight's, ``gpus // TP``; None: 1); their chunks are kept in
            the first pending benchmark's work_dir.

    Returns:
        ``{benchmark name: {"samples", "generated", "resumed"}}``: samples of the artifact, generated by this
        process, found in finished chunks of an earlier attempt (both 0 for an artifact already finished).

    Raises:
        DataError: a benchmark with no problems.
    """
    for name in specs:
        if not benchmarks[name]:
            raise DataError(f"{name}: no problems to evaluate (all removed by decontamination or limit)")
    pending: dict[str, Pending] = {}
    with Engine(served, cfg, tensor_parallel_size, data_parallel_size) as engine, ExitStack() as held:
        for name, spec in specs.items():
            if store.is_done(spec.key):
                continue
            lock = store.lock(spec.key)
            try:
                lock.acquire(timeout=0)
            except TimeoutError:  # filelock.Timeout subclasses TimeoutError: another job builds it
                continue
            held.callback(lock.release)
            if store.is_done(spec.key):
                continue
            work = store.work_dir(spec.key)
            pending[name] = Pending(queue(cfg.benchmark[name], benchmarks[name], cfg), work, finished_rows(work))
        if pending:
            engine.work_dir = next(iter(pending.values())).work_dir if engine.data_parallel_size > 1 else None
            generate_pending(engine, pending, int(cfg.eval.chunk_size), tracker)
        held.close()  # release the locks; get_or_build takes each again to write its artifact
        counts = {}
        for name, spec in specs.items():
            bench, mine = cfg.benchmark[name], pending.get(name)

            def build(out: Path, work: Path, b: DictConfig = bench, n: str = name) -> dict[str, Any]:
                p = pending.get(n) or Pending(queue(b, benchmarks[n], cfg), work, finished_rows(work))
                if p.missing():  # its builder failed elsewhere: finish it here, from that builder's chunks
                    engine.work_dir = work if engine.data_parallel_size > 1 else None
                    generate_pending(engine, {n: p}, int(cfg.eval.chunk_size), tracker)
                pending[n] = p
                return write_completions(out, b, benchmarks[n], p, cfg, engine.kind)

            store.get_or_build(spec, build)
            mine = pending.get(name)
            total = store.manifest(spec.key).get("counts", {}).get("samples", 0)
            counts[name] = {"samples": total, "generated": mine.generated if mine else 0,
                            "resumed": (total - mine.generated) if mine else 0}
    return counts


def read_completions(folder: Path, problems: Sequence[Problem]) -> list[list[Completion]]:
    """A finished completions artifact as the grader reads it: per problem of ``problems`` (in order), its
    samples in sample order.

    Raises:
        DataError: the artifact's problem ids are not those of ``problems`` (names the first difference).
    """
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in read_jsonl(Path(folder) / COMPLETIONS):
        by_id.setdefault(str(row["id"]), []).append(row)
    ids = [p.id for p in problems]
    if list(by_id) != ids:
        extra = sorted(set(by_id) ^ set(ids))
        raise DataError(f"{Path(folder) / COMPLETIONS}: its problems differ from the evaluation set's "
                        f"({len(by_id)} vs {len(ids)} problems; first difference: {extra[0] if extra else 'the order'})")
    return [[Completion(r["completion"], r["finish_reason"], r["prompt_tokens"], r["completion_tokens"], r["status"])
             for r in sorted(by_id[i], key=lambda r: r["sample"])] for i in ids]


def run(ctx: Any, roles: Sequence[str]) -> None:
    """A completions step (stage contract, :mod:`mixgap.core.stage`): one model (the untuned student, or the
    checkpoint: its weights, or the student with its LoRA adapter, :func:`mixgap.stages.serving.arm_serving`) on every
    planned benchmark in one engine pass; ``result.json`` ``counts.completions.<arm>``: samples, generated here,
    resumed from an earlier attempt's chunks (summed over the benchmarks)."""
    arm = roles[0].split(".")[1]
    served = arm_serving(ctx.cfg, arm, str(ctx.value("student")), ctx.path("checkpoint") if arm == "tuned" else None)
    specs = {role.split(".", 2)[2]: ctx.specs[role] for role in roles}
    counts = generate_model(ctx.cfg, ctx.store, served, specs, ctx.value("benchmarks"), ctx.tracker,
                            ctx.decisions.get("eval_tensor_parallel_size"), ctx.decisions.get("eval_data_parallel_size"))
    made = []
    for role in roles:
        ctx.paths[role], done = ctx.store.path(ctx.specs[role].key), ctx.counts(role)
        made.append(f"{role.split('.', 2)[2]} {done['samples']:,} completions of {done['problems']:,} problems")
    ctx.result["counts"][f"completions.{arm}"] = {k: sum(c[k] for c in counts.values())
                                                   for k in ("samples", "generated", "resumed")}
    ctx.receipt(f"completions.{arm}", "; ".join(made), roles)

