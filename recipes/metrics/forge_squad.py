"""SQuAD exact match and F1 with the official v1.1 answer normalisation, plus v2-style no-answer handling.

A local `evaluate` metric (works offline). The normalisation and the token F1 follow the official SQuAD
v1.1 evaluation script: lower-case, strip punctuation, drop the articles a/an/the, collapse whitespace;
each prediction is scored against its best-matching gold answer. v2 style: a question whose gold answer
list is empty is correct exactly when the prediction is the empty string (EM = F1 = 1), and wrong
otherwise; results then also report the HasAns_/NoAns_ subsets.
"""

import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = "SQuAD v1.1 exact match and token F1 (x100), with SQuAD v2 no-answer semantics for empty gold lists."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str} ("" means no answer).
    references: list of {"id": str, "answers": {"text": [str], "answer_start": [int]}}.
Returns:
    exact_match, f1 (0-100), total; when some references have no answer also HasAns_exact_match,
    HasAns_f1, HasAns_total, NoAns_exact_match, NoAns_f1, NoAns_total.
"""

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text):
    """Official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction, ground_truth):
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction, ground_truth):
    """Token-level F1 between normalised strings (official v1.1 definition)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    if not prediction_tokens or not ground_truth_tokens:
        # v2 script: both empty -> 1, one empty -> 0 (v1 never has empty gold answers)
        return float(prediction_tokens == ground_truth_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def score_example(prediction, gold_texts):
    """(EM, F1) of one prediction against its gold answers; empty gold list = unanswerable.

    As in the official v2 script, gold answers that normalise to nothing are dropped, and a question
    left without gold answers is scored against the empty answer.
    """
    gold_texts = [gold for gold in gold_texts if normalize_answer(gold)] or [""]
    em = max(exact_match_score(prediction, gold) for gold in gold_texts)
    f1 = max(f1_score(prediction, gold) for gold in gold_texts)
    return em, f1


class ForgeSquad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Rajpurkar et al., 2016. SQuAD: 100,000+ Questions for Machine Comprehension of Text.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references):
        by_id = {p["id"]: p["prediction_text"] for p in predictions}
        totals = {"all": [0.0, 0.0, 0], "HasAns": [0.0, 0.0, 0], "NoAns": [0.0, 0.0, 0]}
        for ref in references:
            if ref["id"] not in by_id:
                raise ValueError(f"forge_squad: no prediction for question id {ref['id']!r}.")
            golds = list(ref["answers"]["text"])
            em, f1 = score_example(by_id[ref["id"]], golds)
            for key in ("all", "HasAns" if golds else "NoAns"):
                totals[key][0] += em
                totals[key][1] += f1
                totals[key][2] += 1
        n = totals["all"][2]
        result = {
            "exact_match": 100.0 * totals["all"][0] / max(n, 1),
            "f1": 100.0 * totals["all"][1] / max(n, 1),
            "total": n,
        }
        if totals["NoAns"][2]:
            for key in ("HasAns", "NoAns"):
                em, f1, count = totals[key]
                result[f"{key}_exact_match"] = 100.0 * em / max(count, 1)
                result[f"{key}_f1"] = 100.0 * f1 / max(count, 1)
                result[f"{key}_total"] = count
        return result
