"""ROUGE-1/2/L/Lsum with Google's rouge-score, as a local `evaluate` metric (works offline).

ROUGE-Lsum scores summary-level LCS over sentences, which rouge-score finds by splitting on newlines;
this module puts each sentence on its own line first (a simple end-of-sentence rule, see
``split_sentences``), as the transformers summarization example does with nltk.
"""

import re

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE F-measures (x100) from rouge-score, with newline-separated sentences for rougeLsum."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated summaries.
    references: list of reference summaries.
    use_stemmer: Porter stemming before matching (default True).
    split_sentences: put sentences on separate lines for rougeLsum (default True).
Returns:
    rouge1, rouge2, rougeL, rougeLsum: mean F-measure over examples, 0-100.
"""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text):
    """One sentence per line: break after . ! ? followed by whitespace; existing newlines are kept."""
    lines = []
    for line in text.strip().split("\n"):
        lines.extend(part for part in _SENTENCE_END.split(line.strip()) if part)
    return "\n".join(lines)


class ForgeRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, use_stemmer=True, split_sentences_for_lsum=True):
        if not predictions:
            raise ValueError("forge_rouge: no predictions to score.")
        types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
        aggregator = {t: [] for t in types}
        for prediction, reference in zip(predictions, references):
            if split_sentences_for_lsum:
                prediction, reference = split_sentences(prediction), split_sentences(reference)
            scores = scorer.score(reference, prediction)
            for t in types:
                aggregator[t].append(scores[t].fmeasure)
        return {t: 100.0 * sum(v) / len(v) for t, v in aggregator.items()}
