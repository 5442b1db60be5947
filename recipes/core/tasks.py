"""Task logic shared by the recipes: data validation driven by the task registry, text preprocessing and augmentation,
tokenisation into model features, and the over-long-input policy.

QA windows live in :mod:`recipes.core.qa_utils`, SRL alignment in :mod:`recipes.core.srl_utils`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any, Optional

import datasets

from .data import (
    ColumnSpec,
    DataValidationError,
    check_not_empty,
    first_problem_rows,
    locate,
    validate_columns,
)

logger = logging.getLogger(__name__)

OVERLONG_COLUMN = "overlong"

__all__ = [
    "TASKS",
    "OVERLONG_COLUMN",
    "validate_for_task",
    "check_translation_dicts",
    "translation_pairs",
    "normalize_text",
    "augment_text",
    "augment_split",
    "tokenize_classification",
    "tokenize_seq2seq",
    "apply_overlong_policy",
]


def __getattr__(name: str) -> Any:
    """``TASKS``: the main job's fine-tuning tasks, read from the registry when first asked for."""
    if name == "TASKS":
        from .registry import main_job_tasks

        return main_job_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# Validation per task (the columns and row rules come from each task's registry spec)
# --------------------------------------------------------------------------------------------
def validate_for_task(task: Any, raw: Mapping[str, Any], data_args: Any) -> None:
    """Check every split of ``raw`` for ``task`` (a name, an alias or a TaskSpec) before anything is tokenised.

    Columns present with the right value types (the spec's ``column_specs``), no empty split, and the
    task's cross-field rules (the spec's ``check_rows``; e.g. QA: answer text at answer_start; SRL: one
    BIO tag per word, predicate inside the sentence; translation: both languages in every dict). Labels
    against the label set are checked by the recipe once the label set is known
    (:func:`recipes.core.data.check_labels`).

    Raises:
        DataValidationError: the first problem found, with file/line, column and fix.
        ValueError: an unknown task, or one without data rules.
    """
    from .registry import TaskSpec, get_task

    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if spec.column_specs is None and not spec.data_columns:
        raise ValueError(f"Task {spec.name!r} has no data rules (it is not fine-tuned by a recipe).")
    for split in list(raw):
        ds = raw[split]
        check_not_empty(ds, split)
        columns = list(getattr(ds, "column_names", None) or [])
        if spec.column_specs is not None:
            needed = spec.column_specs(data_args, split, columns)
        else:
            needed = [
                ColumnSpec(getattr(data_args, column.flag), column.flag, column.kind, optional=column.target and split == "test")
                for column in spec.data_columns if getattr(data_args, column.flag)
            ]
        validate_columns(raw, needed, splits=[split])
        if isinstance(ds, datasets.IterableDataset):
            continue  # cross-field checks need random access; streamed data is checked as it is read
        if spec.check_rows is not None:
            spec.check_rows(raw, split, data_args)
    from .guards import check_training_targets

    check_training_targets(spec, raw, data_args)  # every target empty: the model would learn nothing


def check_translation_dicts(raw: Mapping[str, Any], split: str, data_args: Any) -> None:
    """Every ``translation`` dict of ``split`` has the source (and, outside test, the target) language."""
    if data_args.translation_column not in raw[split].column_names:
        return
    src, tgt = data_args.source_lang, data_args.target_lang
    need = (src,) if split == "test" else (src, tgt)

    def problem(example: Mapping[str, Any]) -> Optional[str]:
        pair = example[data_args.translation_column]
        missing = [lang for lang in need if not isinstance(pair.get(lang), str)]
        if missing:
            return f"no text for language(s) {missing} (keys: {sorted(k for k, v in pair.items() if v is not None)})"
        return None

    problems = first_problem_rows(raw, split, problem)
    if problems:
        raise DataValidationError(
            f"Translation pairs without --source_lang '{src}' / --target_lang '{tgt}' in the {split} split:\n  "
            + "\n  ".join(problems)
            + "\nCheck the language codes or fix those rows."
        )


def translation_pairs(examples: Mapping[str, list], data_args: Any) -> tuple[list[str], Optional[list[str]]]:
    """(sources, targets) of a batch, from a ``translation`` dict column or per-language columns."""
    src, tgt = data_args.source_lang, data_args.target_lang
    if data_args.translation_column in examples:
        pairs = examples[data_args.translation_column]
        sources = [p[src] for p in pairs]
        targets = [p.get(tgt) for p in pairs]
        return sources, (targets if all(isinstance(t, str) for t in targets) else None)
    return list(examples[src]), (list(examples[tgt]) if tgt in examples else None)


# --------------------------------------------------------------------------------------------
# Text preprocessing and augmentation (classification)
# --------------------------------------------------------------------------------------------
def normalize_text(text: str, lowercase: bool = False, remove_stopwords: bool = False) -> str:
    """Optional lower-casing and English stop-word removal (scikit-learn's ENGLISH_STOP_WORDS).

    Words are split on whitespace; a word is dropped when its lower-cased form is a stop word.
    A text made only of stop words is kept as it was (an empty input carries no signal at all).
    """
    if lowercase:
        text = text.lower()
    if remove_stopwords:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        kept = [w for w in text.split() if w.lower() not in ENGLISH_STOP_WORDS]
        text = " ".join(kept) if kept else text
    return text


def augment_text(text: str, mode: str, prob: float, rng: random.Random) -> str:
    """One augmented copy of ``text``.

    - "word_dropout": each word is dropped with probability ``prob`` (at least one word stays);
    - "swap": walking left to right, each adjacent pair is swapped with probability ``prob``
      (a swapped word is not swapped again).
    """
    words = text.split()
    if len(words) < 2 or mode == "none":
        return text
    if mode == "word_dropout":
        kept = [w for w in words if rng.random() >= prob]
        return " ".join(kept or [rng.choice(words)])
    if mode == "swap":
        i = 0
        while i < len(words) - 1:
            if rng.random() < prob:
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 2
            else:
                i += 1
        return " ".join(words)
    raise ValueError(f"Unknown augmentation {mode!r}; choose none, word_dropout or swap.")


def augment_split(
    ds: datasets.Dataset, column: str, mode: str, prob: float, copies: int, seed: int
) -> datasets.Dataset:
    """The training split plus ``copies`` augmented copies of every example (labels unchanged).

    Deterministic for a given ``seed``: copy ``c`` of row ``i`` uses ``random.Random(seed, c, i)``.
    """
    if mode == "none" or copies <= 0:
        return ds
    parts = [ds]
    for copy in range(copies):

        def augment(example: dict, index: int, copy: int = copy) -> dict:
            rng = random.Random(f"{seed}-{copy}-{index}")
            return {column: augment_text(example[column], mode, prob, rng)}

        parts.append(ds.map(augment, with_indices=True, desc=f"augmenting ({mode}, copy {copy + 1})"))
    logger.info("Augmentation %s: %d -> %d training examples", mode, len(ds), len(ds) * (copies + 1))
    return datasets.concatenate_datasets(parts)


# --------------------------------------------------------------------------------------------
# Tokenisation with the over-long policy
# --------------------------------------------------------------------------------------------
def _encode_with_flags(
    tokenizer: Any, texts: list[str], max_length: int, pairs: Optional[list[str]] = None, **kwargs: Any
) -> tuple[dict[str, list], list[int]]:
    """Tokenise without truncation to learn which rows are too long; re-tokenise only those, truncated."""
    args = (texts, pairs) if pairs is not None else (texts,)
    encoded = dict(tokenizer(*args, truncation=False, **kwargs))
    flags = [int(len(ids) > max_length) for ids in encoded["input_ids"]]
    long_rows = [i for i, flag in enumerate(flags) if flag]
    if long_rows:
        sub_args = tuple([column[i] for i in long_rows] for column in args)
        cut = tokenizer(*sub_args, truncation=True, max_length=max_length, **kwargs)
        for j, i in enumerate(long_rows):
            for key in encoded:
                encoded[key][i] = cut[key][j]
    return encoded, flags


def tokenize_classification(
    examples: Mapping[str, list],
    tokenizer: Any,
    *,
    text_column: str,
    max_length: int,
    text_pair_column: Optional[str] = None,
    label_column: Optional[str] = None,
    label2id: Optional[Mapping[Any, int]] = None,
    lowercase: bool = False,
    remove_stopwords: bool = False,
) -> dict[str, list]:
    """Batch ``datasets.map`` function for sequence classification: ids, mask, ``labels``, ``overlong`` flag."""
    texts = [normalize_text(t, lowercase, remove_stopwords) for t in examples[text_column]]
    pairs = None
    if text_pair_column:
        pairs = [normalize_text(t, lowercase, remove_stopwords) for t in examples[text_pair_column]]
    encoded, flags = _encode_with_flags(tokenizer, texts, max_length, pairs)
    out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], OVERLONG_COLUMN: flags}
    if label_column and label_column in examples and label2id is not None:
        out["labels"] = [label2id[_as_label(v)] for v in examples[label_column]]
    return out


def _as_label(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def tokenize_seq2seq(
    examples: Mapping[str, list],
    tokenizer: Any,
    *,
    sources: list[str],
    targets: Optional[list[str]],
    max_source_length: int,
    max_target_length: int,
    prefix: str = "",
) -> dict[str, list]:
    """Tokenise sources (and targets as ``labels``) for a seq2seq model; ``overlong`` flags a cut source.

    A target longer than ``max_target_length`` is cut too (standard practice for summaries); those are
    counted in the log, not flagged, since the model can still learn from the truncated target.
    """
    del examples  # sources/targets were already extracted by the caller
    encoded, flags = _encode_with_flags(tokenizer, [prefix + s for s in sources], max_source_length)
    out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], OVERLONG_COLUMN: flags}
    if targets is not None:
        labels, target_flags = _encode_with_flags(tokenizer, targets, max_target_length)
        out["labels"] = labels["input_ids"]
        cut = sum(target_flags)
        if cut:
            logger.info("%d target(s) in this batch were cut to %d tokens (--max_target_length).", cut, max_target_length)
    return out


def apply_overlong_policy(
    features: datasets.Dataset,
    raw: Mapping[str, Any],
    split: str,
    policy: str,
    limit_flag: str,
    limit: int,
) -> datasets.Dataset:
    """Act on the ``overlong`` column added at tokenisation, then remove it.

    "truncate": keep the cut inputs and log a warning with the count; "drop": remove those rows
    (warning); "error": raise DataValidationError naming the first rows (file and line).
    When rows are dropped and ``raw[split]`` has one row per feature, ``raw[split]`` is filtered the
    same way (in place), so predictions written next to the raw examples still line up.
    """
    if OVERLONG_COLUMN not in features.column_names:
        return features
    flags = features[OVERLONG_COLUMN]
    rows = [i for i, flag in enumerate(flags) if flag]
    features = features.remove_columns(OVERLONG_COLUMN)
    if not rows:
        return features
    n_raw = len(raw[split]) if split in raw else 0

    def where(i: int) -> str:
        return locate(raw, split, i) if i < n_raw else f"augmented training row {i}"

    if policy == "error":
        raise DataValidationError(
            f"{len(rows)} {split} example(s) are longer than --{limit_flag} {limit} tokens, e.g.:\n  "
            + "\n  ".join(where(i) for i in rows[:5])
            + f"\nRaise --{limit_flag}, or pass --overlong_policy truncate (cut, with a warning) or drop."
        )
    if policy == "drop":
        logger.warning("Dropping %d %s example(s) longer than --%s %d.", len(rows), split, limit_flag, limit)
        keep = sorted(set(range(len(features))) - set(rows))
        if split in raw and len(raw[split]) == len(features):
            raw[split] = raw[split].select(keep)
        features = features.select(keep)
        check_not_empty(features, split, f"after dropping examples longer than --{limit_flag} {limit}")
        return features
    logger.warning(
        "%d of %d %s example(s) were cut to --%s %d tokens (first: %s). Use --overlong_policy drop/error to change this.",
        len(rows), len(flags), split, limit_flag, limit, where(rows[0]),
    )
    return features

