"""Extractive QA: SQuAD-format preprocessing into overflow windows, and n-best span post-processing.

Forge's encoder input for a pair is ``question </s> context </s>`` (no CLS token). For a window that
does not contain the answer, and for unanswerable questions, the label is position 0 for both start
and end; position 0 is the first question token, which is never a valid answer position (answers
are searched in context tokens only), so it plays the role BERT's [CLS] plays in the SQuAD v2 recipe:
``start_logits[0] + end_logits[0]`` is the "no answer" score.

Everything here needs a *fast* tokenizer (offsets, ``sequence_ids``, overflow windows).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from .data import DataValidationError
from .layout import modeling

QA_NULL_INDEX, decode_qa_spans = modeling.pipeline_forge.QA_NULL_INDEX, modeling.pipeline_forge.decode_qa_spans

logger = logging.getLogger(__name__)

NULL_INDEX = QA_NULL_INDEX  # "no answer" position, see the module docstring

__all__ = [
    "NULL_INDEX",
    "check_answer_offsets",
    "truncate_questions",
    "prepare_qa_features",
    "postprocess_qa_predictions",
]


def check_answer_offsets(example: Mapping[str, Any], context_column: str, answer_column: str) -> Optional[str]:
    """None when every answer text equals ``context[start:start+len(text)]``, else what is wrong."""
    context = example[context_column]
    answers = example[answer_column]
    for text, start in zip(answers["text"], answers["answer_start"]):
        if not text:
            return "an answer text is empty (use an empty list for 'no answer')"
        if context[start : start + len(text)] != text:
            found = context.find(text)
            hint = f"; the text occurs at {found}" if found >= 0 else "; the text does not occur in the context"
            return f"answer {text!r} does not start at answer_start={start}{hint}"
    return None


def truncate_questions(tokenizer: Any, questions: Sequence[str], max_question_length: int) -> tuple[list[str], int]:
    """Cut questions longer than ``max_question_length`` tokens (at a token boundary); return them and the count cut.

    Without this, ``truncation="only_second"`` raises an opaque error when the question alone fills the window.
    """
    encoded = tokenizer(
        [q.lstrip() for q in questions], add_special_tokens=False, return_offsets_mapping=True
    )
    out, cut = [], 0
    for question, ids, offsets in zip(questions, encoded["input_ids"], encoded["offset_mapping"]):
        question = question.lstrip()  # leading spaces waste tokens and shift nothing useful
        if len(ids) > max_question_length:
            question = question[: offsets[max_question_length - 1][1]]
            cut += 1
        out.append(question)
    return out, cut


def prepare_qa_features(
    examples: Mapping[str, list],
    tokenizer: Any,
    *,
    max_seq_length: int,
    doc_stride: int,
    max_question_length: int = 64,
    question_column: str = "question",
    context_column: str = "context",
    answer_column: Optional[str] = "answers",
    id_column: str = "id",
    overlong_policy: str = "truncate",
) -> dict[str, list]:
    """Tokenise a batch of SQuAD examples into windows (a ``datasets.map(batched=True)`` function).

    Each example gives one feature per window of ``max_seq_length`` tokens, consecutive windows
    overlapping by ``doc_stride`` tokens. Every feature keeps ``example_id`` and an
    ``offset_mapping`` with ``None`` outside the context (for post-processing). With answers, it
    also gets ``start_positions`` / ``end_positions``: the answer's first/last token when the whole
    answer lies in the window, else :data:`NULL_INDEX` (no answer in this window).

    An example whose (first) answer fits in NO window would train as "unanswerable", a silent label
    corruption: it raises :class:`DataValidationError` (policy "truncate"/"error") naming the
    example and the fix, or is dropped with a warning (policy "drop": its windows are left out).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("QA preprocessing needs a fast tokenizer (offsets and overflow windows).")
    questions, cut = truncate_questions(tokenizer, examples[question_column], max_question_length)
    if cut:
        logger.warning("%d question(s) longer than %d tokens were cut (--max_question_length).", cut, max_question_length)
    encoded = tokenizer(
        questions,
        examples[context_column],
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    sample_map = encoded.pop("overflow_to_sample_mapping")
    has_answers = answer_column is not None and answer_column in examples
    features: dict[str, list] = {key: [] for key in encoded.keys()}
    features["example_id"] = []
    if has_answers:
        features["start_positions"], features["end_positions"] = [], []

    answer_found = collections.defaultdict(bool)
    rows_of_example = collections.defaultdict(list)
    for i, offsets in enumerate(encoded["offset_mapping"]):
        sample = sample_map[i]
        sequence_ids = encoded.sequence_ids(i)
        context_offsets = [o if s == 1 else None for o, s in zip(offsets, sequence_ids)]
        start_pos = end_pos = NULL_INDEX
        if has_answers:
            answers = examples[answer_column][sample]
            if answers["text"]:
                start_char = answers["answer_start"][0]
                end_char = start_char + len(answers["text"][0])
                token_start = sequence_ids.index(1)
                token_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
                if offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char:
                    while token_start <= token_end and offsets[token_start][1] <= start_char:
                        token_start += 1
                    while token_end >= token_start and offsets[token_end][0] >= end_char:
                        token_end -= 1
                    start_pos, end_pos = token_start, token_end
                    answer_found[sample] = True
            else:
                answer_found[sample] = True  # unanswerable: the null label is the truth
        rows_of_example[sample].append(i)
        for key in encoded.keys():
            features[key].append(context_offsets if key == "offset_mapping" else encoded[key][i])
        features["example_id"].append(examples[id_column][sample])
        if has_answers:
            features["start_positions"].append(start_pos)
            features["end_positions"].append(end_pos)

    if has_answers:
        lost = [s for s in rows_of_example if not answer_found[s]]
        if lost:
            names = ", ".join(repr(examples[id_column][s]) for s in lost[:5])
            if overlong_policy == "drop":
                logger.warning(
                    "Dropping %d example(s) whose answer fits in no window of %d tokens: %s", len(lost), max_seq_length, names
                )
                drop_rows = {row for s in lost for row in rows_of_example[s]}
                features = {k: [v for j, v in enumerate(col) if j not in drop_rows] for k, col in features.items()}
            else:
                raise DataValidationError(
                    f"The answer of example(s) {names} fits in no window of --max_seq_length {max_seq_length} "
                    f"tokens (--doc_stride {doc_stride}); training on them would teach 'no answer'. Raise "
                    "--max_seq_length, lower --doc_stride, or pass --overlong_policy drop to skip them."
                )
    return features


def postprocess_qa_predictions(
    examples: Sequence[Mapping[str, Any]],
    features: Sequence[Mapping[str, Any]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
    context_column: str = "context",
    id_column: str = "id",
) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Turn window-level start/end logits into one answer string per example.

    For each example, every window's ``n_best_size`` best start and end tokens are paired; pairs
    outside the context, reversed, or longer than ``max_answer_length`` tokens are skipped; the
    answer is the context text between the start token's first and the end token's last character
    (stripped). With ``version_2_with_negative``, the answer is "" when the best null score
    (``start[0] + end[0]``, minimum over windows) beats the best span by more than
    ``null_score_diff_threshold``.

    Args:
        examples: rows with ``id_column`` and ``context_column``.
        features: rows with ``example_id`` and ``offset_mapping`` (None outside the context), in
            the order of the logits.
        start_logits, end_logits: arrays (n_features, seq_len); padded positions may hold anything
            (they have no offsets and are never chosen).

    Returns:
        (answers, nbest): ``{id: text}`` and ``{id: [{"text", "score", "start", "end"}, ...]}``, best
        first; ``score`` is the pipeline's softmax over the ranked candidates
        with character offsets into the context.
    """
    if len(features) != len(start_logits):
        raise ValueError(
            f"postprocess_qa_predictions: {len(features)} features but {len(start_logits)} rows of logits; "
            "pass the features in the order they were predicted."
        )
    rows_by_example: dict[Any, list[int]] = collections.defaultdict(list)
    for row, feature in enumerate(features):
        rows_by_example[feature["example_id"]].append(row)

    # The span search is the pipeline's own function, so a model card's EM/F1 comes from the same code a
    # pipeline() user runs.
    answers: dict[str, str] = {}
    nbest: dict[str, list[dict]] = {}
    for example in examples:
        example_id = example[id_column]
        rows = rows_by_example.get(example_id, [])
        spans = decode_qa_spans(
            [start_logits[r] for r in rows], [end_logits[r] for r in rows],
            [features[r]["offset_mapping"] for r in rows], example[context_column],
            top_k=n_best_size, n_best_size=n_best_size, max_answer_len=max_answer_length,
            handle_impossible_answer=version_2_with_negative, null_score_diff_threshold=null_score_diff_threshold,
        )
        nbest[example_id] = [{"text": s["answer"], "score": s["score"], "start": s["start"], "end": s["end"]} for s in spans]
        answers[example_id] = spans[0]["answer"]
    return answers, nbest
