"""Where the jobs of a sweep differ from the authors' code: the training recipe in force (which of their configs
the fine-tuning settings follow) and one line per remaining difference, for the report's Settings section.

The authors' code is ``Small-Model-Gap/Small-Model-Learnability-Gap`` at commit 814cf97 (:data:`AUTHORS`): their
LLaMA-Factory 0.9.2 configs (``LLaMA-Factory/exp/``), templates and processors, their lm-evaluation-harness scripts
(``test.sh``, ``test_lora.sh``) and scorer (``math_metric_llm_eval_general.py``). Each difference is printed only when
the jobs' own fields show it (a job's ``fields``: its config snapshot, ``{dotted key: JSON value}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

AUTHORS = "`Small-Model-Gap/Small-Model-Learnability-Gap` at 814cf97"

#: (recipe name, its fields): the configs a job's fine-tuning settings can follow, first match wins
RECIPES = (
    ("released long/short-CoT configs (MATH_{long,short}_CoT.yaml: 8,192 cut as LLaMA-Factory, per-device loss)",
     {"batch_unit": "examples", "max_seq_len": 8192, "overlength": "truncate", "loss_normalization": "per_device"}),
    ("released Mix config (MATH_mix.yaml: 80 packed sequences, 4,096 cut as LLaMA-Factory)",
     {"batch_unit": "packed_sequences", "max_seq_len": 4096, "overlength": "truncate", "global_batch_size": 80}),
    ("the paper's text (Table 5: 16,384, over-length dropped)",
     {"batch_unit": "examples", "max_seq_len": 16384, "overlength": "drop"}),
)


def _field(job: Any, key: str) -> Any:
    return json.loads(job.fields[key]) if key in job.fields else None


def recipe_of(job: Any) -> str:
    """The recipe (:data:`RECIPES`) a job's ``finetune_mode`` follows, else ``own settings (see the columns)``."""
    for name, values in RECIPES:
        if all(_field(job, f"finetune_mode.{k}") == v for k, v in values.items()):
            return name
    return "own settings (see the columns)"


def _any(jobs: Sequence[Any], key: str, test: Callable[[Any], bool]) -> bool:
    return any(key in j.fields and test(_field(j, key)) for j in jobs)


def _benchmarks(jobs: Sequence[Any]) -> set[str]:
    return {str(b) for j in jobs for b in j.identity.get("benchmarks", [])}


def _cut_differs(job: Any) -> bool:
    """A job that trains with a cut other than the released configs' (8,192 / 4,096 with LLaMA-Factory's cut)."""
    if "finetune_mode.max_seq_len" not in job.fields:
        return False
    packed = _field(job, "finetune_mode.batch_unit") == "packed_sequences"
    return (_field(job, "finetune_mode.overlength") != "truncate"
            or _field(job, "finetune_mode.max_seq_len") != (4096 if packed else 8192))


def lora_evaluation(job: Any) -> tuple[str, int | None]:
    """How a LoRA job's fine-tuned arm was evaluated: (``eval.lora_serving``, its context ``eval.lora_max_model_len``,
    None: the model's own). A job from before those fields was evaluated merged at ``eval.max_model_len``."""
    if "eval.lora_serving" not in job.fields:
        return "merged", _field(job, "eval.max_model_len")
    return _field(job, "eval.lora_serving"), _field(job, "eval.lora_max_model_len")


def _lora_evaluation(lora: Sequence[Any]) -> list[str]:
    """The differences of LoRA jobs' fine-tuned evaluation (:func:`lora_evaluation`) from the authors'
    ``test_lora.sh``: vLLM with ``enable_lora=True`` and ``LoRARequest("finetuned", 1, path)`` on every request, no
    ``max_model_len`` (the model's own context), vLLM's default ``max_lora_rank`` 16."""
    served = [lora_evaluation(j) for j in lora]
    lines = []
    if any(how == "merged" for how, _ in served):
        lines.append("**LoRA merged**: their `test_lora.sh` serves the adapter through vLLM's LoRA (`enable_lora`, a "
                     "`LoRARequest` on every request: the base weights plus the low-rank product); `eval.lora_serving="
                     "merged` evaluates the weights with the adapter merged in, which round differently. "
                     "`eval.lora_serving=adapter` serves it their way.")
    contexts = sorted({context for _, context in served} - {None})
    if contexts:
        lines.append("**LoRA context**: their `test_lora.sh` sets no `max_model_len`, so vLLM runs at the model's own "
                     "context (32,768 for Qwen2.5: the full 16,000 new tokens after the prompt); ours caps prompt + "
                     f"completion at {', '.join(f'{c:,}' for c in contexts)} tokens. `eval.lora_max_model_len=null` "
                     "is theirs.")
    if any(how == "adapter" for how, _ in served):
        lines.append("**LoRA max_lora_rank**: their engine reserves vLLM's default rank 16 for the adapter; ours the "
                     "trained rank (`finetune_mode.lora.r`, rounded up to a rank vLLM allows), which sizes vLLM's LoRA "
                     "buffers, not the adapter.")
    return lines


def differences(jobs: Sequence[Any]) -> list[str]:
    """One Markdown line per difference between these jobs and the authors' code, each starting with its bold
    name (``**Training cut**``, ``**End-of-turn newline**``, ...); the always-true ones last."""
    lines = []
    trains = [j for j in jobs if "finetune_mode.mode" in j.fields]
    cut = [j for j in trains if _cut_differs(j)]
    if cut:
        lengths = sorted({_field(j, "finetune_mode.max_seq_len") for j in cut})
        how = sorted({_field(j, "finetune_mode.overlength") for j in cut})
        lines.append(f"**Training cut**: max length {', '.join(f'{n:,}' for n in lengths)} with overlength="
                     f"{', '.join(how)}; the released configs cut every example at 8,192 tokens (long/short CoT) or "
                     "4,096 (Mix) with LLaMA-Factory's `infer_seqlen` (a cut trace loses its answer and end-of-turn "
                     "token). `finetune_mode/recipe=released` restores theirs.")
    examples = [j for j in trains if _field(j, "finetune_mode.batch_unit") != "packed_sequences"]
    if _any(examples, "finetune_mode.loss_normalization", lambda v: v == "global_tokens"):
        lines.append("**Loss normalisation**: global_tokens weighs every supervised token of the step alike; their "
                     "transformers <= 4.49 averaged each device's micro-batch mean token loss (per_device).")
    if _any(examples, "finetune_mode.loss_normalization", lambda v: v == "per_device"):
        lines.append("**Loss groups**: per_device averages micro-batches of `per_device_batch_size` examples as the job "
                     "realises them; their 4 GPUs x 2 examples are matched on 1, 2 or 4 GPUs at per-device 2, but a global "
                     "batch of 8 on 8 GPUs runs 1 example per GPU, so each example is its own mean there.")
    if _any(trains, "finetune_mode.batch_unit", lambda v: v == "packed_sequences"):
        lines.append("**Mix batch**: their step is 80 packed sequences (5 per device x 4 accumulation x 4 GPUs); ours "
                     "trains the same number of examples per step (`mixgap.stages.train.batching.packed_batch`) in "
                     "padding-free micro-batches of examples, with the loss over the step's tokens (global_tokens, the "
                     "nearest to their per-device mean over 20 packs).")
    if _any(trains, "student.family", lambda v: v != "llama"):
        lines.append("**End-of-turn newline**: LLaMA-Factory's `qwen` template supervises the newline after "
                     "`<|im_end|>` (its target is `response<|im_end|>\\n`); we supervise up to the end-of-turn token "
                     "and keep the newline as input (label -100).")
    if _any(trains, "student.family", lambda v: v == "llama"):
        lines.append("**Llama system header**: LLaMA-Factory's `llama3` template writes no system block; the students' "
                     "own Llama-3.x templates always write a dated system header (`finetune_mode.system: \"\"` keeps "
                     "only that header).")
    if trains:
        lines.append("**Validation split**: their configs hold out 1% of the examples (`val_size: 0.01`) and train on "
                     "the other 99%; we train on all.")
    if _any(trains, "mix.problems", lambda v: v == "intersection"):
        lines.append("**Problems of the pure arms**: we train every arm on the problems both pools kept "
                     "(`mix.problems=intersection`), so w changes the style, not the problems; their pure arms train on "
                     "each pool's own problems (every problem that teacher solved).")
    lora = [j for j in trains if _field(j, "finetune_mode.mode") == "lora"]
    if lora:
        lines.append("**LoRA settings**: the paper's LoRA values (its Table 6) are not in its code; ours are "
                     "LLaMA-Factory's defaults (see the LoRA columns).")
    lines += _lora_evaluation(lora)
    bench = _benchmarks(jobs)
    if {"amc23", "olympiadbench"} & bench:
        lines.append("**Gold strings**: their AMC23 golds are JSON floats (`27.0`), on which `strip_string` raises, so "
                     "their rule never matches an AMC answer and their judge sees every boxed one; their OlympiadBench "
                     "gold is `final_answer[0]` with its `$...$`, so 266 of 675 can never match their rule. Ours are "
                     "the kit's or the Hub's strings.")
    if "math" in bench:
        lines.append("**MATH pooling**: their `test.sh` writes `hendrycks_math_500` and then `hendrycks_math` samples "
                     "into one folder and their scorer reads every `samples_hendrycks_math*` file, so their MATH score "
                     "pools MATH-5k and MATH500 (5,500 rows, the 500 counted twice); ours scores the 5,000.")
    if _any(jobs, "eval.judge.max_model_len", lambda v: v is not None):
        lines.append("**Judge context**: their judge runs vLLM with the model's own context (32,768); this run's "
                     "`eval.judge.max_model_len` is set, so a longer judge prompt is `prompt_too_long` (wrong).")
    if _any(jobs, "mix.strong.backend", lambda v: v != "dataset") or _any(jobs, "mix.weak.backend", lambda v: v != "dataset"):
        lines.append("**Teacher pools**: the teachers' sampling settings are in neither the paper nor its code (ours: "
                     "model-card values, `conf/teacher/*.yaml`), and our pools are generated here and rejection-sampled "
                     "by our grader; theirs are the released UWNSL sets (`+experiment=released_pools` imports those).")
    if jobs:
        lines.append("**Engines**: their evaluation ran vLLM 0.6.3 with transformers <= 4.49 and their training "
                     "FlashAttention-2; ours runs the pinned vLLM 0.33.0 and transformers 5.20.2, so greedy outputs can "
                     "differ in floating point.")
    return lines


def differences_markdown(jobs: Sequence[Any]) -> str:
    """The recipe in force per fine-tuning setting (:func:`recipe_of`) and the :func:`differences` list, as Markdown;
    ``""`` for no jobs."""
    if not jobs:
        return ""
    recipes = sorted({recipe_of(j) for j in jobs if "finetune_mode.mode" in j.fields})
    head = f"Training recipe in force: {'; '.join(recipes)}.\n\n" if recipes else ""
    items = "\n".join(f"- {line}" for line in differences(jobs))
    return f"{head}Where these runs differ from the authors' code ({AUTHORS}):\n\n{items}"
