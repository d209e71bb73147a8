"""The over-length test of ``finetune_mode.overlength=drop_pair``: which problems a student cannot train on.

Why: under ``overlength=drop`` an example longer than ``max_seq_len`` is dropped after the mixture is drawn.
Long-CoT (strong) responses are the long ones, so a job labelled w = 0.2 trains on fewer than 0.2 x N strong
examples, and each weight trains on a different problem set. ``drop_pair`` removes, before the mix is drawn,
every problem whose response is over-length in *either* pool (:func:`mixgap.stages.mix.drop_pair_ids`), so every
weight of a sweep trains on the same problems and the realised weight is exact (``floor(w N' + 0.5) / N'``).
The mixture applies it, so the stored mixture is exactly what is trained; the test depends on the student's
tokenizer, chat template, training turn and ``max_seq_len``, which is why such a mixture's key names the student
(:func:`mixgap.stages.mix.mixture_spec`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mixgap.stages.data import fill_prompt
from mixgap.stages.train.labels import set_chat_template, tokenize_conversation


def overlong_ids(pool_rows: dict[str, dict[str, Any]], ids: set[str], tokenizer: Any, prompt: str,
                 max_seq_len: int, system: str | None = None) -> set[str]:
    """The ids among ``ids`` whose response in this pool tokenises (with the training turn, chat template and
    end-of-turn token, as in training: ``labels.tokenize_conversation``) to more than ``max_seq_len`` tokens."""
    out = set()
    for pid in ids & set(pool_rows):
        row = pool_rows[pid]
        example = tokenize_conversation(tokenizer, fill_prompt(prompt, row["problem"]), row["response"], system)
        if len(example.input_ids) > max_seq_len:
            out.add(pid)
    return out


def overlong_test(student_path: str, chat_template: str, finetune_cfg: Any) -> Callable[[dict, set[str]], set[str]]:
    """``test(pool_rows, ids) -> over-length ids`` for the student at ``student_path`` under ``finetune_cfg``
    (``prompt``, ``system``, ``max_seq_len``); loads the student's tokenizer once."""
    from transformers import AutoTokenizer  # heavy: transformers, only for drop_pair mixtures

    tokenizer = set_chat_template(AutoTokenizer.from_pretrained(student_path), chat_template)
    prompt, system, limit = str(finetune_cfg.prompt), finetune_cfg.get("system"), int(finetune_cfg.max_seq_len)
    return lambda rows, ids: overlong_ids(rows, ids, tokenizer, prompt, limit, system)
