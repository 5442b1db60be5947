"""What a recipe looks like from the command line: its ``--help`` and its one-line refusals.

``--help`` leads with the recipe's own description and example command (the module docstring of
``python -m recipes.<name>``), then the task's data flags, then the model flags, then transformers'
Trainer flags grouped by topic, the way a user scans them: length and batch, optimiser, evaluation and
saving, logging, hardware, Hub, and the rest.

``run_cli(main)`` runs a recipe's ``main()`` and turns the errors a user causes and fixes with a flag
(an output folder that already holds a finished model) into one line on stderr and exit status 1,
instead of a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Optional

from .layout import module_name

__all__ = ["TRAINER_FLAG_GROUPS", "group_help", "cli_identity", "run_cli"]

# Trainer flag groups for --help, in display order: (title, regular expression on the flag name).
# A flag goes to the first group whose pattern matches; the rest go to "Other Trainer options".
TRAINER_FLAG_GROUPS: tuple[tuple[str, str], ...] = (
    ("Run: output, length and batch size",
     r"^(output_dir|overwrite_output_dir|do_train|do_eval|do_predict|num_train_epochs|max_steps|max_train_minutes"
     r"|per_device_\w+_batch_size|gradient_accumulation_steps|auto_find_batch_size|seed|data_seed|full_determinism"
     r"|resume_from_checkpoint|train_sampling_strategy)$"),
    ("Optimiser and schedule",
     r"^(learning_rate|weight_decay|adam_\w+|max_grad_norm|lr_scheduler_\w+|warmup_\w+|optim\w*|label_smoothing_factor"
     r"|neftune_noise_alpha|average_tokens_across_devices)$"),
    ("Evaluation, saving and early stopping",
     r"^(eval_\w+|prediction_loss_only|batch_eval_metrics|include_for_metrics|save_\w+|load_best_model_at_end"
     r"|metric_for_best_model|greater_is_better|early_stopping_\w+|stop_on_nan|enable_jit_checkpoint"
     r"|restore_callback_states_from_checkpoint|ignore_data_skip)$"),
    ("Generation (text-to-text recipes)", r"^(predict_with_generate|generation_\w+|sortish_sampler)$"),
    ("Logging and progress",
     r"^(logging_\w+|log_\w+|include_num_input_tokens_seen|disable_tqdm|report_to|run_name|project|trackio_\w+)$"),
    ("Hardware, precision and speed",
     r"^(bf16\w*|fp16\w*|tf32|use_cpu|dataloader_\w+|torch_compile\w*|torch_empty_cache_steps|gradient_checkpointing\w*"
     r"|activation_checkpointing\w*|use_liger_kernel|liger_kernel_config|use_cache|ddp_\w+|fsdp\w*|deepspeed"
     r"|accelerator_config|parallelism_config|local_rank|skip_memory_metrics|debug)$"),
    ("Hugging Face Hub", r"^(push_to_hub|hub_\w+)$"),
)


def cli_identity(module: Any = None) -> tuple[Optional[str], Optional[str]]:
    """``(prog, description)`` of the recipe run as ``python -m recipes.<name>`` (``forge.recipes.<name>`` when
    installed), else ``(None, None)``.

    ``module`` defaults to ``__main__``; the help record (``recipes/core/fast_help.py``) passes the imported recipe.
    """
    main = sys.modules.get("__main__") if module is None else module
    spec = getattr(main, "__spec__", None)
    if spec is None or not getattr(spec, "name", "").startswith(module_name("recipes.")):
        return None, None
    return f"python -m {spec.name}", (main.__doc__ or "").strip() or None


def group_help(parser: argparse.ArgumentParser, dataclass_types: Sequence[type]) -> None:
    """Rearrange ``parser``'s help: task data flags, model flags, then the Trainer flags by topic.

    Only the help layout changes (argparse keeps parsing every action the same way); the groups are
    argparse argument groups, so ``--help`` lists each under its own heading.
    """
    from dataclasses import fields

    optionals = parser._optionals  # the group HfArgumentParser put every flag in
    actions = {action.dest: action for action in optionals._group_actions if action.dest != "help"}
    taken: set[str] = set()

    def move(title: str, names: Sequence[str], description: Optional[str] = None) -> None:
        group = parser.add_argument_group(title, description)
        for name in names:
            for action in [a for a in optionals._group_actions if a.dest == name]:
                group._group_actions.append(action)
                optionals._group_actions.remove(action)
        taken.update(names)

    data_cls = next((t for t in dataclass_types if t.__name__.endswith("DataArguments")), None)
    model_cls = next((t for t in dataclass_types if t.__name__.endswith("ModelArguments")), None)
    if data_cls is not None:
        # the task's own flags (columns, lengths, augmentation) before the data-source flags every recipe shares
        common = next((b for b in data_cls.__mro__ if b.__name__ == "DataArguments"), None)
        shared = {f.name for f in fields(common)} if common is not None and common is not data_cls else set()
        names = [f.name for f in fields(data_cls) if f.name in actions]
        move("Task", [n for n in names if n not in shared], (data_cls.__doc__ or "").strip())
        move("Data source and size", [n for n in names if n in shared])
    if model_cls is not None:
        move("Model", [f.name for f in fields(model_cls) if f.name in actions], (model_cls.__doc__ or "").strip())
    for title, pattern in TRAINER_FLAG_GROUPS:
        move(title, [name for name in actions if name not in taken and re.match(pattern, name)])
    move("Other Trainer options", [name for name in actions if name not in taken])
    optionals.title = "Help"


def run_cli(main: Callable[..., Any], argv: Optional[list[str]] = None) -> Any:
    """Run a recipe's ``main`` from the command line; a refusal the user fixes with a flag is one line."""
    from ..publishing.export import OutputDirExistsError

    try:
        return main(argv)
    except OutputDirExistsError as error:
        raise SystemExit(f"error: {error}") from None
