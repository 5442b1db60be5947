"""Fine-tune Forge for semantic role labelling (one example per predicate; seqeval span F1 without V).

    python -m recipes.srl --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/srl/train.jsonl --validation_file ../shared/data/srl/validation.jsonl \
        --do_train --do_eval --output_dir runs/srl --num_train_epochs 10 --learning_rate 2e-4 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 3

The predicate is marked in the input with ``<pred> ... </pred>`` marker tokens (added to the tokenizer
and the model's embeddings); BIO role labels sit on each word's first subword, and predictions are
written back as one tag per word (``recipes/core/srl_utils.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

from privacy.dp import trainer_class
from recipes.core.args import ForgeTrainingArguments, ModelArguments, SRLDataArguments, parse_args
from recipes.core.callbacks import build_callbacks
from recipes.core.data import DataValidationError, check_not_empty, first_problem_rows, load_raw_datasets, select_samples
from recipes.core.guards import drop_unusable_prediction_labels
from recipes.core.metrics import srl_metrics
from recipes.core.srl_utils import augment_srl_split, build_srl_label_list, prepare_srl_features, word_tags_from_token_predictions
from recipes.core.tasks import validate_for_task
from recipes.core.safety import ForgeTrainer
from recipes.core.trainer_utils import (
    finish_run, load_folder_config, load_model, load_tokenizer, prediction_splits, record_metrics, start_run, train, write_predictions,
)

logger = logging.getLogger(__name__)
TASK = "semantic-role-labeling"


def _label_list(raw: Any, data_args: SRLDataArguments, model_args: ModelArguments) -> tuple[list[str], str]:
    """Labels from the data (train + validation tags) when training, else from the fine-tuned model."""
    if "train" in raw:
        splits = [s for s in ("train", "validation") if s in raw and data_args.tags_column in raw[s].column_names]
        return build_srl_label_list([tags for s in splits for tags in raw[s][data_args.tags_column]]), "the data"
    config = load_folder_config(model_args)
    return [config.id2label[i] for i in range(config.num_labels)], "the model's config"


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    started = time.time()
    model_args, data_args, training_args = parse_args(ModelArguments, SRLDataArguments, ForgeTrainingArguments, args=argv)
    resume = start_run(training_args, model_args, data_args)

    raw = select_samples(load_raw_datasets(data_args, model_args.cache_dir, training_args.seed), data_args)
    validate_for_task("srl", raw, data_args)
    labels, source = _label_list(raw, data_args, model_args)
    label2id = {label: i for i, label in enumerate(labels)}
    if not training_args.do_train:  # predictions need no tags: unknown or missing ones are not scored
        drop_unusable_prediction_labels(raw, data_args.tags_column, lambda tags: all(t in label2id for t in tags), "tags_column")
    for split in raw:
        if data_args.tags_column in raw[split].column_names:
            problems = first_problem_rows(
                raw, split, lambda ex: next((f"tag {t!r} is not in the label set" for t in ex[data_args.tags_column] if t not in label2id), None)
            )
            if problems:
                raise DataValidationError(
                    f"Role tags outside the label set from {source} ({len(labels)} labels) in the {split} split:\n  "
                    + "\n  ".join(problems) + "\nUse data with the model's roles, or fine-tune on data that has them."
                )

    tokenizer = load_tokenizer(model_args)
    model = load_model(
        model_args, AutoModelForTokenClassification, tokenizer,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
    )
    from tokenization import add_task_tokens  # adds the markers and grows the embeddings to match

    markers = tuple(add_task_tokens(tokenizer, model, [data_args.predicate_marker, data_args.predicate_end_marker]))

    columns = (data_args.tokens_column, data_args.predicate_index_column, data_args.tags_column)
    if "train" in raw and data_args.augment == "word_dropout":
        raw["train"] = augment_srl_split(raw["train"], columns, data_args.augment_prob, training_args.seed)
    def encode(examples: dict, indices: list[int]) -> dict:
        return prepare_srl_features(
            examples, tokenizer, label2id=label2id, marker_ids=markers, max_seq_length=data_args.max_seq_length,
            tokens_column=columns[0], predicate_index_column=columns[1], tags_column=columns[2],
            overlong_policy=data_args.overlong_policy, indices=indices,
        )

    features = {}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"tokenising {split}"):
            features[split] = ds.map(
                encode, batched=True, with_indices=True, remove_columns=ds.column_names,
                num_proc=data_args.preprocessing_num_workers, load_from_cache_file=not data_args.overwrite_cache,
                desc=f"tokenising {split}",
            )
        check_not_empty(features[split], split, "after tokenisation", "Every sentence was longer than --max_seq_length.")
    word_ids = {split: feats["word_ids"] for split, feats in features.items()}
    example_rows = {split: feats["example_index"] for split, feats in features.items()}  # dropped rows skipped
    model_inputs = {split: feats.remove_columns(["word_ids", "example_index"]) for split, feats in features.items()}

    trainer = trainer_class(training_args, TASK, base=ForgeTrainer)(  # refuses --dp_epsilon (see privacy.dp)
        model=model,
        args=training_args,
        train_dataset=model_inputs.get("train") if training_args.do_train else None,
        eval_dataset=model_inputs.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(
            tokenizer, pad_to_multiple_of=data_args.collator_pad_multiple(training_args)
        ),
        compute_metrics=srl_metrics(dict(enumerate(labels))),
        callbacks=build_callbacks(training_args, "f1", True, task=TASK) + list(callbacks or []),
    )

    train_metrics = train(trainer, resume, len(model_inputs["train"])) if training_args.do_train else None
    metrics: dict[str, float] = {}
    for split, prefix in prediction_splits(training_args, raw):
        result = trainer.predict(model_inputs[split], metric_key_prefix=prefix)
        if result.metrics and "labels" in model_inputs[split].column_names:
            record_metrics(trainer, prefix, result.metrics, metrics)
        predicted = result.predictions[0] if isinstance(result.predictions, tuple) else result.predictions
        predicted = predicted.argmax(-1)
        rows = []
        for example, ids, prediction in zip(raw[split].select(example_rows[split]), word_ids[split], predicted):
            words = example[columns[0]]
            tags = word_tags_from_token_predictions(
                [None if w < 0 else w for w in ids], prediction, dict(enumerate(labels)), len(words)
            )
            row = {"tokens": words, "predicate_index": example[columns[1]], "prediction": tags}
            if columns[2] in example:
                row["tags"] = example[columns[2]]
            rows.append(row)
        if trainer.is_world_process_zero():
            write_predictions(f"{training_args.output_dir}/{prefix}_predictions.jsonl", rows)

    finish_run(
        trainer, tokenizer, model_args=model_args, data_args=data_args, training_args=training_args, task=TASK,
        metrics=metrics, train_metrics=train_metrics, started=started, argv=argv,
    )
    return metrics


if __name__ == "__main__":
    main()
