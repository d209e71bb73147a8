"""The config tree: every option of every group composes and validates; bad values fail with one line."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, ValidationError

from conftest import ROOT, compose_cfg
from mixgap import grading
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.core.fields import check_field, choices_of
from mixgap.core.schema import BenchmarkConfig, EvalConfig, FinetuneConfig, MixConfig, MixgapConfig
from mixgap.grading.extract import STYLES
from mixgap.plan.jobs import make_plan

CONF = ROOT / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _group_overrides() -> list[str]:
    overrides = []
    for group in ("student", "mix_ratio", "finetune_mode", "problems"):
        overrides += [f"{group}={name}" for name in _options(group)]
    for name in _options("teacher"):
        overrides += [f"teacher@mix.strong={name}", f"teacher@mix.weak={name}", f"teacher={name}"]
    overrides += [f"benchmark=[{name}]" for name in _options("benchmark")]
    overrides += [f"+experiment={name}" for name in _options("experiment")]
    return overrides


@pytest.mark.parametrize("override", _group_overrides())
def test_every_option_of_every_group_composes_and_validates(override, kit):
    validate(compose_cfg(override, data=kit))


@pytest.mark.parametrize("launcher", _options("hydra/launcher") + ["basic"])
def test_every_launcher_composes(launcher):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_


def test_every_group_has_options():
    for group in ("teacher", "student", "mix_ratio", "finetune_mode", "benchmark", "problems"):
        assert _options(group), group
    assert {"math500", "math", "gsm8k", "aime24", "amc23", "olympiadbench"} <= set(_options("benchmark"))  # the paper's six


def test_paper_defaults():
    cfg = compose_cfg()
    assert (cfg.mix.strong.name, cfg.mix.weak.name, cfg.mix.weight) == ("qwq32b", "qwen32b", 0.2)
    assert (cfg.student.name, cfg.finetune_mode.mode) == ("qwen3b", "full")
    ft = cfg.finetune_mode
    assert (ft.learning_rate, ft.epochs, ft.lr_scheduler, ft.deepspeed, ft.max_seq_len) == (1e-5, 2, "cosine", "zero3", 16384)
    assert (ft.per_device_batch_size, ft.global_batch_size) == (2, 8)
    assert list(cfg.benchmark) == ["math", "gsm8k", "aime24", "amc23", "olympiadbench"]  # the paper: MATH 5k
    assert cfg.benchmark.gsm8k.prompt == "{problem}" and "\\boxed{your_answer}" in cfg.benchmark.math.prompt


@pytest.mark.parametrize(
    "student, mode",
    [("qwen7b", "full"), ("qwen14b", "lora"), ("qwen32b", "lora"), ("llama70b", "lora"), ("llama8b", "full")],
)
def test_students_of_14b_and_more_default_to_lora(student, mode):
    assert compose_cfg(f"student={student}").finetune_mode.mode == mode
    assert compose_cfg(f"student={student}", "finetune_mode=full").finetune_mode.mode == "full"


@pytest.mark.parametrize("student", _options("student"))
def test_the_student_family_sets_the_training_system_turn(student):
    """LLaMA-Factory 0.9.2's template per family: qwen "You are a helpful assistant.", llama3 none; SmolLM2
    (not in the paper) keeps its chat template's default (None); the command line wins."""
    cfg = compose_cfg(f"student={student}")
    want = {"qwen": "You are a helpful assistant.", "llama": "", "smollm": None}[cfg.student.family]
    assert cfg.finetune_mode.system == want
    assert cfg.finetune_mode.prompt == "{problem}"
    assert compose_cfg(f"student={student}", "finetune_mode.system=Be brief.").finetune_mode.system == "Be brief."


def test_full_finetuning_has_no_warmup():
    """None of the released MATH_short_CoT/long_CoT/mix.yaml sets a warmup (LLaMA-Factory's default 0)."""
    for mode in ("full", "released_mix"):
        assert compose_cfg(f"finetune_mode={mode}").finetune_mode.warmup_ratio == 0.0
    assert compose_cfg("finetune_mode=lora").finetune_mode.warmup_ratio == 0.1


def test_mix_ratio_presets_set_the_weight():
    weights = {name: compose_cfg(f"mix_ratio={name}").mix.weight for name in _options("mix_ratio")}
    assert weights == {"pure_weak": 0.0, "mix": 0.2, "pure_strong": 1.0}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["mix.weight=1.5"], "mix.weight=1.5 is not allowed; it must be in [0, 1]"),
        (["mix.weight=-0.1"], "mix.weight=-0.1 is not allowed; it must be in [0, 1]"),
        (["finetune_mode.learning_rate=-1e-5"], "finetune_mode.learning_rate=-1e-05 is not allowed; it must be > 0"),
        (["benchmark.math.extraction=last_box"], "benchmark.math.extraction='last_box' is not allowed; choose one of boxed, last_number"),
        (["benchmark.math.size=0"], "benchmark.math.size=0 is not allowed; it must be > 0"),
        (["eval.extract=official"], "eval.extract='official' is not allowed; choose one of policy, boxed"),
        (["mix.problems=all"], "mix.problems='all' is not allowed; choose one of intersection, union"),
        (["stage=fit"], "stage='fit' is not allowed; choose one of plan, prepare,"),
        (["data.decontamination=ignore"], "data.decontamination='ignore' is not allowed; choose one of error, drop, allow"),
        (["paths.data=/no/such/folder"], "paths.data='/no/such/folder' (from MIXGAP_DATA or the command line) is not an existing folder"),
        (["stage=report"], "report.sweep is empty; give a multirun folder"),
        (["teacher@mix.strong=uwnsl_long", "mix.strong.dataset=null"], "mix.strong.dataset=None is not allowed"),
        (["+experiment=demo", "paths.data=null"], "mix.strong.dataset.kit_path='traces/long_cot_sky-t1-math-correct-5k-27b_math500.jsonl' is a file of the offline data kit, but MIXGAP_DATA (paths.data) is not set"),
        (["+experiment=demo", "paths.data=''"], "mix.strong.dataset.kit_path='traces/long_cot_sky-t1-math-correct-5k-27b_math500.jsonl' is a file of the offline data kit, but MIXGAP_DATA (paths.data) is not set"),  # MIXGAP_DATA= (empty)
        (["eval.tensor_parallel_size=0"], "eval.tensor_parallel_size=0 is not allowed; it must be > 0"),
        (["eval.length_warning=2"], "eval.length_warning=2.0 is not allowed; it must be in [0, 1]"),
        (["report.n_boot=0"], "report.n_boot=0 is not allowed; it must be > 0"),
        (["report.confidence=1.5"], "report.confidence=1.5 is not allowed; it must be in (0, 1)"),
        (["finetune_mode.max_steps=0"], "finetune_mode.max_steps=0 is not allowed; it must be -1 (train "
                                        "finetune_mode.epochs) or > 0"),
        (["finetune_mode.max_steps=-5"], "finetune_mode.max_steps=-5 is not allowed; it must be -1"),
        (["finetune_mode.logging_steps=0"], "finetune_mode.logging_steps=0 is not allowed; it must be > 0"),
        (["finetune_mode.save_steps=0"], "finetune_mode.save_steps=0 is not allowed; it must be > 0"),
        (["finetune_mode=lora", "finetune_mode.lora.dropout=1.5"], "finetune_mode.lora.dropout=1.5 is not allowed; "
                                                                   "it must be in [0, 1)"),
        (["finetune_mode.deepspeed=None"], "finetune_mode.deepspeed='None' is not allowed; choose one of null, zero2, "
                                           "zero3"),
        (["paths.cache=''"], "paths.cache='' is not allowed; it is empty: give a folder (new or existing)"),
        (["paths.cache=pyproject.toml"], "paths.cache='pyproject.toml' is not allowed; it is a file: give a folder"),
        (["report.out=pyproject.toml"], "report.out='pyproject.toml' is not allowed; it is a file: give a folder"),
        (["stage=export", "export.out=pyproject.toml"], "export.out='pyproject.toml' is not "
                                                                            "allowed; it is a file"),
        (["stage=export", "export.out=x", "export.artifact=eval.tuned.mmlu"],
         "export.artifact='eval.tuned.mmlu' is not allowed: mmlu is not one of the job's benchmarks; choose "
         "eval.tuned.<one of math, gsm8k, aime24, amc23, olympiadbench>"),
    ],
)
def test_bad_values_fail_with_one_line_naming_field_value_and_rule(overrides, message):
    with pytest.raises(ConfigError) as err:  # validate, then the plan's checks of each teacher's backend
        cfg = compose_cfg(*overrides)
        validate(cfg)
        make_plan(cfg)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_global_batch_that_is_no_multiple_of_the_per_device_batch_is_left_to_the_preflight():
    # 7 examples per step with per-device batch 2: no layout at per-device 2, but per-device 1 x 7 accumulation
    # steps on one GPU (or 1 x 1 on 7) fits; the preflight's batch layout decides, validate does not refuse
    cfg = compose_cfg("finetune_mode.global_batch_size=7")
    assert (cfg.finetune_mode.global_batch_size, cfg.finetune_mode.per_device_batch_size) == (7, 2)
    validate(cfg, ["finetune_mode.global_batch_size=7"])


def test_a_lora_field_under_full_finetuning_is_an_error():
    cfg = compose_cfg("finetune_mode.lora.r=8")
    with pytest.raises(ConfigError, match=r"^finetune_mode.lora.r=8 is not allowed with finetune_mode.mode='full'"):
        validate(cfg, ["finetune_mode.lora.r=8"])
    lora = compose_cfg("finetune_mode=lora", "finetune_mode.lora.r=32")
    validate(lora, ["finetune_mode=lora", "finetune_mode.lora.r=32"])
    assert lora.finetune_mode.lora.r == 32 and lora.finetune_mode.learning_rate == 1e-4


def test_conf_has_no_stray_files():
    stray = [p for p in CONF.rglob("*") if p.is_file() and p.suffix not in (".yaml", ".json")]
    assert stray == [], stray
    assert Path(CONF / "deepspeed" / "zero3.json").is_file()


def _declared(cls, path=""):
    """``(path, metadata)`` of every field of the schema that declares what it allows, walked as the config nests:
    a dict of dataclasses at its ``math`` entry, a dict field at its ``aime24`` key, an optional dataclass set."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        if f.metadata:
            yield (f"{where}.aime24" if typing.get_origin(hints[f.name]) is dict else where), f.metadata
        args = [a for a in (typing.get_args(hints[f.name]) or (hints[f.name],)) if dataclasses.is_dataclass(a)]
        if args and f.name != "teacher":  # teacher: the same TeacherConfig as mix.strong / mix.weak, unset here
            yield from _declared(args[0], f"{where}.math" if typing.get_origin(hints[f.name]) is dict else where)


def _outside(meta):
    """A value the declaration refuses: not a choice, or just outside the range."""
    if "choices" in meta:
        return "not-a-choice"
    if "contains" in meta:
        return "no slots"
    return {"> 0": 0, ">= 0": -1, "[0, 1]": 1.5, "[0, 1)": 1.0, "(0, 1)": 1.0, "(0, 1]": 0.0}[meta["range"]]


DECLARED = list(_declared(MixgapConfig))


def test_the_schema_declares_the_allowed_values_of_the_fields_validate_checked():
    """The 76 field checks validate wrote out (one benchmark, both teachers, the judge; eval.rule and
    finetune_mode.loss_normalization among them) plus problems.limit, which shares its declaration with
    benchmark.<name>.limit, and eval.chunk_size, eval.lora_serving, eval.lora_max_model_len, mix.strategy and
    predict.batch_tokens (declared with the fields when they came)."""
    declared = {path for path, _ in DECLARED}
    assert len(declared) == 82 and {"mix.weight", "mix.strategy", "predict.batch_tokens", "eval.extract",
                                    "eval.chunk_size", "eval.lora_serving", "finetune_mode.deepspeed",
                                    "mix.strong.sampling.n",
                                    "eval.judge.prompt", "benchmark.math.extraction", "problems.answer_format",
                                    "eval.n_samples_by_benchmark.aime24", "cluster.memory_headroom"} <= declared


@pytest.mark.parametrize(("path", "meta"), DECLARED, ids=[p for p, _ in DECLARED])
def test_every_declared_choice_and_range_refuses_a_value_outside_it_in_one_line(path, meta, kit):
    cfg = compose_cfg("+judge@eval.judge=qwen32b", "benchmark=[math]", data=kit)
    bad = _outside(meta)
    OmegaConf.update(cfg, path, bad, force_add=True)
    value = OmegaConf.select(cfg, path)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    want = f"{path} lacks {{problem}}" if "contains" in meta else f"{path}={value!r} is not allowed; "
    assert str(err.value).startswith(want) and "\n" not in str(err.value)
    assert "also" not in meta or not _refused(cfg, path, meta["also"][0])  # finetune_mode.max_steps=-1: epochs


def _refused(cfg, path, value) -> bool:
    OmegaConf.update(cfg, path, value)
    try:
        validate(cfg)
    except ConfigError:
        return True
    return False


def test_omegaconf_ignores_the_declarations():
    """The metadata changes nothing OmegaConf builds: the same defaults, no extra key, the types still enforced."""
    node = OmegaConf.structured(FinetuneConfig)
    assert node.mode == "full" and node.deepspeed == "zero3" and node.max_steps == -1 and node.lora.dropout == 0.0
    assert sorted(node) == sorted(f.name for f in dataclasses.fields(FinetuneConfig))
    assert OmegaConf.to_container(OmegaConf.structured(MixConfig)) == {
        "strong": "???", "weak": "???", "weight": 0.2, "problems": "intersection", "seed": 0, "strategy": "fixed"}
    with pytest.raises(ValidationError):
        node.learning_rate = "fast"


@pytest.mark.parametrize(("overrides", "message"), [
    (["problems.limit=0"], "problems.limit=0 is not allowed; it must be > 0"),
    (["+eval.n_samples_by_benchmark.aime24=0"], "eval.n_samples_by_benchmark.aime24=0 is not allowed; it must be > 0"),
    (["teacher@mix.weak=qwen3b", "mix.weak.sampling.temperature=-0.5"],
     "mix.weak.sampling.temperature=-0.5 is not allowed; it must be >= 0"),
    (["+judge@eval.judge=qwen32b", "eval.judge.prompt='Is {answer} right?'"],
     "eval.judge.prompt lacks {problem}; it needs {problem}, {gold} and {answer}"),
])
def test_nested_declarations_name_the_full_path(overrides, message, kit):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*overrides, data=kit))
    assert str(err.value) == message


def test_code_outside_the_schema_reads_the_declared_values():
    assert grading.EXTRACT_MODES == choices_of(EvalConfig, "extract") == ("policy", "boxed")
    assert grading.RULES == choices_of(EvalConfig, "rule") == ("policy", "paper")
    assert STYLES == choices_of(BenchmarkConfig, "extraction") == ("boxed", "last_number")
    with pytest.raises(ConfigError, match=r"^finetune_mode.launch='slurm' is not allowed; choose one of auto, local, "
                                          r"torchrun$"):
        check_field(FinetuneConfig, "launch", "slurm", "finetune_mode.launch")
