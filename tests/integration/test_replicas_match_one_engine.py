"""Data-parallel evaluation on the CPU: two replicas of the hf backend (two processes, the real
SmolLM2-135M-Instruct) give byte-identical completions and evaluation artifacts to one engine in this process,
greedy and sampled (per-(problem, sample) seeds), each replica writing its chunks as it goes."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from conftest import compose_cfg
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.stages.completions import COMPLETIONS, completions_spec, generate_model
from mixgap.stages.data import Problem
from mixgap.stages.evaluate import eval_spec, grade_completions
from mixgap.stages.serving import Serving
from mixgap.stages.verdicts import PREDICTIONS, SCORES, read_scores

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
PROBLEMS = {
    "math500": [Problem(id="a", problem="What is $2+3$?", answer="5", solution=""),
                Problem(id="b", problem="Compute $7 \\times 6$.", answer="42", solution=""),
                Problem(id="c", problem="What is the smallest prime number?", answer="2", solution="")],
    "gsm8k": [Problem(id="g1", problem="Tom has 3 apples and buys 4 more. How many apples does he have?",
                      answer="7", solution=""),
              Problem(id="g2", problem="A box holds 5 pens. How many pens are in 2 boxes?", answer="10", solution="")],
}


def _evaluate(cfg, root, replicas, model):
    store = Store(root)
    made = {n: completions_spec(cfg.benchmark[n], cfg.eval, "smollm2-test", None, None, "model") for n in PROBLEMS}
    generate_model(cfg, store, Serving(model), made, PROBLEMS, NullTracker(), data_parallel_size=replicas)
    specs = {n: eval_spec(cfg.benchmark[n], cfg.eval, made[n].key) for n in PROBLEMS}
    scores = {}
    for n, spec in specs.items():
        store.get_or_build(spec, lambda out, _w, n=n: grade_completions(
            cfg.benchmark[n], PROBLEMS[n], store.path(made[n].key), "hf", cfg, out, NullTracker()))
        scores[n] = read_scores(store.path(spec.key))
    files = {n: {f: (store.path(s.key) / f).read_bytes() for f in (PREDICTIONS, SCORES)} for n, s in specs.items()}
    for n, s in made.items():
        files[n][COMPLETIONS] = (store.path(s.key) / COMPLETIONS).read_bytes()
    return {n: s.key for n, s in specs.items()}, scores, files, store


@pytest.mark.parametrize("sampling", [(), ("eval.temperature=1.0", "eval.top_p=0.95", "eval.n_samples=2")],
                         ids=["greedy", "sampled"])
def test_two_replicas_give_the_artifacts_of_one(tmp_path, smollm2_path, sampling, monkeypatch):
    started, popen = [], subprocess.Popen

    def spy(cmd, **kwargs):
        started.append((cmd[-1], kwargs["env"]["CUDA_VISIBLE_DEVICES"], json.loads(open(cmd[-1]).read())["chunk_size"]))
        return popen(cmd, **kwargs)

    monkeypatch.setattr("mixgap.stages.backends.parallel.subprocess", SimpleNamespace(Popen=spy))
    cfg = compose_cfg("student=smollm2_135m", "benchmark=[math500,gsm8k]", "eval.backend=hf", "eval.batch_size=2",
                      "eval.max_new_tokens=10", "eval.max_model_len=null", "eval.chunk_size=2", *sampling)
    keys1, scores1, files1, _ = _evaluate(cfg, tmp_path / "one", None, smollm2_path)
    assert started == []  # one replica: the engine runs in this process
    keys2, scores2, files2, store2 = _evaluate(cfg, tmp_path / "two", 2, smollm2_path)
    assert [(path.rsplit("/", 1)[1], devices, chunk) for path, devices, chunk in started] == [
        ("shard-0-of-2.request.json", "", 2), ("shard-1-of-2.request.json", "", 2)]  # two plain CPU processes
    assert keys1 == keys2  # the replica count is not part of what is computed
    assert files1 == files2 and scores1 == scores2  # completions, predictions.jsonl and scores.json, byte for byte
    n = 2 if sampling else 1
    assert [scores2[b]["n"] * scores2[b]["n_samples"] for b in PROBLEMS] == [3 * n, 2 * n]
    rows = files2["math500"][PREDICTIONS].decode().splitlines()
    assert len(rows) == 3 * n and any(json.loads(r)["completion"].strip() for r in rows)
    assert not list((store2.root / ".work").glob("*/replicas-*"))  # finished: the shards went with the work dir
