"""Fine-tune Forge for extractive question answering (SQuAD format; EM/F1; v2-style no-answer support).

    python -m recipes.qa --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/qa/train.jsonl --validation_file ../shared/data/qa/validation.jsonl \
        --max_seq_length 384 --doc_stride 128 --do_train --do_eval --output_dir runs/qa \
        --num_train_epochs 2 --learning_rate 1e-4 --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2

Long contexts become overlapping windows (``--doc_stride``); answers are picked by n-best span
post-processing (``--n_best_size``, ``--max_answer_length``) and, when some questions have no answer
(or ``--version_2_with_negative``), the null score threshold (``--null_score_diff_threshold``). See
``recipes/core/qa_utils.py`` for the no-CLS convention (position 0 is "no answer").
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import numpy as np
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from privacy.dp import trainer_class
from recipes.core.args import ForgeTrainingArguments, ModelArguments, QADataArguments, parse_args
from recipes.core.callbacks import build_callbacks
from recipes.core.data import check_not_empty, load_raw_datasets, select_samples
from recipes.core.guards import drop_unusable_prediction_labels
from recipes.core.metrics import squad_score
from recipes.core.qa_utils import postprocess_qa_predictions, prepare_qa_features
from recipes.core.tasks import validate_for_task
from recipes.core.safety import ForgeTrainer
from recipes.core.trainer_utils import (
    finish_run, load_model, load_tokenizer, prediction_splits, record_metrics, start_run, train, write_predictions,
)

logger = logging.getLogger(__name__)
TASK = "question-answering"
POSTPROCESS_COLUMNS = ["example_id", "offset_mapping"]


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    started = time.time()
    model_args, data_args, training_args = parse_args(ModelArguments, QADataArguments, ForgeTrainingArguments, args=argv)
    resume = start_run(training_args, model_args, data_args)

    raw = select_samples(load_raw_datasets(data_args, model_args.cache_dir, training_args.seed), data_args)
    validate_for_task("qa", raw, data_args)
    if not training_args.do_train:  # predictions need no answers: missing ones are not scored
        drop_unusable_prediction_labels(raw, data_args.answer_column, lambda v: isinstance(v, dict), "answer_column")
    version_2 = data_args.version_2_with_negative
    if version_2 is None:  # detect unanswerable questions in the data
        version_2 = any(
            not answers["text"]
            for ds in raw.values() if data_args.answer_column in ds.column_names
            for answers in ds[data_args.answer_column]
        )
    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args, AutoModelForQuestionAnswering, tokenizer)

    features = {}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"windowing {split}"):
            features[split] = ds.map(
                prepare_qa_features, batched=True, remove_columns=ds.column_names,
                num_proc=data_args.preprocessing_num_workers, load_from_cache_file=not data_args.overwrite_cache,
                desc=f"windowing {split}",
                fn_kwargs=dict(
                    tokenizer=tokenizer, max_seq_length=data_args.max_seq_length, doc_stride=data_args.doc_stride,
                    max_question_length=data_args.max_question_length, question_column=data_args.question_column,
                    context_column=data_args.context_column, answer_column=data_args.answer_column,
                    id_column=data_args.id_column, overlong_policy=data_args.overlong_policy,
                ),
            )
        check_not_empty(features[split], split, "after windowing", "Every example was dropped; see the warnings above.")

    def answers_for(split: str, start_logits: np.ndarray, end_logits: np.ndarray) -> tuple[dict, dict]:
        n = len(features[split])  # distributed evaluation may pad with repeated rows: cut them
        return postprocess_qa_predictions(
            raw[split], list(features[split].select_columns(POSTPROCESS_COLUMNS)), start_logits[:n], end_logits[:n],
            n_best_size=data_args.n_best_size, max_answer_length=data_args.max_answer_length,
            version_2_with_negative=version_2, null_score_diff_threshold=data_args.null_score_diff_threshold,
            context_column=data_args.context_column, id_column=data_args.id_column,
        )

    def references(split: str) -> list[dict]:
        ids, answers = raw[split][data_args.id_column], raw[split][data_args.answer_column]
        return [{"id": i, "answers": a} for i, a in zip(ids, answers)]

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        start_logits, end_logits = eval_pred.predictions[:2]
        answers, _ = answers_for("validation", start_logits, end_logits)
        return squad_score(answers, references("validation"))

    model_inputs = {split: feats.remove_columns(POSTPROCESS_COLUMNS) for split, feats in features.items()}
    train_rows = len(model_inputs["train"]) if "train" in model_inputs else None
    trainer = trainer_class(training_args, TASK, num_examples=len(raw["train"]) if "train" in raw else None, num_rows=train_rows,
                            base=ForgeTrainer)(
        model=model,
        args=training_args,
        train_dataset=model_inputs.get("train") if training_args.do_train else None,
        eval_dataset=model_inputs.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=data_args.collator_pad_multiple(training_args)),
        compute_metrics=compute_metrics if "validation" in raw else None,
        callbacks=build_callbacks(training_args, "f1", True, task=TASK) + list(callbacks or []),
    )

    train_metrics = train(trainer, resume, len(raw["train"])) if training_args.do_train else None
    metrics: dict[str, float] = {}
    trainer.compute_metrics = None  # predictions are scored below, per split
    for split, prefix in prediction_splits(training_args, raw):
        result = trainer.predict(model_inputs[split], metric_key_prefix=prefix)
        answers, nbest = answers_for(split, result.predictions[0], result.predictions[1])
        has_gold = data_args.answer_column in raw[split].column_names
        if has_gold:
            scores = {f"{prefix}_{k}": v for k, v in squad_score(answers, references(split)).items()}
            scores.update({k: v for k, v in result.metrics.items() if k.endswith("_loss")})
            record_metrics(trainer, prefix, scores, metrics)
        rows = []
        for example in raw[split]:
            qid = example[data_args.id_column]
            row = {"id": qid, "question": example[data_args.question_column], "prediction": answers[qid],
                   "nbest": [{k: c[k] for k in ("text", "score", "start")} for c in nbest[qid][:5]]}
            if has_gold:
                row["answers"] = example[data_args.answer_column]["text"]
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
