"""The text-to-text recipe body shared by translation and summarization.

The two recipes differ only in where source and target come from, which metric they report and what
the predictions file holds; :class:`Seq2SeqTask` captures those differences and :func:`run_seq2seq`
does the rest (Seq2SeqTrainer, predict_with_generate, beam search with length penalty, label
smoothing via ``DataCollatorForSeq2Seq(tokenizer, model=model)`` so decoder inputs come from the
collator).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

from .args import ForgeSeq2SeqTrainingArguments, ModelArguments, parse_args
from .callbacks import build_callbacks
from .data import load_raw_datasets, select_samples
from .guards import drop_unusable_prediction_labels
from .metrics import decode_generated, seq2seq_metrics
from .tasks import apply_overlong_policy, tokenize_seq2seq, validate_for_task
from .safety import ForgeSeq2SeqTrainer
from .trainer_utils import (
    finish_run, load_model, load_tokenizer, prediction_splits, record_metrics, start_run, train, write_predictions,
)

logger = logging.getLogger(__name__)

__all__ = ["Seq2SeqTask", "configure_generation", "run_seq2seq"]


@dataclass(frozen=True)
class Seq2SeqTask:
    """What differs between the text-to-text recipes."""

    name: str  # "translation" | "summarization" (validation rules, metric kind, pipeline task)
    data_args_class: type
    pairs: Callable[[Mapping[str, list], Any], tuple[list[str], Optional[list[str]]]]  # batch -> (sources, targets)
    best_metric: str  # metric for early stopping / best model
    extra_columns: Callable[[Any], list[str]] = lambda data_args: []  # raw columns copied into predictions


def configure_generation(model: Any, data_args: Any, training_args: Any) -> None:
    """Evaluation-time generation settings: beams, length penalty, length limits, repeated n-grams.

    ``--val_max_target_length`` / ``--num_beams`` override the Trainer's ``--generation_*`` flags.
    """
    training_args.predict_with_generate = True
    max_length = data_args.val_max_target_length or training_args.generation_max_length or data_args.max_target_length
    num_beams = data_args.num_beams or training_args.generation_num_beams or 1
    training_args.generation_max_length = max_length
    training_args.generation_num_beams = num_beams
    config = model.generation_config
    config.max_length = max_length
    config.num_beams = num_beams
    config.length_penalty = data_args.length_penalty
    config.no_repeat_ngram_size = data_args.no_repeat_ngram_size
    config.min_length = getattr(data_args, "min_target_length", 0) or 0
    config.early_stopping = num_beams > 1
    config.decoder_start_token_id = model.config.decoder_start_token_id
    config.eos_token_id = model.config.eos_token_id
    config.pad_token_id = model.config.pad_token_id


def run_seq2seq(task: Seq2SeqTask, argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Parse ``argv``, fine-tune a Forge seq2seq model, evaluate/predict with generation, save everything."""
    started = time.time()
    model_args, data_args, training_args = parse_args(
        ModelArguments, task.data_args_class, ForgeSeq2SeqTrainingArguments, args=argv
    )
    resume = start_run(training_args, model_args, data_args)

    raw = select_samples(load_raw_datasets(data_args, model_args.cache_dir, training_args.seed), data_args)
    validate_for_task(task.name, raw, data_args)
    if not training_args.do_train:  # predictions need no references: missing ones are not scored
        target = getattr(data_args, "summary_column", None) or getattr(data_args, "target_lang")
        flag = "summary_column" if hasattr(data_args, "summary_column") else "target_lang"
        drop_unusable_prediction_labels(raw, target, lambda v: isinstance(v, str), flag)
    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args, AutoModelForSeq2SeqLM, tokenizer)
    configure_generation(model, data_args, training_args)

    def encode(examples: Mapping[str, list]) -> dict[str, list]:
        sources, targets = task.pairs(examples, data_args)
        return tokenize_seq2seq(
            examples, tokenizer, sources=sources, targets=targets, max_source_length=data_args.max_source_length,
            max_target_length=data_args.max_target_length, prefix=data_args.source_prefix or "",
        )

    features = {}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"tokenising {split}"):
            mapped = ds.map(
                encode, batched=True, remove_columns=ds.column_names, num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache, desc=f"tokenising {split}",
            )
        features[split] = apply_overlong_policy(
            mapped, raw, split, data_args.overlong_policy, "max_source_length", data_args.max_source_length
        )

    trainer = ForgeSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train") if training_args.do_train else None,
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        # model= gives decoder_input_ids from the labels, which label smoothing needs (it pops labels)
        data_collator=DataCollatorForSeq2Seq(
            tokenizer, model=model, label_pad_token_id=-100,
            pad_to_multiple_of=data_args.collator_pad_multiple(training_args),
        ),
        compute_metrics=seq2seq_metrics(tokenizer, task.name),
        callbacks=build_callbacks(training_args, task.best_metric, True, task=task.name) + list(callbacks or []),
    )

    train_metrics = train(trainer, resume, len(features["train"])) if training_args.do_train else None
    metrics: dict[str, float] = {}
    for split, prefix in prediction_splits(training_args, features):
        result = trainer.predict(features[split], metric_key_prefix=prefix)
        if result.metrics and "labels" in features[split].column_names:
            record_metrics(trainer, prefix, result.metrics, metrics)
        generated = decode_generated(tokenizer, result.predictions)
        sources, targets = task.pairs(raw[split][:], data_args)
        extra = {col: raw[split][col] for col in task.extra_columns(data_args) if col in raw[split].column_names}
        rows = []
        for i, (source, prediction) in enumerate(zip(sources, generated)):
            row = {**{col: values[i] for col, values in extra.items()}, "source": source, "prediction": prediction}
            if targets is not None:
                row["reference"] = targets[i]
            rows.append(row)
        if trainer.is_world_process_zero():
            write_predictions(f"{training_args.output_dir}/{prefix}_predictions.jsonl", rows)

    finish_run(
        trainer, tokenizer, model_args=model_args, data_args=data_args, training_args=training_args, task=task.name,
        metrics=metrics, train_metrics=train_metrics, started=started, argv=argv,
    )
    return metrics
