"""Differences from the paper: published numbers, row names, seeds, realised weight, LoRA and batch
settings, overlength=drop_pair. Every expected value is the paper's printed number or computed by hand."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.results import report, sweep
from mixgap.results.tables.markdown import math_variant
from mixgap.results.tables.names import realised_weight, weight_label
from mixgap.results.tables.published import paper_gap, paper_math_label, paper_method, paper_table3, published
from mixgap.results.tables.settings import seeds_varied, settings_markdown
from mixgap.stages import mix
from mixgap.stages.train import batching, pairs
from mixgap.stages.train.labels import tokenize_conversation
from mixgap.stages.train.stage import checkpoint_spec

BOOT = {"n_boot": 200, "seed": 0, "confidence": 0.95}


def test_published_tables_hold_the_printed_numbers():
    pub = published()
    assert "2502.12143v1" in pub["version"] and pub["math_variant"] == "math"
    t3 = pub["table3"]
    assert len(t3["methods"]) == 7 and sum(len(m) for r in t3["rows"].values() for m in r.values()) == 84
    # the three cells where the printed Δ differs from the difference of the rounded accuracies
    assert paper_gap("qwq32b", "qwen32b", "qwen1.5b") == {"strong": 27.0, "weak": 34.2, "delta": -7.1}
    assert paper_gap("qwq32b", "qwen32b", "llama70b")["delta"] == 3.8
    assert paper_gap("qwen72b", "qwen3b", "llama1b")["delta"] == -1.9
    # Table 3's added methods, both students
    assert paper_table3("qwen3b", "qwen72b", "qwen3b", 1.0) == {
        "math": 57.5, "amc23": 35.0, "gsm8k": 80.0, "olympiadbench": 25.9, "aime24": 0.0, "average": 39.7}
    assert paper_table3("llama3b", "qwen72b", "qwen3b", 0.0)["average"] == 31.2
    assert paper_table3("llama3b", "r1_qwen32b", "qwen32b", 1.0)["aime24"] == 6.7
    assert paper_method("r1_qwen32b", "qwen32b", 1.0) == "DeepSeek-R1-32B (Long CoT)"
    # every printed average is the mean of its five cells to rounding, except the one the file names
    off = [f"{s}/{m}" for s, rows in t3["rows"].items() for m, v in rows.items() if abs(sum(v[:5]) / 5 - v[5]) > 0.1]
    assert off == list(t3["inconsistent_averages"]) == ["llama3b/Weak Model CoT"]
    # Table 1/2 rows of the 3B students equal Table 3's averages
    for method, (strong, weak, w) in {"Long CoT": ("qwq32b", "qwen32b", 1), "Weak Model CoT": ("qwen72b", "qwen3b", 0)}.items():
        side = "strong" if w else "weak"
        assert paper_gap(strong, weak, "llama3b")[side] == t3["rows"]["llama3b"][method][5]


def test_math_variant_labels():
    cfg = compose_cfg("benchmark=[math500,math,gsm8k]")
    labels = {name: bench.label for name, bench in cfg.benchmark.items()}  # conf/benchmark/<name>.yaml
    assert math_variant(["math500", "gsm8k"], labels) == "MATH-500"
    assert math_variant(["math", "aime24"], labels) == "MATH 5k"
    assert math_variant(["math500", "math"], labels) == "MATH-500 + MATH 5k"
    assert math_variant(["gsm8k"], labels) == "no MATH"
    assert math_variant(["math500"]) == "math500"  # no label: the benchmark's name
    assert paper_math_label() == paper_math_label(labels) == "MATH 5k"
    assert paper_math_label({"math": "MATH (5,000)"}) == "MATH (5,000)"  # the run's label of `math`


def test_realised_weight_and_label():
    assert realised_weight({"kept": {"strong": 27, "weak": 160}}) == 27 / 187
    assert realised_weight({}) is None and realised_weight(None) is None
    assert weight_label(0.2, [27 / 187]) == "0.2 (0.144)"
    assert weight_label(0.2, [0.168, 0.1751, None]) == "0.2 (0.168–0.175)"
    assert weight_label(1.0, [None]) == "1 (—)" and weight_label(None, []) == "—"


def _job(tmp_path, num, student, strong, weak, weight, correct, status="done", mix_seed=0, ft_seed=42):
    ident = {"student": student, "strong": strong, "weak": weak, "finetune_mode": "full", "weight": weight,
             "strong_cot": "long", "student_family": "qwen", "student_size_b": 3.09, "seed": 42, "mix_seed": mix_seed}
    job = sweep.Job(tmp_path / str(num), status, ident, seeds={"seed": 42, "mix.seed": mix_seed, "finetune_mode.seed": ft_seed})
    if status == "done":
        key = f"e{num}"
        job.evals = {"tuned": {"math500": sweep.Evaluation(key, {str(i): i < correct for i in range(10)}, {})}}
        job.complete = {"tuned"}
    return job


def _groups(jobs):
    groups = {}
    for job in jobs:
        if "tuned" in job.complete:
            groups.setdefault(job.condition(), []).append(job)
    return groups


def test_r1_baseline_gets_its_table3_name_and_no_gap_row(tmp_path):
    jobs = [_job(tmp_path, 0, "qwen3b", "qwq32b", "qwen32b", 1.0, 5), _job(tmp_path, 1, "qwen3b", "qwq32b", "qwen32b", 0.0, 4),
            _job(tmp_path, 2, "qwen3b", "r1_qwen32b", "qwen32b", 1.0, 3),
            _job(tmp_path, 3, "llama3b", "qwq32b", "qwen32b", 1.0, 2),
            _job(tmp_path, 4, "llama3b", "qwq32b", "qwen32b", 0.0, 0, status="failed")]
    groups, warnings = _groups(jobs), []
    gaps = report.gap_rows(groups, BOOT, warnings, set(), {j.condition() for j in jobs})
    gaps = sorted(gaps, key=lambda g: g["student"])  # same family and size here: sort ties by name
    assert [(g["student"], g["strong"], g["missing"]) for g in gaps] == [
        ("llama3b", "qwq32b", "w=0"),  # planned and failed: a real missing arm
        ("qwen3b", "qwq32b", None)]     # the R1 baseline (w=1 only) has no gap row
    assert gaps[1]["comparison"]["average"].delta.estimate == 10.0
    old = report.gap_rows(groups, BOOT, [], set())  # without the plan: the spurious row the issue reported
    assert ("qwen3b", "r1_qwen32b", "w=0") in [(g["student"], g["strong"], g["missing"]) for g in old]
    rows = report.table3_rows(jobs, groups, BOOT, warnings)["qwen3b"]
    r1 = next(r for r in rows if r["strong"] == "r1_qwen32b")
    assert r1["method"] == "DeepSeek-R1-32B (Long CoT)" and r1["paper"]["math"] == 50.7
    assert [r["method"] for r in rows if r["strong"] == "qwq32b"] == ["Long CoT", "Short CoT"]


def test_mix_seed_at_pure_weights_is_not_an_independent_seed(tmp_path):
    pure = [_job(tmp_path, 0, "qwen3b", "qwq32b", "qwen32b", 1.0, 5, mix_seed=0),
            _job(tmp_path, 1, "qwen3b", "qwq32b", "qwen32b", 1.0, 6, mix_seed=1),   # same data, same training
            _job(tmp_path, 2, "qwen3b", "qwq32b", "qwen32b", 1.0, 7, ft_seed=43)]   # another data order: a seed
    warnings: list[str] = []
    assert len(report.runs_of(pure, "tuned", warnings)) == 2
    assert len(warnings) == 1 and "mix_seed=1" in warnings[0] and "mix.seed selects nothing at w=1.0" in warnings[0]
    mixed = [_job(tmp_path, 3, "qwen3b", "qwq32b", "qwen32b", 0.2, 5, mix_seed=0),
             _job(tmp_path, 4, "qwen3b", "qwq32b", "qwen32b", 0.2, 6, mix_seed=1)]  # different strong problems
    assert len(report.runs_of(mixed, "tuned", warnings)) == 2 and len(warnings) == 1
    assert (pure[0].independent_seeds(), mixed[1].independent_seeds()) == ((42, None), (42, 1))
    assert seeds_varied(pure + mixed) == ("In these sweeps: `finetune_mode.seed` varies in 1 condition(s), "
                                                 "`mix.seed (at w = 0 or 1: no effect)` varies in 1 condition(s), "
                                                 "`mix.seed` varies in 1 condition(s).")


def test_read_seeds_from_the_config_snapshot(tmp_path):
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose_cfg("mix.seed=3", "finetune_mode.seed=7"), tmp_path / ".hydra" / "config.yaml")
    assert sweep.read_seeds(tmp_path) == {"seed": 42, "mix.seed": 3, "finetune_mode.seed": 7}
    assert sweep.read_seeds(tmp_path / "nope") == {}


def test_lora_defaults_are_llamafactorys_and_say_the_paper_is_unknown():
    ft = compose_cfg("finetune_mode=lora").finetune_mode
    assert (ft.learning_rate, ft.lora.r, ft.lora.alpha, ft.lora.dropout, ft.epochs) == (1e-4, 8, 16, 0.0, 2)
    assert "paper values unknown" in ft.settings_source and "llama3_lora_sft.yaml" in ft.settings_source
    assert compose_cfg().finetune_mode.settings_source.startswith("Li et al. 2025 (arXiv:2502.12143v1) Table 5")


def test_checkpoint_key_holds_what_changes_the_weights_only():
    fields = checkpoint_spec(compose_cfg().finetune_mode, "s", "m").fields
    assert fields["batch_unit"] == "examples"  # what the global batch counts changes the steps: in the key
    assert not {"pack_len", "settings_source", "save_steps", "logging_steps"} & set(fields)  # read only when packed / cosmetic
    released = compose_cfg("finetune_mode=released_mix").finetune_mode
    validate(compose_cfg("finetune_mode=released_mix"))
    fields = checkpoint_spec(released, "s", "m").fields
    assert (fields["batch_unit"], fields["pack_len"], fields["global_batch_size"], fields["max_seq_len"]) == (
        "packed_sequences", 4096, 80, 4096)
    assert fields["overlength"] == "truncate" and "settings_source" not in fields


@pytest.mark.parametrize("override, message", [
    ("finetune_mode.batch_unit=tokens", "finetune_mode.batch_unit='tokens' is not allowed; choose one of examples, packed_sequences"),
    ("finetune_mode.overlength=cut", "finetune_mode.overlength='cut' is not allowed; choose one of drop, truncate, drop_pair"),
    ("finetune_mode.pack_len=0", "finetune_mode.pack_len=0 is not allowed; it must be > 0"),
])
def test_new_fields_are_validated(override, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        validate(compose_cfg(override))
    validate(compose_cfg("finetune_mode.overlength=drop_pair"))


def test_greedy_knapsack_and_examples_per_step():
    # sorted [100, 500, 1000, 2000, 3000, 4096]: [4096]; [3000, 1000] (96 left); [2000, 500, 100]
    assert batching.greedy_knapsack([3000, 1000, 2000, 500, 4096, 100], 4096) == [[4096], [3000, 1000], [2000, 500, 100]]
    batch = batching.packed_batch([3000, 1000, 2000, 500, 4096, 100], 4096, 2, 1)
    assert (batch["packs"], batch["steps_per_epoch"], batch["examples_per_step"]) == (3, 2, 3)
    assert batching.packed_batch([3000, 1000, 2000, 500, 4096, 100], 4096, 2, 2)["examples_per_step"] == 4
    # the released Mix config's scale: 1,000 examples of 600 tokens, 6 per 4,096-token pack -> 167 packs,
    # 3 steps of 80 packs an epoch -> 334 examples per step (micro-batch 2)
    big = batching.packed_batch([600] * 1000, 4096, 80, 2)
    assert (big["packs"], big["steps_per_epoch"], big["examples_per_step"]) == (167, 3, 334)
    with pytest.raises(ValueError, match="an example of 5000 tokens cannot be packed into finetune_mode.pack_len=4096"):
        batching.greedy_knapsack([5000], 4096)


def _pool(folder, rows):
    folder.mkdir()
    (folder / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_drop_pair_trains_every_weight_on_the_same_problems(tmp_path, smollm2_tokenizer):
    prompt = "{problem}"
    long = "Wait, let me check again. " * 40 + "Final Answer: \\boxed{2}"
    strong = [{"id": f"p{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i), "teacher": "L", "completion_tokens": None,
               "response": (long if i in (1, 4, 7) else f"So {i}+{i}={2 * i}. Final Answer: \\boxed{{{2 * i}}}")} for i in range(10)]
    weak = [{**r, "teacher": "S", "response": f"{2 * int(r['answer']) // 2}. Final Answer: \\boxed{{{r['answer']}}}"}
            for r in strong]
    weak[9]["response"] = long  # over-length on the weak side too: dropped in every arm as well
    pools = {"strong": _pool(tmp_path / "s", strong), "weak": _pool(tmp_path / "w", weak)}
    short_len = len(tokenize_conversation(smollm2_tokenizer, "What is 1+1?", strong[0]["response"]).input_ids)
    long_len = len(tokenize_conversation(smollm2_tokenizer, "What is 1+1?", long).input_ids)
    limit = (short_len + long_len) // 2
    assert short_len < limit < long_len
    def overlong(max_len):
        return lambda rows, ids: pairs.overlong_ids(rows, ids, smollm2_tokenizer, prompt, max_len)

    sets = {}
    for weight in (0.0, 0.5, 1.0):  # the mixture itself leaves the pairs out: what is stored is what is trained
        cfg = OmegaConf.create({"weight": weight, "seed": 0, "problems": "intersection"})
        out = tmp_path / f"mix{weight}"
        out.mkdir()
        counts = mix.build_mixture(pools["strong"], pools["weak"], cfg, out, overlong(limit))["counts"]["drop_pair"]
        rows = mix.read_mixture(out)
        assert counts["problems"] == 10 and counts["excluded"] == 4 and counts["overlong"] == {"strong": 3, "weak": 1}
        assert counts["N"] == 6 and counts["strong"] == mix.strong_count(weight, 6) == {0.0: 0, 0.5: 3, 1.0: 6}[weight]
        assert sum(r.meta["source"] == "strong" for r in rows) / len(rows) == counts["strong"] / 6
        sets[weight] = [r.id for r in rows]
    assert sets[0.0] == sets[0.5] == sets[1.0] == ["p0", "p2", "p3", "p5", "p6", "p8"]
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="drop_pair leaves no problem"):
        mix.build_mixture(pools["strong"], pools["weak"], OmegaConf.create({"weight": 0.2, "seed": 0, "problems": "intersection"}),
                          tmp_path / "none", overlong(5))


def test_released_pools_are_compared_with_the_teachers_that_wrote_them():
    """uwnsl_long/short (and large/small) are the authors' QwQ-32B-Preview / Qwen2.5-32B (72B / 3B) outputs."""
    assert paper_gap("uwnsl_long", "uwnsl_short", "qwen3b") == {"strong": 40.3, "weak": 43.4, "delta": -3.1}
    assert paper_gap("uwnsl_large", "uwnsl_small", "llama8b") == {"strong": 25.6, "weak": 25.1, "delta": 0.5}
    assert paper_table3("qwen3b", "uwnsl_long", "uwnsl_short", 1.0)["aime24"] == 3.3
    cfg = compose_cfg("+experiment=released_pools", "+experiment/pair=released_large_small")
    assert (cfg.mix.strong.dataset.hub_id, cfg.mix.weak.dataset.hub_id) == (
        "UWNSL/MATH_training_split_distill_large_teacher", "UWNSL/MATH_training_split_distill_small_teacher")


def _preset_jobs(tmp_path, preset, students, *extra):
    """Planned jobs of a paper preset (their config snapshots only), as the report reads them."""
    jobs = []
    for i, student in enumerate(students):
        folder = tmp_path / f"{preset}-{i}"
        (folder / ".hydra").mkdir(parents=True)
        OmegaConf.save(compose_cfg(f"+experiment={preset}", f"student={student}", *extra), folder / ".hydra" / "config.yaml")
        identity, fields = sweep.read_config(folder)
        jobs.append(sweep.Job(folder, "done", identity, fields=fields))
    return jobs


#: every difference from the authors' code a Table 1 sweep with full, LoRA and Llama students still has
PAPER_DIFFERENCES = ("Loss groups", "End-of-turn newline", "Llama system header", "Validation split",
                     "Problems of the pure arms", "LoRA settings", "LoRA max_lora_rank", "Gold strings", "MATH pooling",
                     "Teacher pools", "Engines")


def test_settings_table_says_which_recipe_is_in_force_and_prints_every_difference(tmp_path):
    text = settings_markdown(_preset_jobs(tmp_path, "long_vs_short", ("qwen3b", "llama3b", "qwen14b")))
    header = next(line for line in text.splitlines() if line.startswith("| Students"))
    assert "| Max len | Over-length | Loss |" in header and "| Eval MATH | Recipe | Source |" in header
    assert "| LoRA r / alpha / dropout | LoRA targets | LoRA eval |" in header
    lora_row = next(line for line in text.splitlines() if line.startswith("| qwen14b |"))
    assert "| 8 / 16 / 0.0 |" in lora_row and "| adapter, model's context |" in lora_row
    row = next(line for line in text.splitlines() if line.startswith("| llama3b, qwen3b |"))
    assert "| 8192 | truncate | per_device |" in row and "released long/short-CoT configs" in row
    assert ("Training recipe in force: released long/short-CoT configs (MATH_{long,short}_CoT.yaml: 8,192 cut as "
            "LLaMA-Factory, per-device loss).") in text
    assert "Where these runs differ from the authors' code (`Small-Model-Gap/Small-Model-Learnability-Gap` at 814cf97)" in text
    listed = [line.split("**")[1] for line in text.splitlines() if line.startswith("- **")]
    assert listed == list(PAPER_DIFFERENCES)  # and nothing else: the cut, the loss and the judge's context match theirs
    assert "5,500 rows" in text and "266 of 675" in text and "`val_size: 0.01`" in text and "vLLM 0.6.3" in text


def test_settings_differences_follow_the_overrides(tmp_path):
    def listed(*extra, preset="long_vs_short", students=("qwen3b",)):
        text = settings_markdown(_preset_jobs(tmp_path / str(len(list(tmp_path.iterdir()))), preset, students, *extra))
        return text, [line.split("**")[1] for line in text.splitlines() if line.startswith("- **")]

    text, names = listed("finetune_mode/recipe=text")  # the paper's text: the cut is the difference
    assert "Training recipe in force: the paper's text (Table 5: 16,384, over-length dropped)." in text
    assert names[0] == "Training cut" and "max length 16,384 with overlength=drop" in text
    _, names = listed("finetune_mode.loss_normalization=global_tokens")
    assert "Loss normalisation" in names and "Loss groups" not in names
    _, names = listed("eval.judge.max_model_len=16000")
    assert "Judge context" in names
    # a LoRA student's fine-tuned arm: served as test_lora.sh (adapter, the model's own context) or not
    text, names = listed(students=("qwen14b",))
    assert [n for n in names if n.startswith("LoRA")] == ["LoRA settings", "LoRA max_lora_rank"]
    text, names = listed("eval.lora_serving=merged", "eval.lora_max_model_len=16000", students=("qwen14b",))
    assert [n for n in names if n.startswith("LoRA")] == ["LoRA settings", "LoRA merged", "LoRA context"]
    assert "ours caps prompt + completion at 16,000 tokens" in text and "| merged, 16,000 tokens |" in text
    text, names = listed("experiment/method=mix_long", preset="mix_distillation")
    assert "Training recipe in force: released Mix config (MATH_mix.yaml: 80 packed sequences, 4,096 cut as LLaMA-Factory)." in text
    assert "Mix batch" in names and "Training cut" not in names and "Loss groups" not in names


def test_a_lora_job_from_before_the_serving_fields_reads_as_merged_at_its_context(tmp_path):
    """A config snapshot without eval.lora_serving (a sweep run before adapters were served) was evaluated merged at
    eval.max_model_len: the Settings table and the differences say so."""
    job = _preset_jobs(tmp_path, "long_vs_short", ("qwen14b",))[0]
    old = sweep.Job(job.folder, "done", job.identity,
                    fields={k: v for k, v in job.fields.items() if not k.startswith("eval.lora_")})
    text = settings_markdown([old])
    assert "| merged, 16,000 tokens |" in text and "**LoRA merged**" in text and "**LoRA context**" in text
    assert "LoRA max_lora_rank" not in text
