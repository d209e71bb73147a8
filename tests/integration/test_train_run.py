"""The train stage end to end on the CPU: in-process full and LoRA, DeepSpeed ZeRO-2/3 under torchrun, kill + resume.

A tiny random Llama (2 layers, SmolLM2's tokenizer and vocabulary) keeps each run to seconds; its
generation config has a base model's ``eos = <|endoftext|>`` so the end-of-turn fix is visible.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose_cfg
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.stages.train.stage import build_checkpoint, checkpoint_spec

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MIXTURE = FIXTURES / "train_mixture"
# 8 of the fixture's 10 rows fit in 200 tokens with the paper prompt (t-09, t-10: long traces, dropped);
# 4 examples per optimiser step -> 2 steps per epoch; checkpoints at steps 3 and 6.
RUN = ("student=smollm2_135m", "finetune_mode.max_steps=6", "finetune_mode.max_seq_len=200",
       "finetune_mode.per_device_batch_size=2", "finetune_mode.global_batch_size=4",
       "finetune_mode.logging_steps=1", "finetune_mode.save_steps=3", "finetune_mode.learning_rate=1e-3")


class Recorder(NullTracker):
    def __init__(self):
        self.logs: list[tuple[int, dict]] = []
        self.summaries: dict = {}

    def log(self, metrics, step=None):
        self.logs.append((step, dict(metrics)))

    def summary(self, values):
        self.summaries.update(values)


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory, smollm2_path):
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_student")
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=0, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    GenerationConfig(bos_token_id=1, eos_token_id=0, pad_token_id=2).save_pretrained(path)
    AutoTokenizer.from_pretrained(smollm2_path).save_pretrained(path)
    return str(path)


def build(root: Path, student: str, *overrides: str, tracker=None, launch: str | None = None) -> tuple[Path, dict]:
    from omegaconf import open_dict

    cfg = compose_cfg(*RUN, *overrides)
    if launch is not None:  # finetune_mode.launch (proposed field); open_dict also adds it where absent
        with open_dict(cfg.finetune_mode):
            cfg.finetune_mode.launch = launch
    store = Store(root)
    spec = checkpoint_spec(cfg.finetune_mode, "student-test", "mixture-test")
    out = store.get_or_build(spec, lambda o, w: build_checkpoint(cfg, MIXTURE, student, o, w, tracker or NullTracker()))
    return out, store.manifest(spec.key)["counts"]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, tiny_student):
    tracker = Recorder()
    out, counts = build(tmp_path_factory.mktemp("local"), tiny_student, tracker=tracker)
    return out, counts, tracker


def test_full_sft_in_process(local_run, tiny_student):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, counts, tracker = local_run
    assert counts["dropped"] == {"strong": 2, "weak": 0} and counts["kept"] == {"strong": 2, "weak": 6}
    assert counts["truncated"] == {"strong": 0, "weak": 0} and counts["examples"] == 8
    assert (counts["steps"], counts["world_size"], counts["launch"], counts["precision"]) == (6, 1, "local", "fp32")
    assert counts["deepspeed"] is None  # zero3 is configured but ignored in-process on a CPU
    assert counts["end_of_turn_token"] == "<|im_end|>"
    # the base model's eos was <|endoftext|> (0): the checkpoint now stops on <|im_end|> (2) first
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, 0]
    assert counts["eos_token_id"] == [2, 0]
    # the tracker got the dropped counts, then loss/lr every step and throughput
    assert tracker.logs[0] == (0, {"train/examples": 8, "train/tokens": counts["tokens"], "train/dropped_strong": 2,
                                   "train/dropped_weak": 0, "train/truncated_strong": 0, "train/truncated_weak": 0})
    steps = [(s, m) for s, m in tracker.logs[1:]]
    assert [s for s, _ in steps] == [1, 2, 3, 4, 5, 6]
    assert all({"train/loss", "train/learning_rate"} <= set(m) for _, m in steps)
    assert all(m["train/tokens_per_s"] > 0 for _, m in steps[1:])
    assert counts["final_loss"] == steps[-1][1]["train/loss"] < steps[0][1]["train/loss"]
    assert tracker.summaries["train/final_loss"] == counts["final_loss"]
    # tokenizer beside the weights, with the chat template in use; the weights moved
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith("<|im_start|>")
    trained, initial = (AutoModelForCausalLM.from_pretrained(p) for p in (out, tiny_student))
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, initial.model.layers[0].mlp.up_proj.weight)
    assert counts["weights"]["elements"] == sum(p.numel() for p in initial.parameters())
    assert not (out / "training_args.bin").exists()


def test_packed_training_follows_the_padded_run(tmp_path, tiny_student, local_run):
    tracker = Recorder()
    _out, counts = build(tmp_path, tiny_student, "finetune_mode.packing=true", tracker=tracker)
    packed = [m["train/loss"] for s, m in tracker.logs if s > 0]
    padded = [m["train/loss"] for s, m in local_run[2].logs if s > 0]
    assert packed == pytest.approx(padded, rel=1e-4)  # same batches, same loss at every step
    assert counts["tokens_per_s"] > 0


def test_lora_sft_is_merged(tmp_path, tiny_student):
    import torch
    from transformers import AutoModelForCausalLM

    out, counts = build(tmp_path, tiny_student, "finetune_mode=lora", "finetune_mode.max_steps=2")
    assert counts["steps"] == 2 and not (out / "adapter_config.json").exists()
    merged, initial = (AutoModelForCausalLM.from_pretrained(p) for p in (out, tiny_student))
    q_merged, q_initial = merged.model.layers[1].self_attn.q_proj.weight, initial.model.layers[1].self_attn.q_proj.weight
    assert q_merged.shape == q_initial.shape and not torch.equal(q_merged, q_initial)
    # LoRA leaves the non-target weights alone
    assert torch.equal(merged.model.embed_tokens.weight, initial.model.embed_tokens.weight)
    assert counts["weights"]["elements"] == sum(p.numel() for p in initial.parameters())


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_zero_under_torchrun(tmp_path, tiny_student, local_run, stage):
    pytest.importorskip("deepspeed")
    tracker = Recorder()
    out, counts = build(tmp_path, tiny_student, f"finetune_mode.deepspeed={stage}", tracker=tracker, launch="torchrun")
    assert (counts["launch"], counts["deepspeed"], counts["world_size"], counts["steps"]) == ("torchrun", stage, 1, 6)
    # the same computation as the in-process run, partitioned by ZeRO: the same losses
    assert counts["final_loss"] == pytest.approx(local_run[1]["final_loss"], rel=1e-4)
    assert [s for s, _ in tracker.logs] == [0, 1, 2, 3, 4, 5, 6]  # tailed from the subprocess's metrics file
    # gathered full weights, not partition placeholders (ZeRO's state dict also writes the tied lm_head copy)
    assert counts["weights"]["elements"] >= local_run[1]["weights"]["elements"]
    import torch
    from transformers import AutoModelForCausalLM

    zero, local = (AutoModelForCausalLM.from_pretrained(p) for p in (out, local_run[0]))
    for (name, a), (_, b) in zip(zero.named_parameters(), local.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_sigkill_mid_training_then_resume(tmp_path, tiny_student, local_run):
    """Killed at step 4, resumed from checkpoint-3: the same run, and the same final loss as without the kill.

    ``logging_steps=6`` makes the final loss the mean over steps 1-6; the Trainer's own last log entry after the
    resume averages only steps 4-6 (it restarts its window at the resume step).
    """
    run = (*RUN, "finetune_mode.logging_steps=6")  # not in the key: the same checkpoint as RUN's
    script = [sys.executable, str(FIXTURES / "train_resume_job.py"), str(tmp_path), tiny_student]
    killed = subprocess.run([*script, "4", *run], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    store = Store(tmp_path)
    key = checkpoint_spec(compose_cfg(*RUN).finetune_mode, "student-test", "mixture-test").key
    assert not store.is_done(key)
    trainer_dir = tmp_path / ".work" / key / "trainer"
    assert sorted(p.name for p in trainer_dir.glob("checkpoint-*")) == ["checkpoint-3"]
    # every step's loss so far is saved with the checkpoint: steps 1-3, as the uninterrupted run logged them
    per_step = {s: m["train/loss"] for s, m in local_run[2].logs[1:]}
    saved = json.loads((trainer_dir / "checkpoint-3" / "step_losses.json").read_text())
    assert sorted(saved) == ["1", "2", "3"]
    assert [saved[str(s)] for s in (1, 2, 3)] == pytest.approx([per_step[s] for s in (1, 2, 3)], rel=1e-4)
    resumed = subprocess.run([*script, "-1", *run], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = resumed.stdout.strip().splitlines()
    counts = json.loads(lines[-1])
    assert counts["resumed_from"].endswith("checkpoint-3") and counts["steps"] == 6
    assert store.is_done(key) and not (tmp_path / ".work" / key).exists()
    # the same run uninterrupted, logging_steps=6 too: its final loss is the interrupted run's
    _, whole = build(tmp_path / "whole", tiny_student, "finetune_mode.logging_steps=6")
    assert whole["resumed_from"] is None
    print("final loss: interrupted", counts["final_loss"], "uninterrupted", whole["final_loss"])
    assert counts["final_loss"] == pytest.approx(whole["final_loss"], rel=1e-4)  # the resumed steps are the same steps
    assert whole["final_loss"] == pytest.approx(sum(per_step.values()) / 6, rel=1e-4)  # steps 1-6
    # what the Trainer itself logged last after the resume: steps 4-6 only, another number
    (last_logged,) = [m["train/loss"] for _, m in json.loads(next(x for x in lines if x.startswith("LOGS "))[5:])
                      if "train/loss" in m]
    assert last_logged == pytest.approx(sum(per_step[s] for s in (4, 5, 6)) / 3, rel=0.01)
    assert last_logged < counts["final_loss"] - 0.1  # measured: 10.374 vs 10.514 (the loss falls over the run)


def test_packed_batch_and_drop_pair_through_the_train_stage(tmp_path, tiny_student):
    """batch_unit=packed_sequences turns the packed global batch into examples per step; drop_pair draws the
    mixture from its pools without the 2 over-length problems (t-09, t-10), at the exact weight, and the train
    stage trains on exactly that mixture."""
    from omegaconf import OmegaConf

    from mixgap.stages import mix
    from mixgap.stages.data import read_jsonl
    from mixgap.stages.train import batching, pairs

    rows = read_jsonl(MIXTURE / "mixture.jsonl")
    pools = {}
    for role in ("strong", "weak"):  # both pools hold every problem (same responses: the policy is what is tested)
        pools[role] = tmp_path / role
        pools[role].mkdir()
        (pools[role] / "pool.jsonl").write_text("".join(json.dumps({**r, "teacher": role}) + "\n" for r in rows))
    cfg = compose_cfg(*RUN, "finetune_mode.max_steps=1", "finetune_mode.overlength=drop_pair", "mix.weight=0.5",
                      "finetune_mode.batch_unit=packed_sequences", "finetune_mode.pack_len=400",
                      "finetune_mode.global_batch_size=2")
    store = Store(tmp_path / "store")
    overlong = pairs.overlong_test(tiny_student, cfg.student.chat_template, cfg.finetune_mode)
    mix_spec = mix.mixture_spec(cfg.mix, "pool-strong", "pool-weak", cfg.finetune_mode, "student-test")
    mixture = store.get_or_build(mix_spec, lambda o, _w: mix.build_mixture(pools["strong"], pools["weak"], cfg.mix, o, overlong))
    assert store.manifest(mix_spec.key)["counts"]["drop_pair"] == {
        "problems": 10, "excluded": 2, "overlong": {"strong": 2, "weak": 2}, "N": 8, "strong": 4, "weak": 4}
    spec = checkpoint_spec(cfg.finetune_mode, "student-test", mix_spec.key)
    store.get_or_build(spec, lambda o, w: build_checkpoint(cfg, mixture, tiny_student, o, w, NullTracker()))
    counts = store.manifest(spec.key)["counts"]
    assert counts["kept"] == {"strong": 4, "weak": 4} and counts["dropped"] == {"strong": 0, "weak": 0}
    from transformers import AutoTokenizer

    from mixgap.stages.data import fill_prompt
    from mixgap.stages.train.labels import tokenize_conversation

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    lengths = [len(tokenize_conversation(tokenizer, fill_prompt(cfg.finetune_mode.prompt, r["problem"]), r["response"],
                                         cfg.finetune_mode.get("system")).input_ids)
               for r in rows if r["id"] not in ("t-09", "t-10")]
    assert max(lengths) <= 200
    assert counts["batch"] == batching.packed_batch(lengths, 400, 2, 2)  # micro-batch = 2 per device x 1 process
    assert counts["batch"]["unit"] == "packed_sequences" and counts["batch"]["examples_per_step"] % 2 == 0
    assert OmegaConf.select(cfg, "finetune_mode.global_batch_size") == 2  # the job's config is not rewritten
