"""The recipes' Trainer classes: transformers' own, with evaluation always in dataset order.

transformers 5 length-groups the *evaluation* set too when ``--train_sampling_strategy group_by_length`` is on
(``Trainer._get_eval_sampler`` returns a seeded ``LengthGroupedSampler``, huggingface/transformers#33514), so
``predict()`` returns predictions in a shuffled order. Every recipe pairs predictions with its examples by
position (QA windows with their contexts, SRL tokens with their words, generated text with its source), so
grouping at evaluation would silently score and write the wrong pairs. Training keeps the grouping; evaluation
on one process runs sequentially (under DDP the Trainer's own distributed order stands, as before).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import SequentialSampler
from transformers.trainer_utils import has_length

from . import safety  # the recipes' Trainers keep their arguments as redacted JSON (recipes/core/safety.py)

__all__ = ["ForgeTrainer", "ForgeSeq2SeqTrainer"]


class _OrderedEvaluation:
    """Mixin: evaluation / prediction batches follow the dataset's order."""

    def _get_eval_sampler(self, eval_dataset: Any):
        if eval_dataset is not None and has_length(eval_dataset) and self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)


class ForgeTrainer(_OrderedEvaluation, safety.ForgeTrainer):
    """``recipes.core.safety.ForgeTrainer`` with evaluation in dataset order (also under ``group_by_length``)."""


class ForgeSeq2SeqTrainer(_OrderedEvaluation, safety.ForgeSeq2SeqTrainer):
    """``recipes.core.safety.ForgeSeq2SeqTrainer`` with evaluation in dataset order (also under ``group_by_length``)."""
