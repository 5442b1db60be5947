"""Trainer callbacks shared by the recipes (pretraining included).

- :class:`LossCurveCallback`: writes ``loss_curve.png`` (train and eval loss vs step) into the output
  folder at the end of training (and at each save, so an interrupted run still has one).
- :class:`CopyCodeFilesCallback`: copies the Forge code files into every ``checkpoint-*`` folder;
  transformers does not, and without them a checkpoint does not load on its own with
  ``trust_remote_code``.
- :class:`NaNGuardCallback`: stops training as soon as the loss (or a weight) is NaN/inf, names the step
  and the likely causes, and blocks the save of the broken state so the last good checkpoint stays.
- :func:`build_callbacks`: the list a recipe hands to its Trainer, early stopping included.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from transformers import EarlyStoppingCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import IntervalStrategy

logger = logging.getLogger(__name__)

LOSS_CURVE_NAME = "loss_curve.png"

__all__ = [
    "LOSS_CURVE_NAME",
    "TrainingDivergedError",
    "plot_loss_curve",
    "LossCurveCallback",
    "CopyCodeFilesCallback",
    "NaNGuardCallback",
    "configure_early_stopping",
    "build_callbacks",
]


class TrainingDivergedError(RuntimeError):
    """The loss or the weights became NaN/inf; raised by the recipes after the Trainer stopped."""


# --------------------------------------------------------------------------------------------
# Loss curve
# --------------------------------------------------------------------------------------------
def plot_loss_curve(log_history: Sequence[dict], path: str | os.PathLike, title: str = "") -> Optional[Path]:
    """Plot train loss and eval loss against the optimizer step into ``path`` (PNG).

    Returns the path, or None when the history holds no loss yet (nothing is written then).
    """
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    train = [(s, v) for s, v in train if isinstance(v, (int, float)) and math.isfinite(v)]
    evals = [(s, v) for s, v in evals if isinstance(v, (int, float)) and math.isfinite(v)]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: no display on training machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        if train:
            ax.plot(*zip(*train), label="train loss", color="tab:blue")
        if evals:
            ax.plot(*zip(*evals), label="eval loss", color="tab:orange", marker="o")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp)
        os.replace(tmp, path)  # atomic: a reader never sees half a PNG
    finally:
        plt.close(fig)
    return path


class LossCurveCallback(TrainerCallback):
    """Write ``loss_curve.png`` into ``output_dir`` (default: ``args.output_dir``) at each save and at the end."""

    def __init__(self, output_dir: Optional[str] = None, title: str = "") -> None:
        self.output_dir = output_dir
        self.title = title

    def _write(self, args: TrainingArguments, state: TrainerState) -> None:
        if not state.is_world_process_zero:
            return
        target = Path(self.output_dir or args.output_dir) / LOSS_CURVE_NAME
        try:
            plot_loss_curve(state.log_history, target, self.title)
        except Exception as err:  # a plotting problem must never kill a training run
            logger.warning("Could not write %s: %s", target, err)

    def on_save(self, args, state, control, **kwargs):
        self._write(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(args, state)


# --------------------------------------------------------------------------------------------
# Code files into checkpoints
# --------------------------------------------------------------------------------------------
class CopyCodeFilesCallback(TrainerCallback):
    """Copy the Forge code files (and full ``auto_map``) into each ``checkpoint-<step>`` folder."""

    def __init__(self, task: Optional[str] = None) -> None:
        self.task = task

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not checkpoint.is_dir():
            return
        try:
            from ..publishing.export import copy_code_files
            from .architectures import copy_tokenizer_code, is_forge_model

            model = kwargs.get("model")
            if model is not None and not is_forge_model(model):
                copy_tokenizer_code(checkpoint)  # the BART control: its config stays plain BART
                return
            copy_code_files(checkpoint, task=self.task)
        except Exception as err:  # the checkpoint itself is fine; only stand-alone loading is affected
            logger.warning("Could not copy the code files into %s: %s", checkpoint, err)


# --------------------------------------------------------------------------------------------
# NaN / inf guard
# --------------------------------------------------------------------------------------------
class NaNGuardCallback(TrainerCallback):
    """Stop training when the loss, the gradient norm or a weight is NaN/inf.

    The check runs on every log (loss, grad_norm) and, every ``check_weights_every`` steps, on the
    weights themselves (the Trainer hides a NaN loss from the logs when ``logging_nan_inf_filter`` is
    on; ``build_callbacks`` turns that filter off). When it fires, the save planned for that step is
    cancelled, so the newest checkpoint on disk is the last good one; ``self.message`` says what
    happened and ``self.triggered`` is True. Recipes raise :class:`TrainingDivergedError` with it.

    The weight check stays on the device between reads: each checked step ORs one "not finite" flag into a
    device tensor, and the host reads it (one sync) only at a step that saves, logs, evaluates or stops, at
    every ``read_every``-th step, and when training ends. Reading it every step would make the host wait for
    the GPU once per step, so the next step's kernels could not be queued while this one runs. What is
    saved is still always checked first; a NaN is reported at the first read after it, naming the step read.
    """

    def __init__(self, check_weights_every: int = 1, read_every: int = 50) -> None:
        self.check_weights_every = max(0, check_weights_every)
        self.read_every = max(1, read_every)
        self.triggered = False
        self.message = ""
        self._pending = None  # device bool tensor: some checked step since the last read had a non-finite weight

    def _fire(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, what: str) -> None:
        if self.triggered:
            control.should_training_stop = True
            control.should_save = False
            return
        self.triggered = True
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False
        causes = [f"the learning rate ({args.learning_rate:g}) is too high: lower --learning_rate or add --warmup_steps"]
        if args.fp16:
            causes.append("fp16 overflow: use --bf16 where supported, or train in fp32")
        if not args.max_grad_norm:
            causes.append("no gradient clipping: set --max_grad_norm 1.0")
        causes.append("bad input data (e.g. all labels ignored in a batch, or extreme values)")
        self.message = (
            f"Training stopped at step {state.global_step}: {what} is not finite (NaN/inf). Likely causes: "
            + "; ".join(causes)
            + f". Nothing was saved after the problem; resume from the last good checkpoint in {args.output_dir}."
        )
        logger.error(self.message)

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self._fire(args, state, control, f"the {key.replace('_', ' ')} ({value})")
                return

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.triggered:
            control.should_training_stop = True
            control.should_save = False
            return
        if model is None or not self.check_weights_every:
            return
        if state.global_step % self.check_weights_every == 0:
            flag = _non_finite_flag(model)
            self._pending = flag if self._pending is None else self._pending | flag
        persists = control.should_save or control.should_log or control.should_evaluate or control.should_training_stop
        if self._pending is not None and (persists or state.global_step % self.read_every == 0):
            self._read(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._pending is not None and model is not None and not self.triggered:
            self._read(args, state, control, model)  # the steps since the last read, before the model is saved

    def _read(self, args, state, control, model) -> None:
        pending, self._pending = self._pending, None
        if bool(pending):  # the one host-device sync
            bad = _first_non_finite_parameter(model)  # None: only a norm overflowed (or sharded weights are fine)
            if bad is not None:
                self._fire(args, state, control, f"weight '{bad}' after the optimizer step")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get("eval_loss")
        if isinstance(value, (int, float)) and not math.isfinite(value):
            self._fire(args, state, control, f"the eval loss ({value})")


def _non_finite_flag(model):
    """A 0-d bool tensor on the parameters' device, True when the sum of the per-parameter L2 norms is not finite;
    no host-device sync. ``torch._foreach_norm`` makes one batched launch per dtype/device group. Why that is
    enough: a NaN anywhere in a tensor makes its norm NaN, an inf makes it inf, and NaN/inf survive the sum, so a
    finite total proves every weight finite. The converse can fail only when finite weights are so large that the
    norm overflows (above ~3e38 in fp32/bf16); :func:`_first_non_finite_parameter` then finds no culprit and nothing
    fires. True (a CPU tensor) when the batched norm is not available, e.g. for sharded (DTensor) parameters, so
    that the per-parameter scan decides."""
    import torch

    with torch.no_grad():
        groups: dict = {}
        for param in model.parameters():  # _foreach_norm needs one device and dtype per call
            if param.numel():
                groups.setdefault((param.device, param.dtype), []).append(param)
        if not groups:
            return torch.tensor(False)
        try:
            totals = [torch.stack(torch._foreach_norm(group)).float().sum() for group in groups.values()]
        except (RuntimeError, TypeError, NotImplementedError):
            return torch.tensor(True)
        device = totals[0].device
        return ~torch.isfinite(torch.stack([t.to(device) for t in totals]).sum())


def _first_non_finite_parameter(model) -> Optional[str]:
    """Name of the first parameter holding a NaN/inf, or None; one host-device sync when all are finite (the
    reduced flag of :func:`_non_finite_flag`), a per-parameter scan only when it is not. The old check
    (``isfinite(param).all()`` per parameter) read each result back separately: one sync per parameter per step,
    which stalls a GPU's queue hundreds of times."""
    import torch

    if not bool(_non_finite_flag(model)):
        return None
    with torch.no_grad():
        for name, param in model.named_parameters():  # rare path: name the culprit
            if param.numel() and not torch.isfinite(param).all():
                return name
    return None


# --------------------------------------------------------------------------------------------
# Early stopping and the callback list
# --------------------------------------------------------------------------------------------
def configure_early_stopping(
    training_args: TrainingArguments, metric: str, greater_is_better: bool
) -> Optional[EarlyStoppingCallback]:
    """Set up best-model tracking on ``metric`` and return an EarlyStoppingCallback (or None when off).

    Uses ``training_args.early_stopping_patience`` / ``early_stopping_threshold`` (Forge fields). Sets
    ``load_best_model_at_end``, ``metric_for_best_model`` and ``greater_is_better`` unless the user
    chose a metric. Raises ValueError naming the flag to fix when evaluation is off.
    """
    patience = getattr(training_args, "early_stopping_patience", None)
    if not patience:
        return None
    if training_args.eval_strategy == IntervalStrategy.NO:
        raise ValueError(
            "--early_stopping_patience needs periodic evaluation: pass --eval_strategy steps (with --eval_steps) "
            "or --eval_strategy epoch, and the same --save_strategy."
        )
    if training_args.save_strategy != training_args.eval_strategy and str(training_args.save_strategy) != "best":
        raise ValueError(
            f"--early_stopping_patience keeps the best model, which needs --save_strategy equal to --eval_strategy "
            f"(got save {training_args.save_strategy}, eval {training_args.eval_strategy})."
        )
    if (
        training_args.eval_strategy == IntervalStrategy.STEPS
        and training_args.save_steps % training_args.eval_steps != 0
    ):
        raise ValueError(
            f"--save_steps ({training_args.save_steps}) must be a multiple of --eval_steps ({training_args.eval_steps}) "
            "when --early_stopping_patience is set."
        )
    training_args.load_best_model_at_end = True
    if not training_args.metric_for_best_model or training_args.metric_for_best_model == "loss":
        training_args.metric_for_best_model = metric
        training_args.greater_is_better = greater_is_better
    return EarlyStoppingCallback(
        early_stopping_patience=patience,
        early_stopping_threshold=getattr(training_args, "early_stopping_threshold", 0.0) or 0.0,
    )


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Stop training once ``minutes`` of wall-clock training time have passed (``--max_train_minutes``).

    The Trainer has step and epoch limits but no time limit; a measured run states its budget in minutes,
    so this ends training cleanly (evaluation, best-model loading and saving still happen).

    The training time spent so far is saved with every checkpoint (``TrainerState.stateful_callbacks``), so a
    run resumed after an interruption continues the same budget instead of starting a fresh one, and
    :meth:`fraction` (the share of the budget used) drives the budget-annealed learning-rate schedule
    (``recipes.core.trainers``).
    """

    def __init__(self, minutes: float, elapsed_seconds: float = 0.0) -> None:
        self.seconds = 60.0 * minutes
        self.started: Optional[float] = None
        self.eval_seconds = 0.0  # evaluations during training do not use up the training budget
        self.carried_seconds = float(elapsed_seconds)  # training time of the run before a resume

    def state(self) -> dict:
        return {"args": {"minutes": self.seconds / 60.0}, "attributes": {"elapsed_seconds": self.elapsed()}}

    def elapsed(self) -> float:
        """Seconds of training (evaluation excluded) spent on this budget, resumed runs included."""
        if self.started is None:
            return self.carried_seconds
        return self.carried_seconds + max(0.0, time.monotonic() - self.started - self.eval_seconds)

    def fraction(self) -> float:
        """The share of the budget used so far, in [0, 1]."""
        return min(1.0, self.elapsed() / self.seconds) if self.seconds > 0 else 1.0

    def on_train_begin(self, args, state, control, **kwargs):
        # a resumed run: the checkpoint's TrainerState carries the training time already spent
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if state.global_step > 0 and isinstance(saved, dict):
            self.carried_seconds = float(saved.get("attributes", {}).get("elapsed_seconds", 0.0))
        self.started = time.monotonic()
        self.eval_seconds = 0.0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        runtime = next((v for k, v in (metrics or {}).items() if k.endswith("_runtime")), None)
        if isinstance(runtime, (int, float)):
            self.eval_seconds += float(runtime)

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is not None and self.elapsed() >= self.seconds:
            logger.info("Training budget of %.1f min reached at step %d: stopping.", self.seconds / 60, state.global_step)
            control.should_training_stop = True
        return control


def build_callbacks(
    training_args: TrainingArguments,
    metric: Optional[str] = None,
    greater_is_better: bool = True,
    task: Optional[str] = None,
) -> list[TrainerCallback]:
    """The callbacks every recipe uses: loss curve, code files in checkpoints, NaN guard, early stopping.

    Args:
        training_args: the run's (Forge)TrainingArguments; ``logging_nan_inf_filter`` is turned off so
            that a NaN loss reaches the guard instead of being averaged away.
        metric: the task metric (e.g. "accuracy", "bleu") for early stopping / best model.
        greater_is_better: direction of ``metric``.
        task: the pipeline task, forwarded to the code-file copier (custom_pipelines entry).
    """
    from .guards import RunRecordCallback

    callbacks: list[TrainerCallback] = [LossCurveCallback(), CopyCodeFilesCallback(task=task), RunRecordCallback()]
    if getattr(training_args, "max_train_minutes", None):
        callbacks.append(TimeBudgetCallback(training_args.max_train_minutes))
    if getattr(training_args, "eval_every_minutes", None):
        from .learning_curve import PeriodicEvalCallback, TrainingClock

        clock = TrainingClock()
        callbacks += [clock, PeriodicEvalCallback(training_args.eval_every_minutes, clock)]
    if metric is not None:
        early = configure_early_stopping(training_args, metric, greater_is_better)
        if early is not None:
            callbacks.append(early)
    if getattr(training_args, "stop_on_nan", True):
        # last: its weight check reads the device at steps that save, evaluate or stop, so it must see the flags
        # the callbacks above set at the same step (the time budget's stop and save, the periodic evaluation)
        training_args.logging_nan_inf_filter = False
        callbacks.append(NaNGuardCallback())
    return callbacks
