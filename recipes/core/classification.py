"""Sequence(-pair) classification steps shared by the sentiment and NLI recipes.

The label set (and ``id2label``) comes from the training data, or from the fine-tuned model's config when
there is no training split; ``--class_names`` gives the labels readable names. Accuracy and macro-F1 are
reported.
"""

from __future__ import annotations

from typing import Any, Optional

from .data import DataValidationError, build_label_list, check_labels, drop_hidden_labels
from .driver import TaskRecipe, predicted_classes
from .metrics import classification_metrics
from .registry import DataColumn
from .tasks import _as_label, augment_split, tokenize_classification
from .trainer_utils import load_folder_config

__all__ = ["CLASSIFICATION_COLUMNS", "ClassificationRecipe", "label_names"]


# A text, an optional second text (sentence pairs) and the label.
CLASSIFICATION_COLUMNS = (
    DataColumn("text_column", "text"), DataColumn("text_pair_column", "text"), DataColumn("label_column", "label", True),
)


def label_names(data_args: Any, labels: list) -> list[str]:
    """Readable names of ``labels``: ``--class_names`` (one per label, in sorted label order) or the labels."""
    if not data_args.class_names:
        return [str(label) for label in labels]
    names = [n.strip() for n in data_args.class_names.split(",")]
    if len(names) != len(labels):
        raise DataValidationError(f"--class_names gives {len(names)} names but the training data has {len(labels)} labels {labels}.")
    return names


class ClassificationRecipe(TaskRecipe):
    """Label set from the data, optional augmentation, one (or a pair of) text(s) in, one label out."""

    def prepare(self) -> dict[str, Any]:
        raw, data_args, model_args = self.raw, self.data_args, self.model_args
        drop_hidden_labels(raw, data_args.label_column)  # SST-2 / GLUE test splits carry label -1
        # Label set: from the training data, else from the fine-tuned model's config.
        model_config_labels = None
        if "train" in raw:
            labels = build_label_list(raw["train"], data_args.label_column)
            names = label_names(data_args, labels)
        else:
            config = load_folder_config(model_args)
            names = [config.id2label[i] for i in range(config.num_labels)]
            # The data's own label values (0/1 behind the names negative/positive given by --class_names) are
            # kept in the config; folders from before that fall back to the names, as digits when they are.
            values = getattr(config, "label_values", None)
            if isinstance(values, list) and len(values) == len(names):
                labels = list(values)
            else:
                labels = [int(n) if n.isdigit() else n for n in names]
            model_config_labels = names
        self.drop_unusable_labels(data_args.label_column, lambda v: _as_label(v) in labels, "label_column")
        for split in ("validation", "test"):
            if split in raw and data_args.label_column in raw[split].column_names:
                check_labels(raw, split, data_args.label_column, labels,
                             where_from=model_config_labels and "the model's config" or "the training data")
        self.labels = labels
        self.label2id = {label: i for i, label in enumerate(labels)}
        self.id2label = dict(enumerate(names))
        return {"num_labels": len(labels), "id2label": self.id2label,
                "label2id": {n: i for i, n in self.id2label.items()}, "label_values": list(labels)}

    def augment(self, train: Any) -> Any:
        data_args = self.data_args
        if data_args.augment == "none":
            return train
        return augment_split(train, data_args.text_column, data_args.augment, data_args.augment_prob,
                             data_args.augment_copies, self.training_args.seed)

    def encode_function(self, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        data_args = self.data_args
        return tokenize_classification, {"fn_kwargs": dict(
            tokenizer=tokenizer, text_column=data_args.text_column, text_pair_column=data_args.text_pair_column,
            label_column=data_args.label_column, label2id=self.label2id, max_length=data_args.max_seq_length,
            lowercase=data_args.lowercase, remove_stopwords=data_args.remove_stopwords,
        )}

    def compute_metrics(self, tokenizer: Any) -> Any:
        return classification_metrics(len(self.labels))

    def prediction_row(self, example: dict, prediction: str) -> dict:
        """One line of the predictions file (before the gold ``label``)."""
        return {"text": example[self.data_args.text_column], "prediction": prediction}

    def read_predictions(self, split: str, prefix: str, result: Any) -> tuple[Optional[dict], list[dict]]:
        label_column = self.data_args.label_column
        rows = [self.prediction_row(example, self.id2label[int(p)])
                for example, p in zip(self.raw[split], predicted_classes(result))]
        if label_column in self.raw[split].column_names:
            for row, gold in zip(rows, self.raw[split][label_column]):
                row["label"] = self.id2label[self.label2id[int(gold) if isinstance(gold, float) else gold]]
        scores = result.metrics if result.metrics and result.label_ids is not None else None
        return scores, rows
