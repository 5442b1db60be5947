"""Accuracy and macro-F1 with scikit-learn, as a local `evaluate` metric (works offline)."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score

_DESCRIPTION = "Accuracy and macro-averaged F1 (x100) from scikit-learn; works for binary and multi-class labels."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted class ids.
    references: list of gold class ids.
    labels: optional list of all class ids (so macro-F1 counts classes absent from this batch).
Returns:
    accuracy, macro_f1 (0-100).
"""


class ForgeClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Pedregosa et al., 2011. Scikit-learn: Machine Learning in Python.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        if not predictions:
            raise ValueError("forge_classification: no predictions to score.")
        return {
            "accuracy": 100.0 * float(accuracy_score(references, predictions)),
            "macro_f1": 100.0 * float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
        }
