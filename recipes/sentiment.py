"""Fine-tune Forge for sentiment / text classification (binary or multi-class).

    python -m recipes.sentiment --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/sentiment/train.jsonl --validation_file ../shared/data/sentiment/validation.jsonl \
        --do_train --do_eval --output_dir runs/sentiment --num_train_epochs 3 --learning_rate 1e-4 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2

The label set (and ``id2label``) comes from the training data; accuracy and macro-F1 are reported.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from privacy.dp import trainer_class
from recipes.core.args import ForgeTrainingArguments, ModelArguments, SentimentDataArguments, parse_args
from recipes.core.callbacks import build_callbacks
from recipes.core.data import DataValidationError, build_label_list, check_labels, load_raw_datasets, select_samples
from recipes.core.guards import drop_unusable_prediction_labels
from recipes.core.metrics import classification_metrics
from recipes.core.tasks import _as_label, apply_overlong_policy, augment_split, tokenize_classification, validate_for_task
from recipes.core.safety import ForgeTrainer
from recipes.core.trainer_utils import (
    finish_run, load_folder_config, load_model, load_tokenizer, prediction_splits, record_metrics, start_run, train, write_predictions,
)

logger = logging.getLogger(__name__)
TASK = "text-classification"


def _label_names(data_args: SentimentDataArguments, labels: list) -> list[str]:
    if not data_args.class_names:
        return [str(label) for label in labels]
    names = [n.strip() for n in data_args.class_names.split(",")]
    if len(names) != len(labels):
        raise DataValidationError(f"--class_names gives {len(names)} names but the training data has {len(labels)} labels {labels}.")
    return names


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    started = time.time()
    model_args, data_args, training_args = parse_args(ModelArguments, SentimentDataArguments, ForgeTrainingArguments, args=argv)
    resume = start_run(training_args, model_args, data_args)

    raw = select_samples(load_raw_datasets(data_args, model_args.cache_dir, training_args.seed), data_args)
    validate_for_task("sentiment", raw, data_args)

    # Label set: from the fine-tuned model when it has one that is not the default, else from train.
    model_config_labels = None
    if "train" in raw:
        labels = build_label_list(raw["train"], data_args.label_column)
        names = _label_names(data_args, labels)
    else:
        config = load_folder_config(model_args)
        names = [config.id2label[i] for i in range(config.num_labels)]
        labels = [int(n) if n.isdigit() else n for n in names]
        model_config_labels = names
    if not training_args.do_train:  # predictions need no labels: unknown or missing ones are not scored
        drop_unusable_prediction_labels(raw, data_args.label_column, lambda v: _as_label(v) in labels, "label_column")
    for split in ("validation", "test"):
        if split in raw and data_args.label_column in raw[split].column_names:
            check_labels(raw, split, data_args.label_column, labels, where_from=model_config_labels and "the model's config" or "the training data")
    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(names))

    tokenizer = load_tokenizer(model_args)
    model = load_model(
        model_args, AutoModelForSequenceClassification, tokenizer,
        num_labels=len(labels), id2label=id2label, label2id={n: i for i, n in id2label.items()},
    )

    if "train" in raw and data_args.augment != "none":
        raw["train"] = augment_split(
            raw["train"], data_args.text_column, data_args.augment, data_args.augment_prob, data_args.augment_copies, training_args.seed
        )
    features = {}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"tokenising {split}"):
            mapped = ds.map(
                tokenize_classification,
                batched=True,
                remove_columns=ds.column_names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"tokenising {split}",
                fn_kwargs=dict(
                    tokenizer=tokenizer, text_column=data_args.text_column, text_pair_column=data_args.text_pair_column,
                    label_column=data_args.label_column, label2id=label2id, max_length=data_args.max_seq_length,
                    lowercase=data_args.lowercase, remove_stopwords=data_args.remove_stopwords,
                ),
            )
        features[split] = apply_overlong_policy(mapped, raw, split, data_args.overlong_policy, "max_seq_length", data_args.max_seq_length)

    trainer = trainer_class(training_args, TASK, base=ForgeTrainer)(
        model=model,
        args=training_args,
        train_dataset=features.get("train") if training_args.do_train else None,
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=data_args.collator_pad_multiple(training_args)),
        compute_metrics=classification_metrics(len(labels)),
        callbacks=build_callbacks(training_args, "accuracy", True, task=TASK) + list(callbacks or []),
    )

    train_metrics = train(trainer, resume, len(features["train"])) if training_args.do_train else None
    metrics: dict[str, float] = {}
    out = training_args.output_dir
    for split, prefix in prediction_splits(training_args, features):
        result = trainer.predict(features[split], metric_key_prefix=prefix)
        predicted = result.predictions[0] if isinstance(result.predictions, tuple) else result.predictions
        predicted = predicted.argmax(-1)
        if result.metrics and result.label_ids is not None:
            record_metrics(trainer, prefix, result.metrics, metrics)
        texts = raw[split][data_args.text_column]
        rows = [{"text": t, "prediction": id2label[int(p)]} for t, p in zip(texts, predicted)]
        if data_args.label_column in raw[split].column_names:
            for row, gold in zip(rows, raw[split][data_args.label_column]):
                row["label"] = id2label[label2id[int(gold) if isinstance(gold, float) else gold]]
        if trainer.is_world_process_zero():
            write_predictions(f"{out}/{prefix}_predictions.jsonl", rows)

    finish_run(
        trainer, tokenizer, model_args=model_args, data_args=data_args, training_args=training_args, task=TASK,
        metrics=metrics, train_metrics=train_metrics, started=started, argv=argv,
    )
    return metrics


if __name__ == "__main__":
    main()
