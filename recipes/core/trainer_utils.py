"""The wiring every fine-tuning recipe shares: output-folder safety, tokenizer/model loading, training
with resume, and writing the results (Hub folder, eval_results.json, predictions, loss curve, card).

A recipe's ``main()`` reads: parse args -> :func:`start_run` -> load + validate data -> tokenizer and
model (:func:`load_tokenizer`, :func:`load_model`) -> features -> Trainer -> :func:`train` ->
evaluate/predict -> :func:`finish_run`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import datasets
import transformers
from transformers import AutoConfig, AutoTokenizer, set_seed

from .callbacks import LOSS_CURVE_NAME, NaNGuardCallback, TrainingDivergedError, plot_loss_curve
from ..publishing.cards import write_model_card
from .distributed import gathered_model
from .layout import module_name
from .safety import check_safetensors_weights, check_tokenizer_folder, redact_argv, remote_code_allowed

logger = logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"

__all__ = [
    "start_run",
    "last_complete_checkpoint",
    "load_tokenizer",
    "load_folder_config",
    "load_model",
    "check_vocab_matches",
    "check_mismatched_weights",
    "train",
    "write_predictions",
    "prediction_splits",
    "record_metrics",
    "finish_run",
]


# --------------------------------------------------------------------------------------------
# Start: logging, seed, output folder, resume
# --------------------------------------------------------------------------------------------
def _setup_logging(training_args: Any) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)]
    )
    level = training_args.get_process_log_level()
    # the recipes' own progress messages (resume, truncation counts) show by default on the main process
    ours = logging.INFO if training_args.log_level == "passive" and training_args.should_log else level
    logging.getLogger(module_name("recipes")).setLevel(ours)
    datasets.utils.logging.set_verbosity(max(level, logging.WARNING))
    transformers.utils.logging.set_verbosity(level)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Optional[str]:
    """The newest ``checkpoint-<step>`` folder whose save finished (it holds trainer_state.json).

    A run killed while writing a checkpoint leaves a folder without that file; it is skipped.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for child in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if match and child.is_dir() and (child / TRAINER_STATE_NAME).is_file():
            steps.append((int(match.group(1)), child))
    return str(max(steps)[1]) if steps else None


def start_run(
    training_args: Any, model_args: Any = None, data_args: Any = None, trains: Optional[bool] = None
) -> Optional[str]:
    """Logging, seed and output-folder checks; returns the checkpoint to resume from (or None).

    - A folder that already holds a finished model is refused unless ``--overwrite_output_dir``
      (``recipes.publishing.export.OutputDirExistsError``), before any work is done.
    - The run guards of :mod:`recipes.core.guards`: a training plan that trains nothing, unreadable input
      files, an unwritable output folder, and a second run on the same folder are refused.
    - ``--resume_from_checkpoint PATH`` resumes from PATH; ``--resume_from_checkpoint last`` (or a
      rerun of an interrupted command, without --overwrite_output_dir) resumes from the newest complete
      checkpoint in ``output_dir``, only if that checkpoint was written with the same run-defining arguments.

    ``trains`` says whether this run trains (default: ``--do_train``; pretraining always does).
    """
    from ..publishing.export import check_output_dir

    from . import guards
    from .console import quiet_start

    _setup_logging(training_args)
    quiet_start(training_args)
    set_seed(training_args.seed)
    trains = training_args.do_train if trains is None else trains
    record = guards.run_record(model_args, data_args, training_args, world_size=training_args.world_size)
    overwrite = bool(getattr(training_args, "overwrite_output_dir", False))
    check_output_dir(training_args.output_dir, overwrite)
    if trains:
        guards.check_training_plan(training_args)
    guards.check_input_files(model_args, data_args)
    guards.prepare_output_dir(training_args.output_dir)
    if training_args.process_index == 0:
        guards.acquire_run_lock(training_args.output_dir)
    resume = training_args.resume_from_checkpoint
    if resume in ("last", "latest", "True", "true"):
        resume = last_complete_checkpoint(training_args.output_dir)
        if resume is None:
            raise ValueError(f"--resume_from_checkpoint {training_args.resume_from_checkpoint}: no complete checkpoint in {training_args.output_dir}.")
    elif resume is None and trains and not overwrite:
        resume = last_complete_checkpoint(training_args.output_dir)
    if resume:
        if not Path(resume).is_dir():
            raise ValueError(f"--resume_from_checkpoint {resume} is not a folder.")
        guards.check_same_run(resume, record)
        logger.info("Resuming from checkpoint %s (pass --overwrite_output_dir to start afresh).", resume)
    setattr(training_args, guards.RUN_RECORD_ATTR, record)  # RunRecordCallback writes it into each checkpoint
    return resume


# --------------------------------------------------------------------------------------------
# Tokenizer and model
# --------------------------------------------------------------------------------------------
def _hub_kwargs(model_args: Any) -> dict[str, Any]:
    return {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.token,
        # a folder's own Python files never run while Forge is installed (recipes.core.safety)
        "trust_remote_code": remote_code_allowed(model_args.trust_remote_code),
    }


def load_folder_config(model_args: Any) -> Any:
    """The config of ``--model_name_or_path`` through the installed Forge classes (labels of a fine-tuned model)."""
    from .layout import modeling  # noqa: F401  (registers ForgeConfig with AutoConfig before the folder is read)

    return AutoConfig.from_pretrained(model_args.model_name_or_path, **_hub_kwargs(model_args))


def load_tokenizer(model_args: Any) -> Any:
    """The fast tokenizer of ``--tokenizer_name`` (or of ``--model_name_or_path``)."""
    from .layout import tokenization  # noqa: F401  (registers ForgeTokenizerFast with AutoTokenizer)

    name = model_args.tokenizer_name or model_args.model_name_or_path
    if not name:
        raise ValueError(
            "No tokenizer: pass --model_name_or_path (a Forge folder) or, when training from a preset "
            "(--config_name forge-tiny), --tokenizer_name with a trained tokenizer folder "
            "(python -m tokenization.train ...)."
        )
    check_tokenizer_folder(name)
    tokenizer = AutoTokenizer.from_pretrained(name, **_hub_kwargs(model_args))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"The tokenizer from {name} is not a fast tokenizer; the recipes need offsets and word ids.")
    return tokenizer


def load_model(
    model_args: Any, auto_class: Any, tokenizer: Any, preset_defaults: Optional[dict] = None, **config_overrides: Any
) -> Any:
    """A Forge model for ``auto_class`` (e.g. ``AutoModelForSequenceClassification``).

    From ``--model_name_or_path`` (a pretrained or fine-tuned folder; a missing task head is newly
    initialised, a head of another size is replaced) or, without it, from scratch with the preset or
    config of ``--config_name`` sized to the tokenizer. ``config_overrides`` (num_labels, id2label,
    ...) and the dropout knobs / ``--config_overrides`` of ``model_args`` are applied to the config.
    ``--architecture bart`` builds the BART control of the same shape instead (``recipes/core/architectures.py``);
    ``--init_embeddings`` fills embedding rows from word vectors (from scratch only). ``preset_defaults``
    (the task's ``TaskSpec.preset_config_defaults``) apply to a Forge model built from a preset name only, below
    ``--config_overrides``.
    """
    from .layout import modeling  # registers Forge with the Auto classes

    if getattr(model_args, "init_embeddings", None) and model_args.model_name_or_path:
        raise ValueError(
            "--init_embeddings initialises a model trained from scratch (--config_name); with --model_name_or_path "
            "it would overwrite the pretrained embeddings. Drop one of the two flags."
        )
    overrides = {**model_args.config_kwargs(), **config_overrides}
    architecture = getattr(model_args, "architecture", "forge")
    if model_args.model_name_or_path:
        check_safetensors_weights(model_args.model_name_or_path)
    if architecture != "forge" and model_args.model_name_or_path:
        from .architectures import load_bart_model  # the BART control (--architecture bart)

        model = load_bart_model(model_args, auto_class, tokenizer, None, overrides)
    elif model_args.model_name_or_path:
        config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **_hub_kwargs(model_args), **overrides)
        from .console import report_loading, transformers_quiet

        # Load with mismatches allowed, then decide: a silently re-initialised pretrained weight is a wrong result.
        with transformers_quiet():  # its LOAD REPORT table reads like a failure; report_loading says it plainly
            model, loading_info = auto_class.from_pretrained(
                model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True, output_loading_info=True,
                use_safetensors=True,
                **_hub_kwargs(model_args),
            )
        check_mismatched_weights(loading_info.get("mismatched_keys") or (), model_args)
        report_loading(model, loading_info, model_args.model_name_or_path)
    elif model_args.config_name:
        special = {
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        preset = {}
        # Forge's own measured defaults; the BART control keeps its layout (it cannot mirror e.g. rotary positions)
        if (preset_defaults and architecture == "forge" and model_args.config_name in modeling.PRESETS
                and not os.path.exists(model_args.config_name)):
            # a value may be a function of the preset's fields (with --config_overrides), e.g. one mixer per layer
            fields = {**modeling.PRESETS[model_args.config_name], **overrides}
            preset = {k: v(fields) if callable(v) else v for k, v in preset_defaults.items() if k not in overrides}
            if preset:
                logger.info("This recipe builds %s with %s (its measured default for a model trained from scratch; "
                            "--config_overrides changes it)", model_args.config_name,
                            ", ".join(f"{k}={v}" for k, v in preset.items()))
        config = modeling.ForgeConfig.from_pretrained(model_args.config_name, **{**special, **preset, **overrides})
        if architecture != "forge":
            from .architectures import load_bart_model

            model = load_bart_model(model_args, auto_class, tokenizer, config, overrides)
        else:
            model = auto_class.from_config(config)
        if getattr(model_args, "init_embeddings", None):
            from .pretraining import init_embeddings_from_word_vectors

            init_embeddings_from_word_vectors(model, tokenizer, model_args.init_embeddings, seed=0)
        logger.info("Training from scratch: %s with %.2fM parameters", model_args.config_name, model.num_parameters() / 1e6)
    else:
        raise ValueError(
            "No model: pass --model_name_or_path (a pretrained Forge folder) or --config_name (a preset such as "
            "forge-tiny / forge-small, to train from scratch)."
        )
    check_vocab_matches(model, tokenizer)
    if getattr(model_args, "freeze_embeddings", False):
        weight = model.get_input_embeddings().weight
        weight.requires_grad_(False)  # a tied output layer shares this Parameter, so it stays fixed too
        logger.info("--freeze_embeddings: the token embedding (%.2fM parameters) stays fixed; %.2fM parameters train",
                    weight.numel() / 1e6, sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
    if getattr(model_args, "use_lora", False):
        from .lora import apply_lora

        model = apply_lora(model, model_args)
    return model


def check_mismatched_weights(mismatched: Any, model_args: Any) -> None:
    """Refuse pretrained weights whose shape differs from the model being built, unless
    ``--ignore_mismatched_sizes`` asked for them to be re-initialised (as in transformers' example scripts)."""
    mismatched = sorted(mismatched)
    if not mismatched:
        return
    described = ", ".join(f"{name} {tuple(old)} -> {tuple(new)}" for name, old, new in mismatched[:8])
    more = f" and {len(mismatched) - 8} more" if len(mismatched) > 8 else ""
    if not getattr(model_args, "ignore_mismatched_sizes", False):
        raise ValueError(
            f"{len(mismatched)} weight(s) of {model_args.model_name_or_path} do not fit the model being built: "
            f"{described}{more} (checkpoint shape -> model shape). This comes from a different number of labels or a "
            "config override (--config_overrides, --config_name). Pass --ignore_mismatched_sizes to re-initialise "
            "them (they are then trained from scratch), or drop the override."
        )
    logger.warning("Re-initialised %d mismatched weight(s) (--ignore_mismatched_sizes): %s%s", len(mismatched), described, more)


def check_vocab_matches(model: Any, tokenizer: Any) -> None:
    """Raise when the tokenizer can produce ids the model has no embedding for."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's embedding has {rows} rows, so some ids "
            "would index past it. Use the tokenizer saved with the model (--tokenizer_name = the model folder), "
            "or train from scratch with --config_name so the embedding is sized to the tokenizer."
        )


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def train(trainer: Any, resume_from_checkpoint: Optional[str], num_train_examples: int) -> dict[str, float]:
    """``trainer.train`` with resume, the NaN guard's verdict, and train metrics saved.

    Raises:
        TrainingDivergedError: the NaN guard stopped the run (its message names step and causes).
    """
    from .console import use_stage_progress
    from .guards import checkpoint_is_final, finish_from_checkpoint

    use_stage_progress(trainer)  # one progress bar; step logs to <output_dir>/train_log.jsonl

    explicit = trainer.args.resume_from_checkpoint is not None  # the user asked to continue that checkpoint
    if resume_from_checkpoint and checkpoint_is_final(resume_from_checkpoint, honour_stop=not explicit):
        metrics = finish_from_checkpoint(trainer, resume_from_checkpoint)  # killed after its last checkpoint
    else:
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, NaNGuardCallback) and callback.triggered:
                raise TrainingDivergedError(callback.message)
        metrics = dict(result.metrics)
    metrics["train_samples"] = num_train_examples
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

def prediction_splits(training_args: Any, available: Any) -> list[tuple[str, str]]:
    """``(split, metric prefix)`` pairs to predict: validation with --do_eval, test with --do_predict, if present."""
    wanted = (("validation", "eval", training_args.do_eval), ("test", "predict", training_args.do_predict))
    return [(split, prefix) for split, prefix, on in wanted if on and split in available]


def record_metrics(trainer: Any, prefix: str, scores: Mapping[str, float], into: dict[str, float]) -> None:
    """Log and save one split's metrics (``<prefix>_results.json``) and add them to the run's results."""
    trainer.log_metrics(prefix, scores)
    trainer.save_metrics(prefix, scores)
    into.update(scores)


def write_predictions(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write one JSON object per line (UTF-8), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _hyperparameters(training_args: Any, model_args: Any) -> dict[str, Any]:
    keys = (
        "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
        "num_train_epochs", "max_steps", "warmup_steps", "weight_decay", "label_smoothing_factor", "lr_scheduler_type",
        "seed", "early_stopping_patience", "metric_for_best_model", "ema_decay", "max_train_minutes",
    )
    hyper = {key: getattr(training_args, key) for key in keys if getattr(training_args, key, None) is not None}
    hyper["lr_scheduler_type"] = str(hyper.get("lr_scheduler_type", ""))
    for key, value in model_args.config_kwargs().items():
        hyper[f"config.{key}"] = value
    for key in ("architecture", "init_embeddings", "freeze_embeddings"):
        if getattr(model_args, key, None):
            hyper[key] = getattr(model_args, key)
    if getattr(model_args, "use_lora", False):
        from .lora import DEFAULT_TARGET_NAMES

        hyper.update({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha, "lora_dropout": model_args.lora_dropout,
                      "lora_target_modules": model_args.lora_target_modules or ",".join(DEFAULT_TARGET_NAMES)})
    return hyper


def finish_run(
    trainer: Any,
    tokenizer: Any,
    *,
    model_args: Any,
    data_args: Any,
    training_args: Any,
    task: str,
    metrics: Mapping[str, Any],
    train_metrics: Optional[Mapping[str, Any]] = None,
    dataset_name: Optional[str] = None,
    started: Optional[float] = None,
    argv: Optional[Sequence[str]] = None,
) -> None:
    """Save the Hub-ready folder, ``all_results.json``, the loss curve and the model card (main process only).

    ``task`` is the pipeline task (text-classification, translation, summarization, question-answering,
    semantic-role-labeling); ``metrics`` are the measured evaluation results (``eval_*``) for the card.
    """
    # Every process takes part in the FSDP / ZeRO-3 gather before the non-main ones leave.
    final_model = gathered_model(trainer, trainer.model) if training_args.do_train else None
    if not trainer.is_world_process_zero():
        return
    from ..publishing.export import save_hub_folder

    from .guards import release_run_lock, save_or_rescue
    from .lora import is_lora_model, save_adapter_and_merge

    output_dir = Path(training_args.output_dir)
    if final_model is not None and is_lora_model(final_model):
        final_model = save_adapter_and_merge(final_model, output_dir, model_args.model_name_or_path)
    if training_args.do_train:
        from .architectures import is_forge_model, save_bart_folder

        # a failed save (disk full) keeps the model in a rescue folder and says where; start_run guarded overwriting
        if is_forge_model(final_model):
            save_or_rescue(save_hub_folder, final_model, tokenizer, output_dir, task=task, overwrite=True)
        else:  # the BART control (--architecture bart): plain BART weights and config
            save_or_rescue(save_bart_folder, final_model, tokenizer, output_dir, task=task)
    all_metrics = {**(train_metrics or {}), **metrics}
    trainer.save_metrics("all", all_metrics, combined=False)
    curve = plot_loss_curve(trainer.state.log_history, output_dir / LOSS_CURVE_NAME, title=task)
    if not training_args.do_train:
        release_run_lock(output_dir)
        return
    from ..privacy.dp import card_section

    elapsed = f", {time.time() - started:.0f} s wall-clock" if started else ""
    steps = trainer.state.global_step
    command = f"python -m {_recipe_module(task)} " + shlex.join(redact_argv(argv if argv is not None else sys.argv[1:]))
    write_model_card(
        output_dir,
        model_name=output_dir.name,
        task=task,
        metrics={k: v for k, v in metrics.items() if k.startswith("eval_")},
        base_model=model_args.model_name_or_path,  # a Hub id or a local folder, named by its card title and path
        dataset_name=dataset_name or data_args.dataset_name or _data_label(data_args),
        dataset_split="validation",
        hyperparameters=_hyperparameters(training_args, model_args),
        training_budget=f"{steps} optimizer steps ({trainer.state.epoch or 0:.2f} epochs){elapsed}",
        command=command,
        loss_curve=curve,
        extra_sections=[s for s in (card_section(train_metrics),) if s],
    )
    release_run_lock(output_dir)


def _recipe_module(task: str) -> str:
    """The module that trains ``task`` (a name or alias in the task registry), for the card's command."""
    from .registry import get_task

    try:
        return get_task(task).module or module_name(f"recipes.{task}")
    except ValueError:
        return module_name(f"recipes.{task}")


def _data_label(data_args: Any) -> str:
    files = data_args.data_files()
    if not files:
        return "local data"
    return str(Path(next(iter(files.values()))).parent.name or "local data")
