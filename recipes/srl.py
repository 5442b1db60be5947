r"""Fine-tune Forge for semantic role labelling (one example per predicate; seqeval span F1 without V).

    python -m recipes.srl --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/srl/train.jsonl --validation_file ../shared/data/srl/validation.jsonl \
        --do_train --do_eval --output_dir runs/srl --num_train_epochs 10 --learning_rate 2e-4 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 3

The predicate is marked in the input with ``<pred> ... </pred>`` marker tokens (added to the tokenizer
and the model's embeddings); BIO role labels sit on each word's first subword, and predictions are
written back as one tag per word (``recipes/core/srl_utils.py``).
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

from collections.abc import Iterable
from typing import Any, Optional

from .core.args import ModelArguments, SRLDataArguments
from .core.data import DataValidationError, check_not_empty, first_problem_rows
from .core.driver import TaskRecipe, run_task
from .core.metrics import srl_metrics
from .core.registry import DataColumn, TaskSpec, pipeline_usage
from .core.srl_utils import (
    augment_srl_split, build_srl_label_list, prepare_srl_features, validate_srl_split, word_tags_from_logits,
)
from .core.trainer_utils import load_folder_config

TASK = "semantic-role-labeling"
BOOKKEEPING_COLUMNS = ["word_ids", "example_index"]


def check_srl_rows(raw: Any, split: str, data_args: Any) -> None:
    """One BIO tag per word and the predicate inside the sentence, row by row."""
    validate_srl_split(raw, split, (data_args.tokens_column, data_args.predicate_index_column, data_args.tags_column))


def _label_list(raw: Any, data_args: SRLDataArguments, model_args: ModelArguments) -> tuple[list[str], str]:
    """Labels from the data (train + validation tags) when training, else from the fine-tuned model."""
    if "train" in raw:
        splits = [s for s in ("train", "validation") if s in raw and data_args.tags_column in raw[s].column_names]
        return build_srl_label_list([tags for s in splits for tags in raw[s][data_args.tags_column]]), "the data"
    config = load_folder_config(model_args)
    return [config.id2label[i] for i in range(config.num_labels)], "the model's config"


class SRLRecipe(TaskRecipe):
    """Predicate markers as added tokens, labels on first subwords, one tag per word back out."""

    def prepare(self) -> dict[str, Any]:
        raw, data_args = self.raw, self.data_args
        labels, source = _label_list(raw, data_args, self.model_args)
        label2id = {label: i for i, label in enumerate(labels)}
        self.drop_unusable_labels(data_args.tags_column, lambda tags: all(t in label2id for t in tags), "tags_column")
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
        self.labels, self.label2id = labels, label2id
        self.columns = (data_args.tokens_column, data_args.predicate_index_column, data_args.tags_column)
        overrides = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": label2id}
        # unset: off for a new head (two seeds: 42.9 / 40.0 with it, 39.7 / 41.2 without, inside the seed spread;
        # bench/results/explore/README.md), and a fine-tuned SRL folder keeps its own setting
        return {**overrides, **self.forge_head_option("predicate_context", "classifier_predicate_context")}

    def setup_model(self, model: Any, tokenizer: Any) -> None:
        from .core.layout import tokenization

        data_args = self.data_args  # add_task_tokens adds the markers and grows the embeddings to match
        self.markers = tuple(tokenization.add_task_tokens(tokenizer, model, [data_args.predicate_marker, data_args.predicate_end_marker]))
        if hasattr(model.config, "classifier_predicate_context"):  # a Forge head: where it finds the predicate
            model.config.predicate_marker_id = self.markers[0]

    def augment(self, train: Any) -> Any:
        if self.data_args.augment != "word_dropout":
            return train
        return augment_srl_split(train, self.columns, self.data_args.augment_prob, self.training_args.seed)

    def encode_function(self, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        data_args, columns = self.data_args, self.columns

        def encode(examples: dict, indices: list[int]) -> dict:
            return prepare_srl_features(
                examples, tokenizer, label2id=self.label2id, marker_ids=self.markers,
                max_seq_length=data_args.max_seq_length, tokens_column=columns[0], predicate_index_column=columns[1],
                tags_column=columns[2], overlong_policy=data_args.overlong_policy, indices=indices,
            )

        return encode, {"with_indices": True}

    def after_encode(self, split: str, mapped: Any) -> Any:
        check_not_empty(mapped, split, "after tokenisation", "Every sentence was longer than --max_seq_length.")
        return mapped

    def model_inputs(self, split: str) -> Any:
        return self.features[split].remove_columns(BOOKKEEPING_COLUMNS)

    def collator(self, tokenizer: Any, model: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def compute_metrics(self, tokenizer: Any) -> Any:
        return srl_metrics(dict(enumerate(self.labels)))

    def read_predictions(self, split: str, prefix: str, result: Any) -> tuple[Optional[dict], list[dict]]:
        features, columns, id2label = self.features[split], self.columns, dict(enumerate(self.labels))
        examples = self.raw[split].select(features["example_index"])  # rows dropped as over-long are skipped
        rows = []
        logits = result.predictions[0] if isinstance(result.predictions, tuple) else result.predictions
        for example, ids, row_logits in zip(examples, features["word_ids"], logits):
            words = example[columns[0]]
            tags = word_tags_from_logits([None if w < 0 else w for w in ids], row_logits, self.labels, len(words))
            row = {"tokens": words, "predicate_index": example[columns[1]], "prediction": tags}
            if columns[2] in example:
                row["tags"] = example[columns[2]]
            rows.append(row)
        scores = result.metrics if result.metrics and "labels" in features.column_names else None
        return scores, rows


def role_targets(ds: Any, data_args: Any) -> Optional[tuple[Iterable[Any], str]]:
    """Whether each predicate has a role tag other than 'O' (the training-target guard)."""
    if data_args.tags_column not in (ds.column_names or []):
        return None
    return (None if all(t == "O" for t in (tags or [])) else "tags" for tags in ds[data_args.tags_column]), "--tags_column"


SPEC = TaskSpec(
    name="srl", aliases=(TASK,), title="Semantic role labeling", recipe=SRLRecipe, metric="f1",
    auto_class="AutoModelForTokenClassification", pipeline_task=TASK, hub_pipeline_tag="token-classification",
    data_args_class=SRLDataArguments, check_rows=check_srl_rows,
    training_targets=role_targets,
    data_columns=(DataColumn("tokens_column", "text_list"), DataColumn("predicate_index_column", "int"),
                  DataColumn("tags_column", "text_list", True)),
    usage=pipeline_usage(
        'srl = pipeline("semantic-role-labeling", model=model_id, trust_remote_code=True)\n'
        "# Mark the predicate with [brackets], or pass predicate=<word index>.\n"
        'print(srl("The committee [approved] the plan on Monday ."))\n'
        'print(srl("The committee approved the plan on Monday .", predicate=2))'
    ),
    sample_input="The council [approved] the budget .",
    # what the CPU measurements used (bench/results/explore, quality_cpu.jsonl); see recipes/sentiment.py
    training_defaults=(("learning_rate", 1e-3), ("warmup_steps", 200), ("weight_decay", 0.01),
                       ("per_device_train_batch_size", 32), ("train_sampling_strategy", "group_by_length")),
    # roles are relations to the predicate: rotary positions (relative) gave F1 39.7 against 35.3 with sinusoids
    # from scratch in 10 CPU-minutes (bench/results/explore/README.md, session 13); a bidirectional LSTM in place of
    # self-attention in each encoder layer, with each token joined to the predicate's state before the classifier,
    # gave 47.1 and 47.6 (seeds 42, 43) against 42.9 and 40.0 with attention: 4,285 training predicates are few
    # for attention to learn word order from (bench/results/explore/README.md, session 17)
    preset_config_defaults=(("position_embedding_type", "rotary"), ("encoder_mixer", "recurrent"),
                            ("recurrent_cell", "lstm"), ("classifier_predicate_context", True)),
    main_job_order=5, main_job_flags=("--max_seq_length", "96"),
    demo_call=lambda row: (({"words": row["tokens"], "predicate": row["predicate_index"]},), {}),
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_task(SPEC, argv, callbacks)


if __name__ == "__main__":
    from .core.cli import run_cli

    run_cli(main)
