"""Semantic role labelling: predicate marking, word <-> subword label alignment, tag validation.

One example per predicate: ``tokens`` (words), ``predicate_index`` and one BIO ``tags`` entry per
word. The encoder input is the sentence with marker tokens around the predicate word::

    The cat <pred> sat </pred> on the mat </s>

Words are encoded one by one (every word after the first with its leading space, exactly as in running
text), so each subword knows its word; the markers are inserted as token ids, which keeps them out of
the byte-level pre-tokeniser. Only the FIRST subword of a word carries the word's label; the other
subwords, the markers and ``</s>`` get -100 (ignored by the loss and the metric). Predictions are read
back from the first subwords, which makes word tags -> subword labels -> word tags the identity.

:func:`encode_srl_words` is the SRL pipeline's own (``modeling/pipeline_forge.py``), so training and
inference see the same input.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from .data import DataValidationError
from .layout import modeling
from .metrics import bio_viterbi, log_softmax

# The SRL pipeline's encoder (one definition), so the recipe trains on exactly what the pipeline feeds the model.
encode_srl_words = modeling.pipeline_forge.encode_srl_words

IGNORE_INDEX = -100
_BIO = re.compile(r"^(O|[BI]-\S+)$")

__all__ = [
    "IGNORE_INDEX",
    "check_srl_example",
    "build_srl_label_list",
    "encode_srl_words",
    "align_labels_to_tokens",
    "word_tags_from_token_predictions",
    "word_tags_from_logits",
    "prepare_srl_features",
    "srl_word_dropout",
    "augment_srl_split",
    "validate_srl_split",
]


def check_srl_example(tokens: Any, predicate_index: Any, tags: Any) -> Optional[str]:
    """None when one SRL example is well formed, else what is wrong (for DataValidationError)."""
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        return "tokens must be a non-empty list of non-empty strings"
    if isinstance(predicate_index, bool) or not isinstance(predicate_index, int):
        return f"predicate_index must be an integer, got {type(predicate_index).__name__}"
    if not 0 <= predicate_index < len(tokens):
        return f"predicate_index {predicate_index} is outside the sentence (0..{len(tokens) - 1})"
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "tags must be a list of strings"
    if len(tags) != len(tokens):
        return f"{len(tags)} tags for {len(tokens)} tokens (need one tag per token)"
    for i, tag in enumerate(tags):
        if not _BIO.match(tag):
            return f"tag {tag!r} at position {i} is not BIO (O, B-ROLE or I-ROLE)"
    return None


def build_srl_label_list(tag_sequences: Sequence[Sequence[str]]) -> list[str]:
    """Sorted label list with "O" first; every role gets both its B- and I- tag."""
    roles = set()
    for tags in tag_sequences:
        for tag in tags:
            if tag != "O":
                roles.add(tag[2:])
    return ["O"] + [f"{prefix}-{role}" for role in sorted(roles) for prefix in ("B", "I")]


def align_labels_to_tokens(word_ids: Sequence[Optional[int]], word_label_ids: Sequence[int]) -> list[int]:
    """Word labels -> token labels: the first subword of each word gets its label, the rest -100."""
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(word_label_ids[word])
        if word is not None:
            previous = word
    return labels


def word_tags_from_token_predictions(
    word_ids: Sequence[Optional[int]],
    token_prediction_ids: Sequence[int],
    id2label: Mapping[int, str],
    num_words: int,
    default: str = "O",
) -> list[str]:
    """Token predictions -> one tag per word, read at each word's first subword.

    Words without tokens in the sequence (cut off by truncation) get ``default``.
    """
    tags = [default] * num_words
    seen = set()
    for word, prediction in zip(word_ids, token_prediction_ids):
        if word is None or word in seen:
            continue
        seen.add(word)
        tags[word] = id2label[int(prediction)]
    return tags


def word_tags_from_logits(
    word_ids: Sequence[Optional[int]], logits: Any, labels: Sequence[str], num_words: int, default: str = "O"
) -> list[str]:
    """Token logits -> one tag per word: the best valid BIO sequence over each word's first subword.

    The decoding the SRL pipeline and the metric use (``bio_viterbi``); words cut off by truncation get ``default``.
    """
    firsts: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in firsts:
            firsts[word] = position
    order = sorted(firsts)
    tags = [default] * num_words
    path = bio_viterbi(log_softmax(np.asarray(logits)[[firsts[w] for w in order]]), list(labels))
    for word, label in zip(order, path):
        tags[word] = labels[label]
    return tags


def prepare_srl_features(
    examples: Mapping[str, list],
    tokenizer: Any,
    *,
    label2id: Optional[Mapping[str, int]],
    marker_ids: tuple[int, int],
    max_seq_length: int,
    tokens_column: str = "tokens",
    predicate_index_column: str = "predicate_index",
    tags_column: Optional[str] = "tags",
    overlong_policy: str = "truncate",
    indices: Optional[list[int]] = None,
) -> dict[str, list]:
    """Batch ``datasets.map`` function: input_ids, attention_mask, word_ids and (with tags) labels.

    With ``indices`` (``map(..., with_indices=True)``) each feature also records ``example_index``,
    the row it came from, so predictions line up with the examples when some are dropped.

    Truncation would drop words and their role labels, so an over-long sentence raises
    :class:`DataValidationError` unless ``overlong_policy`` is "drop" (the example is skipped with
    its count in the ``overlong`` column) - for "truncate" too, where the loss would silently differ.
    """
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "word_ids": []}
    if indices is not None:
        out["example_index"] = []
    has_tags = tags_column is not None and tags_column in examples and label2id is not None
    if has_tags:
        out["labels"] = []
    for i, words in enumerate(examples[tokens_column]):
        input_ids, word_ids, truncated = encode_srl_words(
            tokenizer, words, examples[predicate_index_column][i], marker_ids, max_seq_length
        )
        if truncated:
            if overlong_policy == "drop":
                continue
            raise DataValidationError(
                f"A sentence of {len(words)} words ({' '.join(words[:8])} ...) needs more than --max_seq_length "
                f"{max_seq_length} tokens; cutting it would drop role labels. Raise --max_seq_length or pass "
                "--overlong_policy drop to skip such sentences."
            )
        out["input_ids"].append(input_ids)
        out["attention_mask"].append([1] * len(input_ids))
        out["word_ids"].append([-1 if w is None else w for w in word_ids])
        if indices is not None:
            out["example_index"].append(indices[i])
        if has_tags:
            word_label_ids = [label2id[tag] for tag in examples[tags_column][i]]
            out["labels"].append(align_labels_to_tokens(word_ids, word_label_ids))
    return out


def srl_word_dropout(
    tokens: list[str], predicate_index: int, tags: list[str], prob: float, rng: random.Random
) -> tuple[list[str], int, list[str]]:
    """Augmentation: drop words tagged ``O`` (never the predicate or argument words) with probability ``prob``.

    Argument spans stay contiguous and well-formed, because only words outside every span are removed.
    """
    keep = [i for i, tag in enumerate(tags) if tag != "O" or i == predicate_index or rng.random() >= prob]
    new_index = keep.index(predicate_index)
    return [tokens[i] for i in keep], new_index, [tags[i] for i in keep]


def augment_srl_split(ds: Any, columns: tuple[str, str, str], prob: float, seed: int) -> Any:
    """The training split plus one word-dropout copy of every example (see :func:`srl_word_dropout`)."""
    import datasets

    tokens_col, index_col, tags_col = columns

    def augment(example: dict, index: int) -> dict:
        rng = random.Random(f"{seed}-srl-{index}")
        tokens, predicate, tags = srl_word_dropout(example[tokens_col], example[index_col], example[tags_col], prob, rng)
        return {tokens_col: tokens, index_col: predicate, tags_col: tags}

    copy = ds.map(augment, with_indices=True, desc="augmenting (word_dropout)")
    return datasets.concatenate_datasets([ds, copy])


def validate_srl_split(raw: Mapping[str, Any], split: str, columns: tuple[str, str, str]) -> None:
    """Raise DataValidationError listing (file, line) of malformed SRL examples in ``split``."""
    from .data import first_problem_rows

    tokens_col, index_col, tags_col = columns
    has_tags = tags_col in raw[split].column_names

    def problem(example: Mapping[str, Any]) -> Optional[str]:
        tokens = example[tokens_col]
        if has_tags:
            tags = example[tags_col]
        else:  # test data without gold tags: check the rest
            tags = ["O"] * len(tokens) if isinstance(tokens, list) else []
        return check_srl_example(tokens, example[index_col], tags)

    problems = first_problem_rows(raw, split, problem)
    if problems:
        raise DataValidationError(
            f"Malformed SRL examples in the {split} split:\n  " + "\n  ".join(problems) + "\nFix or remove those rows."
        )
