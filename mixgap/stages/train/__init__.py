"""Supervised fine-tuning of the student on a mixture: labels, Trainer run, launch, save checks.

Submodules: ``stage`` (the train stage: :func:`~mixgap.stages.train.stage.checkpoint_spec` and its build),
``labels`` (chat template, exact label masks, over-length policy), ``pairs`` (the over-length test of
``finetune_mode.overlength=drop_pair``, applied by the mixture), ``batching`` (the batch layout of a global
batch), ``trainer`` (the transformers ``Trainer`` run, packing, resume), ``launch`` (in-process vs
``torchrun``/SLURM command), ``checks`` (saved-weight check, generation config, LoRA merge).
``python -m mixgap.stages.train <job.json>`` runs one training rank. Importing this package loads nothing.
"""
