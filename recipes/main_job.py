"""The main job: raw text -> tokenizer -> pretrained Forge -> fine-tuned, carded, Hub-ready models for every task.

    python -m recipes.main_job                                   # embedded sample, 7 min on 2 idle CPU cores
    python -m recipes.main_job --data-dir ../shared/data --preset forge-small --budget full
    python -m recipes.main_job --quick                           # smoke mode (the test suite runs this)

Each stage calls the same recipe ``main()`` a user would run from the command line, so this file holds no
training logic of its own: it only chooses the arguments, runs the stages in order, shows ``pipeline()``
output for each task from the saved folder (loaded with the installed Forge classes, so no code from the folder runs),
and prints the final table. The exact command of every stage is written to ``<output-dir>/commands.sh``.

The embedded sample (``recipes/sample_data``) is small text written for Forge: numbers on it show that the
whole chain works, not how good the model can be. ``--data-dir`` takes any folder laid out like it:
``pretrain/{train,validation}.jsonl`` and ``<task>/{train,validation}.jsonl`` for each task of the task
registry that has a ``main_job_order`` (sentiment, translation, summarization, qa, srl, nli). What the job
passes each recipe and how it calls the pipeline come from the task's spec (``recipes/<task>.py``).
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .core.layout import module_name
from .core.stage_times import StageTimes

logger = logging.getLogger(module_name("recipes.main_job"))  # its name also when run as __main__

SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"


@dataclass(frozen=True)
class Budget:
    """How much work each stage does; ``quick`` is the smoke mode the tests run."""

    pretrain_steps: int
    block_size: int
    vocab_size: int
    finetune_epochs: float
    finetune_max_steps: int  # -1: use epochs
    max_train_samples: Optional[int]
    max_eval_samples: Optional[int]
    batch_size: int
    eval_batch_size: int
    num_beams: int


BUDGETS = {
    "quick": Budget(pretrain_steps=6, block_size=64, vocab_size=600, finetune_epochs=1, finetune_max_steps=4,
                    max_train_samples=32, max_eval_samples=8, batch_size=8, eval_batch_size=8, num_beams=1),
    "sample": Budget(pretrain_steps=300, block_size=128, vocab_size=4000, finetune_epochs=3, finetune_max_steps=-1,
                     max_train_samples=None, max_eval_samples=None, batch_size=16, eval_batch_size=32, num_beams=2),
    "full": Budget(pretrain_steps=3000, block_size=256, vocab_size=16384, finetune_epochs=3, finetune_max_steps=-1,
                   max_train_samples=None, max_eval_samples=None, batch_size=32, eval_batch_size=64, num_beams=4),
}



def __getattr__(name: str) -> Any:
    """``TASKS``: the main job's tasks, in order, from the task registry (read when first asked for)."""
    if name == "TASKS":
        from .core.registry import main_job_tasks

        return main_job_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def task_spec(task: str) -> Any:
    """The registry entry of ``task`` (a :class:`recipes.core.registry.TaskSpec`)."""
    from .core.registry import get_task

    return get_task(task)


def build_parser() -> argparse.ArgumentParser:
    """The main job's command line; ``--tasks`` lists the main-job tasks of the task registry."""
    from .core.registry import main_job_tasks

    tasks_all = main_job_tasks()
    parser = argparse.ArgumentParser(prog=f"python -m {module_name('recipes.main_job')}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(SAMPLE_DATA),
                        help="Folder laid out like ../shared/data (default: the embedded sample).")
    parser.add_argument("--preset", default=None,
                        help="Forge size preset to pretrain (default: forge-small, forge-tiny with --quick).")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                        help="Work per stage: quick (smoke), sample (default), full (real data).")
    parser.add_argument("--quick", action="store_true", help="Same as --budget quick --preset forge-tiny.")
    parser.add_argument("--output-dir", default="outputs/main_job", help="Where every folder is written.")
    parser.add_argument("--tasks", default=",".join(tasks_all), help="Comma-separated subset of: " + ", ".join(tasks_all))
    parser.add_argument("--overwrite_output_dir", "--overwrite-output-dir", "--overwrite", dest="overwrite",
                        action="store_true",
                        help="Replace the finished models already in --output-dir (otherwise a rerun refuses before "
                             "any work; checkpoints and logs are kept).")
    parser.add_argument("--seed", type=int, default=42)
    return parser


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    from .core.registry import main_job_tasks

    tasks_all = main_job_tasks()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.budget = args.budget or "quick"
        args.preset = args.preset or "forge-tiny"
    args.budget = args.budget or "sample"
    args.preset = args.preset or "forge-small"
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(tasks_all))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(tasks_all)}")
    args.tasks = tasks
    return args


def _split_files(data_dir: Path, task: str) -> tuple[Path, Path]:
    folder = data_dir / task
    train, validation = folder / "train.jsonl", folder / "validation.jsonl"
    for path in (train, validation):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: --data-dir must hold {task}/train.jsonl and {task}/validation.jsonl "
                f"(the layout of ../shared/data and of {SAMPLE_DATA})."
            )
    return train, validation


def _common_flags(budget: Budget, output_dir: Path, seed: int, overwrite: bool) -> list[str]:
    flags = [
        "--output_dir", str(output_dir), "--seed", str(seed),
        "--per_device_train_batch_size", str(budget.batch_size),
        "--per_device_eval_batch_size", str(budget.eval_batch_size),
        # per-step logs go to <folder>/train_log.jsonl and TensorBoard (<folder>/runs); the console shows one bar
        "--logging_steps", "10", "--report_to", "tensorboard", "--dataloader_num_workers", "0",
    ]
    if overwrite:
        flags.append("--overwrite_output_dir")
    return flags


def _sample_flags(budget: Budget) -> list[str]:
    flags = []
    if budget.max_train_samples:
        flags += ["--max_train_samples", str(budget.max_train_samples)]
    if budget.max_eval_samples:
        flags += ["--max_eval_samples", str(budget.max_eval_samples)]
    return flags


def pretrain_argv(args: argparse.Namespace, budget: Budget, out: Path) -> list[str]:
    """Arguments of ``recipes.pretrain`` for the pretraining stage."""
    train, validation = _split_files(Path(args.data_dir), "pretrain")
    return [
        "--train_file", str(train), "--validation_file", str(validation),
        "--config_name", args.preset, "--vocab_size", str(budget.vocab_size),
        "--block_size", str(budget.block_size), "--max_steps", str(budget.pretrain_steps),
        "--learning_rate", "1e-3", "--warmup_steps", "0.05",
        "--eval_strategy", "steps", "--eval_steps", str(max(budget.pretrain_steps // 3, 1)),
        "--save_strategy", "steps", "--save_steps", str(max(budget.pretrain_steps // 3, 1)), "--save_total_limit", "1",
        *_sample_flags(budget),
        *_common_flags(budget, out, args.seed, args.overwrite),
    ]


def finetune_argv(args: argparse.Namespace, budget: Budget, task: str, base: Path, out: Path) -> list[str]:
    """Arguments of the task recipe, starting from the pretrained folder ``base``."""
    spec = task_spec(task)
    extra = list(spec.main_job_flags)
    train, validation = _split_files(Path(args.data_dir), task)
    length = (["--max_steps", str(budget.finetune_max_steps)] if budget.finetune_max_steps > 0
              else ["--num_train_epochs", str(budget.finetune_epochs)])
    task_flags = spec.main_job_data_flags(train) if spec.main_job_data_flags else []
    if "--predict_with_generate" in extra:
        task_flags += ["--generation_num_beams", str(budget.num_beams), "--generation_max_length", "64"]
    return [
        "--model_name_or_path", str(base), "--train_file", str(train), "--validation_file", str(validation),
        "--do_train", "--do_eval", *length, "--learning_rate", "5e-4", "--weight_decay", "0.01",
        "--warmup_steps", "0.1", "--eval_strategy", "epoch", "--save_strategy", "epoch", "--save_total_limit", "1",
        "--load_best_model_at_end", "--metric_for_best_model", spec.metric,
        "--early_stopping_patience", "2",
        *extra, *task_flags, *_sample_flags(budget),
        *_common_flags(budget, out, args.seed, args.overwrite),
    ]


def show_pipeline(task: str, folder: Path, data_dir: Path) -> Any:
    """Load ``folder`` with the installed Forge classes and run its pipeline on the first validation example."""
    from .core.safety import forge_pipeline

    spec = task_spec(task)
    pipe = forge_pipeline(spec.pipeline_task, folder)  # the installed Forge classes; the folder's code never runs
    _, validation = _split_files(data_dir, task)
    with open(validation, encoding="utf-8") as handle:
        args, kwargs = spec.demo_call(json.loads(handle.readline()))
    return pipe(*args, **kwargs)


def _write_commands(out: Path, commands: list[str]) -> None:
    """``commands.sh``: every stage's exact command, rewritten before each stage runs (so the banner's
    "full command in commands.sh" is true while the stage is still running)."""
    (out / "commands.sh").write_text("#!/usr/bin/env bash\nset -e\n" + "\n".join(commands) + "\n", encoding="utf-8")


def _run_stage(name: str, fn: Callable[[list[str]], dict], argv: list[str], log: list[str], module: str,
               out: Path, timing: StageTimes) -> dict:
    from .core.safety import redact_argv

    log.append(f"python -m {module} " + shlex.join(redact_argv(argv)))
    _write_commands(out, log)
    started = time.time()
    print(f"\n=== {name}: python -m {module} ... (full command in {out / 'commands.sh'})", flush=True)
    print(f"    {timing.expectation(name)}", flush=True)
    metrics = fn(argv) or {}
    elapsed = time.time() - started
    timing.record(name, elapsed)
    print(f"=== {name} done in {elapsed:.0f}s", flush=True)
    return metrics


def _refuse_finished(args: argparse.Namespace, out: Path) -> None:
    """A rerun into folders that hold finished models stops here, in one line, before any work."""
    from .publishing.export import is_finished_model_dir

    folders = [out / "pretrained", *(out / task for task in args.tasks)]
    finished = [str(folder) for folder in folders if is_finished_model_dir(folder)]
    if finished and not args.overwrite:
        raise SystemExit(
            f"error: {', '.join(finished)} already "
            f"{'holds a finished model' if len(finished) == 1 else 'hold finished models'}; add "
            "--overwrite_output_dir to train them again (checkpoints and logs are kept), or pass another --output-dir."
        )


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
    """Run the whole job; returns the rows of the final table."""
    args = _parse(argv)
    budget = BUDGETS[args.budget]
    data_dir, out = Path(args.data_dir), Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    commands: list[str] = []
    rows: list[dict[str, Any]] = []
    job_started = time.time()
    print(f"Forge main job: data {data_dir}, preset {args.preset}, budget {args.budget}, output {out}", flush=True)
    _refuse_finished(args, out)
    timing = StageTimes.for_job(args.budget, args.preset, data_dir)
    if data_dir.resolve() == SAMPLE_DATA.resolve():
        import datasets

        datasets.disable_progress_bars()  # reading and tokenising the embedded sample is instant

    from . import pretrain

    base = out / "pretrained"
    metrics = _run_stage("pretraining", pretrain.main, pretrain_argv(args, budget, base), commands, module_name("recipes.pretrain"),
                         out, timing)
    metric = pretrain.SPEC.eval_metric
    rows.append({"task": "pretraining", "metric": metric, "value": metrics.get(metric), "folder": str(base)})

    import importlib

    for task in args.tasks:
        spec = task_spec(task)
        module, metric, pipeline_task = spec.module, spec.eval_metric, spec.pipeline_task
        folder = out / task
        recipe = importlib.import_module(module)
        metrics = _run_stage(task, recipe.main, finetune_argv(args, budget, task, base, folder), commands, module,
                             out, timing)
        rows.append({"task": task, "metric": metric, "value": metrics.get(metric), "folder": str(folder)})
        try:
            shown = show_pipeline(task, folder, data_dir)
            print(f"pipeline({pipeline_task!r}) -> {json.dumps(shown, ensure_ascii=False, default=str)[:400]}")
        except Exception as error:  # the table still prints; the failure is reported, not hidden
            rows[-1]["pipeline_error"] = f"{type(error).__name__}: {error}"
            print(f"pipeline({pipeline_task!r}) FAILED: {rows[-1]['pipeline_error']}")

    (out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(f"\nForge main job finished in {(time.time() - job_started) / 60:.1f} min "
          f"(data: {data_dir}; preset {args.preset}; budget {args.budget})\n")
    print("| task | metric | value | folder |\n|---|---|---|---|")
    for row in rows:
        value = "n/a" if row["value"] is None else f"{row['value']:.4g}"
        print(f"| {row['task']} | {row['metric']} | {value} | {row['folder']} |")
    failed = [row["task"] for row in rows if "pipeline_error" in row]
    if failed:
        raise SystemExit(f"pipeline() failed for: {', '.join(failed)} (see above)")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
