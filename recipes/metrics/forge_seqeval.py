"""Span F1 for BIO-tagged sequences (SRL roles) with seqeval, as a local `evaluate` metric (works offline).

Spans whose type is in ``exclude_types`` (default ["V"], the predicate itself, which is given in the
input) are removed from predictions and references before scoring, as is usual for SRL.
"""

import datasets
import evaluate
from seqeval.metrics import accuracy_score
from seqeval.metrics import classification_report

_DESCRIPTION = "seqeval span precision/recall/F1 (x100), overall (micro) and per type; excluded types are ignored."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of tag sequences (e.g. [["B-ARG0", "I-ARG0", "B-V", "O"]]).
    references: list of tag sequences of the same lengths.
    exclude_types: span types to ignore (default ["V"]).
Returns:
    precision, recall, f1, accuracy (token-level, on the sequences after exclusion) and per type:
    "<TYPE>": {"precision", "recall", "f1", "number"}.
"""


def _drop_types(sequence, excluded):
    out = []
    for tag in sequence:
        if tag != "O" and "-" in tag and tag.split("-", 1)[1] in excluded:
            out.append("O")
        else:
            out.append(tag)
    return out


class ForgeSeqeval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Nakayama, 2018. seqeval: A Python framework for sequence labeling evaluation.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, exclude_types=("V",)):
        excluded = set(exclude_types or ())
        for i, (p, r) in enumerate(zip(predictions, references)):
            if len(p) != len(r):
                raise ValueError(f"forge_seqeval: example {i} has {len(p)} predicted tags but {len(r)} reference tags.")
        preds = [_drop_types(p, excluded) for p in predictions]
        refs = [_drop_types(r, excluded) for r in references]
        report = classification_report(refs, preds, output_dict=True, zero_division=0)
        micro = report.pop("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
        for key in ("macro avg", "weighted avg"):
            report.pop(key, None)
        result = {
            "precision": 100.0 * float(micro["precision"]),
            "recall": 100.0 * float(micro["recall"]),
            "f1": 100.0 * float(micro["f1-score"]),
            "accuracy": 100.0 * float(accuracy_score(refs, preds)),
        }
        for span_type, scores in sorted(report.items()):
            result[span_type] = {
                "precision": 100.0 * float(scores["precision"]),
                "recall": 100.0 * float(scores["recall"]),
                "f1": 100.0 * float(scores["f1-score"]),
                "number": int(scores["support"]),
            }
        return result
