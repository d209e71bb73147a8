"""The lines only a GPU node takes, run here with faked device facts up to the call that would reach CUDA, and the
exact arguments that call gets: the visible GPUs and their memory, the packing attention, the student's load
dtype, the scoring and hf engines' device and dtype, and the vLLM replicas' ``CUDA_VISIBLE_DEVICES`` split.

The lines that cannot run without a GPU (a kernel, NCCL, a CUDA allocation) are listed in
``docs/gpu-only-lines.md``; the vLLM engine's own calls are checked in ``test_vllm_api.py``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import transformers

from conftest import ROOT, compose_cfg
from fake_vllm import CLUSTER_API, fake_vllm, load_api, modules
from mixgap.core.config import to_container
from mixgap.plan import machine
from mixgap.stages import scoring
from mixgap.stages.backends import replica
from mixgap.stages.backends.hf import HFBackend
from mixgap.stages.backends.registry import load_backend
from mixgap.stages.train import packing, trainer
from mixgap.stages.train.stage import run_settings, train_job

FLASH = "flash_attention_2"


@pytest.fixture
def gpus(monkeypatch):
    """torch sees 8 CUDA GPUs of 80 GB (an H100 node); empty_cache is recorded, not run."""
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80e9))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    return emptied


def with_flash_attn(monkeypatch, installed: bool) -> None:
    """flash-attn installed (or not) as the packing module sees it; transformers' own probes are left alone."""
    real = importlib.util.find_spec

    def find(name, *args):
        return (object() if installed else None) if name == "flash_attn" else real(name, *args)

    monkeypatch.setattr(packing, "importlib", types.SimpleNamespace(util=types.SimpleNamespace(find_spec=find)))


class FakeModel:
    """What ``from_pretrained`` returns to a loader that moves the model to CUDA: records ``.to(device)``."""

    def __init__(self):
        self.moved_to, self.evaluated = [], False
        self.config = types.SimpleNamespace(max_position_embeddings=8192)
        self.generation_config = types.SimpleNamespace(eos_token_id=[2])

    def to(self, device):
        self.moved_to.append(device)
        return self

    def eval(self):
        self.evaluated = True
        return self


@pytest.fixture
def loads(monkeypatch):
    """``AutoModelForCausalLM.from_pretrained`` recorded: ``(path, kwargs)`` per call, a :class:`FakeModel` back."""
    calls = []

    def fake(path, **kwargs):
        calls.append((path, kwargs, FakeModel()))
        return calls[-1][2]

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    return calls


def test_device_facts_count_the_visible_gpus_and_take_the_smallest_memory(gpus, monkeypatch):
    assert machine.device_facts() == machine.DeviceFacts(8, 80.0)
    memory = [80e9, 80e9, 40e9]  # a mixed node: the smallest GPU bounds every layout
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=memory[i]))
    assert machine.device_facts() == machine.DeviceFacts(3, 40.0)


def test_packing_on_a_gpu_takes_flash_attention_only_when_flash_attn_is_installed(monkeypatch):
    with_flash_attn(monkeypatch, True)
    assert packing.attention_for(packing=True, on_gpu=True) == FLASH
    assert packing.attention_for(packing=True, on_gpu=False) == packing.PACKED_SDPA
    assert packing.attention_for(packing=False, on_gpu=True) is None
    with_flash_attn(monkeypatch, False)
    assert packing.attention_for(packing=True, on_gpu=True) == packing.PACKED_SDPA


def test_the_cluster_lock_has_no_flash_attn_so_gpu_packing_runs_sdpa_packed():
    """``pip install -c requirements/cluster.lock.txt -e .[gpu]`` brings no flash-attn: packed batches on the
    cluster use ``sdpa_packed`` (the same varlen semantics) unless flash-attn is installed beside it."""
    locked = [line.split("==")[0] for line in (ROOT / "requirements" / "cluster.lock.txt").read_text().splitlines()]
    assert not {"flash-attn", "flash_attn"} & set(locked)


def gpu_job(tmp_path, *overrides, gpus=8):
    cfg = compose_cfg(*overrides)
    run = run_settings(to_container(cfg.finetune_mode), gpus=gpus, env={"SLURM_GPUS_ON_NODE": str(gpus)})
    return run, train_job(run, "/models/student", cfg.student.chat_template, tmp_path / "work", tmp_path / "out")


@pytest.mark.parametrize(("overrides", "dtype", "attention"), [
    # LoRA, ZeRO-3: the base loads in bf16 (peft keeps the adapter in fp32), packing with flash-attn
    (["+experiment=long_vs_short", "student=qwen14b", "finetune_mode.packing=true"], torch.bfloat16, FLASH),
    # full SFT under ZeRO-3: DeepSpeed holds fp32 master weights, so the module loads in bf16; no packing
    (["+experiment=long_vs_short", "student=qwen3b"], torch.bfloat16, None),
    # full SFT without DeepSpeed: fp32 weights under bf16 autocast (pure-bf16 AdamW loses lr-1e-5 updates)
    (["+experiment=long_vs_short", "student=qwen3b", "finetune_mode.deepspeed=null", "finetune_mode.packing=true"],
     torch.float32, FLASH),
])
def test_the_student_loads_on_a_gpu_rank_in_its_dtype_and_attention(overrides, dtype, attention, gpus, loads,
                                                                    monkeypatch, tmp_path):
    with_flash_attn(monkeypatch, True)
    run, job = gpu_job(tmp_path, *overrides)
    assert run.subprocess and run.precision == "bf16" and run.world.nproc_per_node == 8
    if job.finetune["mode"] == "lora":  # peft wraps what was loaded: recorded, not run on the fake
        monkeypatch.setattr(trainer, "lora_config", lambda lora: ("lora", lora["r"]))
        monkeypatch.setitem(sys.modules, "peft", types.SimpleNamespace(get_peft_model=lambda m, c: (m, c)))
    model = trainer.load_student(job)
    path, kwargs, loaded = loads[0]
    assert path == "/models/student"
    assert kwargs == {"dtype": dtype, **({"attn_implementation": attention} if attention else {})}
    assert loaded.config.use_cache is False
    if job.finetune["mode"] == "lora":
        assert model == (loaded, ("lora", 8))


def test_scoring_loads_the_student_on_cuda_in_its_checkpoint_dtype(gpus, loads, monkeypatch):
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda path: f"tokenizer of {path}")
    model, tokenizer = scoring.load_student("/models/qwen0.5b")
    assert [(p, k) for p, k, _ in loads] == [("/models/qwen0.5b", {"dtype": "auto"})]
    assert model.moved_to == ["cuda"] and model.evaluated and tokenizer == "tokenizer of /models/qwen0.5b"


@pytest.mark.parametrize(("dtype", "loaded"), [("auto", "auto"), ("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_the_hf_engine_loads_on_cuda(dtype, loaded, gpus, loads, smollm2_path):
    engine = HFBackend(smollm2_path, dtype=dtype, batch_size=4)
    assert engine.device == "cuda"
    assert [k for _, k, _ in loads] == [{"dtype": loaded}]
    assert loads[0][2].moved_to == ["cuda"] and engine.max_model_len == 8192
    assert engine.stop_ids == [2] and engine.pad_id == 2  # SmolLM2: eos == <|im_end|>, also its pad
    engine.close()
    assert gpus == [True]  # the CUDA cache was returned


def test_vllm_replicas_on_an_8_gpu_node_each_get_their_tensor_parallel_gpus(gpus, monkeypatch, smollm2_tokenizer,
                                                                            tmp_path):
    """``data_parallel_size=2`` x ``tensor_parallel_size=4`` on a node whose 8 GPUs torch counts (no
    ``CUDA_VISIBLE_DEVICES``): replica 0 gets GPUs 0-3, replica 1 GPUs 4-7; each runs the replica program, whose
    engine (the fake vLLM of the cluster's API) is asked for 4-way tensor parallelism; the merge is in prompt order."""
    module, rec = fake_vllm(load_api(CLUSTER_API), smollm2_tokenizer)
    monkeypatch.setitem(sys.modules, "vllm", module)
    started = []

    class Replica:  # subprocess.Popen of one replica: run in this process, with the replica's environment seen
        def __init__(self, argv, env):
            started.append((argv[:3], env["CUDA_VISIBLE_DEVICES"], "OMP_NUM_THREADS" in env))
            self.code = replica.main(argv[3:])

        def wait(self, timeout=None):
            return self.code

    monkeypatch.setattr(subprocess, "Popen", Replica)
    env = {"PATH": "/usr/bin"}
    pool = load_backend("vllm", "/models/qwen32b", dtype="bfloat16", max_model_len=4096, tensor_parallel_size=4,
                        data_parallel_size=2, work_dir=tmp_path)
    pool.env = env
    out = pool.generate(["one", "two", "three"], max_new_tokens=16, temperature=0.0)
    python = [sys.executable, "-m", "mixgap.stages.backends.replica"]
    assert started == [(python, "0,1,2,3", False), (python, "4,5,6,7", False)]
    assert [(k["tensor_parallel_size"], k["dtype"], k["max_model_len"]) for k in rec.llm] == [(4, "bfloat16", 4096)] * 2
    assert "enforce_eager" not in rec.llm[0]  # CUDA graphs on
    # replica 0 had prompts 0 and 2, replica 1 prompt 1: the canned replies name the index within the replica
    assert [s[0].text for s in out] == ["answer 0.0", "answer 0.0", "answer 1.0"]
    request = json.loads(next(Path(tmp_path).glob("replicas-*/shard-1-of-2.request.json")).read_text())
    assert request["indices"] == [1] and request["load"]["tensor_parallel_size"] == 4


def test_vllm_replicas_each_serve_the_lora_adapter(gpus, monkeypatch, smollm2_tokenizer, tmp_path):
    """A LoRA student's tuned arm on 2 replicas x TP 4: the adapter folder travels in each replica's request
    (``load.adapter``), each engine starts with enable_lora and the adapter's rank and every generate carries the
    authors' ``LoRARequest("finetuned", 1, <adapter>)``."""
    module, rec = fake_vllm(load_api(CLUSTER_API), smollm2_tokenizer)
    for name, mod in modules(module).items():
        monkeypatch.setitem(sys.modules, name, mod)
    adapter = tmp_path / "checkpoint" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')

    class Replica:  # subprocess.Popen of one replica, run in this process
        def __init__(self, argv, env):
            self.code = replica.main(argv[3:])

        def wait(self, timeout=None):
            return self.code

    monkeypatch.setattr(subprocess, "Popen", Replica)
    pool = load_backend("vllm", "/models/qwen32b", dtype="bfloat16", tensor_parallel_size=4, data_parallel_size=2,
                        work_dir=tmp_path / "work", adapter=str(adapter))
    out = pool.generate(["one", "two", "three"], max_new_tokens=16, temperature=0.0)
    assert [s[0].text for s in out] == ["answer 0.0", "answer 0.0", "answer 1.0"]
    assert [(k["enable_lora"], k["max_lora_rank"], k["max_loras"], "max_model_len" in k) for k in rec.llm] == [
        (True, 8, 1, False)] * 2
    assert rec.lora == [{"lora_name": "finetuned", "lora_int_id": 1, "lora_path": str(adapter)}] * 2
    assert [kw["lora_request"] for _, kw in rec.generate] == [{"LoRARequest": rec.lora[0]}] * 2
    request = json.loads(next((tmp_path / "work").glob("replicas-*/shard-0-of-2.request.json")).read_text())
    assert request["load"]["adapter"] == str(adapter)


def test_a_gpu_lora_run_merges_its_adapter_in_bf16(tmp_path):
    """A GPU node trains in bf16, so the LoRA adapter is merged into a bf16 base and saved in bf16
    (``merge_lora(..., precision)`` in ``build_checkpoint``); the merge equals the fp32 one to bf16 rounding."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "base")
    adapter = get_peft_model(LlamaForCausalLM.from_pretrained(tmp_path / "base"),
                             LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"], init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "adapter")
    from mixgap.stages.train.checks import merge_lora

    merge_lora(str(tmp_path / "base"), tmp_path / "adapter", tmp_path / "bf16", "bf16")
    merge_lora(str(tmp_path / "base"), tmp_path / "adapter", tmp_path / "fp32", "fp32")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    bf16 = LlamaForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto").model.layers[0].self_attn.q_proj.weight
    fp32 = LlamaForCausalLM.from_pretrained(tmp_path / "fp32").model.layers[0].self_attn.q_proj.weight
    base = LlamaForCausalLM.from_pretrained(tmp_path / "base").model.layers[0].self_attn.q_proj.weight
    assert bf16.dtype == torch.bfloat16 and (fp32 - base).abs().max().item() > 1e-2  # the adapter moved the weights
    # three bf16 roundings (the base loaded, the delta B @ A x alpha/r, their sum), each within 2^-8 of the
    # operands' size (8 significant bits): at most 3 x 2^-8 < 2^-6 of |base| + |delta| from the fp32 merge
    delta = (fp32 - base).abs()
    assert torch.all((bf16.float() - fp32).abs() <= 2**-6 * (base.abs() + delta) + 1e-6)
    assert (bf16 - base.to(torch.bfloat16)).abs().max().item() > 1e-2  # the bf16 model holds the merged adapter


def test_the_gpu_only_list_names_real_lines_and_real_tests():
    """``docs/gpu-only-lines.md``: every ``file:first-last`` (and a bare ``first-last`` after it, same file) is inside
    its file, every ``test_*.py::name`` (and a bare ``::name`` after it, same file) is a test there."""
    import re

    doc = (ROOT / "docs" / "gpu-only-lines.md").read_text()
    ranges, path = [], None
    for m in re.finditer(r"`(?:((?:mixgap/[\w/]+/)?\w+\.py):)?(\d+)(?:-(\d+))?`", doc):
        path = m.group(1) or path
        ranges.append((path, int(m.group(2)), int(m.group(3) or m.group(2))))
    assert len(ranges) >= 25
    for name, first, last in ranges:
        files = [ROOT / name] if name.startswith("mixgap/") else list((ROOT / "mixgap").rglob(name))
        assert len(files) == 1, name
        assert 1 <= first <= last <= len(files[0].read_text().splitlines()), (name, first, last)
    tests, name = [], None
    for m in re.finditer(r"(test_\w+\.py)?::(test_\w+)", doc):
        name = m.group(1) or name
        tests.append((name, m.group(2)))
    assert len(tests) >= 10
    for name, function in tests:
        assert f"def {function}(" in next((ROOT / "tests").rglob(name)).read_text(), f"{name}::{function}"
