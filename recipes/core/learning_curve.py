"""Evaluation every N minutes of training, on a validation subset: the points of a learning curve.

``--eval_every_minutes M`` evaluates whenever another M minutes of *training* time have passed (wall-clock since
training began, minus the time spent evaluating, which the Trainer reports as ``eval_runtime``), and appends one
JSON line per evaluation to ``<output_dir>/learning_curve.jsonl``: ``{"train_minutes", "step", "epoch",
"eval_<metric>": ...}``. ``--eval_subset_size N`` makes those evaluations use the first N validation examples,
so that frequent points stay cheap; the recipe's final evaluation still uses the whole split.
``bench/quality.py`` draws metric-vs-minutes curves from these files.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

LEARNING_CURVE_NAME = "learning_curve.jsonl"

__all__ = ["LEARNING_CURVE_NAME", "TrainingClock", "PeriodicEvalCallback", "eval_subset", "read_learning_curve"]


class TrainingClock(TrainerCallback):
    """Minutes of training so far: wall-clock since ``on_train_begin`` minus evaluation runtimes."""

    def __init__(self) -> None:
        self.started: Optional[float] = None
        self.eval_seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.eval_seconds = 0.0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        runtime = next((v for k, v in (metrics or {}).items() if k.endswith("_runtime")), None)
        if isinstance(runtime, (int, float)) and self.started is not None:
            self.eval_seconds += float(runtime)

    def minutes(self) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, time.monotonic() - self.started - self.eval_seconds) / 60.0


class PeriodicEvalCallback(TrainerCallback):
    """Ask the Trainer to evaluate every ``every_minutes`` of training, and log each result with its minute.

    Must come after its ``clock`` in the callback list, so the clock has counted an evaluation's runtime
    before this callback records it.
    """

    def __init__(self, every_minutes: float, clock: TrainingClock, output_dir: Optional[str] = None) -> None:
        if every_minutes <= 0:
            raise ValueError(f"--eval_every_minutes must be positive, got {every_minutes}.")
        self.every = every_minutes
        self.clock = clock
        self.output_dir = output_dir
        self.next_mark = every_minutes

    def on_train_begin(self, args, state, control, **kwargs):
        self.next_mark = self.every

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock.minutes() >= self.next_mark:
            control.should_evaluate = True
            while self.next_mark <= self.clock.minutes():
                self.next_mark += self.every
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics:
            return
        row = {"train_minutes": round(self.clock.minutes(), 4), "step": state.global_step, "epoch": state.epoch}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        path = Path(self.output_dir or args.output_dir) / LEARNING_CURVE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def eval_subset(dataset: Any, training_args: Any) -> Any:
    """The evaluation set used *during* training: the first ``--eval_subset_size`` rows (all when unset)."""
    size = getattr(training_args, "eval_subset_size", None)
    if dataset is None or not size or size >= len(dataset):
        return dataset
    return dataset.select(range(size))


def read_learning_curve(output_dir: str | Path) -> list[dict]:
    """The rows of ``<output_dir>/learning_curve.jsonl`` (empty when the run logged none)."""
    path = Path(output_dir) / LEARNING_CURVE_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
