"""Evaluation: zero-shot generation on a benchmark, graded by ``mixgap.grading`` (paper Section 3.1).

One store artifact per (model, benchmark): ``predictions.jsonl`` (one row per problem and sample) and
``scores.json`` (pass@1 in percent with a 95% CI, pass@k, maj@n, n, and the fraction of completions
stopped by length). All benchmarks of one model are generated in one engine pass (:func:`evaluate_model`). The untuned
student is a model like any other, so its evaluation is computed once and shared by every job of a sweep.

Protocol (Li et al. 2025): greedy decoding (``eval.n_samples`` 1), ``max_new_tokens`` 16,000, generation
stopped at ``Problem:`` (``Q:`` for GSM8K; ``eval.stop``), the boxed ``Final Answer:`` prompt
for MATH/MATH500/AIME/AMC/OlympiadBench and the bare question for GSM8K (scored by its last number); both
come from ``conf/benchmark/*.yaml``. Average = plain mean of the per-benchmark accuracies.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import to_container
from mixgap.core.stage import share
from mixgap.core.store import ArtifactSpec
from mixgap.grading import POLICY_VERSION
from mixgap.stages.backends import registry
from mixgap.stages.data import DataError, Problem, fill_prompt, keyed_source, source_digest, source_kind
from mixgap.stages.verdicts import (
    generation_share,
    read_scores,
    with_average,
    write_eval,
)

log = logging.getLogger(__name__)
_NOT_IN_KEY = ("label", "size", "stop", "n_samples")  # cosmetic, or in the key as the stop/sampling fields below


def eval_spec(
    bench: DictConfig, eval_cfg: DictConfig, model_key: str, exclude_key: str | None, data_root: Path | None
) -> ArtifactSpec:
    """Store spec of one (model, benchmark) evaluation. Fields: the benchmark (not its label or size), generation
    budget and context, stop strings, sampling (None when greedy), grader policy, ``eval.extract``, ``eval.rule``
    (both change verdicts; the rows carry every scoring, but the one in force is ``correct``), the problems'
    ``source`` (file/kit/hub) and ``content`` (:func:`mixgap.stages.data.source_digest`). Inputs: the model's key and,
    when decontamination drops problems, the training problem set's key. Backend, batch size, tensor parallelism:
    in the manifest, not the key."""
    fields = {
        "benchmark": {k: v for k, v in keyed_source(bench).items() if k not in _NOT_IN_KEY},
        "max_new_tokens": eval_cfg.max_new_tokens,
        "max_model_len": eval_cfg.get("max_model_len"),
        "limit": eval_cfg.limit,
        "grader": POLICY_VERSION,
        "extract": eval_cfg.get("extract", "policy"),
        "rule": eval_cfg.get("rule", "policy"),
        "source": source_kind(bench, data_root),
        "content": source_digest(bench, data_root),
        "selection": "decontaminate, then subset",  # benchmarks.evaluation_sets
        "stop": stop_strings(bench, eval_cfg),
        "sampling": sampling_fields(eval_cfg, bench),
    }
    return ArtifactSpec("eval", fields, (model_key, exclude_key) if exclude_key else (model_key,))


def resolve_backend(setting: str) -> str:
    """``eval.backend``: ``auto`` is vLLM when a CUDA GPU is visible and vLLM is installed, else HF."""
    if setting != "auto":
        return setting
    import torch  # heavy: torch, only when a model is evaluated

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


class Engine:
    """A generation backend for one model, loaded on first use and closed on exit (context manager).

    Lazy loading means a job whose evaluations are all in the store never loads the model. With
    ``data_parallel_size > 1`` it is that many replicas (:class:`mixgap.stages.backends.parallel.ReplicaPool`), keeping
    their finished shards in ``work_dir``; the completions are the same for any number of replicas.
    """

    def __init__(self, model: str, cfg: DictConfig, tensor_parallel_size: int | None = None,
                 data_parallel_size: int | None = None, work_dir: Path | None = None):
        self.model, self.cfg, self.backend, self.kind = model, cfg, None, resolve_backend(cfg.eval.backend)
        self.tensor_parallel_size = int(tensor_parallel_size or cfg.eval.tensor_parallel_size)
        self.data_parallel_size, self.work_dir = int(data_parallel_size or 1), work_dir

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def generate(self, prompts: Sequence[str], desc: str) -> list[Any]:
        """Greedy completions (one per prompt) within ``eval.max_new_tokens``, no stop strings."""
        return [samples[0] for samples in self.generate_samples(prompts, desc, greedy=True)]

    def generate_samples(
        self, prompts: Sequence[str], desc: str, *, seeds: Sequence[int] | None = None,
        stops: Sequence[Sequence[str]] | None = None, ns: Sequence[int] | None = None, greedy: bool = False,
    ) -> list[list[Any]]:
        """``ns[i]`` completions of prompt i (one each when greedy) within ``eval.max_new_tokens``.

        Every sample is its own row (prompt i repeated ``ns[i]`` times, sample j seeded ``seeds[i] + j``, as
        vLLM seeds the j-th child of an ``n=`` request), so one queue can mix benchmarks with different
        sample counts and a sample depends only on its prompt and seed.

        Args:
            prompts: user turns.
            desc: progress label.
            seeds: per prompt, the seed of its first sample; None when greedy.
            stops: per prompt, the strings that end its completion (cut off, as the paper's harness does).
            ns: per prompt, its number of samples; None = ``eval.n_samples`` each.
            greedy: ignore the sampling settings (temperature 0, one sample).
        """
        if self.backend is None:
            template = self.cfg.student.chat_template
            self.backend = registry.load_backend(
                self.kind,
                self.model,
                dtype="auto",
                tensor_parallel_size=self.tensor_parallel_size,
                max_model_len=self.cfg.eval.get("max_model_len"),
                batch_size=self.cfg.eval.batch_size,
                chat_template=None if template == "model" else template,
                seed=self.cfg.seed, data_parallel_size=self.data_parallel_size, work_dir=self.work_dir,
            )
        ev = self.cfg.eval
        sampled = not greedy and sampling_fields(ev) is not None and seeds is not None
        ns = [1] * len(prompts) if not sampled else list(ns or [int(ev.n_samples)] * len(prompts))
        rows = [(i, j) for i in range(len(prompts)) for j in range(ns[i])]
        out = self.backend.generate(
            [prompts[i] for i, _ in rows], max_new_tokens=ev.max_new_tokens,
            temperature=float(ev.temperature) if sampled else 0.0, top_p=float(ev.top_p) if sampled else 1.0,
            n=1, seeds=[seeds[i] + j for i, j in rows] if sampled else None,
            stops=[stops[i] for i, _ in rows] if stops is not None else None, desc=desc,
        )
        grouped: list[list[Any]] = [[] for _ in prompts]
        for (i, _), samples in zip(rows, out, strict=True):
            grouped[i].append(samples[0])
        return grouped


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
    on which other problems share its batch, its engine pass, or the ``eval.limit`` subset."""
    digest = hashlib.sha256(f"{seed}/{benchmark}/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _queue(bench: DictConfig, problems: Sequence[Problem], cfg: DictConfig) -> tuple[list, list | None, list, list]:
    """Prompts, per-prompt seeds (None when greedy), stop strings and sample counts of one benchmark."""
    prompts = [fill_prompt(bench.prompt, p.problem) for p in problems]
    sampling = sampling_fields(cfg.eval, bench)
    seeds = [problem_seed(int(cfg.eval.seed), bench.name, p.id) for p in problems] if sampling else None
    n = sampling["n_samples"] if sampling else 1
    return prompts, seeds, [stop_strings(bench, cfg.eval)] * len(problems), [n] * len(problems)


def build_eval(
    engine: Engine, bench: DictConfig, problems: Sequence[Problem], cfg: DictConfig, out_dir: Path, tracker: Any
) -> dict[str, Any]:
    """Generate, grade and score one benchmark into ``out_dir`` (``predictions.jsonl``, ``scores.json``).

    Returns manifest extras: the problem ids evaluated, the backend and the scores.
    """
    if not problems:
        raise DataError(f"{bench.name}: no problems to evaluate (all removed by decontamination or limit)")
    prompts, seeds, stops, ns = _queue(bench, problems, cfg)
    start = time.monotonic()
    completions = engine.generate_samples(prompts, desc=f"eval {bench.name}", seeds=seeds, stops=stops, ns=ns)
    return write_eval(bench, problems, completions, cfg, out_dir, tracker, engine.kind, time.monotonic() - start)


def evaluate_model(
    cfg: DictConfig, store: Any, model_path: str, specs: dict[str, ArtifactSpec], benchmarks: dict[str, list[Problem]],
    tracker: Any, tensor_parallel_size: int | None = None, data_parallel_size: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate one model on every benchmark of ``specs`` in **one engine pass**.

    The prompts of every benchmark whose artifact is not finished go into one queue: one length-sorted
    HF queue or one vLLM ``generate`` call, so a decoding step serves all benchmarks at once. Then each
    benchmark's artifact is written as before (same key, same files). A benchmark another process is
    building right now (its lock is taken) is left to it and waited for; if that process fails, this one
    builds it alone.

    Args:
        cfg: the job config (``eval.*``, ``benchmark``).
        store: the artifact store.
        model_path: the model folder (or Hub id).
        specs: ``{benchmark name: ArtifactSpec}`` of the model's evaluations.
        benchmarks: ``{benchmark name: problems}`` (decontaminated, subset).
        tracker: experiment tracker.
        tensor_parallel_size: the preflight's decision for this allocation (None: ``eval.tensor_parallel_size``).
        data_parallel_size: engine replicas (the preflight's, ``gpus // TP``; None: 1); their shards are kept in
            the first pending benchmark's work_dir, so a killed replica's shard alone is redone on resume.

    Returns:
        ``{benchmark name: scores}`` (each ``scores.json``).

    Raises:
        DataError: a benchmark with no problems.
    """
    for name in specs:
        if not benchmarks[name]:
            raise DataError(f"{name}: no problems to evaluate (all removed by decontamination or limit)")
    with Engine(model_path, cfg, tensor_parallel_size, data_parallel_size) as engine, ExitStack() as held:
        mine = []
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
            mine.append(name)
        completions: dict[str, list[list[Any]]] = {}
        if mine:
            engine.work_dir = store.work_dir(specs[mine[0]].key) if engine.data_parallel_size > 1 else None
            queue = [_queue(cfg.benchmark[n], benchmarks[n], cfg) for n in mine]
            prompts = [p for q in queue for p in q[0]]
            seeds = None if queue[0][1] is None else [s for q in queue for s in q[1]]
            stops = [s for q in queue for s in q[2]]
            ns = [k for q in queue for k in q[3]]
            began = time.monotonic()
            out = engine.generate_samples(prompts, desc=f"eval {', '.join(mine)}", seeds=seeds, stops=stops, ns=ns)
            pass_s, start = time.monotonic() - began, 0
            for n in mine:
                completions[n] = out[start : start + len(benchmarks[n])]
                start += len(benchmarks[n])
        held.close()  # release the locks; get_or_build takes each again to write its artifact
        scores = {}
        for name, spec in specs.items():
            bench = cfg.benchmark[name]

            def build(o: Path, _w: Path, b: DictConfig = bench, n: str = name) -> dict[str, Any]:
                if n in completions:
                    return write_eval(b, benchmarks[n], completions[n], cfg, o, tracker, engine.kind,
                                      pass_s * generation_share(completions, n))
                return build_eval(engine, b, benchmarks[n], cfg, o, tracker)  # its builder failed elsewhere

            scores[name] = read_scores(store.get_or_build(spec, build))
    return scores


def run(ctx: Any, roles: Sequence[str]) -> None:
    """An evaluate step (stage contract, :mod:`mixgap.core.stage`): one model (the untuned student, or the
    checkpoint) on every planned benchmark in one engine pass; its scores (with the average) go to ``result.json``
    as ``untuned`` or ``scores``."""
    arm = roles[0].split(".")[1]
    model = ctx.value("student") if arm == "untuned" else ctx.path("checkpoint")
    specs = {role.split(".", 2)[2]: ctx.specs[role] for role in roles}
    scores = evaluate_model(ctx.cfg, ctx.store, str(model), specs, ctx.value("benchmarks"), ctx.tracker,
                            ctx.decisions.get("eval_tensor_parallel_size"), ctx.decisions.get("eval_data_parallel_size"))
    for role in roles:
        ctx.paths[role] = ctx.store.path(ctx.specs[role].key)
    ctx.result["scores" if arm == "tuned" else "untuned"] = with_average(scores)
    ctx.receipt(f"evaluate.{arm}", "; ".join(accuracy_line(name, s) for name, s in scores.items()), roles)


def accuracy_line(name: str, scores: dict[str, Any]) -> str:
    """``"math500 3 of 8 correct (37.5%)"``, or with several samples a problem ``"aime24 pass@1 12.5% (4 of 32 samples,
    8 problems x 4)"`` (``scores.json``: ``n`` problems, ``n_samples``, ``correct`` samples, ``accuracy``)."""
    n, k = int(scores["n"]), int(scores.get("n_samples") or 1)
    if k == 1:
        return f"{name} {share(int(scores['correct']), n, 'correct')}"
    return f"{name} pass@1 {scores['accuracy']:.1f}% ({scores['correct']:,} of {n * k:,} samples, {n:,} problems x {k})"
