"""Supervised fine-tuning of the student on a mixture (issue 5): labels, Trainer run, launch, save checks.

Public API (what ``mixgap.pipeline`` calls):

- :func:`checkpoint_spec` / :func:`build_checkpoint`: the ``train`` stage (:mod:`mixgap.stages.train.stage`);
- :func:`tokenize_conversation` -> :class:`TokenizedExample`: one example's ids and exact label mask
  (:mod:`mixgap.stages.train.labels`).

Submodules: ``labels`` (chat template, masks, over-length policy), ``trainer`` (the transformers
``Trainer`` run, packing, resume), ``launch`` (in-process vs ``torchrun``/SLURM command), ``checks``
(saved-weight check, generation config, LoRA merge). ``python -m mixgap.stages.train <job.json>`` runs one
training rank. Importing this package loads neither torch nor transformers.
"""

from mixgap.stages.train.labels import TokenizedExample, tokenize_conversation
from mixgap.stages.train.stage import build_checkpoint, checkpoint_spec

__all__ = ["TokenizedExample", "build_checkpoint", "checkpoint_spec", "tokenize_conversation"]
