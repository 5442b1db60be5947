"""Task metrics: local `evaluate` modules (offline) and the compute_metrics functions the Trainer calls.

The modules live in ``recipes/metrics/forge_*.py`` and wrap the reference libraries (sacrebleu,
rouge-score, seqeval, scikit-learn, the official SQuAD normalisation). ``evaluate.load`` of a Hub name
needs the network; loading by file path does not.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .layout import modeling

logger = logging.getLogger(__name__)
# BIO-constrained decoding of SRL tags: the pipeline's own (modeling/pipeline_forge.py), one definition
bio_viterbi = modeling.pipeline_forge.bio_viterbi

METRICS_DIR = Path(__file__).resolve().parent.parent / "metrics"
METRIC_FILES = {
    "bleu_chrf": "forge_bleu_chrf.py",
    "rouge": "forge_rouge.py",
    "seqeval": "forge_seqeval.py",
    "squad": "forge_squad.py",
    "classification": "forge_classification.py",
}

__all__ = [
    "METRICS_DIR",
    "load_metric",
    "classification_metrics",
    "seq2seq_metrics",
    "decode_generated",
    "generated_lengths",
    "srl_metrics",
]


@functools.lru_cache(maxsize=None)
def load_metric(name: str) -> Any:
    """``evaluate.load`` a Forge metric module by short name (bleu_chrf, rouge, seqeval, squad, classification).

    Cached per process: a module is loaded once and its ``compute`` reused.
    """
    import evaluate

    if name not in METRIC_FILES:
        raise ValueError(f"Unknown metric {name!r}; choose one of {', '.join(METRIC_FILES)}.")
    return evaluate.load(str(METRICS_DIR / METRIC_FILES[name]))


def _logits(predictions: Any) -> np.ndarray:
    """The logits array of an EvalPrediction.predictions (a tuple when the model returns extras)."""
    return predictions[0] if isinstance(predictions, (tuple, list)) else predictions


def classification_metrics(num_labels: int) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for sequence classification: accuracy and macro-F1 over all ``num_labels`` classes."""
    metric = load_metric("classification")

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = _logits(eval_pred.predictions), eval_pred.label_ids
        predictions = np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=labels, labels=list(range(num_labels)))

    return compute


def generated_lengths(tokenizer: Any, generated: Any) -> list[int]:
    """Tokens each generated row holds up to its first end-of-sequence token (included), after the decoder's
    start token. Padding and -100 are not counted, nor what follows the first eos: beam search fills a finished
    hypothesis with more eos tokens up to the batch's longest row, which counting every non-pad id (the earlier
    form) reported as length (DialogSum: 62.5 tokens for summaries of about 20)."""
    eos = tokenizer.eos_token_id
    lengths = []
    for row in np.asarray(generated):
        row = row[(row >= 0) & (row != tokenizer.pad_token_id)]
        # position 0 is the decoder start token, which is eos itself for BART-style models
        ends = np.flatnonzero(row[1:] == eos) if eos is not None else np.array([], dtype=int)
        lengths.append(int(ends[0]) + 2 if ends.size else int(row.size))
    return lengths


def decode_generated(tokenizer: Any, token_ids: Any) -> list[str]:
    """Decode generated ids (or labels) to clean text: -100 -> pad, special tokens dropped, stripped."""
    ids = np.asarray(_logits(token_ids))
    ids = np.where(ids < 0, tokenizer.pad_token_id, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)]


def seq2seq_metrics(tokenizer: Any, kind: str) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for generation (``predict_with_generate``): kind "translation" (BLEU + chrF)
    or "summarization" (ROUGE-1/2/L/Lsum); both add ``gen_len``, the mean generated length in tokens."""
    if kind not in ("translation", "summarization"):
        raise ValueError(f"kind must be translation or summarization, got {kind!r}")
    metric = load_metric("bleu_chrf" if kind == "translation" else "rouge")

    def compute(eval_pred: Any) -> dict[str, float]:
        generated = np.asarray(_logits(eval_pred.predictions))
        predictions = decode_generated(tokenizer, generated)
        references = decode_generated(tokenizer, eval_pred.label_ids)
        if kind == "translation":
            result = metric.compute(predictions=predictions, references=[[r] for r in references])
            result = {"bleu": result["bleu"], "chrf": result["chrf"]}
        else:
            result = metric.compute(predictions=predictions, references=references)
        lengths = generated_lengths(tokenizer, generated)
        result["gen_len"] = float(np.mean(lengths)) if lengths else 0.0
        return {k: round(float(v), 4) for k, v in result.items()}

    return compute


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of a numpy array (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def srl_metrics(id2label: dict[int, str]) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for SRL token classification: seqeval span F1 (V excluded) overall and per role.

    Tags are decoded as the best valid BIO sequence (``bio_viterbi``), as the SRL pipeline and the recipe's
    predictions file decode them, so the score is the score of what users get.

    Word-level tags are read off the first-subword positions, i.e. where the label is not -100 (see
    ``recipes.core.srl_utils``); per-role scores come out flat as ``f1_<ROLE>`` for the Trainer's logs.
    """
    metric = load_metric("seqeval")

    labels_in_order = [id2label[i] for i in range(len(id2label))]

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = _logits(eval_pred.predictions), eval_pred.label_ids
        predictions, references = [], []
        for row_logits, label_row in zip(logits, labels):
            keep = label_row != -100  # the first subword of each word
            path = bio_viterbi(log_softmax(row_logits[keep]), labels_in_order)
            predictions.append([labels_in_order[i] for i in path])
            references.append([id2label[int(i)] for i in label_row[keep]])
        return flatten_seqeval(metric.compute(predictions=predictions, references=references))

    return compute


def flatten_seqeval(result: dict[str, Any]) -> dict[str, float]:
    """{"f1": .., "ARG0": {"f1": ..}} -> {"f1": .., "f1_ARG0": ..}: the Trainer logs only scalars."""
    flat: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat[f"f1_{key}"] = round(float(value["f1"]), 4)
        else:
            flat[key] = round(float(value), 4)
    return flat


def squad_score(predictions: dict[str, str], references: Sequence[dict]) -> dict[str, float]:
    """SQuAD EM/F1 of ``{id: answer}`` against ``[{"id", "answers"}]`` with the forge_squad module."""
    metric = load_metric("squad")
    return metric.compute(
        predictions=[{"id": ref["id"], "prediction_text": predictions.get(ref["id"], "")} for ref in references],
        references=[{"id": ref["id"], "answers": ref["answers"]} for ref in references],
    )
