"""Student-aware mixing (mix.strategy=rsr / rsr_budget): each problem's trace chosen by the untuned student's RSR.

The fixture pools (tests/fixtures/mix_{strong,weak}_pool) share p1..p7. Hand-made per-trace RSRs (rank per nat; lower =
more learnable), and what each rule must choose:

    problem  strong  weak   weak − strong   rsr picks
    p1       1.0     2.0     1.0            strong
    p2       3.0     2.0    -1.0            weak
    p3       2.5     2.5     0.0            weak (a tie goes to the weak trace)
    p4       1.5     —       —              weak (no weak score: over-length or not scored)
    p5       —       —       —              weak (neither scored)
    p6       0.5     4.0     3.5            strong
    p7       1.25    2.25    1.0            strong (the same advantage as p1, exactly, in binary)

rsr_budget gives the strong trace to k = floor(w N + 0.5) of N = 7 problems, in the order p6 (3.5), {p1, p7} (1.0,
by the seeded rank sha256("<seed>:<id>")), p3 (0), p2 (-1), then the unscored {p4, p5} by seeded rank. sha256 hex
prefixes: seed 0: p1 fc79, p7 3ab4 (p7 first), p4 55df, p5 7a4a (p4 first); seed 2: p1 4c17, p7 d1dd (p1 first);
seed 3: p4 f900, p5 c9bc (p5 first).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import FIXTURES, compose_cfg, write_study
from mixgap import pipeline
from mixgap.core import conftree
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.core.stage import BuildContext
from mixgap.core.store import Store, make_key
from mixgap.plan import jobs
from mixgap.plan.preflight import preflight
from mixgap.plan.printout import describe
from mixgap.stages import mix
from mixgap.stages.scoring import token_batches

STRONG, WEAK = FIXTURES / "mix_strong_pool", FIXTURES / "mix_weak_pool"
RSR = {"strong": {"p1": 1.0, "p2": 3.0, "p3": 2.5, "p4": 1.5, "p6": 0.5, "p7": 1.25},
       "weak": {"p1": 2.0, "p2": 2.0, "p3": 2.5, "p6": 4.0, "p7": 2.25}}
SHARED = [f"p{i}" for i in range(1, 8)]


def mix_cfg(weight: float, strategy: str, seed: int = 0):
    return OmegaConf.create({"weight": weight, "problems": "intersection", "seed": seed, "strategy": strategy})


def test_the_hand_table_seeded_ranks_are_as_the_docstring_says():
    def rank(seed, pid):
        return hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()

    assert rank(0, "p7") < rank(0, "p1") and rank(0, "p4") < rank(0, "p5")
    assert rank(2, "p1") < rank(2, "p7") and rank(3, "p5") < rank(3, "p4")
    assert mix.rank_key(0, "p7") == rank(0, "p7")


def test_rsr_takes_the_lower_rsr_trace_ties_and_missing_scores_go_weak():
    ids, strong = mix.select(SHARED + ["s1"], SHARED + ["w1"], 0.2, 0, "intersection", "rsr", RSR)
    assert ids == SHARED and strong == {"p1", "p6", "p7"}
    assert mix.rsr_choice(["p3", "p4", "p5"], RSR["strong"], RSR["weak"]) == set()  # tie, no weak score, neither


@pytest.mark.parametrize(("weight", "seed", "expected"), [
    (0.0, 0, set()),
    (0.2, 0, {"p6"}),                                  # k = floor(1.4 + 0.5) = 1: the largest advantage
    (0.3, 0, {"p6", "p7"}),                            # k = 2: p1 and p7 tie at 1.0; seed 0 ranks p7 first
    (0.3, 2, {"p6", "p1"}),                            # ... seed 2 ranks p1 first
    (0.5, 0, {"p6", "p1", "p7", "p3"}),                # k = 4: then the tie p3 (0.0) before p2 (-1.0)
    (0.8, 0, {"p6", "p1", "p7", "p3", "p2", "p4"}),    # k = 6: every scored one, then the unscored by rank
    (0.8, 3, {"p6", "p1", "p7", "p3", "p2", "p5"}),
    (1.0, 0, set(SHARED)),
])
def test_rsr_budget_gives_the_fixed_arms_k_to_the_problems_the_student_favours_most(weight, seed, expected):
    ids, strong = mix.select(SHARED, SHARED, weight, seed, "intersection", "rsr_budget", RSR)
    assert ids == SHARED and strong == expected
    assert len(strong) == mix.strong_count(weight, 7) == len(mix.select(SHARED, SHARED, weight, seed, "intersection")[1])


def test_a_student_aware_strategy_needs_scores_and_the_intersection():
    with pytest.raises(ValueError, match="needs the student's RSR"):
        mix.select(SHARED, SHARED, 0.2, 0, "intersection", "rsr")
    with pytest.raises(ConfigError, match="^mix.problems=union is not allowed with mix.strategy=rsr"):
        mix.select(SHARED, SHARED, 0.2, 0, "union", "rsr", RSR)
    with pytest.raises(ConfigError, match="^mix.strategy='best' is not allowed; choose one of fixed, rsr, rsr_budget$"):
        mix.select(SHARED, SHARED, 0.2, 0, "intersection", "best", RSR)
    cfg = compose_cfg("mix.strategy=rsr", "mix.problems=union", "paths.data=null")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith("mix.problems=union is not allowed with mix.strategy=rsr;")
    assert "\n" not in str(err.value)


def _scores(root: Path, rsr: dict[str, float]) -> Path:
    """A finished predict artifact's traces.jsonl holding ``rsr`` (other figures as the stage writes them)."""
    root.mkdir(parents=True)
    rows = [{"id": pid, "tokens": 10, "surprisal": 1.0, "mean_rank": value, "rsr": value} for pid, value in rsr.items()]
    (root / mix.TRACES).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_the_mix_step_reads_the_predict_artifacts_and_records_the_realised_share(tmp_path):
    """The mix step of a job (stage contract) with mix.strategy=rsr: the sources recomputed by hand from the
    artifacts' per-trace RSR; the realised strong share in the manifest's counts and the job's result."""
    cfg = compose_cfg("mix.strategy=rsr", "paths.data=null")
    scores = {role: _scores(tmp_path / role, RSR[role]) for role in ("strong", "weak")}
    spec = mix.mixture_spec(cfg.mix, "pool-s", "pool-w", scores=["predict-s", "predict-w"])
    store = Store(tmp_path / "cache")
    ctx = BuildContext(cfg, store, None, {"mixture": spec})
    ctx.paths.update({"pool.strong": STRONG, "pool.weak": WEAK, "scores.strong": scores["strong"],
                      "scores.weak": scores["weak"]})
    mix.run(ctx, ["mixture"])
    rows = {r["id"]: r["source"] for r in map(json.loads, (ctx.path("mixture") / mix.MIXTURE).read_text().splitlines())}
    assert rows == {"p1": "strong", "p2": "weak", "p3": "weak", "p4": "weak", "p5": "weak", "p6": "strong", "p7": "strong"}
    counts = ctx.result["counts"]["mixture"]
    assert (counts["N"], counts["strong"], counts["weak"], counts["scored"]) == (7, 3, 4, 5)  # scored: all but p4, p5
    assert counts["strategy"] == "rsr" and counts["strong_share"] == round(3 / 7, 6)


def test_a_fixed_mixtures_key_is_unchanged_and_a_student_aware_one_is_per_student():
    fixed = mix.mixture_spec(mix_cfg(0.2, "fixed"), "pool-s", "pool-w", scores=["predict-s", "predict-w"])
    assert fixed.key == make_key("mixture", {"weight": 0.2, "problems": "intersection", "seed": 0}, ["pool-s", "pool-w"])
    assert fixed.key == mix.mixture_spec(OmegaConf.create({"weight": 0.2, "problems": "intersection", "seed": 0}),
                                         "pool-s", "pool-w").key  # a config from before the strategy field
    rsr = {(w, seed): mix.mixture_spec(mix_cfg(w, "rsr", seed), "pool-s", "pool-w", scores=["predict-s", "predict-w"]).key
           for w in (0.0, 0.2, 1.0) for seed in (0, 1)}
    assert len(set(rsr.values())) == 1  # neither the weight nor the seed selects anything
    other_student = mix.mixture_spec(mix_cfg(0.2, "rsr"), "pool-s", "pool-w", scores=["predict-s2", "predict-w2"])
    assert other_student.key not in rsr.values()
    budget = [mix.mixture_spec(mix_cfg(w, "rsr_budget"), "pool-s", "pool-w", scores=["predict-s", "predict-w"]).key
              for w in (0.2, 0.4)]
    assert budget[0] != budget[1] and fixed.key not in budget and rsr[(0.2, 0)] not in budget
    with pytest.raises(ValueError, match="needs the student's predict artifacts"):
        mix.mixture_spec(mix_cfg(0.2, "rsr"), "pool-s", "pool-w")


def test_the_plan_scores_every_problem_before_a_student_aware_mixture(kit):
    plan = jobs.make_plan(compose_cfg("stage=mix", "mix.strategy=rsr", data=kit))
    steps = [s.name for s in plan.steps]
    assert steps.index("score") < steps.index("mix") and plan.steps[steps.index("score")].roles == ("scores.strong",
                                                                                                    "scores.weak")
    assert plan.specs["mixture"].inputs[-2:] == (plan.key("scores.strong"), plan.key("scores.weak"))
    assert plan.specs["scores.strong"].fields == {"problems": "all", "max_seq_len": 16384, "rank_clip": 100,
                                                  "prompt": "{problem}", "system": "You are a helpful assistant."}
    assert plan.specs["scores.strong"].inputs == (plan.key("student"), plan.key("pool.strong"), plan.key("pool.weak"))
    fixed = jobs.make_plan(compose_cfg("stage=mix", data=kit))
    assert "scores.strong" not in fixed.specs and "score" not in [s.name for s in fixed.steps]
    assert fixed.key("mixture") != plan.key("mixture")
    everything = jobs.make_plan(compose_cfg("stage=all", "mix.strategy=rsr_budget", data=kit))
    names = [s.name for s in everything.steps]
    assert names.index("score") < names.index("mix") < names.index("predict") < names.index("train")


def test_scoring_batches_are_length_sorted_within_a_token_budget():
    assert token_batches([5, 9, 3, 9], 3, 20) == [[1, 3], [0, 2]]  # 2 x 9 = 18; a third 9-row batch would pad to 27
    assert token_batches([5, 9, 3, 9], 3, None) == [[1, 3, 0], [2]]
    assert token_batches([30, 4], 4, 20) == [[0], [1]]  # longer than the budget: a batch of its own
    with pytest.raises(ValueError):
        token_batches([1], 1, 0)


def test_the_slurm_plan_gives_the_full_scoring_its_hours_and_memory(kit):
    """qwen3b (3.09e9 parameters, hidden 2048, vocab 151,936) with the paper's data: 5,383 problems of 4,154 / 3.5 and
    1,316 / 3.5 tokens + a 512-token prompt each; 2 N FLOPs a token at 35% of 989 TFLOP/s; the largest batch 4 x
    16,384 = 65,536 tokens (batch_tokens) of 34 + 2 bytes per hidden unit, bf16 weights + the fp32 head, 12 bytes a
    logit over 1,024 positions, 2 GB overhead."""
    cfg = compose_cfg("student=qwen3b", "mix.strategy=rsr", "stage=plan", "data.missing_pool=wait", data=kit)
    report = preflight(cfg, jobs.make_plan(cfg), 8)
    tokens = 5383 * (4154 / 3.5 + 1316 / 3.5 + 2 * 512)
    hours = 2 * 3.09e9 * tokens / (989e12 * 0.35) / 3600
    assert report["score_traces"] == 2 * 5383
    assert report["score_hours_estimate"] == round(hours, 3)
    memory = (2 * 3.09e9 + 4 * 151936 * 2048 + 36 * 65536 * 2048 + 12 * 1024 * 151936) / 1e9 + 2.0
    assert report["score_memory_gb_per_gpu"] == round(memory, 1)
    assert report["gpu_hours_estimate"] == round(8 * (report["train_hours_estimate"] + report["eval_hours_estimate"]
                                                      + report["score_hours_estimate"]), 3)
    assert f"scoring 10,766 traces {memory:.1f} GB on 1 GPU; scoring 4 min + train" in describe(report)
    fixed = compose_cfg("student=qwen3b", "stage=plan", "data.missing_pool=wait", data=kit)
    assert preflight(fixed, jobs.make_plan(fixed), 8)["score_traces"] is None


def test_scoring_a_student_too_large_for_one_gpu_is_refused(kit):
    cfg = compose_cfg("student=llama70b", "mix.strategy=rsr", "stage=plan", "data.missing_pool=wait", data=kit)
    refusals = [r for r in preflight(cfg, jobs.make_plan(cfg), 8)["refusals"] if "scores every problem" in r]
    assert len(refusals) == 1 and refusals[0].startswith("mix.strategy=rsr scores every problem with student=llama70b "
                                                         "on one GPU: ")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_tiny_study_mixes_by_the_rsr_its_predict_artifacts_hold(tmp_path, kit, smollm2_path, caplog):
    """stage=mix with mix.strategy=rsr, then rsr_budget at w = 0.3, on the tiny study (tests/conftest.py write_study)
    with the real SmolLM2: the score step scores p1 and p2 in both pools (p0's strong trace, ~300 tokens, is over
    max_seq_len=128: not scored), and each mixture's sources are recomputed here by hand from the two scores
    artifacts' traces.jsonl. rsr: a problem is strong exactly when its strong trace has the lower RSR; p0, without
    scores, is weak. rsr_budget: k = floor(0.3 x 3 + 0.5) = 1 strong problem, the one of p1, p2 with the larger
    RSR_weak - RSR_strong. The second job reuses the scores (their key has no strategy)."""
    base = [*write_study(tmp_path / "study"), f"paths.cache={tmp_path / 'cache'}", f"paths.data={kit}",
            "student=smollm2_135m", "student.gguf=null", f"student.hf_id={smollm2_path}", "stage=mix",
            "finetune_mode.max_seq_len=128", "predict.batch_size=2"]
    store = Store(tmp_path / "cache")
    caplog.set_level(logging.INFO, logger="mixgap")
    for n, strategy in enumerate(("mix.strategy=rsr", "mix.strategy=rsr_budget")):
        overrides = [*base, strategy, *(["mix.weight=0.3"] if n else [])]
        tree = conftree.from_command_line(overrides)
        pipeline.check_command_line(overrides, tree)
        task = [o for o in overrides if not o.startswith("hydra.")]
        result = pipeline.run_job(conftree.compose(task, tree), tmp_path / f"job{n}", overrides=task)
        rsr = {role: {r["id"]: r["rsr"] for r in map(json.loads, (store.path(result["artifacts"][f"scores.{role}"])
                                                                   / "traces.jsonl").read_text().splitlines())}
               for role in ("strong", "weak")}
        assert set(rsr["strong"]) == set(rsr["weak"]) == {"p1", "p2"}
        assert len({rsr["strong"]["p1"], rsr["weak"]["p1"], rsr["strong"]["p2"], rsr["weak"]["p2"]}) == 4  # no tie
        advantage = {p: rsr["weak"][p] - rsr["strong"][p] for p in ("p1", "p2")}
        if n == 0:
            by_hand = {"p0": "weak", **{p: "strong" if rsr["strong"][p] < rsr["weak"][p] else "weak" for p in advantage}}
        else:
            by_hand = {"p0": "weak", "p1": "weak", "p2": "weak", max(advantage, key=advantage.get): "strong"}
        mixture = store.path(result["artifacts"]["mixture"]) / mix.MIXTURE
        assert {r["id"]: r["source"] for r in map(json.loads, mixture.read_text().splitlines())} == by_hand
        assert store.manifest(result["artifacts"]["mixture"])["inputs"][-2:] == [
            result["artifacts"]["scores.strong"], result["artifacts"]["scores.weak"]]
    lines = {line.split(":")[0]: line for line in (r.getMessage() for r in caplog.records if r.name == "mixgap.core.stage")}
    tokens = sum(store.manifest(result["artifacts"][f"scores.{r}"])["counts"]["tokens"] for r in ("strong", "weak"))
    assert lines["score"] == (f"score: reused: every problem both pools kept scored for mix.strategy=rsr_budget: 2 "
                              f"problems x 2 traces (3 shared, 1 over length), {tokens:,} tokens")
    assert lines["mix"] == ("mix: 3 examples, 1 strong and 2 weak (realised w = 0.333; mix.strategy=rsr_budget, "
                            "mix.weight=0.3); 2 problems scored in both pools, the rest weak")
