"""finetune_mode.loss_normalization on the real SmolLM2-135M-Instruct, in one process with the pinned transformers:
one optimiser step of 2 micro-batches (per-device 2, accumulation 2) whose token counts differ.

- per_device (the authors' transformers <= 4.49): the step's loss is the mean of the two micro-batches' own mean
  token losses;
- global_tokens (transformers 5.20's default): the token-weighted mean, every supervised token of the step alike.

The expected values come from a second copy of the model, loaded fresh, run on the same micro-batches the Trainer
fed (recorded by a spy on ``training_step``): ``model(**batch).loss`` is that micro-batch's mean token loss.
Measured (2026-12-07): micro-batches of 113 and 25 supervised tokens, per_device 1.83639 (= the mean of the two
means, to 1e-7), global_tokens 1.58854 (= the token-weighted mean); ~30 s per mode on 2 cores."""

from __future__ import annotations

import pytest

from conftest import compose_cfg
from mixgap.core.config import to_container
from mixgap.stages.train import loss, trainer
from mixgap.stages.train.labels import tokenize_conversation
from mixgap.stages.train.packing import make_collator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RESPONSES = ("4.", "It is 2 + 2 = 4, so the answer is \\boxed{4}.",
             "Let me think. " * 4 + "The answer is \\boxed{4}.", "Wait, let me check that again. " * 10 + "\\boxed{4}")


def _step(tmp_path, smollm2_path, smollm2_tokenizer, mode):
    """One optimiser step under ``mode``: (the loss it backpropagated, the two micro-batches it fed)."""
    import datasets
    from transformers import AutoModelForCausalLM

    examples = [tokenize_conversation(smollm2_tokenizer, "What is 2+2?", r) for r in RESPONSES]
    ft = {**to_container(compose_cfg("student=smollm2_135m").finetune_mode), "per_device_batch_size": 2,
          "global_batch_size": 4, "max_steps": 1, "learning_rate": 1e-5, "gradient_checkpointing": False,
          "logging_steps": 1, "save_steps": 1000, "loss_normalization": mode}
    job = trainer.TrainJob(student_path=smollm2_path, chat_template=None, finetune=ft, examples_path="",
                           trainer_dir=str(tmp_path / mode), save_dir="", log_path="", result_path="")
    args = trainer.training_arguments(job, use_cpu=True)
    assert args.gradient_accumulation_steps == 2 and args.average_tokens_across_devices == (mode == "global_tokens")
    data = datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]})
    run = trainer._recording_trainer()(model=AutoModelForCausalLM.from_pretrained(smollm2_path), args=args,
                                       train_dataset=data, processing_class=smollm2_tokenizer,
                                       data_collator=make_collator(smollm2_tokenizer, False))
    loss.apply_loss_normalization(run, mode)
    fed, step = [], run.training_step

    def spy(model, inputs, num_items_in_batch=None):
        fed.append({k: v.clone() for k, v in inputs.items()})
        out = step(model, inputs, num_items_in_batch)
        fed[-1]["returned"] = float(out)
        return out

    run.training_step = spy
    run.train()
    assert len(fed) == 2
    return sum(b.pop("returned") for b in fed), fed


def _reference(smollm2_path, batches):
    """Each micro-batch's mean token loss and supervised token count, from a fresh copy of the model."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    with torch.no_grad():
        means = [float(model(**b).loss) for b in batches]
    return means, [int((b["labels"][..., 1:] != -100).sum()) for b in batches]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["per_device", "global_tokens"])
def test_loss_normalization_on_two_micro_batches(tmp_path, smollm2_path, smollm2_tokenizer, mode):
    got, batches = _step(tmp_path, smollm2_path, smollm2_tokenizer, mode)
    means, tokens = _reference(smollm2_path, batches)
    assert tokens[0] != tokens[1]  # the 4 responses' lengths differ so that no pairing gives equal micro-batches
    per_device, global_tokens = sum(means) / 2, sum(m * n for m, n in zip(means, tokens, strict=True)) / sum(tokens)
    assert abs(per_device - global_tokens) > 1e-2  # the two rules give different losses on these batches
    assert got == pytest.approx(per_device if mode == "per_device" else global_tokens, rel=1e-5, abs=1e-6)


def test_bad_loss_normalization_is_named():
    with pytest.raises(ValueError, match="^finetune_mode.loss_normalization='tokens' is not allowed; choose one of "
                                         "global_tokens, per_device$"):
        loss.average_tokens_across_devices("tokens")
