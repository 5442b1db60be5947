"""SRL: predicate marking, word tags -> first-subword labels -> word tags (identity), BIO-constrained decoding."""

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest

from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
from recipes.core.data import DataValidationError
from recipes.core.srl_utils import (
    IGNORE_INDEX,
    align_labels_to_tokens,
    build_srl_label_list,
    check_srl_example,
    encode_srl_words,
    prepare_srl_features,
    srl_word_dropout,
    word_tags_from_logits,
    word_tags_from_token_predictions,
)
from recipes.core.metrics import bio_viterbi, srl_metrics


@pytest.fixture(scope="module")
def tokenizer():
    tok = train_small_tokenizer()
    from tokenization import add_task_tokens

    add_task_tokens(tok, None, ["<pred>", "</pred>"])
    return tok


@pytest.fixture(scope="module")
def srl_rows():
    with open(SAMPLE_DIR / "srl" / "validation.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_markers_surround_the_predicate_and_words_keep_their_tokens(tokenizer):
    words = ["Stone", "repaired", "the", "clocks", "yesterday", "."]
    markers = tuple(tokenizer.convert_tokens_to_ids(["<pred>", "</pred>"]))
    ids, word_ids, truncated = encode_srl_words(tokenizer, words, 1, markers)
    assert not truncated
    assert ids[-1] == tokenizer.eos_token_id and word_ids[-1] is None
    opened, closed = ids.index(markers[0]), ids.index(markers[1])
    assert {word_ids[i] for i in range(opened + 1, closed)} == {1}
    # decoding the words' tokens gives the sentence back (leading spaces as in running text)
    text = tokenizer.decode([i for i, w in zip(ids, word_ids) if w is not None])
    assert text == " ".join(words)


def test_word_tags_roundtrip_identity_on_sample_data(tokenizer, srl_rows):
    labels = build_srl_label_list([row["tags"] for row in srl_rows])
    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(labels))
    markers = tuple(tokenizer.convert_tokens_to_ids(["<pred>", "</pred>"]))
    for row in srl_rows:
        _, word_ids, _ = encode_srl_words(tokenizer, row["tokens"], row["predicate_index"], markers)
        token_labels = align_labels_to_tokens(word_ids, [label2id[t] for t in row["tags"]])
        # exactly one labelled position per word, all others ignored
        assert sum(label != IGNORE_INDEX for label in token_labels) == len(row["tokens"])
        back = word_tags_from_token_predictions(word_ids, token_labels, id2label, len(row["tokens"]))
        assert back == row["tags"]


def test_multi_subword_words_label_only_their_first_piece():
    word_ids = [None, 0, 0, 1, None, 2, 2, 2, None]
    assert align_labels_to_tokens(word_ids, [5, 6, 7]) == [-100, 5, -100, 6, -100, 7, -100, -100, -100]
    preds = [0, 5, 9, 6, 0, 7, 9, 9, 0]
    assert word_tags_from_token_predictions(word_ids, preds, {5: "B-A", 6: "I-A", 7: "O", 9: "X"}, 3) == ["B-A", "I-A", "O"]


def test_overlong_sentence_is_an_error_unless_dropped(tokenizer):
    markers = tuple(tokenizer.convert_tokens_to_ids(["<pred>", "</pred>"]))
    batch = {"tokens": [["word"] * 40, ["short", "one"]], "predicate_index": [0, 1], "tags": [["B-V"] + ["O"] * 39, ["O", "B-V"]]}
    label2id = {"O": 0, "B-V": 1, "I-V": 2}
    with pytest.raises(DataValidationError, match="max_seq_length"):
        prepare_srl_features(batch, tokenizer, label2id=label2id, marker_ids=markers, max_seq_length=16)
    out = prepare_srl_features(
        batch, tokenizer, label2id=label2id, marker_ids=markers, max_seq_length=16, overlong_policy="drop"
    )
    assert len(out["input_ids"]) == 1 and out["labels"][0].count(-100) == len(out["labels"][0]) - 2


def test_label_list_and_example_checks():
    assert build_srl_label_list([["B-ARG1", "O", "B-V"]]) == ["O", "B-ARG1", "I-ARG1", "B-V", "I-V"]
    assert check_srl_example(["a", "b"], 1, ["O", "B-V"]) is None
    assert "outside" in check_srl_example(["a"], 3, ["B-V"])
    assert "2 tags for 1" in check_srl_example(["a"], 0, ["B-V", "O"])
    assert "not BIO" in check_srl_example(["a"], 0, ["V"])


def test_word_dropout_keeps_spans_and_predicate():
    tokens = ["In", "May", ",", "Stone", "fixed", "the", "clock", "."]
    tags = ["B-ARGM-TMP", "I-ARGM-TMP", "O", "B-ARG0", "B-V", "B-ARG1", "I-ARG1", "O"]
    new_tokens, index, new_tags = srl_word_dropout(tokens, 4, tags, 1.0, random.Random(0))
    assert new_tokens == ["In", "May", "Stone", "fixed", "the", "clock"]
    assert new_tags[index] == "B-V" and check_srl_example(new_tokens, index, new_tags) is None



LABELS = ["O", "B-ARG0", "I-ARG0", "B-ARG1", "I-ARG1", "B-V", "I-V"]


def _scores(rows):
    """Per-word probability rows over LABELS -> log-probabilities."""
    return np.log(np.asarray(rows, dtype=np.float64))


def test_viterbi_repairs_spans_that_argmax_gets_wrong():
    # argmax per word: I-ARG1 O I-ARG0 ... -> two spans no annotation can have (a stray I- after O, a role switch)
    scores = _scores([
        [0.10, 0.30, 0.05, 0.05, 0.40, 0.05, 0.05],   # I-ARG1 opens the sentence: not allowed
        [0.10, 0.05, 0.50, 0.05, 0.20, 0.05, 0.05],   # I-ARG0
        [0.05, 0.05, 0.05, 0.05, 0.05, 0.70, 0.05],   # B-V
        [0.10, 0.05, 0.05, 0.30, 0.40, 0.05, 0.05],   # I-ARG1 straight after B-V: not allowed
    ])
    argmax = [LABELS[i] for i in scores.argmax(-1)]
    assert argmax == ["I-ARG1", "I-ARG0", "B-V", "I-ARG1"]
    assert [LABELS[i] for i in bio_viterbi(scores, LABELS)] == ["B-ARG0", "I-ARG0", "B-V", "B-ARG1"]


def test_viterbi_keeps_a_valid_argmax_and_leaves_io_labels_alone():
    rng = np.random.default_rng(0)
    for _ in range(50):  # valid argmax sequences come back unchanged
        scores = np.log(rng.dirichlet(np.ones(len(LABELS)), size=7))
        tags = [LABELS[i] for i in scores.argmax(-1)]
        valid = all(not t.startswith("I-") or (i > 0 and tags[i - 1][2:] == t[2:] and tags[i - 1] != "O")
                    for i, t in enumerate(tags))
        if valid:
            assert bio_viterbi(scores, LABELS) == scores.argmax(-1).tolist()
    io = ["O", "PER", "LOC"]  # no B- labels: nothing to constrain, argmax comes back
    scores = _scores([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    assert bio_viterbi(scores, io) == [2, 1]
    assert bio_viterbi(np.zeros((0, 3)), io) == []


def test_metric_and_predictions_score_the_decoded_tags():
    # one sentence of four words; the reference is "B-ARG0 I-ARG0 B-V B-ARG1"
    scores = _scores([
        [0.10, 0.30, 0.05, 0.05, 0.40, 0.05, 0.05],
        [0.10, 0.05, 0.50, 0.05, 0.20, 0.05, 0.05],
        [0.05, 0.05, 0.05, 0.05, 0.05, 0.70, 0.05],
        [0.10, 0.05, 0.05, 0.30, 0.40, 0.05, 0.05],
    ])
    # token rows: <s>-like marker, the four words' first subwords with a second subword of word 1 between
    token_logits = np.concatenate([np.zeros((1, 7)), scores[:2], np.zeros((1, 7)), scores[2:]])[None]
    label_ids = np.array([[-100, 1, 2, -100, 5, 3]])
    metric = srl_metrics(dict(enumerate(LABELS)))(SimpleNamespace(predictions=token_logits, label_ids=label_ids))
    assert metric["f1"] == 100.0  # argmax reads ARG1, ARG0, ARG1 spans: one right of three, F1 40
    word_ids = [None, 0, 1, 1, 2, 3]
    assert word_tags_from_logits(word_ids, token_logits[0], LABELS, 5) == ["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "O"]
