"""The recipes' Trainer classes: transformers' own, with evaluation always in dataset order.

transformers 5 length-groups the *evaluation* set too when ``--train_sampling_strategy group_by_length`` is on
(``Trainer._get_eval_sampler`` returns a seeded ``LengthGroupedSampler``, huggingface/transformers#33514), so
``predict()`` returns predictions in a shuffled order. Every recipe pairs predictions with its examples by
position (QA windows with their contexts, SRL tokens with their words, generated text with its source), so
grouping at evaluation would silently score and write the wrong pairs. Training keeps the grouping; evaluation
on one process runs sequentially (under DDP the Trainer's own distributed order stands, as before).

Under a time budget (``--max_train_minutes``) the learning-rate schedule follows the budget: a linear or cosine
schedule decays over the minutes the run has, reaching zero when the budget ends. transformers derives the
schedule's length from ``max_steps`` / ``num_train_epochs``, which a time-capped run does not know in advance
(the recipes pass a large epoch count), so without this
the rate would stay at its peak and the run would end unannealed, unlike the same recipe with a step limit. This
gives a time-capped run transformers' default shape over its real horizon. Measured at 5 minutes on Multi30k
(bench/results/sweep_translation.jsonl) the two are within noise (validation loss 4.65 annealed vs 4.59 constant at
lr 1e-3); the longer runs of bench/quality.py use it. ``--anneal_over_budget false`` keeps the step schedule.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Optional

from torch.optim.lr_scheduler import LambdaLR
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


# the time-fraction shapes of the schedules that decay to zero; warm-up stays step-based (transformers' own)
_BUDGET_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda fraction: 1.0 - fraction,
    "cosine": lambda fraction: 0.5 * (1.0 + math.cos(math.pi * fraction)),
}


class _BudgetSchedule:
    """Mixin: with ``--max_train_minutes``, scale transformers' schedule by its shape over the budget's time."""

    def _time_budget(self) -> Optional[Any]:
        from .callbacks import TimeBudgetCallback

        return next((cb for cb in self.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback)), None)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None):
        created_here = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps=num_training_steps, optimizer=optimizer)
        shape = _BUDGET_SHAPES.get(str(getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)))
        budget = self._time_budget()
        if (created_here and shape is not None and budget is not None and isinstance(scheduler, LambdaLR)
                and getattr(self.args, "anneal_over_budget", True)):
            # the step schedule (warm-up, then a decay over a horizon the budget usually cuts short) times the
            # budget's shape at the time of the step: the rate reaches zero when the budget runs out
            scheduler.lr_lambdas = [
                (lambda step, step_lambda=step_lambda: step_lambda(step) * shape(budget.fraction()))
                for step_lambda in scheduler.lr_lambdas
            ]
        return scheduler


@functools.lru_cache(maxsize=None)
def _forward_takes_smoothing(model_class: type) -> bool:
    return "smoothing" in inspect.signature(model_class.forward).parameters


def _accepts_smoothing(model: Any) -> bool:
    """Whether the model (under a PEFT wrapper: its base model) computes a label-smoothed loss itself."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _forward_takes_smoothing(type(base))  # asked every step: the signature is read once per class


class _LabelSmoothingInTheModel:
    """Mixin: ``--label_smoothing_factor`` goes to the model's own loss when the model takes ``smoothing``.

    transformers' Trainer takes the labels away from the model and smooths the returned logits with its
    ``LabelSmoother``: a log-softmax, a negation, a gather and a sum over the whole (tokens x vocabulary) tensor,
    and their backward. Forge's seq2seq head computes the same per-token value in one fused ``F.cross_entropy``
    (``smoothing=``), and with ``loss_chunk_size`` without the full logits. Measured on a forge-small step
    (batch 64, 24 + 24 tokens, 2 CPU cores; bench/results/explore/label_smoothing_step.log): 1,656 -> 1,355 ms at a
    16,384-token vocabulary, 1,035 -> 961 ms at 8,000. Models without the argument (BART) keep the Trainer's path.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        smoother = self.label_smoother
        if smoother is None or "labels" not in inputs or not _accepts_smoothing(self.accelerator.unwrap_model(model)):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        self.label_smoother = None  # the Trainer's own path then hands the labels to the model
        try:
            return super().compute_loss(
                model, {**inputs, "smoothing": smoother.epsilon}, return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )
        finally:
            self.label_smoother = smoother


class _CallbackLogValues:
    """Mixin: callbacks with a ``training_log_values(args, state)`` method add values to each training log before it
    is recorded (the Trainer copies a log into ``log_history`` before ``on_log`` runs, so a callback cannot add
    them there itself). Used by :class:`recipes.core.mfu.ThroughputCallback` (tokens/s and MFU per interval)."""

    def log(self, logs: dict, start_time: Optional[float] = None) -> None:
        if "loss" in logs:  # a training log (the end-of-training summary carries train_loss instead)
            for callback in self.callback_handler.callbacks:
                values = getattr(callback, "training_log_values", None)
                if values is not None:
                    logs.update(values(self.args, self.state))
        super().log(logs, start_time)


class ForgeTrainer(
    _CallbackLogValues, _LabelSmoothingInTheModel, _BudgetSchedule, _OrderedEvaluation, safety.ForgeTrainer
):
    """``recipes.core.safety.ForgeTrainer`` with evaluation in dataset order (also under ``group_by_length``) and
    label smoothing inside the model's loss where the model takes it (pretraining)."""


class ForgeSeq2SeqTrainer(
    _CallbackLogValues, _LabelSmoothingInTheModel, _BudgetSchedule, _OrderedEvaluation, safety.ForgeSeq2SeqTrainer
):
    """``recipes.core.safety.ForgeSeq2SeqTrainer`` with evaluation in dataset order (also under ``group_by_length``)
    and label smoothing inside Forge's loss."""
