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

import contextlib
import functools
import inspect
import logging
import math
import os
from typing import Any, Callable, Iterator, Optional

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length

from . import safety  # the recipes' Trainers keep their arguments as redacted JSON (recipes/core/safety.py)

logger = logging.getLogger(__name__)

__all__ = ["EMA_WEIGHTS_NAME", "ForgeTrainer", "ForgeSeq2SeqTrainer"]

EMA_WEIGHTS_NAME = "ema_weights.safetensors"  # the moving average, in each checkpoint of an --ema_decay run


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


class _AverageUpdate(TrainerCallback):
    """Updates the trainer's moving average after every optimizer step (before that step's evaluation or save)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._start_weight_average()

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._update_weight_average()


class _WeightAverage:
    """Mixin: ``--ema_decay D`` trains as usual and evaluates, saves and exports an exponential moving average of
    the weights (Polyak averaging; the "EMA" of timm and of many from-scratch recipes): a defence against the
    step-to-step noise of a small-data run, whose validation score moves by a point or two from one evaluation to
    the next. After each optimizer step ``avg = avg + (1 - d) * (w - avg)`` with ``d = min(D, (1 + n) / (10 + n))``
    after ``n`` updates, so the first steps' random weights fade fast.

    Evaluations during training swap the average in and the trained weights back; checkpoints hold the trained
    weights (what the optimizer state belongs to) and the average beside them (``EMA_WEIGHTS_NAME``), which a
    resumed run reloads; when training ends the model holds the average (with ``--load_best_model_at_end``: the
    best checkpoint's average), which the recipe then evaluates and saves. The average is kept as plain tensors
    rather than torch's ``swa_utils.AveragedModel``, which deep-copies the whole module (a compiled, LoRA- or
    DDP-wrapped one included) when only the trained parameters change.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ema_decay = getattr(self.args, "ema_decay", None) or None  # 0: off (a recipe's default turned off)
        self._ema: Optional[list[torch.Tensor]] = None
        self._ema_steps = 0
        self._ema_applied = False
        self._ema_resume: Optional[str] = None
        if self._ema_decay is None:
            return
        if not 0.0 < self._ema_decay < 1.0:
            raise ValueError(f"--ema_decay must lie between 0 and 1 (e.g. 0.999; 0 turns it off), got {self._ema_decay}.")
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise ValueError("--ema_decay keeps a full copy of the weights on each process, which FSDP and DeepSpeed "
                             "shard: drop --ema_decay, or train with DDP.")
        self.add_callback(_AverageUpdate(self))

    def _averaged_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        model = self.accelerator.unwrap_model(self.model)
        return [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]

    def _start_weight_average(self) -> None:
        params = self._averaged_parameters()
        self._ema = [p.detach().clone() for _, p in params]
        self._ema_steps, self._ema_applied = self.state.global_step, False
        if self._ema_resume is not None:
            path = os.path.join(self._ema_resume, EMA_WEIGHTS_NAME)
            if os.path.isfile(path):
                self._read_average(path, into=self._ema)
            else:
                logger.warning("%s has no %s (it was not an --ema_decay run): the moving average starts from its "
                               "weights.", self._ema_resume, EMA_WEIGHTS_NAME)

    def _read_average(self, path: str, into: list[torch.Tensor]) -> None:
        from safetensors.torch import load_file

        saved = load_file(path)
        names = [name for name, _ in self._averaged_parameters()]
        if sorted(saved) != sorted(names):
            raise ValueError(f"{path} does not hold the trained parameters of this model ({len(saved)} tensors "
                             f"against {len(names)}): it belongs to another model or run.")
        with torch.no_grad():
            for target, name in zip(into, names):
                target.copy_(saved[name])

    @torch.no_grad()
    def _update_weight_average(self) -> None:
        if self._ema is None:
            return
        decay = min(self._ema_decay, (1 + self._ema_steps) / (10 + self._ema_steps))
        torch._foreach_lerp_(self._ema, [p.detach() for _, p in self._averaged_parameters()], 1.0 - decay)
        self._ema_steps += 1

    @contextlib.contextmanager
    def _average_swapped_in(self) -> Iterator[None]:
        if self._ema is None or self._ema_applied:
            yield
            return
        params = [p for _, p in self._averaged_parameters()]
        with torch.no_grad():
            trained = [p.detach().clone() for p in params]
            torch._foreach_copy_([p.data for p in params], self._ema)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in params], trained)

    def _apply_average(self, checkpoint: Optional[str] = None) -> None:
        """Put the average into the model for good: the current one, or the one saved in ``checkpoint``."""
        if self._ema_decay is None or self._ema_applied:
            return
        params = [p for _, p in self._averaged_parameters()]
        if checkpoint is not None and os.path.isfile(os.path.join(checkpoint, EMA_WEIGHTS_NAME)):
            self._read_average(os.path.join(checkpoint, EMA_WEIGHTS_NAME), into=[p.data for p in params])
        elif self._ema is not None:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in params], self._ema)
        else:
            return
        self._ema_applied = True

    def evaluate(self, *args: Any, **kwargs: Any):
        with self._average_swapped_in():
            return super().evaluate(*args, **kwargs)

    def predict(self, *args: Any, **kwargs: Any):
        with self._average_swapped_in():
            return super().predict(*args, **kwargs)

    def train(self, *args: Any, **kwargs: Any):
        self._ema_applied = False
        output = super().train(*args, **kwargs)
        self._apply_average()  # unless the best checkpoint's average was loaded already
        return output

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self._ema is not None and self.args.should_save:
            from safetensors.torch import save_file

            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            names = [name for name, _ in self._averaged_parameters()]
            save_file({n: t.contiguous() for n, t in zip(names, self._ema)}, os.path.join(folder, EMA_WEIGHTS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        self._ema_resume = resume_from_checkpoint

    def _load_best_model(self) -> None:
        super()._load_best_model()
        best = self.state.best_model_checkpoint
        if self._ema_decay is not None and best and os.path.isfile(os.path.join(best, EMA_WEIGHTS_NAME)):
            self._ema_applied = False
            self._apply_average(best)


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
    _WeightAverage, _CallbackLogValues, _LabelSmoothingInTheModel, _BudgetSchedule, _OrderedEvaluation, safety.ForgeTrainer
):
    """``recipes.core.safety.ForgeTrainer`` with evaluation in dataset order (also under ``group_by_length``),
    label smoothing inside the model's loss where the model takes it (pretraining) and ``--ema_decay``."""


class ForgeSeq2SeqTrainer(
    _WeightAverage, _CallbackLogValues, _LabelSmoothingInTheModel, _BudgetSchedule, _OrderedEvaluation, safety.ForgeSeq2SeqTrainer
):
    """``recipes.core.safety.ForgeSeq2SeqTrainer`` with evaluation in dataset order (also under ``group_by_length``),
    label smoothing inside Forge's loss and ``--ema_decay``."""
