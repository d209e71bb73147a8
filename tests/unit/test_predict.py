"""Learnability before training (mixgap.stages.predict, its scoring in mixgap.stages.scoring): exact token scores,
RSR, the training mask, shared artifacts."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import compose_cfg
from mixgap.core.schema_models import PAPER_PROMPT
from mixgap.plan import jobs
from mixgap.results import learnability_report
from mixgap.stages import predict, scoring
from mixgap.stages.data import Problem
from mixgap.stages.train import labels


def test_token_scores_are_the_exact_nll_and_rank_of_hand_made_logits():
    torch = pytest.importorskip("torch")
    # row 0: softmax = [1/4, 1/2, 1/4]; row 1: softmax = [1/6, 2/6, 3/6]
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0], [1.0, 2.0, 3.0]]))
    nll, rank = scoring.token_scores(logits, torch.tensor([0, 0]))
    assert nll.tolist() == pytest.approx([math.log(4), math.log(6)], abs=1e-6)
    assert rank.tolist() == [2, 3]  # row 0: the tie with token 2 counts in the token's favour
    nll, rank = scoring.token_scores(logits, torch.tensor([1, 2]))
    assert nll.tolist() == pytest.approx([math.log(2), math.log(2)], abs=1e-6) and rank.tolist() == [1, 1]
    with pytest.raises(ValueError, match="token ids"):
        scoring.token_scores(logits, torch.tensor([0, 3]))


def test_rsr_of_a_three_token_trace_matches_the_hand_computation():
    # ranks 1, 3, 150 (clipped to 100), surprisals 0.5, 1.0, 2.5 nats: RSR = (1 + 3 + 100) / (0.5 + 1.0 + 2.5) = 26
    rec = predict.trace_record([0.5, 1.0, 2.5], [1, 3, 150], rank_clip=100)
    assert rec == pytest.approx({"tokens": 3, "surprisal": 4 / 3, "mean_rank": 104 / 3, "mean_rank_raw": 154 / 3,
                                 "median_rank": 3.0, "top1_share": 1 / 3, "rsr": 26.0})
    assert predict.trace_record([0.5, 1.0, 2.5], [1, 3, 150], rank_clip=1000)["rsr"] == pytest.approx(154 / 4)
    with pytest.raises(ValueError, match="1-based"):
        predict.trace_record([1.0], [0])


def test_pool_rsr_is_the_ratio_of_means_and_lower_rsr_is_predicted_better():
    strong = [{"id": "a", "surprisal": 1.0, "mean_rank": 4.0, "median_rank": 1, "top1_share": 0.5, "tokens": 10},
              {"id": "b", "surprisal": 3.0, "mean_rank": 4.0, "median_rank": 2, "top1_share": 0.7, "tokens": 30}]
    weak = [{"id": "a", "surprisal": 1.0, "mean_rank": 2.0, "median_rank": 1, "top1_share": 0.8, "tokens": 5},
            {"id": "b", "surprisal": 1.0, "mean_rank": 2.0, "median_rank": 1, "top1_share": 0.8, "tokens": 7}]
    out = predict.learnability({"strong": strong, "weak": weak}, n_boot=200, seed=1)
    assert out["strong"]["rsr"]["estimate"] == pytest.approx(4.0 / 2.0)  # not mean(4/1, 4/3)
    assert out["strong"]["surprisal"]["estimate"] == 2.0 and out["strong"]["length"]["estimate"] == 20.0
    assert out["weak"]["rsr"] == {"estimate": 2.0, "low": 2.0, "high": 2.0, "n": 2}  # no spread across traces; 2 traces
    assert out["difference"]["top1_share"]["estimate"] == pytest.approx(-0.2)
    assert out["prediction"]["better"] == "tie" and out["prediction"]["n"] == 2
    weak[1]["mean_rank"] = 4.0  # weak RSR = 3 / 1 > strong's 2: the strong pool is predicted better
    out = predict.learnability({"strong": strong, "weak": weak}, n_boot=200, seed=1)
    assert out["prediction"]["better"] == "strong" and out["prediction"]["rsr_advantage"]["estimate"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="share no problem"):
        predict.learnability({"strong": strong, "weak": [{**weak[0], "id": "z"}]})


def test_score_sequences_batched_equals_a_plain_forward_pass_on_the_scored_positions():
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    seqs = [([3, 7, 9, 11, 4, 2], [3, 4, 5]), ([5, 6, 8], [2]), ([1, 2, 3, 4, 5, 6, 7, 8], [6, 7])]
    scores = scoring.score_sequences(model, seqs, batch_size=2, chunk=1)
    for (ids, positions), (nlls, ranks) in zip(seqs, scores, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        assert nlls == pytest.approx([-float(logp[t - 1, ids[t]]) for t in positions], abs=1e-4)
        assert ranks == [1 + int((logits[t - 1] > logits[t - 1, ids[t]]).sum()) for t in positions]
    with pytest.raises(ValueError, match="first token"):
        scoring.score_sequences(model, [([1, 2], [0])], 1)


def _mixgap_imports(module) -> set[str]:
    """Every ``mixgap`` name a source file imports, at the top or inside functions (``from a import b``: ``a.b``)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
              for a in n.names}
    return {n for n in names if n.startswith("mixgap")}


def test_the_predict_stage_and_its_scoring_import_nothing_from_the_results_layer():
    for module in (predict, scoring):  # scoring imports no mixgap module at all
        imported = _mixgap_imports(module)
        assert not {n for n in imported if n.startswith(("mixgap.results", "mixgap.plan", "mixgap.pipeline"))}
    assert "mixgap.stages.scoring.score_sequences" in _mixgap_imports(predict)


def test_scored_tokens_are_exactly_the_supervised_tokens_of_training(smollm2_tokenizer):
    row = {"id": "p1", "problem": "What is $1+1$?", "response": "We add: $1+1=2$.\n\nFinal Answer: \\boxed{2}"}
    ex = predict.encoder(smollm2_tokenizer, PAPER_PROMPT)(row)
    (trained,) = labels.tokenize_mixture([Problem("p1", row["problem"], "2", meta={"response": row["response"],
                                                                                     "source": "strong"})],
                                         smollm2_tokenizer, PAPER_PROMPT, progress=False)
    positions = predict.scored_positions(ex.labels)
    assert ex.input_ids == trained.input_ids
    assert positions == [t for t, label in enumerate(trained.labels) if label != labels.IGNORE]
    assert [ex.input_ids[t] for t in positions] == [label for label in trained.labels if label != labels.IGNORE]
    assert ex.input_ids[positions[-1]] == labels.end_of_turn_id(smollm2_tokenizer)  # <|im_end|> is scored
    assert smollm2_tokenizer.decode([ex.input_ids[t] for t in positions[:-1]]) == row["response"]
    assert positions == list(range(positions[0], positions[-1] + 1))  # one contiguous span after the prompt


def test_both_pools_get_the_same_seeded_problems_and_over_long_pairs_are_skipped():
    class Ex:
        def __init__(self, n):
            self.input_ids = [0] * n

    strong = {f"q{i}": {"n": 10 + i} for i in range(20)}
    weak = {f"q{i}": {"n": 5} for i in range(5, 25)}
    encode = lambda row: Ex(row["n"])  # noqa: E731
    ids, examples, counts = predict.select_problems(strong, weak, encode, 6, 0, max_seq_len=25)
    swapped, _, _ = predict.select_problems(weak, strong, encode, 6, 0, max_seq_len=25)
    assert ids == swapped and len(ids) == 6 and set(ids) <= {f"q{i}" for i in range(5, 16)}
    assert counts["shared"] == 15 and counts["selected"] == 6 and set(examples[ids[0]]) == {"strong", "weak"}
    assert predict.select_problems(strong, weak, encode, 6, 1, max_seq_len=25)[0] != ids  # another seed, another draw
    assert predict.select_problems(strong, weak, encode, 99, 0, max_seq_len=25)[2] == {
        "shared": 15, "over_length": 4, "selected": 11}  # q16..q19 have strong traces of 26-29 tokens


def _keys(*overrides: str) -> dict[str, str]:
    cfg = compose_cfg(*overrides, "paths.data=null")
    return {role: spec.key for role, spec in jobs.job_specs(cfg).items()}


def test_the_predict_artifact_is_shared_by_every_weight_but_not_by_students_or_settings():
    w0, w1 = _keys("mix.weight=0"), _keys("mix.weight=1", "mix.seed=3", "finetune_mode.learning_rate=2e-5")
    assert w0["predict.strong"] == w1["predict.strong"] and w0["predict.weak"] == w1["predict.weak"]
    assert w0["predict.strong"] != w0["predict.weak"]
    assert _keys("student=qwen7b")["predict.strong"] != w0["predict.strong"]
    assert _keys("predict.max_samples=64")["predict.strong"] != w0["predict.strong"]
    assert _keys("predict.batch_size=16", "predict.n_boot=100")["predict.strong"] == w0["predict.strong"]
    assert "predict.strong" not in _keys("predict.enabled=false")
    cfg = compose_cfg("stage=predict", "predict.enabled=false", "paths.data=null")
    assert list(jobs.make_plan(cfg).roles) == [
        "generation.strong", "pool.strong", "generation.weak", "pool.weak", "predict.strong", "predict.weak"]


def test_bad_predict_values_are_one_line_config_errors():
    from mixgap.core.config import validate
    from mixgap.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"predict.max_samples=0 is not allowed"):
        validate(compose_cfg("predict.max_samples=0", "paths.data=null"))
    with pytest.raises(ConfigError, match=r"predict.confidence=1.5"):
        validate(compose_cfg("predict.confidence=1.5", "paths.data=null"))


def test_spearman_matches_the_textbook_formula_and_handles_ties():
    # no ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8
    assert learnability_report.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert learnability_report.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert learnability_report.spearman([1, 2, 3], [5, 5, 5]) != learnability_report.spearman([1, 2, 3], [5, 5, 5])
    rho, low, high = learnability_report.spearman_ci([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], n_boot=500, seed=0,
                                                     confidence=0.95)
    assert rho == pytest.approx(0.8) and -1.0 <= low <= rho <= high <= 1.0
    assert np.isfinite([low, high]).all()


def test_the_report_section_pairs_each_prediction_with_the_measured_gap(tmp_path):
    import json
    from types import SimpleNamespace

    from conftest import RecordingTracker
    from mixgap.stats.bootstrap import AVERAGE
    from mixgap.stats.intervals import Interval

    def cell(v):
        return {"estimate": v, "low": v - 0.1, "high": v + 0.1}

    jobs, gaps = [], []
    for n, (student, advantage, delta) in enumerate([("a", 0.5, 2.0), ("b", -0.3, -1.0), ("c", 0.2, -0.5)]):
        folder = tmp_path / str(n)
        folder.mkdir()
        learn = {r: {f: cell(1.0) for f in predict.FIGURES} for r in predict.ROLES}
        learn["prediction"] = {"better": "strong" if advantage > 0 else "weak", "verdict": "n.s.", "n": 8,
                               "rsr_advantage": cell(advantage)}
        (folder / "result.json").write_text(json.dumps({"learnability": learn}))
        jobs.append(SimpleNamespace(status="done", folder=folder, identity={"student": student, "strong": "L", "weak": "S"}))
        gaps.append({"student": student, "strong": "L", "weak": "S", "mode": "full", "size_b": 1.0,
                     "comparison": {AVERAGE: SimpleNamespace(delta=Interval(delta, delta - 1, delta + 1))}})
    section = learnability_report.build(jobs, gaps, {"n_boot": 200, "seed": 0, "confidence": 0.95}, tmp_path)
    assert [(r["student"], r["agreed"]) for r in section["rows"]] == [("a", True), ("b", True), ("c", False)]
    rho = section["correlations"][("L", "S")]
    assert rho[0] == pytest.approx(1.0) and rho[3] == 3  # x = (0.5, -0.3, 0.2), y = (2, -1, -0.5): ranks (3, 1, 2) both
    assert "## Learnability before training" in section["markdown"] and "Spearman ρ" in section["markdown"]
    # a: Δ 2.0 [1, 3] agrees outright; c: Δ -0.5 [-1.5, 0.5] disagrees in sign but its CI spans 0
    assert "| 2.0 [1.0, 3.0] | yes |" in section["markdown"] and "| -0.5 [-1.5, 0.5] | untested (Δ n.s.; point signs differ) |" in section["markdown"]
    assert [p.rsplit("/", 1)[-1] for p in section["figures"]] == ["fig_learnability_L_vs_S.png"]
    tracker = RecordingTracker()
    learnability_report.track(tracker, section)
    assert len(tracker.tables["learnability"][1]) == 3 and tracker.images == ["fig_learnability_L_vs_S.png"]
