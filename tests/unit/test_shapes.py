"""The shapes the preflight plans with (mixgap.plan.shapes): a model without an ``arch:`` block is planned from its
config.json, never at 0; an ``arch:`` that contradicts config.json, or a shape known from neither, is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg, fake_commit
from mixgap.plan import shapes
from mixgap.plan.estimates import model_params
from mixgap.plan.jobs import make_plan
from mixgap.plan.preflight import preflight

#: Llama-3.3-70B-Instruct's config.json facts (conf/student/llama70b.yaml's arch), as transformers writes them.
LLAMA70B = {"num_hidden_layers": 80, "hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8,
            "vocab_size": 128256, "max_position_embeddings": 131072, "intermediate_size": 28672,
            "tie_word_embeddings": False}


def arch_blocks() -> list[tuple[str, dict]]:
    """Every ``arch:`` block of conf/ (students, teachers, judges), by file."""
    out = []
    for path in sorted((ROOT / "conf").glob("*/*.yaml")):
        arch = (yaml.safe_load(path.read_text()) or {}).get("arch")
        if arch:
            out.append((f"{path.parent.name}/{path.stem}", arch))
    return out


@pytest.mark.parametrize("name, arch", arch_blocks(), ids=[n for n, _ in arch_blocks()])
def test_the_count_from_the_shape_matches_the_model_cards_params_b_within_one_percent(name, arch):
    """model_params from layers/hidden/heads/kv_heads/intermediate/vocab/tie is the model card's params_b within 1%
    (largest: Qwen2.5-32B, 32.763 counted vs 32.5 on its card, +0.81%; its q/k/v biases are not counted)."""
    counted = model_params(OmegaConf.create({"head_dim": None, **arch}))
    assert abs(counted / (arch["params_b"] * 1e9) - 1) < 0.01


def test_qwen3b_counted_by_hand():
    # per layer: q,o 2048x2048 each + k,v 2048x256 each + gate/up/down 3x2048x11008 + 2 norms of 2048
    layer = 2 * 2048 * 2048 + 2 * 2048 * 256 + 3 * 2048 * 11008 + 2 * 2048
    expected = 36 * layer + 2048 + 151936 * 2048  # + final norm + one (tied) embedding
    assert model_params(compose_cfg("student=qwen3b").student.arch) == expected == 3_085_846_528


def llama_folder(path: Path, **changes) -> Path:
    """A folder holding only a config.json of Llama-3.3-70B's shape (``changes`` applied): no weights."""
    from transformers import LlamaConfig

    LlamaConfig(**{**LLAMA70B, **changes}).save_pretrained(path)
    return path


def test_config_facts_of_the_70b_shape_are_llama70bs_arch(tmp_path):
    facts, where = shapes.read_config(compose_cfg("student=qwen0.5b", f"student.hf_id={llama_folder(tmp_path / 'm')}").student)
    yaml_arch = dict(compose_cfg("student=llama70b").student.arch)
    assert where == f"{tmp_path / 'm'}/config.json"
    assert facts == {k: v for k, v in yaml_arch.items() if k != "params_b"}


def compose_searchpath(folder: Path, *overrides: str):
    """The job config of ``overrides`` with ``folder`` on Hydra's search path, as ``hydra.searchpath=[file://...]``."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.searchpath=[file://{folder}]", *overrides])
    OmegaConf.set_readonly(cfg, False)
    return cfg


def own_student(tmp_path: Path, model: Path) -> Path:
    """A search-path folder with student/mine.yaml of three fields: name, hf_id (``model``), family."""
    (tmp_path / "conf" / "student").mkdir(parents=True)
    (tmp_path / "conf" / "student" / "mine.yaml").write_text(f"name: mine\nhf_id: {model}\nfamily: llama\n")
    return tmp_path / "conf"


def test_a_three_field_student_plans_its_memory_from_config_json_on_slurm(tmp_path, kit):
    cfg = compose_searchpath(own_student(tmp_path, llama_folder(tmp_path / "l70")), "student=mine", "stage=plan",
                             f"paths.data={kit}")
    assert cfg.student.arch is None and cfg.student.size_b is None
    report = preflight(cfg, make_plan(cfg), 8, None, launcher="slurm")
    # by hand: N = 80 x (q,o 8192x8192 + k,v 8192x1024 + 3 x 8192x28672 + 2 norms) + final norm + 2 x 128256x8192
    n = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192) + 8192 + 2 * 128256 * 8192
    assert n == 70_553_706_496 and report["student_params_b"] == 70.554
    # full SFT, ZeRO-3 on 8 GPUs, per-device 1 x 16,384 tokens, gradient checkpointing (the default preset):
    # 4 L + 18 N / 8 (L = the embedding 128256 x 8192) + layers x 2 t h + 34 t h + 12 t V bytes + 2 GB overhead
    t, params = 16384, 70.554e9
    states = 4 * 128256 * 8192 + 18 * params / 8
    activations = 80 * 2 * t * 8192 + 34 * t * 8192 + 12 * t * 128256
    assert round((states + activations) / 1e9 + 2.0, 1) == report["train_memory_gb_per_gpu"] == 216.2
    # evaluation at TP 4: bf16 weights / 4 + the KV cache of 16 sequences of 16,000 tokens (2 K/V x 80 layers x
    # 2 of 8 KV heads per rank x 128 x 2 bytes a token) + 2 GB
    assert report["eval_tensor_parallel_size"] == 4
    kv = 16 * 16000 * (2 * 80 * 2 * 128 * 2)
    assert round((2 * params / 4 + kv) / 1e9 + 2.0, 1) == report["generation_memory_gb_per_gpu"] == 58.2
    assert report["gpu_hours_estimate"] > 90
    assert report["shapes"] == [f"student shape from {tmp_path / 'l70'}/config.json: 70.554B parameters"]
    assert report["refusals"] == [
        "finetune_mode.mode=full for student=mine needs 216.2 GB per GPU on 8 GPU(s) of hydra/launcher=slurm (ZeRO-3, "
        "per-device batch 1 x 16384 tokens, lowered from 2) > 76.5 GB usable (90% of 85 GB, cluster.gpu_memory_gb=85; "
        "cluster.memory_headroom=0.1); allowed: finetune_mode=lora, a shorter finetune_mode.max_seq_len (now 16384), "
        "GPUs with more memory (cluster.gpu_memory_gb)"]
    lora = compose_searchpath(tmp_path / "conf", "student=mine", "stage=plan", "finetune_mode=lora", f"paths.data={kit}")
    fits = preflight(lora, make_plan(lora), 8, None, launcher="slurm")
    assert fits["refusals"] == [] and fits["train_memory_gb_per_gpu"] == 75.3


def test_without_config_json_and_without_arch_the_job_is_refused_in_one_line(tmp_path, kit):
    (tmp_path / "empty").mkdir()
    cfg = compose_searchpath(own_student(tmp_path, tmp_path / "empty"), "student=mine", "stage=plan",
                             "hydra/launcher=slurm", f"paths.data={kit}")
    report = preflight(cfg, make_plan(cfg), 8, None, launcher="slurm")
    assert report["refusals"] == [
        f"student.arch is unknown for student.hf_id='{tmp_path / 'empty'}': no arch: block, and {tmp_path / 'empty'} "
        "has no config.json; give student.arch (its config.json facts) or a readable config.json (a local folder with "
        "one, the Hugging Face cache, or the Hub)"]
    assert report["train_memory_gb_per_gpu"] is None and report["train_hours_estimate"] == 0.0


def test_a_yaml_arch_that_contradicts_config_json_is_refused_naming_both_values(tmp_path, kit):
    model = llama_folder(tmp_path / "l70")
    cfg = compose_cfg("student=llama70b", f"student.hf_id={model}", "student.arch.layers=81", "stage=plan", data=kit)
    plan = make_plan(cfg, [f"student.hf_id={model}", "student.arch.layers=81"])
    assert plan.foreign_arch == ()  # the arch is given with the new hf_id: checked, not set aside
    assert preflight(cfg, plan, 8, None, launcher="slurm")["refusals"] == [
        f"student.arch.layers=81 contradicts num_hidden_layers=80 in {model}/config.json; correct the YAML, or drop "
        "its block (student.arch=null) to plan with config.json's shape"]
    head = compose_cfg("student=llama70b", f"student.hf_id={model}", "student.arch.head_dim=64", "stage=plan", data=kit)
    assert preflight(head, make_plan(head), 8, None, launcher="slurm")["refusals"][0].startswith(
        "student.arch.head_dim=64 contradicts head_dim=128 in")
    agrees = compose_cfg("student=llama70b", f"student.hf_id={model}", "stage=plan", data=kit)
    report = preflight(agrees, make_plan(agrees), 8, None, launcher="slurm")
    assert report["shapes"] == [] and report["student_params_b"] == 70.6  # the YAML's own block: its card's count


def test_an_hf_id_given_over_another_students_yaml_takes_config_json_and_says_so(tmp_path, kit):
    model = llama_folder(tmp_path / "l70")
    overrides = ["student=qwen3b", f"student.hf_id={model}", "stage=plan", "finetune_mode=lora"]
    cfg = compose_cfg(*overrides, data=kit)
    plan = make_plan(cfg, overrides)
    assert plan.foreign_arch == ("student",)
    report = preflight(cfg, plan, 8, None, launcher="slurm")
    assert report["student_params_b"] == 70.554 and report["train_memory_gb_per_gpu"] == 75.3  # not qwen3b's 3.09B
    assert report["shapes"] == [f"student shape from {model}/config.json: 70.554B parameters (the arch: block of "
                                "student=qwen3b set aside: student.hf_id given on the command line)"]
    (model / "config.json").unlink()
    shapes._READ.clear()
    refused = preflight(cfg, plan, 8, None, launcher="slurm")["refusals"]
    assert refused == [f"student.arch is unknown for student.hf_id='{model}': its arch: block is student=qwen3b's, set "
                       f"aside because student.hf_id is given on the command line, and {model} has no config.json; give "
                       "student.arch (its config.json facts) or a readable config.json (a local folder with one, the "
                       "Hugging Face cache, or the Hub)"]


def test_a_mixture_of_experts_config_is_refused_not_planned_as_dense(tmp_path):
    folder = tmp_path / "moe"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32,
        "num_key_value_heads": 4, "vocab_size": 151936, "max_position_embeddings": 40960, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_experts": 128, "head_dim": 128, "tie_word_embeddings": False}))
    student = compose_cfg("student=qwen0.5b", f"student.hf_id={folder}", "student.arch=null").student
    with pytest.raises(shapes.ShapeError) as err:
        shapes.model_shape(student, "student")
    assert str(err.value).endswith(f"and {folder}/config.json cannot be read (it is a mixture of experts (128 "
                                   "experts), and the plan's formulas are for dense models); give student.arch (its "
                                   "config.json facts) or a readable config.json (a local folder with one, the Hugging "
                                   "Face cache, or the Hub)")


def test_a_hub_model_reads_config_json_from_the_cache_at_its_keyed_revision(tmp_path, monkeypatch, hub_cached):
    """Offline, a Hub id's config.json comes from the Hugging Face cache's snapshot of the commit its keys hold."""
    snapshot = hub_cached / "models--Qwen--Qwen2.5-3B-Instruct" / "snapshots" / fake_commit("Qwen/Qwen2.5-3B-Instruct")
    llama_folder(snapshot, num_hidden_layers=36, hidden_size=2048, num_attention_heads=16, num_key_value_heads=2,
                 vocab_size=151936, max_position_embeddings=32768, intermediate_size=11008, tie_word_embeddings=True)
    student = compose_cfg("student=qwen3b", "student.arch=null").student
    arch, note = shapes.model_shape(student, "student")
    assert arch["params_b"] == 3.086 and arch["layers"] == 36
    assert note == (f"student shape from Qwen/Qwen2.5-3B-Instruct@{fake_commit('Qwen/Qwen2.5-3B-Instruct')} "
                    "config.json: 3.086B parameters")
    # the YAML's own block agrees with it: planned with the card's 3.09
    assert shapes.model_shape(compose_cfg("student=qwen3b").student, "student") == (
        OmegaConf.to_container(compose_cfg("student=qwen3b").student.arch), None)


def test_offline_a_hub_config_json_not_in_the_cache_is_known_missing_without_transformers(hub_cached):
    student = compose_cfg("student=qwen0.5b", "student.arch=null").student  # refs/main cached, no snapshot files
    commit = fake_commit("Qwen/Qwen2.5-0.5B-Instruct")
    assert shapes.read_config(student) == (
        None, f"Qwen/Qwen2.5-0.5B-Instruct@{commit} config.json is not in the Hugging Face cache (HF_HUB_OFFLINE=1)")
