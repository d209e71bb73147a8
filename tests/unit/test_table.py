"""The one table of stages (mixgap.plan.table): a new stage is its module plus one row; every store key is the one the
four separate stage lists gave before the table; the evaluation sets and the student are roles of their own rows."""

from __future__ import annotations

import json
import types

import pytest

from conftest import FIXTURES, compose_cfg
from mixgap.core.errors import ConfigError
from mixgap.core.store import ArtifactSpec, Store
from mixgap.pipeline import build, run_job
from mixgap.plan import jobs, table
from mixgap.plan.table import Row

PINNED = json.loads((FIXTURES / "plan_keys.json").read_text())
#: the LoRA student's fine-tuned arm as it was evaluated when the keys were pinned: merged, at the full fine-tunes'
#: context (the paper presets now serve the adapter at the model's own context: test_lora_adapter_serving_...)
MERGED_AT_16000 = ("eval.lora_serving=merged", "eval.lora_max_model_len=16000")


@pytest.mark.parametrize("name", sorted(PINNED))
def test_store_keys_and_roles_are_those_of_the_plan_before_the_table(name, kit, hub_cached):
    """plan_keys.json: make_plan's stored roles and keys of 11 configs, computed by the code before the table (main at
    7e18c6c; the kit's files, the pinned stack), then once more when completions became their own artifacts (every
    ``completions.<arm>.<benchmark>`` role added, every ``eval.*`` key and the ``judge.*`` keys on them changed; no
    other key), and once more for the one change of model keys (a Hub model keyed by its resolved commit, here
    ``hub_cached``'s: every key built from a Hub model changed; the demo's, of a GGUF student and the kit's traces, and
    the converted weights' did not). One intended change of roles: with finetune_mode.overlength=drop_pair, stage=mix
    now plans the student's converted weights (``model``), which its mix step converts to read the student's
    tokenizer. ``sampled_lora`` is planned with its fine-tuned arm merged at 16,000 tokens (:data:`MERGED_AT_16000`),
    as it was evaluated when pinned: those options give every key of before."""
    pinned = PINNED[name]
    plan = jobs.make_plan(compose_cfg(*pinned["overrides"], *(MERGED_AT_16000 if name == "sampled_lora" else ()), data=kit))
    assert {role: plan.key(role) for role in plan.roles} == pinned["keys"] | (
        {"model": plan.key("model")} if name == "mix_drop_pair" else {})
    assert list(plan.roles) == (["model"] if name == "mix_drop_pair" else []) + pinned["roles"]


def test_lora_adapter_serving_changes_only_the_tuned_completions_and_their_verdicts(kit, hub_cached):
    """The paper presets serve a LoRA student's adapter at the model's own context (eval.lora_serving=adapter,
    eval.lora_max_model_len=null, the authors' test_lora.sh): against the pinned keys of ``sampled_lora`` (merged, 16,000)
    exactly its 5 tuned completions keys change (their ``max_model_len`` None and ``lora_serving: adapter``) and the 5
    verdicts on them; the untuned arm, the checkpoint and everything before keep their keys. A full-SFT job's
    completions keys hold no ``lora_serving`` whatever eval.lora_serving says."""
    pinned = PINNED["sampled_lora"]
    plan = jobs.make_plan(compose_cfg(*pinned["overrides"], data=kit))
    changed = sorted(role for role in plan.roles if plan.key(role) != pinned["keys"][role])
    benches = ["aime24", "amc23", "gsm8k", "math", "olympiadbench"]
    assert changed == [f"completions.tuned.{b}" for b in benches] + [f"eval.tuned.{b}" for b in benches]
    tuned, untuned = plan.specs["completions.tuned.math"].fields, plan.specs["completions.untuned.math"].fields
    assert (tuned["max_model_len"], tuned["lora_serving"]) == (None, "adapter")
    assert untuned["max_model_len"] == 16000 and "lora_serving" not in untuned
    full = jobs.make_plan(compose_cfg("finetune_mode=full", "eval.lora_serving=adapter", data=kit))
    assert full.specs["completions.tuned.math"].fields["max_model_len"] == 16000
    assert "lora_serving" not in full.specs["completions.tuned.math"].fields


def test_allowed_stage_values_come_from_the_table_and_the_readers():
    assert table.stage_values() == ("plan", "prepare", "generate", "mix", "train", "evaluate", "all", "predict",
                                    "export", "report", "analyze", "status", "cancel")
    with pytest.raises(ConfigError) as err:
        jobs.make_plan(compose_cfg("stage=fit", "paths.data=null"))
    assert str(err.value) == ("stage='fit' is not allowed; choose one of plan, prepare, generate, mix, train, evaluate, "
                              "all, predict, export, report, analyze, status, cancel")


def test_the_evaluation_sets_and_the_student_are_planned_roles_of_their_own_rows(kit):
    """stage=evaluate builds the evaluation sets in their own step (the benchmarks row, after the mixture it is
    decontaminated against) and resolves the student in the prepare step, before the evaluate step reads both."""
    plan = jobs.make_plan(compose_cfg("stage=evaluate", "benchmark=[aime24]", data=kit))
    assert [(s.name, s.roles) for s in plan.steps] == [
        ("prepare", ("student",)), ("generate.strong", ("generation.strong", "pool.strong")),
        ("generate.weak", ("generation.weak", "pool.weak")), ("mix", ("mixture",)), ("benchmarks", ("benchmarks",)),
        ("completions.untuned", ("completions.untuned.aime24",)), ("evaluate.untuned", ("eval.untuned.aime24",))]
    assert plan.roles == ("generation.strong", "pool.strong", "generation.weak", "pool.weak", "mixture",
                          "completions.untuned.aime24", "eval.untuned.aime24")  # the values are never store artifacts
    generate = jobs.make_plan(compose_cfg("stage=generate", data=kit))  # nothing there takes the student as input
    assert [s.name for s in generate.steps] == ["generate.strong", "generate.weak"]


def test_the_benchmarks_step_decontaminates_the_evaluation_sets_against_the_mixture(tmp_path, kit):
    """The kit's MATH500 traces as the mixture: MATH is evaluated without those 500 problems, then cut to eval.limit."""
    from mixgap.core.stage import BuildContext
    from mixgap.stages import benchmarks, data

    traces = data.read_jsonl(kit / "traces/short_cot_qwen2.5-14b-instruct_math500.jsonl")
    mixture = tmp_path / "mixture"
    mixture.mkdir()
    (mixture / "mixture.jsonl").write_text("".join(
        json.dumps({"id": str(r["id"]), "problem": r["problem"], "answer": r["answer"], "response": "",
                    "source": "weak", "teacher": "t", "completion_tokens": None}) + "\n" for r in traces))
    cfg = compose_cfg("benchmark=[math,aime24]", "data.decontamination=drop", "eval.limit=8", data=kit)
    ctx = BuildContext(cfg, Store(tmp_path / "cache"), None, {}, paths={"mixture": mixture})
    benchmarks.run(ctx, ("benchmarks",))
    assert ctx.result["counts"]["decontamination"] == {"policy": "drop", "overlap": {"math": 500, "aime24": 0}}
    sets = ctx.value("benchmarks")
    assert [len(sets["math"]), len(sets["aime24"])] == [8, 8]
    assert not {data.normalize_text(p.problem) for p in sets["math"]} & {data.normalize_text(r["problem"]) for r in traces}


def _toy_specs(cfg, specs):
    """The toy stage's spec function: one artifact keyed by the job's seed."""
    return {"toy": ArtifactSpec("toy", {"seed": int(cfg.seed)})}


def _toy_run(ctx, roles):
    """The toy stage's build: writes the seed doubled into its artifact, reports it in result.json."""

    def write(out, _work):
        (out / "twice.txt").write_text(str(2 * int(ctx.cfg.seed)))
        return {"counts": {"doubled": 1}}

    ctx.paths["toy"] = ctx.store.get_or_build(ctx.specs["toy"], write)
    ctx.result["toy"] = int((ctx.path("toy") / "twice.txt").read_text())


def test_a_new_stage_is_its_module_plus_one_row(tmp_path, monkeypatch):
    """A stage defined here (a module with run(ctx, roles)) and one row: ``stage=toy`` is allowed, planned, built
    through the store by the pipeline and reported, and a rerun reuses its artifact."""
    toy = types.ModuleType("toy")
    toy.run = _toy_run
    cfg = compose_cfg("stage=toy", "seed=21", f"paths.cache={tmp_path / 'cache'}", "tracking.backend=none",
                      "paths.data=null")
    with pytest.raises(ConfigError, match="^stage='toy' is not allowed; choose one of plan, prepare,"):
        jobs.make_plan(cfg)
    monkeypatch.setattr(table, "TABLE", (*table.TABLE, Row("toy", toy, ("toy",), ("toy",), (), _toy_specs)))

    plan = jobs.make_plan(cfg)
    assert [(s.name, s.module, s.roles) for s in plan.steps] == [("toy", toy, ("toy",))]
    assert plan.roles == ("toy",) and "toy" in table.stage_values()
    result = run_job(cfg, tmp_path / "job")
    key = plan.key("toy")
    assert result["status"] == "done" and result["artifacts"] == {"toy": key} and result["toy"] == 42
    assert list(result["timings"]) == ["toy"]
    assert (tmp_path / "cache" / "toy" / key / "twice.txt").read_text() == "42"
    assert json.loads((tmp_path / "job" / "result.json").read_text())["toy"] == 42
    again = run_job(cfg, tmp_path / "job2")
    assert again["artifacts"] == {"toy": key} and list(again["reused_build_s"]) == ["toy"] and again["toy"] == 42
    # a stage that logs no receipt of its own still ends with one line (mixgap.core.stage.BuildContext.receipt)
    assert (result["receipts"], again["receipts"]) == ({"toy": "toy: made toy"}, {"toy": "toy: reused: made toy"})


def test_a_step_that_records_none_of_its_roles_breaks_the_contract(tmp_path, monkeypatch):
    lazy = types.ModuleType("lazy")
    lazy.run = lambda ctx, roles: None
    monkeypatch.setattr(table, "TABLE", (Row("lazy", lazy, ("lazy",), (), ("nothing",), None),))
    cfg = compose_cfg("stage=lazy", f"paths.cache={tmp_path / 'cache'}", "paths.data=null")
    plan = jobs.make_plan(cfg)
    with pytest.raises(RuntimeError, match=r"^step lazy \(lazy\) did not record nothing$"):
        build(cfg, Store(tmp_path / "cache"), None, plan, {}, {})
