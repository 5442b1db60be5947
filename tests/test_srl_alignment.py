"""SRL: predicate marking and word tags -> first-subword labels -> word tags (identity)."""

import json
import random

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
    word_tags_from_token_predictions,
)


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

