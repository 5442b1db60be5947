"""What a recipe prints while it runs: one progress bar per long stage, and only messages a user acts on.

- :class:`StageProgressCallback` is transformers' own tqdm ``ProgressCallback`` (steps done/total, rate and
  time left, as every transformers user knows it), except that the per-step log dicts are not printed
  over the bar: they go to the run's log file ``<output_dir>/train_log.jsonl`` (one JSON object per
  ``logging_steps``) and to TensorBoard when ``--report_to tensorboard``. ``epoch`` is kept in the file
  but not shown on the console, where for a step-capped run it reads as a confusing "8.4".
- :func:`quiet_start` (called by ``start_run``): no ``pin_memory`` on a machine without an accelerator
  (torch warns that it has nothing to pin into), and no progress bars for transformers' instant steps
  (loading weights, writing model shards); ``FORGE_VERBOSE=1`` keeps them.
- :func:`use_stage_progress` (called by ``train``) swaps the Trainer's console printer for the callback.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback
from transformers.trainer_utils import has_length

logger = logging.getLogger(__name__)

TRAIN_LOG_NAME = "train_log.jsonl"

__all__ = [
    "TRAIN_LOG_NAME",
    "StageProgressCallback",
    "has_accelerator",
    "quiet_start",
    "report_loading",
    "transformers_quiet",
    "use_stage_progress",
]


def has_accelerator() -> bool:
    """Whether torch sees a device that pinned host memory would speed up (CUDA, XPU, MPS...)."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def quiet_start(training_args: Any) -> None:
    """Console settings for a recipe run (main process); see the module docstring."""
    if getattr(training_args, "dataloader_pin_memory", False) and not has_accelerator():
        training_args.dataloader_pin_memory = False  # nothing to pin into; torch would warn once per loader
    if os.environ.get("FORGE_VERBOSE", "") not in ("1", "true"):
        import transformers

        transformers.utils.logging.disable_progress_bar()  # loading weights / writing shards: instant


class StageProgressCallback(ProgressCallback):
    """A tqdm bar per training run and per evaluation; step logs go to ``train_log.jsonl``, not the console.

    ``show_bar=False`` (``--disable_tqdm true``) keeps the console silent and still writes the log file.
    """

    def __init__(self, log_file: Optional[str | os.PathLike] = None, show_bar: bool = True):
        super().__init__()
        self.log_file = Path(log_file) if log_file else None
        self.show_bar = show_bar
        self.current_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = state.global_step
        if self.log_file is not None and state.global_step == 0 and state.is_world_process_zero:
            self.log_file.unlink(missing_ok=True)  # a fresh run starts a fresh log; a resumed one appends
        if self.show_bar and state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training steps",
                                     dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.show_bar and state.is_world_process_zero and has_length(eval_dataloader):
            if self.prediction_bar is None:
                self.prediction_bar = tqdm(total=len(eval_dataloader), desc="evaluation batches",
                                           leave=self.training_bar is None, dynamic_ncols=True)
            self.prediction_bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            record = {"step": state.global_step, **{k: v for k, v in logs.items() if k != "total_flos"}}
            with open(self.log_file, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=str) + "\n")
        if self.training_bar is not None:
            shown = {}
            for key in ("loss", "eval_loss"):
                value = logs.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    shown[key] = f"{value:.3f}"
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


def use_stage_progress(trainer: Any) -> None:
    """Replace the Trainer's console progress/printer callback with :class:`StageProgressCallback`."""
    args = trainer.args
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StageProgressCallback(Path(args.output_dir) / TRAIN_LOG_NAME, show_bar=not args.disable_tqdm))


@contextmanager
def transformers_quiet() -> Iterator[None]:
    """Show only transformers' errors inside the block (the caller reports what matters in plain words)."""
    import transformers

    level = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.utils.logging.set_verbosity(level)


def _modules(keys: list[str]) -> str:
    """``classifier.dense.weight, classifier.dense.bias`` -> ``classifier.dense``: what a reader recognises."""
    return ", ".join(sorted({key.rsplit(".", 1)[0] for key in keys}))


def report_loading(model: Any, info: Mapping[str, Any], source: str) -> None:
    """One plain line per kind of key ``from_pretrained`` did not match (instead of transformers' table).

    Missing task-head weights are what fine-tuning from a pretrained folder expects (info); missing
    weights elsewhere mean the folder does not hold the model it claims to (warning).
    """
    missing = list(info.get("missing_keys") or [])
    head = [k for k in missing if not k.startswith(f"{model.base_model_prefix}.")]
    body = [k for k in missing if k.startswith(f"{model.base_model_prefix}.")]
    if head:
        logger.info("New %s head initialised (expected: %s has no weights for it): %s",
                    type(model).__name__, source, _modules(head))
    if body:
        logger.warning("%s lacks %d weights of the network itself, which start from random values: %s. "
                       "Check that it is a Forge model folder.", source, len(body), _modules(body))
    # mismatched sizes are refused or reported by trainer_utils.check_mismatched_weights (--ignore_mismatched_sizes)
    unexpected = list(info.get("unexpected_keys") or [])
    if unexpected:
        logger.info("Not used by %s (weights of another head in %s): %s", type(model).__name__, source, _modules(unexpected))
