"""Data-parallel engine replicas (mixgap.stages.backends.parallel): sharding, merging, device pinning, and a
pool of fake replica processes (a few lines of Python, no model) that fail, resume and merge."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mixgap.core.errors import ConfigError
from mixgap.stages.backends.base import Completion
from mixgap.stages.backends.parallel import (
    ReplicaPool,
    data_parallel_size,
    merge_shards,
    read_shard,
    replica_devices,
    replica_env,
    request_digest,
    shard_indices,
    shard_rows,
)
from mixgap.stages.backends.registry import load_backend

#: A replica program without a model: completion text "<prompt>|<seed>|<stops>", 3 completion tokens; it
#: appends its shard's first index to work_dir/calls.txt, and fails while work_dir/fail-<first index> exists.
FAKE = textwrap.dedent('''
    import json, pathlib, sys
    req = json.loads(pathlib.Path(sys.argv[1]).read_text())
    out = pathlib.Path(req["output"])
    first = req["indices"][0]
    with open(out.parent.parent / "calls.txt", "a") as fh:
        fh.write(f"{first} {req['desc']}\\n")
    if (out.parent.parent / f"fail-{first}").exists():
        sys.exit(3)
    rows = []
    for k, (i, p) in enumerate(zip(req["indices"], req["prompts"])):
        seed = req["seeds"][k] if req["seeds"] is not None else None
        stop = req["stops"][k] if req["stops"] is not None else None
        sample = {"text": f"{p}|{seed}|{stop}", "finish_reason": "stop", "prompt_tokens": len(p),
                  "completion_tokens": 3, "status": "ok"}
        rows.append({"index": i, "samples": [sample] * req["generate"]["n"]})
    out.write_text("".join(json.dumps(r) + "\\n" for r in rows))
''')


def test_replicas_are_gpus_over_tensor_parallel():
    assert [data_parallel_size(8, tp) for tp in (1, 2, 4, 8)] == [8, 4, 2, 1]
    assert data_parallel_size(1, 1) == 1 and data_parallel_size(6, 4) == 1 and data_parallel_size(6, 2) == 3
    with pytest.raises(ValueError, match="tensor_parallel_size=0"):
        data_parallel_size(8, 0)


def test_round_robin_shards_merge_back_in_prompt_order():
    assert shard_indices(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard_indices(2, 4) == [[0], [1], [], []]
    shards = shard_indices(5, 2)
    assert merge_shards(5, shards, [["a", "c", "e"], ["b", "d"]]) == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match="a shard of 2 prompts returned 1 results"):
        merge_shards(5, shards, [["a", "c", "e"], ["b"]])
    with pytest.raises(ValueError, match="cover 4 of 5"):
        merge_shards(5, [[0, 2], [1, 3]], [["a", "c"], ["b", "d"]])


def test_each_replica_is_pinned_to_its_own_gpus():
    gpus = [str(i) for i in range(8)]
    assert [replica_devices(r, 4, gpus) for r in range(2)] == ["0,1,2,3", "4,5,6,7"]
    assert [replica_devices(r, 1, ["3", "5"]) for r in range(2)] == ["3", "5"]  # the job's own CUDA_VISIBLE_DEVICES
    assert replica_devices(1, 2, []) == ""  # a CPU: plain processes
    with pytest.raises(ValueError, match="replica 2 at tensor_parallel_size=4 needs GPUs 8..11 but 8 are visible"):
        replica_devices(2, 4, gpus)


def test_replica_environment_splits_cpu_threads_and_finds_this_checkout():
    env = replica_env({"PATH": "/bin"}, "", 2, 16)
    assert env["OMP_NUM_THREADS"] == "8" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert (Path(env["PYTHONPATH"].split(":")[0]) / "mixgap" / "stages" / "backends" / "replica.py").is_file()
    gpu = replica_env({"OMP_NUM_THREADS": "4", "PYTHONPATH": "/x"}, "4,5", 2, 16)
    assert (gpu["CUDA_VISIBLE_DEVICES"], gpu["OMP_NUM_THREADS"], gpu["PYTHONPATH"].split(":")[-1]) == ("4,5", "4", "/x")


def test_shard_rows_round_trip_completions_exactly():
    samples = [[Completion("x \u00e9 \\boxed{1}\n", "stop", 5, 7, "ok")], [Completion("", "length", 9, 2, "truncated")]]
    rows = shard_rows([4, 1], samples)
    assert [r["index"] for r in rows] == [4, 1]
    assert rows[0]["samples"][0] == {"text": "x \u00e9 \\boxed{1}\n", "finish_reason": "stop", "prompt_tokens": 5,
                                     "completion_tokens": 7, "status": "ok"}
    assert request_digest({"a": 1, "b": [2]}) == request_digest({"b": [2], "a": 1}) != request_digest({"a": 2})


@pytest.fixture
def fake_pool(tmp_path):
    script = tmp_path / "fake_replica.py"
    script.write_text(FAKE)

    def make(replicas):
        return ReplicaPool("hf", "m", replicas=replicas, work_dir=tmp_path / "work", load={"tensor_parallel_size": 1},
                           command=[sys.executable, str(script)], env={"CUDA_VISIBLE_DEVICES": ""})
    return make


def test_pool_gives_the_same_completions_for_any_replica_count(fake_pool):
    prompts = ["p0", "p1", "p2", "p3", "p4"]
    stops = [["Q:"], ["Problem:"], [], ["Q:"], ["Problem:"]]
    one = fake_pool(1).generate(prompts, max_new_tokens=8, temperature=0.6, n=2, seed=10, stops=stops)
    three = fake_pool(3).generate(prompts, max_new_tokens=8, temperature=0.6, n=2, seed=10, stops=stops)
    assert one == three
    assert [s[0].text for s in three] == ["p0|10|['Q:']", "p1|11|['Problem:']", "p2|12|[]", "p3|13|['Q:']",
                                          "p4|14|['Problem:']"]  # sampled without seeds: seed + i, vLLM's rule
    assert [len(s) for s in three] == [2] * 5
    greedy = fake_pool(2).generate(prompts[:3], max_new_tokens=8, seeds=[7, 8, 9])
    assert [s[0].text for s in greedy] == ["p0|7|None", "p1|8|None", "p2|9|None"]


def test_killed_replica_is_redone_alone_and_finished_shards_are_kept(fake_pool, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    prompts = [f"q{i}" for i in range(6)]
    (work / "fail-1").touch()  # replica 2 of 3 (prompts 1, 4) dies
    with pytest.raises(RuntimeError, match=r"replica 2 of 3 \(CUDA_VISIBLE_DEVICES=''\) exited with code 3 \(1 failed\)"):
        fake_pool(3).generate(prompts, max_new_tokens=4)
    (work / "fail-1").unlink()
    out = fake_pool(3).generate(prompts, max_new_tokens=4)
    assert [s[0].text for s in out] == [f"q{i}|None|None" for i in range(6)]
    calls = [line.split()[0] for line in (work / "calls.txt").read_text().splitlines()]
    assert sorted(calls[:3]) == ["0", "1", "2"] and calls[3:] == ["1"]  # the rerun started replica 2 only
    again = fake_pool(3).generate(prompts, max_new_tokens=4)  # all shards finished: no process at all
    assert again == out and len((work / "calls.txt").read_text().splitlines()) == 4
    folder = next((tmp_path / "work").glob("replicas-*"))
    assert read_shard(folder / "shard-1-of-3.jsonl")[1][0].text == "q4|None|None"


def test_load_backend_returns_a_pool_only_with_replicas_and_a_work_dir(tmp_path):
    pool = load_backend("hf", "some/model", tensor_parallel_size=2, data_parallel_size=4, work_dir=tmp_path)
    assert isinstance(pool, ReplicaPool) and pool.replicas == 4 and pool.load["tensor_parallel_size"] == 2
    with pytest.raises(ConfigError, match="data_parallel_size=2 needs a work_dir"):
        load_backend("hf", "some/model", data_parallel_size=2)
    with pytest.raises(ValueError, match="data_parallel_size=0 is not allowed"):
        ReplicaPool("hf", "m", replicas=0, work_dir=tmp_path, load={})
