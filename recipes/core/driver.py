"""The one fine-tuning driver every task recipe runs on.

:func:`run_task` is the skeleton the recipes used to repeat: parse -> :func:`start_run` -> load and validate
data -> tokenizer and model -> features -> Trainer -> train -> predict each split and write its predictions
-> :func:`finish_run`. What differs per task is a :class:`TaskRecipe` subclass named by the task's
:class:`~recipes.core.registry.TaskSpec`: label set and config overrides, model set-up, augmentation,
encoding, collator, metrics and the rows of the predictions file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import transformers

from ..privacy.dp import trainer_class as private_trainer_class

from .args import (
    ForgeTrainingArguments, ModelArguments, apply_pretrained_defaults, given_fields, parse_args, with_defaults,
)
from .callbacks import build_callbacks
from .data import load_raw_datasets, select_samples
from .guards import warn_post_norm_start
from .registry import TaskSpec
from .learning_curve import eval_subset
from .trainers import ForgeTrainer  # evaluation in dataset order, also under group_by_length
from .tasks import apply_overlong_policy, validate_for_task
from .trainer_utils import (
    finish_run, load_model, load_tokenizer, prediction_splits, record_metrics, start_run, train, write_predictions,
)

logger = logging.getLogger(__name__)

__all__ = ["TaskRecipe", "predicted_classes", "run_task", "task_argument_types"]


def predicted_classes(result: Any) -> np.ndarray:
    """Argmax over the last axis of ``Trainer.predict`` logits (the first output when there are several)."""
    logits = result.predictions[0] if isinstance(result.predictions, tuple) else result.predictions
    return logits.argmax(-1)


class TaskRecipe:
    """The steps of a fine-tuning run that differ per task; :func:`run_task` calls them in order.

    One instance lives for one run and keeps what the steps share (``raw``, label maps, ``features``).
    """

    trainer_class: type = ForgeTrainer  # transformers.Trainer that keeps its arguments as JSON, not a pickle
    training_args_class: type = ForgeTrainingArguments  # Seq2SeqTrainer needs Seq2SeqTrainingArguments
    encode_desc = "tokenising"  # progress label of the map step
    length_flag = "max_seq_length"  # the flag an over-long input is measured against

    def __init__(self, spec: TaskSpec, model_args: Any, data_args: Any, training_args: Any) -> None:
        self.spec, self.model_args, self.data_args, self.training_args = spec, model_args, data_args, training_args
        self.tokenizer: Any = None  # set by run_task once loaded
        self.raw: dict[str, Any] = {}
        self.features: dict[str, Any] = {}

    # -- before and after the model --------------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        """Inspect ``self.raw`` (label set, ...) and return config overrides for the model (num_labels, ...)."""
        return {}

    def forge_head_option(self, flag: str, config_field: str) -> dict[str, Any]:
        """``{config_field: value}`` for a Forge head option given as ``--flag`` (unset: ``{}``, so a folder keeps its
        own setting and a preset its recipe default); refused when switched on for the BART control."""
        value = getattr(self.data_args, flag)
        if self.model_args.architecture != "forge":
            if value:
                raise ValueError(f"--{flag} is a Forge head option (ForgeConfig.{config_field}); drop it for "
                                 f"--architecture {self.model_args.architecture}.")
            return {}
        return {} if value is None else {config_field: value}

    def drop_unusable_labels(self, column: str, is_valid: Any, flag: str) -> None:
        """Without training, predict a test split whose labels are missing or unknown without scoring it."""
        if not self.training_args.do_train:
            from .guards import drop_unusable_prediction_labels

            drop_unusable_prediction_labels(self.raw, column, is_valid, flag)

    def setup_model(self, model: Any, tokenizer: Any) -> None:
        """Adjust the loaded model (generation settings, task tokens)."""

    def augment(self, train: Any) -> Any:
        """The training split, with augmented copies where the task's options ask for them."""
        return train

    # -- features ---------------------------------------------------------------------------------------------
    def training_eval_dataset(self, validation: Any) -> Any:
        """What evaluations during training run on: the first ``--eval_subset_size`` rows (learning curves).

        The final evaluation still reads the whole split. A task whose metric needs more than the rows (QA: the
        windows' examples) overrides this.
        """
        return eval_subset(validation, self.training_args)

    def encode_function(self, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        """``(function, extra map kwargs)`` for ``Dataset.map(batched=True)`` over a raw split."""
        raise NotImplementedError

    def after_encode(self, split: str, mapped: Any) -> Any:
        """Act on the mapped split: the over-long policy by default (the ``overlong`` column)."""
        limit = getattr(self.data_args, self.length_flag)
        return apply_overlong_policy(mapped, self.raw, split, self.data_args.overlong_policy, self.length_flag, limit)

    def model_inputs(self, split: str) -> Any:
        """The columns of ``features[split]`` the model takes (bookkeeping columns removed)."""
        return self.features[split]

    def num_train_examples(self) -> int:
        """The count reported as ``train_samples``."""
        return len(self.features["train"])

    # -- Trainer ----------------------------------------------------------------------------------------------
    def collator(self, tokenizer: Any, model: Any) -> Any:
        return transformers.DataCollatorWithPadding(tokenizer)

    def compute_metrics(self, tokenizer: Any) -> Any:
        """The Trainer's ``compute_metrics`` for the validation split (or None)."""
        return None

    def before_predict(self, trainer: Any) -> None:
        """Called once after training, before the splits are predicted."""

    def read_predictions(self, split: str, prefix: str, result: Any) -> tuple[Optional[Mapping[str, float]], list[dict]]:
        """``(scores to record or None, prediction-file rows)`` from ``trainer.predict`` on ``split``."""
        raise NotImplementedError


def task_argument_types(spec: TaskSpec) -> tuple[type, type, type]:
    """The dataclasses a task recipe's command line is parsed into: model, the task's data, the Trainer's."""
    training = with_defaults(spec.recipe.training_args_class, spec.training_defaults, spec.pretrained_training_defaults)
    return ModelArguments, with_defaults(spec.data_args_class, spec.data_defaults), training


# the config fields that choose the token mixers (Forge's conv / recurrent layers)
_MIXER_FIELDS = ("encoder_mixer", "decoder_mixer", "recurrent_cell")


def preset_defaults_for(spec: TaskSpec, training_args: Any) -> dict[str, Any]:
    """The task's preset config defaults for this run. A DP-SGD run (``--dp_epsilon``) keeps attention layers: Opacus
    computes per-example gradients for them, not for the recurrent or convolution mixers a task may default to (SRL,
    SST-2, QA), which ``recipes.privacy.dp`` would refuse; ``--config_overrides`` still chooses them explicitly."""
    defaults = dict(spec.preset_config_defaults)
    if getattr(training_args, "dp_epsilon", None) is not None and any(k in defaults for k in _MIXER_FIELDS):
        logger.info("DP-SGD: the %s recipe's default token mixers (%s) have no per-example gradients in Opacus; "
                    "this run keeps self-attention.", spec.name,
                    ", ".join(f"{k}={defaults[k]}" for k in _MIXER_FIELDS if k in defaults and not callable(defaults[k])))
        defaults = {k: v for k, v in defaults.items() if k not in _MIXER_FIELDS}
    return defaults


def run_task(spec: TaskSpec, argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Fine-tune a Forge model for ``spec`` with the command line ``argv`` (or one JSON/YAML path); returns eval metrics."""
    started = time.time()
    types = task_argument_types(spec)
    model_args, data_args, training_args = parse_args(*types, args=argv)
    changed = apply_pretrained_defaults(  # a pretrained start: the task's defaults for it, unless flags say otherwise
        training_args, spec.pretrained_training_defaults, given_fields(*types, args=argv)
    ) if model_args.model_name_or_path and spec.pretrained_training_defaults else {}
    resume = start_run(training_args, model_args, data_args)
    if changed:
        logger.info("Fine-tuning a pretrained model: the %s recipe's defaults for it apply (%s); flags override them.",
                    spec.name, ", ".join(f"--{k} {v}" for k, v in changed.items()))
    recipe: TaskRecipe = spec.recipe(spec, model_args, data_args, training_args)

    raw = recipe.raw = select_samples(load_raw_datasets(data_args, model_args.cache_dir, training_args.seed), data_args)
    validate_for_task(spec, raw, data_args)
    overrides = recipe.prepare()
    tokenizer = recipe.tokenizer = load_tokenizer(model_args)
    model = load_model(model_args, getattr(transformers, spec.auto_class), tokenizer,
                       preset_defaults=preset_defaults_for(spec, training_args), **overrides)
    recipe.setup_model(model, tokenizer)
    if training_args.do_train:
        warn_post_norm_start(model, model_args, training_args)
    if "train" in raw:
        raw["train"] = recipe.augment(raw["train"])

    encode, map_kwargs = recipe.encode_function(tokenizer)
    for split, ds in raw.items():
        desc = f"{recipe.encode_desc} {split}"
        with training_args.main_process_first(desc=desc):
            mapped = ds.map(
                encode, batched=True, remove_columns=ds.column_names, num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache, desc=desc, **map_kwargs,
            )
        recipe.features[split] = recipe.after_encode(split, mapped)
    inputs = {split: recipe.model_inputs(split) for split in recipe.features}

    trainer_class = private_trainer_class(  # the recipe's Trainer, made private with --dp_epsilon (recipes.privacy.dp)
        training_args, spec.pipeline_task, num_examples=len(raw["train"]) if "train" in raw else None,
        num_rows=len(inputs["train"]) if "train" in inputs else None, base=recipe.trainer_class,
    )
    collator = recipe.collator(tokenizer, model)
    pad_multiple = data_args.collator_pad_multiple(training_args)  # length buckets (--torch_compile: 32)
    if pad_multiple is not None and hasattr(collator, "pad_to_multiple_of"):
        collator.pad_to_multiple_of = pad_multiple
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=inputs.get("train") if training_args.do_train else None,
        eval_dataset=recipe.training_eval_dataset(inputs.get("validation")),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=recipe.compute_metrics(tokenizer),
        callbacks=build_callbacks(training_args, spec.metric, spec.greater_is_better, task=spec.pipeline_task)
        + list(callbacks or []),
    )

    train_metrics = train(trainer, resume, recipe.num_train_examples()) if training_args.do_train else None
    metrics: dict[str, float] = {}
    recipe.before_predict(trainer)
    for split, prefix in prediction_splits(training_args, inputs):
        result = trainer.predict(inputs[split], metric_key_prefix=prefix)
        scores, rows = recipe.read_predictions(split, prefix, result)
        if scores:
            record_metrics(trainer, prefix, scores, metrics)
        if trainer.is_world_process_zero():
            write_predictions(f"{training_args.output_dir}/{prefix}_predictions.jsonl", rows)

    finish_run(
        trainer, tokenizer, model_args=model_args, data_args=data_args, training_args=training_args,
        task=spec.pipeline_task, metrics=metrics, train_metrics=train_metrics, started=started, argv=argv,
    )
    return metrics
