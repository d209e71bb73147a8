"""Experiment presets (conf/experiment/): each composes with the SLURM launcher, sweeps the paper's grid, and its
header gives the one command that runs it on SLURM (its pool jobs make every teacher pool it needs, each on the
teacher's GPUs of one node)."""

from __future__ import annotations

import functools
import itertools
import math
import os

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from mixgap.core.config import validate
from mixgap.core.overrides import check_override_keys
from mixgap.core.schema_models import PAPER_PROMPT

CONF = ROOT / "conf"
TEN = ["qwen0.5b", "qwen1.5b", "qwen3b", "qwen7b", "qwen14b", "qwen32b", "llama1b", "llama3b", "llama8b", "llama70b"]
W01 = ["0.0", "1.0"]
# experiment -> (paper artefact named in its header, {sweep axis: values}, (strong, weak) when fixed)
EXPECTED = {
    "long_vs_short": ("Table 1 / Figure 2", {"student": TEN, "mix.weight": W01}, ("qwq32b", "qwen32b")),
    "large_vs_small": ("Table 2 / Figure 3", {"student": TEN, "mix.weight": W01}, ("qwen72b", "qwen3b")),
    "teacher_families": (
        "Table 9", {"+experiment/pair": ["llama", "gemma"], "student": TEN, "mix.weight": W01}, None,
    ),
    "mix_distillation": (
        "Table 3",
        {"student": ["qwen3b", "llama3b"],
         "experiment/method": ["long", "short", "large", "small", "r1_long", "mix_long", "mix_large"]},
        None,
    ),
    "mix_weight_sweep": (
        "Figure 6",
        {"+experiment/pair": ["long_short", "large_small"], "mix.weight": [f"{i / 10:.1f}" for i in range(11)]},
        None,
    ),
    "math_experts": (
        "Figure 4",
        {"+experiment/pair": ["long_short", "large_small"],
         "student": ["qwen_math1.5b", "qwen_math7b", "qwen1.5b", "qwen7b"], "mix.weight": W01},
        None,
    ),
    "released_pools": (
        "Tables 1-2",
        {"+experiment/pair": ["released_long_short", "released_large_small"], "student": TEN, "mix.weight": W01},
        None,
    ),
    "base_vs_instruct": (
        "Figure 5",
        {"+experiment/pair": ["long_short", "large_small"],
         "student": ["qwen0.5b_base", "qwen1.5b_base", "qwen3b_base", "qwen7b_base",
                     "qwen0.5b", "qwen1.5b", "qwen3b", "qwen7b"],
         "mix.weight": W01},
        None,
    ),
}
PAIRS = {"long_short": ("qwq32b", "qwen32b"), "large_small": ("qwen72b", "qwen3b"),
         "llama": ("llama70b", "llama8b"), "gemma": ("gemma27b", "gemma9b"),
         "released_long_short": ("uwnsl_long", "uwnsl_short"), "released_large_small": ("uwnsl_large", "uwnsl_small")}
METHODS = {  # Table 3's rows: (strong, weak, weight)
    "long": ("qwq32b", "qwen32b", 1.0), "short": ("qwq32b", "qwen32b", 0.0),
    "large": ("qwen72b", "qwen3b", 1.0), "small": ("qwen72b", "qwen3b", 0.0),
    "r1_long": ("r1_qwen32b", "qwen32b", 1.0),
    "mix_long": ("qwq32b", "qwen32b", 0.2), "mix_large": ("qwen72b", "qwen3b", 0.2),
}


@functools.cache
def _sweep_cfg(name: str):
    """The master config of ``python launch.py -m +experiment=<name> hydra/launcher=slurm`` (read only)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}", "hydra/launcher=slurm"], return_hydra_config=True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


@functools.cache
def _gpus_per_node(launcher: str) -> int:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    return cfg.hydra.launcher.gpus_per_node


@functools.cache
def _tensor_parallel_size(teacher: str) -> int:
    return compose_cfg(f"teacher={teacher}").teacher.tensor_parallel_size


@pytest.fixture(autouse=True)
def _no_cluster_environment(monkeypatch):
    """The launcher reads MIXGAP_SLURM_* from the environment: test the defaults, not this shell's cluster."""
    for name in [n for n in os.environ if n.startswith("MIXGAP_SLURM_")]:
        monkeypatch.delenv(name)


def _axes(params) -> dict[str, list[str]]:
    """Each sweep axis of ``hydra.sweeper.params`` and its values, as Hydra's parser reads them."""
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.get_key_element(): [str(v) for v in o.sweep_string_iterator()] for o in overrides}


def _jobs(params) -> list[list[str]]:
    """The jobs of the sweep: BasicSweeper's own expansion (the cartesian product of the axes)."""
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(overrides, None)[0]


def test_every_experiment_file_is_covered():
    on_disk = {p.stem for p in (CONF / "experiment").glob("*.yaml")} - {"demo", "demo_rsr", "slurm_rehearsal"}  # the CPU presets
    assert on_disk == set(EXPECTED)
    assert {p.stem for p in (CONF / "experiment" / "pair").glob("*.yaml")} == set(PAIRS)
    assert {p.stem for p in (CONF / "experiment" / "method").glob("*.yaml")} == set(METHODS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_sweeps_the_paper_grid_on_slurm(name):
    _, axes, fixed_pair = EXPECTED[name]
    cfg = _sweep_cfg(name)
    assert _axes(cfg.hydra.sweeper.params) == axes
    jobs = _jobs(cfg.hydra.sweeper.params)
    assert len(jobs) == math.prod(len(v) for v in axes.values())
    assert len({tuple(sorted(j)) for j in jobs}) == len(jobs)  # no job twice
    assert cfg.hydra.launcher._target_ == "hydra_plugins.mixgap_launcher.StudyLauncher"
    assert cfg.hydra.launcher.tasks_per_node == 1
    assert cfg.data.missing_pool == "wait"
    # the sweep folder is named after the experiment and never after a SLURM job id
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{name}/") and "job" not in cfg.hydra.sweep.dir
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"
    if fixed_pair:
        assert (cfg.mix.strong.name, cfg.mix.weak.name) == fixed_pair


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_first_and_last_job_compose_with_their_grid_values(name):
    jobs = _jobs(_sweep_cfg(name).hydra.sweeper.params)
    for job in (jobs[0], jobs[-1]):
        cfg = compose_cfg(f"+experiment={name}", *job)
        validate(cfg)
        values = dict(o.split("=", 1) for o in job)
        if "student" in values:
            assert cfg.student.name == values["student"]
        if "mix.weight" in values:
            assert cfg.mix.weight == float(values["mix.weight"])
        if "+experiment/pair" in values:
            assert (cfg.mix.strong.name, cfg.mix.weak.name) == PAIRS[values["+experiment/pair"]]
        if "experiment/method" in values:
            assert (cfg.mix.strong.name, cfg.mix.weak.name, cfg.mix.weight) == METHODS[values["experiment/method"]]


#: the system turn of LLaMA-Factory 0.9.2's template per student family (template.py: qwen's default_system;
#: llama3 has none)
TRAIN_SYSTEM = {"qwen": "You are a helpful assistant.", "llama": ""}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_experiments_train_on_the_bare_problem_with_the_family_system(name):
    """The released configs' training turn: user = the bare problem, system = the family's LLaMA-Factory one."""
    jobs = _jobs(_sweep_cfg(name).hydra.sweeper.params)
    families = set()
    for job in (jobs[0], jobs[-1]):
        cfg = compose_cfg(f"+experiment={name}", *job)
        ft = cfg.finetune_mode
        families.add(cfg.student.family)
        assert ft.prompt == "{problem}"
        assert ft.system == TRAIN_SYSTEM[cfg.student.family]
        assert ft.warmup_ratio == (0.0 if ft.mode == "full" else 0.1)  # lora: LLaMA-Factory's LoRA example
    if name in ("long_vs_short", "large_vs_small", "teacher_families", "mix_distillation"):
        assert families == {"qwen", "llama"}  # first job a Qwen student, last a Llama one


def test_demo_trains_on_the_instruction_prompt():
    ft = compose_cfg("+experiment=demo").finetune_mode
    assert (ft.prompt, ft.system, ft.warmup_ratio) == (PAPER_PROMPT, None, 0.0)  # SmolLM2's default system turn


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_pair_presets_set_the_two_teachers(pair):
    cfg = compose_cfg(f"+experiment/pair={pair}")
    assert (cfg.mix.strong.name, cfg.mix.weak.name) == PAIRS[pair]
    assert cfg.mix.weight == 0.2  # a pair leaves the weight to the sweep


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_presets_set_teachers_and_weight(method):
    cfg = compose_cfg("+experiment=mix_distillation", f"experiment/method={method}")
    assert (cfg.mix.strong.name, cfg.mix.weak.name, cfg.mix.weight) == METHODS[method]


#: the released configs' recipes (official repo 814cf97, LLaMA-Factory/exp/): MATH_{long,short}_CoT.yaml, MATH_mix.yaml
RELEASED = {"max_seq_len": 8192, "overlength": "truncate", "loss_normalization": "per_device", "global_batch_size": 8,
            "per_device_batch_size": 2, "batch_unit": "examples", "packing": False}
RELEASED_MIX = {"max_seq_len": 4096, "overlength": "truncate", "loss_normalization": "global_tokens",
                "global_batch_size": 80, "per_device_batch_size": 5, "batch_unit": "packed_sequences", "pack_len": 4096,
                "packing": True}
TEXT = {**RELEASED, "max_seq_len": 16384, "overlength": "drop"}


def _recipe(cfg) -> dict:
    return {k: cfg.finetune_mode[k] for k in RELEASED_MIX}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_presets_follow_the_released_configs_and_one_override_gives_the_text(name):
    """Tables 1-2 and their relatives: the long/short configs' 8,192 cut and per-device loss; the Mix rows of
    Table 3 and every weight of Figure 6: the Mix config; ``finetune_mode/recipe=text``: 16,384 dropped, batch 8."""
    jobs = _jobs(_sweep_cfg(name).hydra.sweeper.params)
    if name == "mix_distillation":  # every method (one student)
        jobs = [job for job in jobs if "student=qwen3b" in job]
    for i, job in enumerate(jobs if name == "mix_distillation" else [jobs[0], jobs[-1]]):
        mix_recipe = name == "mix_weight_sweep" or "experiment/method=mix_" in " ".join(job)
        want = dict(RELEASED_MIX if mix_recipe else RELEASED)
        if name == "math_experts":  # Qwen2.5-Math's 4,096-token context
            want["max_seq_len"] = 4096
        got = _recipe(compose_cfg(f"+experiment={name}", *job))
        assert {k: got[k] for k in want} == want, job
        if i == 0 or mix_recipe:
            text = _recipe(compose_cfg(f"+experiment={name}", *job, "finetune_mode/recipe=text"))
            want_text = {**TEXT, "max_seq_len": 4096} if name == "math_experts" else TEXT
            assert {k: text[k] for k in want_text} == want_text, job
        assert check_override_keys([f"+experiment={name}", "finetune_mode/recipe=text"], multirun=True) is None


def test_table3_baselines_share_table1_and_table2_checkpoints():
    from mixgap.stages.train.stage import checkpoint_spec

    def key(*overrides):
        return checkpoint_spec(compose_cfg(*overrides).finetune_mode, "student", "mixture").key

    for method, weight in (("long", "1.0"), ("short", "0.0")):
        assert key("+experiment=mix_distillation", f"experiment/method={method}", "student=qwen3b") == key(
            "+experiment=long_vs_short", "student=qwen3b", f"mix.weight={weight}")
    assert key("+experiment=mix_distillation", "experiment/method=mix_long", "student=qwen3b") == key(
        "+experiment=mix_weight_sweep", "+experiment/pair=long_short", "mix.weight=0.2")


def test_command_line_narrows_an_axis():
    """``student=...`` on the command line replaces the experiment's student axis (same override key)."""
    cfg = _sweep_cfg("long_vs_short")
    params = dict(cfg.hydra.sweeper.params)
    overrides = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in params.items()] + ["student=qwen0.5b,qwen3b"]
    )
    jobs = BasicSweeper.split_arguments(overrides, None)[0]
    assert sorted(tuple(j) for j in jobs) == [
        ("student=qwen0.5b", "mix.weight=0.0"), ("student=qwen0.5b", "mix.weight=1.0"),
        ("student=qwen3b", "mix.weight=0.0"), ("student=qwen3b", "mix.weight=1.0"),
    ]


def _teachers_needed(name: str) -> set[str]:
    """The teachers the grid generates with (an imported pool, backend dataset, needs no stage=generate)."""
    _, axes, fixed_pair = EXPECTED[name]
    pairs = [PAIRS[p] for p in axes.get("+experiment/pair", [])]
    pairs += [METHODS[m][:2] for m in axes.get("experiment/method", [])]
    teachers = set(itertools.chain(*(pairs or [fixed_pair])))
    return {t for t in teachers if OmegaConf.load(CONF / "teacher" / f"{t}.yaml").backend != "dataset"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_header_gives_the_one_command_and_every_teacher_fits_a_node(name):
    """The header names the artefact, the one SLURM command and the report command; the pool jobs of that command
    (mixgap/plan/dag.py) generate each teacher the grid needs on its tensor_parallel_size GPUs of one
    hydra/launcher=slurm node."""
    artefact = EXPECTED[name][0]
    header = "\n".join(
        line for line in (CONF / "experiment" / f"{name}.yaml").read_text().splitlines() if line.startswith("#")
    )
    assert artefact in header
    assert f"python launch.py -m +experiment={name} hydra/launcher=slurm" in header
    assert f"stage=report report.sweep=multirun/{name}/" in header
    assert "stage=generate" not in header  # no step before the one command
    for teacher in _teachers_needed(name):
        assert _tensor_parallel_size(teacher) <= _gpus_per_node("slurm"), teacher


def test_one_override_gives_the_mix_weight_sweep_its_student_aware_arms():
    """experiment/arms=student_aware (after or before +experiment=mix_weight_sweep: the sweep's defaults list puts it
    after its own) replaces the weight axis: per pair, rsr and rsr_budget at w = 0.2, 4 jobs."""
    for order in (["+experiment=mix_weight_sweep", "experiment/arms=student_aware"],
                  ["experiment/arms=student_aware", "+experiment=mix_weight_sweep"]):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*order, "hydra/launcher=slurm"], return_hydra_config=True)
        assert {k: str(v) for k, v in cfg.hydra.sweeper.params.items()} == {
            "+experiment/pair": "long_short,large_small", "mix.weight": "0.2", "mix.strategy": "rsr,rsr_budget"}
        assert cfg.hydra.sweep.dir.startswith("multirun/mix_weight_sweep_student_aware/")
    jobs = _jobs(cfg.hydra.sweeper.params)
    assert len(jobs) == 4
    job = jobs[-1]
    composed = compose_cfg("+experiment=mix_weight_sweep", "experiment/arms=student_aware", *job)
    validate(composed)
    assert (composed.mix.strategy, composed.mix.weight, composed.student.name) == ("rsr_budget", 0.2, "qwen3b")


def test_the_demo_with_a_student_aware_arm_sweeps_the_demo_weights_and_rsr():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=demo_rsr"], return_hydra_config=True)
    assert _axes(cfg.hydra.sweeper.params) == {"mix.weight": ["0", "0.2", "1"], "mix.strategy": ["fixed", "rsr"]}
    demo = compose_cfg("+experiment=demo_rsr", "mix.strategy=rsr")
    assert (demo.student.name, demo.finetune_mode.max_seq_len, demo.finetune_mode.overlength) == (
        "smollm2_135m", 896, "drop_pair")
    assert demo.predict.max_seq_len is None  # scores every problem the mixture keeps
