"""The pre-compose command-line checks (mixgap.core.overrides): group options, group places, value types, sweeps;
and the config modules' split (every name importable from mixgap.core.config, no cycle)."""

from __future__ import annotations

import ast
import re
import shlex
import signal

import pytest

import launch  # launch.py's helpers only; importing it runs nothing
from conftest import ROOT
from mixgap.core import hydra_rules, overrides
from mixgap.core.errors import ConfigError
from mixgap.core.overrides import check_override_keys
from mixgap.core.runrecord import Interrupted

STUDENTS = ("llama1b, llama3b, llama70b, llama8b, qwen0.5b, qwen0.5b_base, qwen1.5b, qwen1.5b_base, qwen14b, qwen32b, "
            "qwen3b, qwen3b_base, qwen7b, qwen7b_base, qwen_math1.5b, qwen_math7b, smollm2_135m")
BENCHMARKS = "aime24, amc23, gsm8k, math, math500, olympiadbench"


def _refusal(*typed: str, multirun: bool = True) -> str:
    with pytest.raises(ConfigError) as err:
        check_override_keys(list(typed), multirun=multirun)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("typed", "message"), [
    ("student=qwen99b", f"student=qwen99b is not an option; choose one of {STUDENTS} (did you mean qwen7b?)"),
    ("benchmark=[mathx]", f"benchmark=[mathx]: mathx is not an option; choose one of {BENCHMARKS} (did you mean math?)"),
    ("benchmark=[math,gsm8kk]", f"benchmark=[math,gsm8kk]: gsm8kk is not an option; choose one of {BENCHMARKS} "
                                "(did you mean gsm8k?)"),
    ("+judge=qwen32b", "+judge=qwen32b: the judge group cannot go there, the top level has no field 'judge' of the "
                       "config schema; put it at eval.judge: +judge@eval.judge=qwen32b"),
    ("+judge@eval.judge=qwen99b", "+judge@eval.judge=qwen99b is not an option; choose one of qwen32b, smollm2_135m"),
    ("teacher@mix.strong=qwq99b", "teacher@mix.strong=qwq99b is not an option; choose one of gemma27b,"),
    ("teacher@mix.strang=qwq32b", "teacher@mix.strang=qwq32b: mix.strang is not a field of the config schema; "
                                  "did you mean mix.strong?"),
    ("+experiment=demoo", "+experiment=demoo is not an option; choose one of arms/fixed, arms/student_aware, "
                          "base_vs_instruct, demo,"),
    ("hydra/launcher=slurmm", "hydra/launcher=slurmm is not an option; choose one of basic, slurm, slurm_1gpu, "
                              "slurm_local_test, submitit_local, submitit_slurm (did you mean slurm?)"),
    ("mix.weight=abc", "mix.weight=abc is not allowed; mix.weight must be a float (a number such as 0.2)"),
    ("mix.weight=null", "mix.weight=null is not allowed; mix.weight must be a float (a number such as 0.2)"),
    ("eval.limit=x", "eval.limit=x is not allowed; eval.limit must be an int (a whole number such as 3) or null"),
    ("eval.limit=2.5", "eval.limit=2.5 is not allowed; eval.limit must be an int"),
    ("eval.untuned=maybe", "eval.untuned=maybe is not allowed; eval.untuned must be a bool (true or false)"),
    ("benchmark.math500.limit=all", "benchmark.math500.limit=all is not allowed; benchmark.math500.limit must be an int"),
    ("eval.n_samples_by_benchmark.aime24=many", "eval.n_samples_by_benchmark.aime24=many is not allowed; "
                                                "eval.n_samples_by_benchmark.aime24 must be an int"),
    ("student.name=[a,b]", "student.name=[a,b] is not allowed; student.name must be a string"),
    ("mix.weight=(", "mix.weight=( is not a valid override; "),
    ("deepspeed=zero2", "deepspeed=zero2: deepspeed is not a field of the config schema; did you mean "
                        "finetune_mode.deepspeed? (the top level has: stage, seed,"),
])
def test_a_bad_command_line_is_refused_naming_field_value_and_what_is_allowed(typed, message):
    assert _refusal(typed).startswith(message)


@pytest.mark.parametrize(("typed", "message"), [
    (("experiment=demo",), "experiment=demo: no defaults list chooses the experiment group, so it is added, not "
                           "set: +experiment=demo"),
    (("protocol=sampled",), "protocol=sampled: no defaults list chooses the protocol group, so it is added, not "
                            "set: +protocol=sampled"),
    (("judge@eval.judge=qwen32b",), "judge@eval.judge=qwen32b: no defaults list chooses the judge group, so it is "
                                    "added, not set: +judge@eval.judge=qwen32b"),
    (("+mix.weight=0.3",), "+mix.weight=0.3: mix.weight is already in the config, so it is set, not added: "
                           "mix.weight=0.3"),
    (("+finetune_mode.lora.r=4",), "+finetune_mode.lora.r=4: finetune_mode.lora.r is already in the config"),
    (("student=null",), f"student=null: a config group takes one of its options, not null; choose one of {STUDENTS}"),
    (("teacher=null",), "teacher=null: a config group takes one of its options, not null; choose one of gemma27b,"),
    (("finetune_mode=system/qwen",), "finetune_mode=system/qwen is not an option; choose one of full, lora, "
                                     "released_mix"),
    (("eval.stop=abc",), "eval.stop=abc is not allowed; eval.stop must be a list, e.g. [a,b] ([] for none)"),
    (("eval.n_samples_by_benchmark=abc",), "eval.n_samples_by_benchmark=abc is not allowed; "
                                           "eval.n_samples_by_benchmark must be a mapping, e.g. {name:value}, or one "
                                           "entry: +eval.n_samples_by_benchmark.<name>=<value>"),
    (("eval.judge=qwen32b",), "eval.judge=qwen32b is not allowed; eval.judge takes the judge group: "
                              "+judge@eval.judge=qwen32b"),
    (("mix.strong=qwq32b",), "mix.strong=qwq32b is not allowed; mix.strong takes a config group's option there "
                             "(<group>@mix.strong=<option>) or its fields (mix.strong.<field>=...)"),
])
def test_adding_what_is_set_and_setting_what_is_added_are_refused(typed, message):
    assert _refusal(*typed).startswith(message)


@pytest.mark.parametrize("typed", [
    ("+experiment=demo",), ("+protocol=sampled",), ("+judge@eval.judge=qwen32b",), ("++mix.weight=0.3",),
    ("+eval.limit=3",),  # null by default: Hydra adds it
    ("+eval.max_model_len=4096",), ("+experiment=long_vs_short", "judge@eval.judge=qwen32b"),  # the preset chose it
    ("-m", "+experiment=demo,long_vs_short", "judge@eval.judge=smollm2_135m"), ("finetune_mode=lora",),
    ("teacher=qwq32b",), ("hydra/launcher=slurm",), ("teacher@mix.strong=qwen72b",),
])
def test_what_hydra_adds_or_sets_passes(typed):
    check_override_keys([t for t in typed if t != "-m"], multirun=True)


def test_defaults_groups_and_always_set_read_the_conf_tree_and_the_schema():
    groups = hydra_rules.defaults_groups()
    assert {"student", "teacher@mix.strong", "teacher@mix.weak", "benchmark", "hydra/launcher"} <= groups
    assert not {"experiment", "protocol", "judge@eval.judge"} & groups
    assert "judge@eval.judge" in hydra_rules.defaults_groups(added=(("experiment", "long_vs_short"),))
    assert [hydra_rules.always_set(k) for k in ("mix.weight", "seed", "eval.limit", "eval.judge", "student.name")] == [
        True, True, False, False, False]  # null by default, optional, or filled in by a group's file


@pytest.mark.parametrize(("typed", "message"), [
    ("student=qwen3b,qwen99b", "student=qwen3b,qwen99b: qwen99b is not an option; choose one of"),
    ("benchmark=[math],[gsm8k,mathx]", "benchmark=[math],[gsm8k,mathx]: mathx is not an option; choose one of"),
    ("teacher@mix.strong=qwq32b,r1_qwen99b", "teacher@mix.strong=qwq32b,r1_qwen99b: r1_qwen99b is not an option;"),
    ("mix.weight=0,abc,1", "mix.weight=0,abc,1: abc is not allowed; mix.weight must be a float"),
    ("mix.weight=choice(0,abc)", "mix.weight=choice(0,abc): abc is not allowed; mix.weight must be a float"),
    ("eval.limit=range(0,3,0.5)", "eval.limit=range(0,3,0.5): 0.0 is not allowed; eval.limit must be an int"),
])
def test_sweep_values_are_checked_one_by_one(typed, message):
    assert _refusal(typed).startswith(message)


@pytest.mark.parametrize("legit", [
    "mix.weight=0,0.2,1", "mix.weight=range(0,1.01,0.25)", "mix.weight=choice(0,0.5)", "mix.weight=${seed}",
    "mix.weight='0.2'", "mix.weight=1", "eval.limit=null", "eval.limit=3,null", "eval.limit=range(1,4)",
    "eval.untuned=false", "eval.untuned=true,false", "eval.stop=[]", "eval.judge=null", "student=qwen3b,qwen7b",
    "student=glob(qwen*)", "mix.weight=interval(0,1)", "benchmark=[math500],[gsm8k,aime24]", "benchmark=math500",
    "~teacher", "teacher=qwq32b,qwen32b", "+judge@eval.judge=qwen32b", "+experiment=method/long",
    "+experiment/method=long", "hydra/launcher=basic", "hydra/launcher=submitit_slurm", "mix_ratio=pure_strong",
    "hydra/job_logging=disabled", "hydra.job.chdir=true", "stage=report", "report.sweep=multirun/a,multirun/b",
    "student.name=3", "eval.seed=${seed}", "paths.cache=/tmp/x",
])
def test_legitimate_values_and_sweeps_pass(legit):
    check_override_keys([legit], multirun=True)


def test_a_sweep_without_dash_m_is_refused_in_one_line():
    assert _refusal("mix.weight=0,1", multirun=False) == (
        "mix.weight=0,1 is a sweep (one job per value); add -m: python launch.py -m mix.weight=0,1 ...")
    check_override_keys(["mix.weight=0.2", "benchmark=[math,gsm8k]"], multirun=False)  # lists are one value


def test_group_choices_list_nested_options_and_hydras_own_launchers():
    assert overrides.group_choices("judge") == ["qwen32b", "smollm2_135m"]
    assert {"demo", "method/long", "pair/gemma"} <= set(overrides.group_choices("experiment"))
    assert {"basic", "slurm", "submitit_slurm"} <= set(overrides.group_choices("hydra/launcher"))


def test_schema_type_reads_the_type_hint_through_dataclasses_and_dicts():
    assert overrides.schema_type("mix.weight") == (float, False)
    assert overrides.schema_type("eval.limit") == (int, True)
    assert overrides.schema_type("benchmark.math.limit") == (int, True)
    assert overrides.schema_type("eval.n_samples_by_benchmark.aime24") == (int, False)
    assert overrides.schema_type("report.sweep.x") is None  # below an Any field


def test_fits_follows_omegaconf_nodes():
    assert overrides.fits("0.5", float, False) and overrides.fits(1, float, False)
    assert not overrides.fits("abc", float, False) and not overrides.fits(None, float, False)
    assert overrides.fits(None, int, True) and not overrides.fits(1.5, int, True)
    assert overrides.fits("${x}", int, False) and overrides.fits("yes", bool, False)


def _imports(path):
    tree = ast.parse(path.read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_the_config_modules_have_no_cycle():
    core = ROOT / "mixgap" / "core"
    assert "mixgap.core.config" not in _imports(core / "schema.py") | _imports(core / "schema_models.py")
    assert "mixgap.core.config" not in _imports(core / "overrides.py")
    assert {"mixgap.core.overrides", "mixgap.core.config"}.isdisjoint(_imports(core / "schema.py"))
    for name in ("config", "schema", "schema_models", "overrides", "hydra_rules"):
        assert len((core / f"{name}.py").read_text().splitlines()) < 350, name


def test_an_interrupt_is_one_line_with_the_signals_exit_status():
    assert launch.interrupted_line(KeyboardInterrupt()) == (
        "mixgap: interrupted by SIGINT; rerun the same command to resume", 130)
    assert launch.interrupted_line(Interrupted(signal.SIGTERM)) == (
        "mixgap: interrupted by SIGTERM; rerun the same command to resume", 143)


def _launch_examples() -> list[str]:
    texts = [ROOT / "README.md", *sorted((ROOT / "conf").rglob("*.yaml"))]
    found = {m.strip() for path in texts for m in re.findall(r"python launch\.py([^`|#\n]*)", path.read_text())}
    return sorted(re.sub(r"<[^>]+>", "x", line).rstrip("\\ ") for line in found)


def test_every_launch_example_of_the_readme_and_conf_passes_the_checks():
    examples = _launch_examples()
    assert len(examples) > 20 and any("hydra/launcher=slurm" in line for line in examples)
    for line in examples:
        args = shlex.split(line)
        check_override_keys([a for a in args if not a.startswith("-")], multirun="-m" in args)


def test_every_option_of_every_group_passes_the_checks():
    for group in ("student", "teacher", "mix_ratio", "finetune_mode", "problems", "benchmark"):
        for name in overrides.group_choices(group):
            check_override_keys([f"{group}={name}", f"+{group}={name}"])
    for name in overrides.group_choices("protocol"):  # in no defaults list: added only
        check_override_keys([f"+protocol={name}"])
    for name in overrides.group_choices("judge"):
        check_override_keys([f"+judge@eval.judge={name}"])
    for name in overrides.group_choices("teacher"):
        check_override_keys([f"teacher@mix.strong={name}", f"teacher@mix.weak={name}"])
    for name in overrides.group_choices("experiment"):
        check_override_keys([f"+experiment={name}"])
